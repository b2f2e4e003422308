# cli.sh - every program: --help, --version, a man page, usage errors exit 2.
. "$LEANK_TOP/tests/lib.sh"
for p in prep train binarize pack decode bench; do
    prog="$B/leank-$p"
    [ -x "$prog" ] || { fail "leank-$p not built"; continue; }
    out=$("$prog" --help 2>&1) && echo "$out" | grep -qi usage || fail "leank-$p --help"
    v=$("$prog" --version 2>&1) && [ "$v" = "leank-$p (leank) $(sed -n 's/^#define LEANK_VERSION "\(.*\)"/\1/p' "$LEANK_TOP/lib/io/util.h")" ] \
        || fail "leank-$p --version printed '$v'"
    "$prog" --no-such-option >/dev/null 2>"$T/err"; rc=$?
    [ $rc -eq 2 ] || fail "leank-$p --no-such-option: exit $rc, expected 2"
    [ -s "$T/err" ] || fail "leank-$p --no-such-option: no message"
    [ -f "$LEANK_TOP/man/leank-$p.1" ] || fail "man/leank-$p.1 missing"
done
for m in leank.7 leank-formats.5; do [ -f "$LEANK_TOP/man/$m" ] || fail "man/$m missing"; done
if command -v man >/dev/null 2>&1; then
    for m in "$LEANK_TOP"/man/*.[157]; do
        w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$m" 2>&1 >/dev/null)
        [ -z "$w" ] || fail "$(basename "$m"): $w"
    done
fi
finish
