# call.sh - sourced by the dev/gpu scripts (all.sh and each session's call):
# the repository root as the working directory; LEANK_BIN, the programs: bin/,
# or the stripped tarball dev/gpu/pack.sh makes (.carry/bin.tar.xz; bin/ with
# its debug info is over the device's carry limit), unpacked into
# /tmp/leank-bin; LEANK_SHARED, the copy of ../shared the tests read
# (.carry/shared); $O, the folder for the logs ($OUT on the device); and
#   step NAME COMMAND...   the command under `timeout ${LIMIT:-300}`, its
#                          output in $O/NAME.txt, one line "== NAME: exit RC, N s"
#                          on stdout and in $O/summary.txt; returns RC
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
