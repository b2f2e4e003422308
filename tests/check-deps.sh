#!/bin/sh
# Check that the build's libraries are present; say how to get what is missing.
# tests/check-deps.sh fuzz: also clang with libFuzzer (make fuzz; plain builds,
# make test and make test SAN=1 use the C compiler and do not need it).
missing=""
check() { # header package
    if ! printf "#define PCRE2_CODE_UNIT_WIDTH 8\n#include <%s>\n" "$1" | ${CC:-cc} -E $(pkg-config --cflags openblas 2>/dev/null) -x c - >/dev/null 2>&1; then
        missing="$missing $2"
    fi
}
check jansson.h libjansson-dev
check pcre2.h libpcre2-dev
check utf8proc.h libutf8proc-dev
check zstd.h libzstd-dev
check yaml.h libyaml-dev
check cblas.h libopenblas-dev
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
command -v zstd >/dev/null 2>&1 || missing="$missing zstd"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
if [ "${1:-}" = fuzz ]; then
    if ! command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1; then
        missing="$missing clang libclang-rt-14-dev"
    elif ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
            "${FUZZ_CC:-clang}" -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1; then
        missing="$missing libclang-rt-14-dev"
    fi
fi
if [ -n "$missing" ]; then
    echo "leank: missing build dependencies:$missing" >&2
    echo "leank: install them with: sudo apt-get install$missing" >&2
    exit 1
fi
exit 0
