/* fuzz.h - shared helpers of the libFuzzer targets (tests/fuzz/fuzz_*.c).
 * Each target defines LLVMFuzzerTestOneInput: libFuzzer drives it under
 * `make fuzz` (clang), and tests/fuzz/replay.c replays the kept inputs of
 * tests/fuzz/NAME/ under `make test` (any compiler, SAN=1 included). */
#ifndef LEANK_FUZZ_H
#define LEANK_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file: one memfd per process, rewritten for each input;
 * returns its /proc/self/fd path (a regular file, so it can be mapped). */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("leank-fuzz", 0);
        if (fd < 0) { perror("memfd_create"); abort(); }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz input");
        abort();
    }
    return path;
}

/* The input as a NUL-terminated string (freed by the caller). */
static inline char *fuzz_str(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* The repository root (LEANK_TOP, else the current directory). */
static inline const char *fuzz_top(void) {
    const char *t = getenv("LEANK_TOP");
    return t && *t ? t : ".";
}
#endif
