# call.sh - sourced by the dev/gpu scripts (all.sh and each session's call):
# the repository root as the working directory; LEANK_BIN, the programs: bin/,
# or the stripped tarball dev/gpu/pack.sh makes (.carry/bin.tar.xz; bin/ with
# its debug info is over the device's carry limit), unpacked into
# /tmp/leank-bin; LEANK_SHARED, the copy of ../shared the tests read
# (.carry/shared); $O, the folder for the logs ($OUT on the device); and
#   step NAME COMMAND...   the command under `timeout ${LIMIT:-300}`, its
#                          output in $O/NAME.txt, one line "== NAME: exit RC, N s"
#                          on stdout and in $O/summary.txt; returns RC
#   p=$(smi NAME) ... kill $p; summ NAME
#                          nvidia-smi's SM clock, power and throttle reasons every
#                          20 ms into $O/NAME.csv, then one line: the busy samples'
#                          (> 250 W) clock and power, min/median/max, and reasons
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ -z "${LEANK_BIN:-}" ] && [ -f .carry/bin.tar.xz ]; then
    mkdir -p /tmp/leank-bin && tar xJf .carry/bin.tar.xz -C /tmp/leank-bin && LEANK_BIN=/tmp/leank-bin/bin
fi
export LEANK_BIN=${LEANK_BIN:-$PWD/bin} LEANK_SHARED=${LEANK_SHARED:-$PWD/.carry/shared} PYTHONUNBUFFERED=1
O=${OUT:-/tmp/leank-gpu}
mkdir -p "$O"
step() {
    local name=$1 t0=$SECONDS rc
    shift
    timeout "${LIMIT:-300}" "$@" >"$O/$name.txt" 2>&1
    rc=$?
    echo "== $name: exit $rc, $((SECONDS - t0)) s" | tee -a "$O/summary.txt"
    return $rc
}
smi() { nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader,nounits -lms 20 >"$O/$1.csv" & echo $!; }
summ() { python3 - "$O/$1.csv" "$1" <<'PY'
import sys, statistics as st
rows = [l.split(", ") for l in open(sys.argv[1]) if l.strip()]
busy = [r for r in rows if float(r[2]) > 250]
if not busy: print(sys.argv[2], "no busy samples", len(rows)); sys.exit()
c = [float(r[1]) for r in busy]; p = [float(r[2]) for r in busy]
reasons = {}
for r in busy: reasons[r[3].strip()] = reasons.get(r[3].strip(), 0) + 1
print(f"{sys.argv[2]}: {len(busy)} busy samples of {len(rows)}: SM clock min {min(c):.0f} median {st.median(c):.0f} max {max(c):.0f} MHz; power median {st.median(p):.0f} max {max(p):.0f} W; reasons {reasons}")
PY
}
