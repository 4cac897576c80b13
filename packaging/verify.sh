#!/usr/bin/env bash
# Install the .deb and check the installed artifact, not the source tree: Qt's platform
# plugins find their system libraries, then the self-test and the window, each in a clean
# environment (env -i: a new HOME, no virtualenv, no PYTHONPATH, and a PATH without any Python;
# see use_clean_env in common.sh). Needs root (dpkg -i). Prints the self-test and start-up times.
source "$(dirname "$0")/common.sh"
test -f "$DEB" || { echo "verify: $DEB is missing; run make package" >&2; exit 1; }
HOME_DIR="$(mktemp -d)"
trap 'rm -rf "$HOME_DIR"' EXIT
if [[ $(id -u) -eq 0 ]]; then
    say "dpkg -i $(basename "$DEB")"
    dpkg -i "$DEB" >/dev/null
    PREFIX=""
    LAUNCHER=/usr/bin/$NAME
else  # dpkg -i needs root: check the same files unpacked into a temporary root instead
    say "not root: unpacking $(basename "$DEB") with dpkg-deb -x instead of installing it"
    cat >&2 <<WARN
verify: WARNING: not root, so the .deb was NOT installed: dpkg -i, its Depends, its
verify: maintainer scripts and the /usr/bin/$NAME link were not tested. Run as root
verify: (sudo make package-verify) to test the install itself.
WARN
    PREFIX="$HOME_DIR/root"
    dpkg-deb -x "$DEB" "$PREFIX"
    LAUNCHER="$PREFIX/opt/$NAME/$NAME"
fi
for f in /opt/$NAME/$NAME /usr/bin/$NAME /usr/share/applications/$NAME.desktop \
         /usr/share/icons/hicolor/scalable/apps/$NAME.svg \
         /usr/share/icons/hicolor/256x256/apps/$NAME.png /usr/share/doc/$NAME/copyright; do
    test -e "$PREFIX$f" || test -L "$PREFIX$f" || {
        echo "verify: the package did not install $f" >&2; exit 1; }
done
if command -v desktop-file-validate >/dev/null 2>&1; then
    desktop-file-validate "$PREFIX/usr/share/applications/$NAME.desktop"
fi

# The offscreen checks below never load the xcb or Wayland plugins, so a system library those
# need and the .deb's Depends does not pull in would only show on a user's desktop. The
# platform plugins and the xcb/Wayland integrations they load must all resolve; the optional
# GTK theme plugin (used only where GTK 3 is installed) is left out.
say "Qt platform plugins: shared libraries (ldd)"
plugins="$PREFIX/opt/$NAME/_internal/PySide6/Qt/plugins"
test -n "$(ls "$plugins"/platforms/libqxcb.so 2>/dev/null)" || {
    echo "verify: the xcb platform plugin is not at $plugins/platforms" >&2; exit 1; }
missing=""
checked=0
for so in "$plugins"/platforms/*.so "$plugins"/xcbglintegrations/*.so "$plugins"/wayland-*/*.so; do
    test -f "$so" || continue
    checked=$((checked + 1))
    gone="$(env -i PATH=/usr/bin:/bin ldd "$so" 2>&1 | awk '/not found/ {print $1}' | sort -u \
            | tr '\n' ' ')"
    if [[ -n "$gone" ]]; then
        missing+="  ${so#"$plugins"/}: $gone"$'\n'
    fi
done
if [[ -n "$missing" ]]; then
    printf 'verify: Qt plugins need libraries this system lacks ("not found" by ldd):\n%s' \
        "$missing" >&2
    echo "verify: add their Debian packages to packaging/debian/control's Depends" >&2
    exit 1
fi
echo "$checked plugins (platforms, xcbglintegrations, wayland-*): every library found"

use_clean_env "$HOME_DIR"
echo "clean environment: ${CLEAN_ENV[*]} (no python3 or python on that PATH)"

say "self-test: /opt/$NAME/$NAME --self-test (clean environment)"
APP="$PREFIX/opt/$NAME/$NAME"
log="$HOME_DIR/selftest.log"
start=$(date +%s.%N)
if ! timeout 600 "${CLEAN_ENV[@]}" "$APP" --self-test > "$log" 2>&1; then
    cat "$log"
    echo "verify: the packaged self-test failed (or ran past 600 s)" >&2
    exit 1
fi
end=$(date +%s.%N)
grep -v -e '^Loading weights' -e '^llama_' "$log"
grep -q "(packaged," "$log" || { echo "verify: the self-test did not run frozen" >&2; exit 1; }
grep -q "^Folio $VERSION self-test" "$log" || {
    echo "verify: the packaged app does not report version $VERSION (pyproject.toml)" >&2
    exit 1; }
if grep -q "$ROOT" "$log"; then
    echo "verify: the packaged app used files from the source tree $ROOT" >&2
    exit 1
fi
printf 'self-test wall time (first run: assembles the starter model): %.1f s\n' \
    "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"

say "window: $NAME (QT_QPA_PLATFORM=offscreen, FOLIO_STARTUP_PROBE=1), through $LAUNCHER"
out="$(timeout 180 "${CLEAN_ENV[@]}" QT_QPA_PLATFORM=offscreen FOLIO_STARTUP_PROBE=1 \
       "$LAUNCHER" 2>"$HOME_DIR/window.err")" || {
    cat "$HOME_DIR/window.err"; echo "verify: the window did not start and close" >&2; exit 1; }
ready="$(grep -m1 '^READY ' <<<"$out" || true)"
if [[ -z "$ready" ]]; then
    echo "$out"; cat "$HOME_DIR/window.err"
    echo "verify: the window never reported READY" >&2
    exit 1
fi
echo "window up and closed: ${ready#READY } s from process start to a painted window"
if [[ -n "$PREFIX" ]]; then
    say "checked $(basename "$DEB") unpacked, NOT installed (not root): see the warning above"
else
    say "verified: $(basename "$DEB") installs and runs self-contained"
fi
