#!/usr/bin/env bash
# Install the .deb and check the installed artifact, not the source tree: the self-test and
# the window, each in a clean environment (env -i: a new HOME, no virtualenv, no PYTHONPATH,
# only /usr/bin:/bin on PATH). Needs root (dpkg -i). Prints the self-test and start-up times.
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
    PREFIX="$HOME_DIR/root"
    dpkg-deb -x "$DEB" "$PREFIX"
    LAUNCHER="$PREFIX/opt/$NAME/$NAME"
fi
for f in /opt/$NAME/$NAME /usr/bin/$NAME /usr/share/applications/$NAME.desktop \
         /usr/share/icons/hicolor/scalable/apps/$NAME.svg \
         /usr/share/icons/hicolor/256x256/apps/$NAME.png; do
    test -e "$PREFIX$f" || test -L "$PREFIX$f" || {
        echo "verify: the package did not install $f" >&2; exit 1; }
done
if command -v desktop-file-validate >/dev/null 2>&1; then
    desktop-file-validate "$PREFIX/usr/share/applications/$NAME.desktop"
fi
clean_env=(env -i "HOME=$HOME_DIR" "PATH=/usr/bin:/bin" "LANG=C.UTF-8")

say "self-test: /opt/$NAME/$NAME --self-test (clean environment)"
APP="$PREFIX/opt/$NAME/$NAME"
log="$HOME_DIR/selftest.log"
start=$(date +%s.%N)
if ! "${clean_env[@]}" "$APP" --self-test > "$log" 2>&1; then
    cat "$log"
    echo "verify: the packaged self-test failed" >&2
    exit 1
fi
end=$(date +%s.%N)
grep -v -e '^Loading weights' -e '^llama_' "$log"
grep -q "(packaged," "$log" || { echo "verify: the self-test did not run frozen" >&2; exit 1; }
if grep -q "$ROOT" "$log"; then
    echo "verify: the packaged app used files from the source tree $ROOT" >&2
    exit 1
fi
printf 'self-test wall time (first run: assembles the starter model): %.1f s\n' \
    "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"

say "window: $NAME (QT_QPA_PLATFORM=offscreen, FOLIO_STARTUP_PROBE=1), through $LAUNCHER"
out="$("${clean_env[@]}" QT_QPA_PLATFORM=offscreen FOLIO_STARTUP_PROBE=1 \
       timeout 180 "$LAUNCHER" 2>"$HOME_DIR/window.err")" || {
    cat "$HOME_DIR/window.err"; echo "verify: the window did not start and close" >&2; exit 1; }
ready="$(grep -m1 '^READY ' <<<"$out" || true)"
if [[ -z "$ready" ]]; then
    echo "$out"; cat "$HOME_DIR/window.err"
    echo "verify: the window never reported READY" >&2
    exit 1
fi
echo "window up and closed: ${ready#READY } s from process start to a painted window"
say "verified: $(basename "$DEB") installs and runs self-contained"
