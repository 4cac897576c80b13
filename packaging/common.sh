# Shared by the packaging scripts: paths, name and version (from pyproject.toml).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DIST="$ROOT/dist"
NAME="$("$PY" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["name"])' "$ROOT/pyproject.toml")"
VERSION="$("$PY" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
ARCH_DEB=amd64
TARBALL="$DIST/$NAME-$VERSION-linux-x86_64.tar.gz"
DEB="$DIST/${NAME}_${VERSION}_${ARCH_DEB}.deb"
say() { printf '\n== %s\n' "$*"; }
