#!/usr/bin/env bash
# Install the .deb and check the installed artifact, not the source tree: Qt's platform
# plugins find their system libraries, llama.cpp's libraries are the portable build, then the
# self-test, every module and data file of a real session (--check-bundle) and the window,
# each in a clean environment (env -i: a new HOME, no virtualenv, no PYTHONPATH, and a PATH
# without any Python; see use_clean_env in common.sh). Needs root (apt-get install). Prints the
# self-test and start-up times.
source "$(dirname "$0")/common.sh"
test -f "$DEB" || { echo "verify: $DEB is missing; run make package" >&2; exit 1; }
HOME_DIR="$(mktemp -d)"
trap 'rm -rf "$HOME_DIR"' EXIT
# The build machine's Python for the checks that run from source (objdump, the manifest).
CHECK_PY="$PY"
[[ -x "$CHECK_PY" ]] || CHECK_PY="$(command -v python3)"

# apt-get install ./folio_*.deb, not dpkg -i: apt installs the Depends a fresh Debian lacks
# (libwayland-cursor0, libwayland-egl1, ...), as a user's `apt install ./folio.deb` does;
# dpkg -i would leave the package half-configured. When apt cannot reach its sources (no
# network), fall back to dpkg -i and say so: the Depends were then not installed by apt.
apt_summary() {  # what apt installed besides Folio (the Depends this system lacked)
    awk '/^The following NEW packages/ {p = 1; print; next} p && /^  / {print; next} {p = 0}
         /^Setting up / {print}' "$1"
}

install_deb() {
    local log="$HOME_DIR/apt.log" deb_path
    deb_path="$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")"  # apt needs a path, not a name
    say "apt-get install -y $deb_path"
    if DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall --no-install-recommends \
            "$deb_path" > "$log" 2>&1; then
        apt_summary "$log"
        return 0
    fi
    # Stale package lists: fetch them once and try again.
    if grep -qE 'Failed to fetch|Unable to locate|no installation candidate|Unable to fetch|404' \
            "$log" && apt-get update > "$HOME_DIR/apt-update.log" 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall \
               --no-install-recommends "$deb_path" > "$log" 2>&1; then
        apt_summary "$log"
        return 0
    fi
    if grep -qiE 'Failed to fetch|Temporary failure resolving|Could not resolve|Unable to fetch|Network is unreachable|Connection (timed out|refused)|Unable to connect' \
            "$log" "$HOME_DIR/apt-update.log" 2>/dev/null; then
        tail -5 "$log" >&2
        cat >&2 <<WARN
verify: WARNING: apt could not reach its package sources, so the .deb is installed with
verify: dpkg -i instead: its Depends were NOT installed by apt, only checked by dpkg (which
verify: stops here if one is missing). Rerun with network access to test the real install.
WARN
        dpkg -i "$deb_path" >/dev/null
        return 0
    fi
    cat "$log" >&2
    echo "verify: apt-get install $deb_path failed (not a network problem; see above)" >&2
    exit 1
}

if [[ $(id -u) -eq 0 ]]; then
    install_deb
    PREFIX=""
    LAUNCHER=/usr/bin/$NAME
    # Every Depends is really there now (dpkg -i would leave missing ones unconfigured).
    status="$(dpkg-query -W -f='${Status}' "$NAME")"
    [[ "$status" == "install ok installed" ]] || {
        echo "verify: $NAME is '$status' after the install, not 'install ok installed'" >&2
        exit 1; }
else  # installing needs root: check the same files unpacked into a temporary root instead
    say "not root: unpacking $(basename "$DEB") with dpkg-deb -x instead of installing it"
    cat >&2 <<WARN
verify: WARNING: not root, so the .deb was NOT installed: apt-get install, its Depends, its
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

# llama.cpp must be the portable build (AVX2 baseline): AVX-512 or AMX instructions in a
# bundled ggml library crash on CPUs without them (and its AMX kernels segfaulted on some
# Xeons). The same disassembly check as packaging/install_deps.py, on what the package holds.
say "llama.cpp: no AVX-512/AMX instructions in the bundled libggml*.so (objdump)"
"$CHECK_PY" - "$ROOT/packaging" "$PREFIX/opt/$NAME/_internal" <<'PYCHECK'
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import install_deps  # noqa: E402 (FORBIDDEN, forbidden_instructions)

libs = {p.resolve() for p in install_deps.ggml_libs(Path(sys.argv[2]))}
if not libs:
    sys.exit(f"verify: no libggml*.so in {sys.argv[2]}: llama.cpp is not bundled")
bad = 0
for lib in sorted(libs):
    hits = install_deps.forbidden_instructions(lib)
    print(f"  {'AVX-512/AMX' if hits else 'portable   '}  {lib.name}")
    for line in hits:
        print(f"      {line}")
    bad += bool(hits)
if bad:
    sys.exit(f"verify: {bad} bundled ggml libraries contain AVX-512 or AMX instructions "
             "(a native build): rebuild llama-cpp-python with packaging/install_deps.py")
print(f"{len(libs)} ggml libraries checked: none uses AVX-512 or AMX")
PYCHECK

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

# Every module a real session imports and every data file it opens (recorded from source now,
# with this build's environment), imported and looked for inside the installed package.
say "bundle contents: the modules and data files of a real session (folio --check-bundle)"
manifest="$HOME_DIR/session-manifest.json"
if ! timeout 900 "$CHECK_PY" "$ROOT/packaging/session_manifest.py" --out "$manifest" \
        > "$HOME_DIR/manifest.log" 2>&1; then
    tail -30 "$HOME_DIR/manifest.log"
    echo "verify: recording the session from source failed (packaging/session_manifest.py)" >&2
    exit 1
fi
tail -1 "$HOME_DIR/manifest.log"
chmod -R a+rX "$HOME_DIR"
if ! timeout 600 "${CLEAN_ENV[@]}" QT_QPA_PLATFORM=offscreen "$APP" --check-bundle \
        "$manifest" > "$HOME_DIR/check.log" 2>&1; then
    cat "$HOME_DIR/check.log"
    echo "verify: the package lacks modules or data files a real session uses" >&2
    exit 1
fi
cat "$HOME_DIR/check.log"

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
