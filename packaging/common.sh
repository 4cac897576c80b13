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

# The clean environment the installed app is checked in, as a new user on a machine without
# Python has it: env -i, a new HOME, and a PATH that is a folder of links to the few programs
# Folio may start (a shell, xdg-open to open a file, tesseract for OCR, ldconfig for ctypes),
# since /usr/bin itself holds python3 here. Sets the array CLEAN_ENV; checks, inside that
# environment, that neither python3 nor python can be found.
#   use_clean_env HOME_DIR;  "${CLEAN_ENV[@]}" /opt/folio/folio --self-test
use_clean_env() {
    local home="$1" bin="$1/.clean-path" tool found
    mkdir -p "$bin"
    for tool in sh xdg-open tesseract ldconfig; do
        found="$(PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin command -v "$tool" || true)"
        if [[ -n "$found" ]]; then ln -sf "$found" "$bin/$tool"; fi
    done
    CLEAN_ENV=(env -i "HOME=$home" "PATH=$bin" "LANG=C.UTF-8")
    if "${CLEAN_ENV[@]}" /bin/sh -c 'command -v python3 || command -v python' >&2; then
        echo "packaging: the clean environment's PATH ($bin) still finds a Python" >&2
        return 1
    fi
}
