#!/usr/bin/env bash
# Figures for docs/BENCHMARKS.md: artifact sizes, start-up time of the installed app to a
# painted window (cold: page cache dropped first; warm: right after), and self-test time
# (first run, which assembles the starter model into a new HOME, then a second run).
# Run as root after `make package` (drop_caches needs root):  make package-bench  [RUNS=5]
source "$(dirname "$0")/common.sh"
RUNS="${RUNS:-5}"
APP="${APP:-/opt/$NAME/$NAME}"
test -x "$APP" || { echo "measure: $APP is missing; run make package" >&2; exit 1; }

say "sizes"
printf '%-40s %8s\n' "dist/$NAME/ (folder)" "$(du -sh "$DIST/$NAME" | cut -f1)"
printf '%-40s %8s\n' "$(basename "$TARBALL")" "$(du -sh "$TARBALL" | cut -f1)"
printf '%-40s %8s\n' "$(basename "$DEB")" "$(du -sh "$DEB" | cut -f1)"
printf '%-40s %8s\n' "/opt/$NAME (installed)" "$(du -sh "/opt/$NAME" | cut -f1)"
echo "largest parts of the folder:"
du -sh "$DIST/$NAME/_internal"/* 2>/dev/null | sort -rh | awk 'NR <= 8 {print "  " $0}'

HOME_DIR="$(mktemp -d)"
trap 'rm -rf "$HOME_DIR"' EXIT
use_clean_env "$HOME_DIR"  # env -i, new HOME, a PATH without Python (common.sh)
run_env=("${CLEAN_ENV[@]}")
probe() {
    timeout 300 "${run_env[@]}" QT_QPA_PLATFORM=offscreen FOLIO_STARTUP_PROBE=1 "$APP" \
        2>/dev/null | awk '/^READY / && !seen {print $2; seen = 1}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

say "self-test ($APP --self-test, clean environment)"
for label in "first run (assembles the model)" "second run"; do
    s=$(date +%s.%N)
    timeout 600 "${run_env[@]}" "$APP" --self-test > "$HOME_DIR/selftest.log" 2>&1 || {
        cat "$HOME_DIR/selftest.log"; exit 1; }
    e=$(date +%s.%N)
    printf '%-34s %6.1f s wall (%s)\n' "$label" "$(awk -v a="$s" -v b="$e" 'BEGIN{print b-a}')" \
        "$(tail -1 "$HOME_DIR/selftest.log")"
done

say "start-up to a painted window (FOLIO_STARTUP_PROBE, offscreen), $RUNS runs each"
cold=(); warm=()
for _ in $(seq "$RUNS"); do
    sync; echo 3 > /proc/sys/vm/drop_caches
    cold+=("$(probe)")
    warm+=("$(probe)")
done
echo "cold (page cache dropped): ${cold[*]} s -> median $(printf '%s\n' "${cold[@]}" | median) s"
echo "warm:                      ${warm[*]} s -> median $(printf '%s\n' "${warm[@]}" | median) s"
