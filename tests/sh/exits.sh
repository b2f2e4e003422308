#!/usr/bin/env bash
# exits.sh - the library never exits (issue 12): no file of lib/ or kernels/
# (the CUDA half of the library, leank-bench kernel / attention's
# bench_kernels.cu included) calls exit, _exit, abort, assert, lk_die, lk_fail
# or the allocators that exit (lk_malloc, lk_calloc, lk_realloc, lk_strdup,
# lk_asprintf: cmd/cli.h, the programs' side), nor the other helpers of
# cmd/cli.h. Two looks: the source (a call outside comments and strings), and
# the object files (an undefined symbol: a call hidden in a macro or an inline
# function counts too). In kernels/ objects exit is the sources' to find:
# nvcc gives every __device__ function a host stub that calls exit. A call
# may stay where a comment on its line or the line above says "exit-ok:" and
# why (none does today). The checker is first run on files that break the
# rule, to see that it catches them.
. "$LEANK_TOP/tests/lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
command -v nm >/dev/null || { echo "skip: nm not installed"; exit 77; }
bin=$(basename "$B")
build=$(cd "$B/.." && pwd)/${bin/#bin/build} # bin -> build, bin-san -> build-san

cat >"$T/check.py" <<'PY'
import os, re, subprocess, sys
FORBID = ["exit", "_exit", "_Exit", "quick_exit", "abort", "assert", "lk_die", "lk_fail", "lk_malloc",
          "lk_calloc", "lk_realloc", "lk_strdup", "lk_asprintf", "lk_parse_long", "lk_parse_double",
          "lk_refuse_tty_stdout", "lk_close_stdout", "lk_install_cleanup"]
SYMS = set(FORBID) - {"assert"} | {"__assert_fail"}
CALL = re.compile(r"(?<![\w.>$])(" + "|".join(FORBID) + r")\s*\(")

def code_only(text):
    """text with comments and string / char literals blanked (newlines kept)"""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + (c if j < n else "")); i = j + 1
        else:
            out.append(c); i += 1
    return "".join(out)

bad = []
# check.py SRC [OBJ [SYMBOLS NOT LOOKED FOR IN OBJ, comma separated]]
src_root, obj_root = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
if len(sys.argv) > 3: SYMS -= set(sys.argv[3].split(","))
justified = set() # sources without their extension, as objects are named
for d, _, files in os.walk(src_root):
    for f in sorted(files):
        if not f.endswith((".c", ".h", ".cu", ".cuh")): continue
        p = os.path.join(d, f)
        text = open(p, encoding="utf-8", errors="replace").read()
        lines, code = text.split("\n"), code_only(text).split("\n")
        if "exit-ok:" in text: justified.add(os.path.splitext(os.path.relpath(p, src_root))[0])
        for k, line in enumerate(code):
            for m in CALL.finditer(line):
                near = lines[k] + (lines[k - 1] if k else "")
                if "exit-ok:" not in near:
                    bad.append("%s:%d: %s()" % (os.path.relpath(p, src_root), k + 1, m.group(1)))
if obj_root:
    for d, _, files in os.walk(obj_root):
        for f in sorted(files):
            if not f.endswith(".o"): continue
            p = os.path.join(d, f)
            src = os.path.relpath(p, obj_root)[:-2]
            out = subprocess.run(["nm", "-u", p], capture_output=True, text=True).stdout.split()
            for s in sorted(SYMS & set(out)):
                if src not in justified: bad.append("%s.o: calls %s (object file)" % (src, s))
print("\n".join(bad) if bad else "no exit in %s" % src_root)
sys.exit(1 if bad else 0)
PY

# the checker catches what it should, and lets a justified call and look-alikes be
mkdir -p "$T/fixture/room"
cat >"$T/fixture/room/bad.c" <<'EOF'
#include "util.h"
static void f(void) {
    char *p = lk_malloc(8); /* lk_malloc( in a comment is fine */
    if (!p) exit(1);
    puts("exit(2) in a string is fine");
    lk_out_abort(0); s->abort(); /* names that end in abort */
}
void g(void) {
    /* exit-ok: only reached from the handler a program installs */
    _exit(3);
}
EOF
cat >"$T/fixture/room/bad.cu" <<'EOF'
#define CHECK(call) do { if ((call) != cudaSuccess) lk_die(1, "%s", #call); } while (0)
static_assert(sizeof(int) == 4, "a static_assert is not assert");
EOF
python3 "$T/check.py" "$T/fixture" >"$T/out" 2>&1 && fail "the checker passed a file that calls lk_malloc and exit"
if grep -q "bad.c:3: lk_malloc()" "$T/out" && grep -q "bad.c:4: exit()" "$T/out" &&
    grep -q "bad.cu:1: lk_die()" "$T/out" && [ "$(wc -l <"$T/out")" = 3 ]; then
    ok "the checker finds lk_malloc(), exit(), lk_die() in a .cu's macro; not comments, strings, lk_out_abort," \
        "static_assert or a justified _exit"
else
    fail "the checker on the fixture: $(cat "$T/out")"
fi

# lib/: sources, and the objects of this build
if [ -d "$build/lib" ]; then
    python3 "$T/check.py" "$LEANK_TOP/lib" "$build/lib" >"$T/out" 2>&1 && ok "$(cat "$T/out") (sources and $bin's objects)" ||
        fail "lib/ exits: $(cat "$T/out")"
else
    python3 "$T/check.py" "$LEANK_TOP/lib" >"$T/out" 2>&1 && ok "$(cat "$T/out") (sources)" || fail "lib/ exits: $(cat "$T/out")"
    skip "no object files under $build to check"
fi

# kernels/: sources, and the objects of this build when it has CUDA (exit: see above)
if [ -d "$build/kernels" ] && ls "$build/kernels"/*.o >/dev/null 2>&1; then
    python3 "$T/check.py" "$LEANK_TOP/kernels" "$build/kernels" exit >"$T/out" 2>&1 &&
        ok "$(cat "$T/out") (sources and $bin's objects)" || fail "kernels/ exits: $(cat "$T/out")"
else # a build without CUDA has no kernels/ objects: nothing of them runs
    python3 "$T/check.py" "$LEANK_TOP/kernels" >"$T/out" 2>&1 &&
        ok "$(cat "$T/out") (sources; $bin is built without CUDA)" || fail "kernels/ exits: $(cat "$T/out")"
fi

# nor parses a command line: options, their defaults and --help are cmd/'s (getopt there)
if g=$(grep -rnE '\b(getopt|getopt_long|optarg|optind)\b' --include='*.[ch]' --include='*.cu' --include='*.cuh' \
    "$LEANK_TOP/lib" "$LEANK_TOP/kernels"); then
    fail "lib/ or kernels/ parses options: $g"
else
    ok "no getopt in lib/ or kernels/"
fi
finish
