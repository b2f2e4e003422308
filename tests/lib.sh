# tests/lib.sh - helpers for shell tests in tests/sh (source it).
set -u
B=${LEANK_BIN:?LEANK_BIN not set: run through make test}
S=${LEANK_SHARED:-$LEANK_TOP/../shared}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# a part of the test that cannot run here: printed as "skip: ...", counted by tests/run.sh as skipped
skips=0
skip() { echo "skip: $*"; skips=$((skips + 1)); }
ok() { echo "ok: $*"; }
need_shared() { [ -d "$S" ] || { echo "skip: $S not found (shared data absent)"; exit 77; }; }
# expect_fail CODE DESCRIPTION -- command...: must exit CODE (or any non-zero if CODE is x) and print one line on stderr
expect_fail() {
    local code=$1 what=$2; shift 3
    "$@" >"$T/out" 2>"$T/err"; local rc=$?
    if [ $rc -eq 0 ]; then fail "$what: exit 0"; return; fi
    if [ "$code" != x ] && [ $rc -ne "$code" ]; then fail "$what: exit $rc, expected $code"; return; fi
    [ -s "$T/err" ] || { fail "$what: no message on stderr"; return; }
    ok "$what: exit $rc: $(head -n1 "$T/err")"
}
finish() {
    [ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
    [ $skips -eq 0 ] && echo "all ok" || echo "all run ok; $skips parts skipped"
    exit 0
}
