#!/usr/bin/env bash
# Build dist/folio/ with PyInstaller (one folder), then the tarball and the .deb.
# Usage: packaging/build.sh [--skip-pyinstaller]   (the second form only repackages dist/folio)
source "$(dirname "$0")/common.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QT_QPA_PLATFORM=offscreen

if [[ "${1:-}" != "--skip-pyinstaller" ]]; then
    say "PyInstaller: dist/$NAME/ (log: build/pyinstaller.log)"
    mkdir -p build
    start=$(date +%s)
    if ! "$PY" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST" \
            --workpath build/pyinstaller packaging/folio.spec > build/pyinstaller.log 2>&1; then
        tail -40 build/pyinstaller.log
        echo "packaging: PyInstaller failed (full log: build/pyinstaller.log)" >&2
        exit 1
    fi
    echo "built in $(( $(date +%s) - start )) s"
fi
test -x "$DIST/$NAME/$NAME" || { echo "packaging: $DIST/$NAME/$NAME is missing" >&2; exit 1; }

say "tarball: $TARBALL"
tar -C "$DIST" -cf - "$NAME" | gzip -6 > "$TARBALL.partial"
mv "$TARBALL.partial" "$TARBALL"

say "Debian package: $DEB"
bash "$ROOT/packaging/deb.sh"

say "sizes"
du -sh "$DIST/$NAME" "$TARBALL" "$DEB"
