#!/usr/bin/env bash
# dist/folio/ -> dist/folio_<version>_amd64.deb: /opt/folio, /usr/bin/folio, a .desktop entry
# and hicolor icons, so Folio shows in the desktop's app menu.
source "$(dirname "$0")/common.sh"
STAGE="$ROOT/build/deb/${NAME}_${VERSION}"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications" \
         "$STAGE/usr/share/icons/hicolor/scalable/apps" "$STAGE/usr/share/doc/$NAME"
cp -a "$DIST/$NAME" "$STAGE/opt/$NAME"
# The bootloader finds its _internal folder through /proc/self/exe, so a symlink works.
ln -s "/opt/$NAME/$NAME" "$STAGE/usr/bin/$NAME"
install -m 644 "$ROOT/resources/icons/folio.svg" \
    "$STAGE/usr/share/icons/hicolor/scalable/apps/$NAME.svg"
for s in 48 128 256; do
    mkdir -p "$STAGE/usr/share/icons/hicolor/${s}x${s}/apps"
    install -m 644 "$ROOT/resources/icons/folio-$s.png" \
        "$STAGE/usr/share/icons/hicolor/${s}x${s}/apps/$NAME.png"
done
# Folio's licence and those of what the folder bundles (Qt: LGPL; the starter model: Gemma terms).
install -m 644 "$ROOT/packaging/debian/copyright" "$STAGE/usr/share/doc/$NAME/copyright"
sed "s/@VERSION@/$VERSION/" "$ROOT/packaging/folio.desktop" \
    > "$STAGE/usr/share/applications/$NAME.desktop"
chmod 644 "$STAGE/usr/share/applications/$NAME.desktop"

size_kb=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
# The bundled interpreter and libraries need at least the glibc they were built against.
# getconf, not `ldd --version | head -1`: head exits after one line, ldd's next write gets
# SIGPIPE, and under common.sh's `set -o pipefail` the whole script failed (make: Error 141).
glibc="$(getconf GNU_LIBC_VERSION)"  # "glibc 2.36"
glibc="${glibc##* }"
[[ "$glibc" =~ ^[0-9]+\.[0-9]+ ]] || { echo "deb: cannot read the glibc version" >&2; exit 1; }
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH_DEB/" -e "s/@SIZE@/$size_kb/" \
    -e "s/@GLIBC@/$glibc/" \
    "$ROOT/packaging/debian/control" > "$STAGE/DEBIAN/control"
install -m 755 "$ROOT/packaging/debian/postinst" "$STAGE/DEBIAN/postinst"
install -m 755 "$ROOT/packaging/debian/postrm" "$STAGE/DEBIAN/postrm"

# gzip, not xz: xz takes minutes longer on a gigabyte of libraries for a few percent.
fakeroot dpkg-deb -Zgzip -z6 --build "$STAGE" "$DEB.partial" >/dev/null
mv "$DEB.partial" "$DEB"
dpkg-deb --info "$DEB" | sed -n '/Package:/,/Description:/p'
