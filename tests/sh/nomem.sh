#!/usr/bin/env bash
# nomem.sh - running out of memory is an error like any other (issue 12): a
# program whose N-th allocation fails, for every N (every few on the long
# runs), exits 5 with an "out of memory" line last, or succeeds as it would have
# (the tokenizer's word cache does without), and leaves no temporary file. It
# never crashes, hangs, or exits with another code. The failure is injected by
# a preloaded malloc that fails the N-th allocation made by the program's own
# code (lib/ and cmd/, not the C library's or jansson's). The programs exited
# 5 before lib/ reported its errors too (lk_malloc exited): what this guards
# is every failure path that now returns -- no crash, no hang, no leftover. It
# found one: a failed growth of the tokenizer's word cache looped forever.
. "$LEANK_TOP/tests/lib.sh"
[ "${LEANK_SAN:-0}" = 1 ] && { echo "skip: a preloaded malloc and AddressSanitizer do not mix (SAN=1)"; exit 77; }
CC=${CC:-cc}
command -v "$CC" >/dev/null || { echo "skip: no C compiler to build the failing malloc"; exit 77; }
M=$LEANK_TOP/data/models/leank-mini
cd "$T"
cat >failmalloc.c <<'EOF'
/* LD_PRELOAD: fail allocation number $FAIL_AT of those the executable's own
 * code makes (0: none), in leank-* programs only; at exit, write the count to
 * $FAIL_COUNT if set. */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static uintptr_t lo, hi;
static long n, at = -1;
static int text(struct dl_phdr_info *i, size_t sz, void *d) {
    for (int k = 0; k < i->dlpi_phnum; k++)
        if (i->dlpi_phdr[k].p_type == PT_LOAD && (i->dlpi_phdr[k].p_flags & PF_X)) {
            lo = i->dlpi_addr + i->dlpi_phdr[k].p_vaddr;
            hi = lo + i->dlpi_phdr[k].p_memsz;
        }
    return 1; /* the first object is the executable */
}
static void count(void) {
    const char *f = getenv("FAIL_COUNT");
    FILE *o = f ? fopen(f, "w") : NULL;
    if (o) fprintf(o, "%ld\n", n), fclose(o);
}
static int fail(void *caller) {
    if (at < 0) {
        char exe[4096];
        ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[l > 0 ? l : 0] = 0;
        const char *b = strrchr(exe, '/'), *s = getenv("FAIL_AT");
        at = 0;
        if (strncmp(b ? b + 1 : exe, "leank-", 6)) return 0;
        at = s ? atol(s) : 0;
        dl_iterate_phdr(text, NULL);
        atexit(count);
    }
    if ((uintptr_t)caller < lo || (uintptr_t)caller >= hi) return 0;
    if (++n != at) return 0;
    errno = ENOMEM;
    return 1;
}
void *malloc(size_t s) { return fail(__builtin_return_address(0)) ? NULL : __libc_malloc(s); }
void *calloc(size_t a, size_t b) { return fail(__builtin_return_address(0)) ? NULL : __libc_calloc(a, b); }
void *realloc(void *p, size_t s) { return fail(__builtin_return_address(0)) ? NULL : __libc_realloc(p, s); }
EOF
"$CC" -O1 -shared -fPIC failmalloc.c -o failmalloc.so 2>cc.err || { echo "skip: cannot build the failing malloc: $(head -n1 cc.err)"; exit 77; }

# sweep STEP NAME -- CMD...: CMD with its N-th allocation failing, N = 1, 1 + STEP, ... (stdin from $IN)
sweep() {
    local step=$1 name=$2 n total rc bad=0 runs=0
    shift 3
    FAIL_COUNT=$T/count LD_PRELOAD=$T/failmalloc.so "$@" <"${IN:-/dev/null}" >out 2>err ||
        { fail "$name: fails without injection: $(head -c 200 err)"; return; }
    total=$(cat count)
    [ "$total" -gt 0 ] || { fail "$name: no allocation counted"; return; }
    for ((n = 1; n <= total; n += step)); do
        runs=$((runs + 1))
        FAIL_AT=$n LD_PRELOAD=$T/failmalloc.so timeout 60 "$@" <"${IN:-/dev/null}" >out 2>err
        rc=$?
        if [ $rc = 0 ] && ! grep -q "out of memory" err; then continue; fi
        if [ $rc = 5 ] && tail -n1 err | grep -q "^leank-[a-z]*: .*out of memory (allocating "; then
            continue
        fi
        fail "$name, allocation $n of $total failing: exit $rc: $(head -c 300 err | tr '\n' '|')"
        bad=$((bad + 1))
        [ $bad -ge 3 ] && break
    done
    left=$(find "$T" -name '*.leank-tmp.*' | head -n1)
    [ -z "$left" ] || fail "$name: temporary left behind: $left"
    [ $bad = 0 ] && ok "$name: $runs of its $total allocations failing in turn, each exit 5 or a clean run"
}

for l in 0 1 2 3 4 5; do printf '%d\t0\t32\t%s\n' $l "$(seq -s, 32 63)"; done >half.tsv
printf 'Hello world, this is a test. \303\234n\303\257c\303\266d\303\251 text.\n' >in.txt
"$B/leank-prep" -t "$M" -T vt -l 600 -n 2 -s 3 -o s.smp 2>/dev/null || fail "prep of samples"

IN=in.txt sweep 1 "leank-prep --encode" -- "$B/leank-prep" -t "$M" --encode
sweep 1 "leank-binarize --from-tsv --report" -- "$B/leank-binarize" --from-tsv half.tsv --head-dim 128 -o half.st --report
sweep 1 "leank-pack" -- "$B/leank-pack" --mask half.st -m "$M" --context 4096 -o plan.st
sweep 1 "leank-prep (vt samples)" -- "$B/leank-prep" -t "$M" -T vt -l 600 -n 2 -o x.smp
sweep 4 "leank-decode --mask" -- "$B/leank-decode" -m "$M" -p "Once upon a time" --max-tokens 4 --device cpu \
    --mask half.st --sink 2 --recent 2 -q
sweep 61 "leank-bench accuracy" -- "$B/leank-bench" accuracy -m "$M" s.smp --mask half.st --sink 4 --recent 16 \
    --device cpu -j 2 -o out.jsonl
finish
