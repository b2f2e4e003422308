/* test_util.c - the error convention, atomic outputs, float conversions. */
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"
#include "cli.h"

/* AddressSanitizer (make test SAN=1) aborts on an allocation it cannot
 * serve; this test asks for impossible sizes on purpose */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static int exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

static int count_entries(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) { if (fscanf(p, "%d", &n) != 1) n = -1; pclose(p); }
    return n;
}

int main(void) {
    char dir[] = "/tmp/leank-test-util-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *path = lk_asprintf("%s/out.bin", dir);
    lk_err err = {0};

    /* commit: the file appears only at commit, with the content */
    lk_out o;
    CHECK(lk_out_open(&o, path, &err) == 0);
    fputs("hello", o.f);
    CHECK(!exists(path));
    CHECK(lk_out_commit(&o, &err) == 0);
    char *data; size_t len;
    CHECK(lk_read_file(path, 1u << 20, "test data", &data, &len, &err) == 0);
    CHECK(len == 5 && memcmp(data, "hello", 5) == 0);
    free(data);

    /* abort: neither the final nor the temporary file is left */
    unlink(path);
    CHECK(lk_out_open(&o, path, &err) == 0);
    fputs("partial", o.f);
    lk_out_abort(&o);
    CHECK(!exists(path));
    CHECK(count_entries(dir) == 0);

    /* lk_die with an open output removes the temporary file */
    pid_t pid = fork();
    if (pid == 0) {
        lk_out o2;
        freopen("/dev/null", "w", stderr);
        if (lk_out_open(&o2, path, NULL) == 0) { fputs("x", o2.f); lk_die(LK_EINPUT, "bad input"); }
        _exit(99);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == LK_EINPUT);
    CHECK(count_entries(dir) == 0);

    /* errors carry the file name */
    CHECK(lk_read_file("/nonexistent/leank", 1u << 20, "test data", &data, &len, &err) == LK_EIO);
    CHECK(strstr(err.msg, "/nonexistent/leank") != NULL);
    CHECK(lk_out_open(&o, "/nonexistent/dir/x", &err) == LK_EIO);
    CHECK(strstr(err.msg, "/nonexistent/dir/x") != NULL);

    /* a special file is written in place, never replaced; a directory is refused */
    CHECK(lk_out_open(&o, "/dev/null", &err) == 0 && o.tmp == NULL);
    fputs("discarded", o.f);
    CHECK(lk_out_commit(&o, &err) == 0);
    struct stat st;
    CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
    CHECK(lk_out_open(&o, "/dev/full", &err) == 0);
    fputs("x", o.f);
    CHECK(lk_out_commit(&o, &err) == LK_EIO && strstr(err.msg, "/dev/full: write error"));
    CHECK(lk_out_open(&o, dir, &err) == LK_EIO && strstr(err.msg, "is a directory"));
    /* outputs checked before the work: nothing is left behind */
    CHECK(lk_out_check(path, &err) == 0 && count_entries(dir) == 0);
    CHECK(lk_out_check("/nonexistent/dir/x", &err) == LK_EIO);
    CHECK(lk_out_check("/dev/null", &err) == 0 && lk_out_check("-", &err) == 0);
    /* a temporary of a dead writer is removed by the next open of its path */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, &status, 0);
    char *stale = lk_asprintf("%s.leank-tmp.%ld.AbCdEf", path, (long)dead);
    FILE *sf = fopen(stale, "w");
    CHECK(sf != NULL);
    if (sf) fclose(sf);
    CHECK(lk_out_open(&o, path, &err) == 0);
    CHECK(!exists(stale));
    CHECK(strstr(o.tmp, ".leank-tmp.") != NULL);
    lk_out_abort(&o);
    free(stale);
    CHECK(count_entries(dir) == 0);

    /* the library's allocators report instead of exiting: NULL (lk_resize,
     * lk_grow: LK_ENOMEM) and the size and purpose in err */
    lk_err e2 = {0};
    size_t huge = (size_t)1 << 62;
    CHECK(lk_alloc(huge, 1, "a test block", &e2) == NULL && e2.code == LK_ENOMEM);
    CHECKF(strstr(e2.msg, "out of memory (allocating 4611686018427387904 bytes for a test block)"), "%s", e2.msg);
    CHECK(lk_zalloc(SIZE_MAX, 2, "a product", &e2) == NULL); /* count * size overflows: never allocated */
    CHECKF(strstr(e2.msg, "x 2 bytes for a product"), "%s", e2.msg);
    void *zero = lk_alloc(0, 8, "nothing", &e2); /* a block of its own: NULL only means failure */
    CHECK(zero != NULL);
    free(zero);
    char *dup = lk_dup("abc", &e2), *fmt = lk_fmt(&e2, "%s-%d", "x", 7);
    CHECK(dup && !strcmp(dup, "abc") && fmt && !strcmp(fmt, "x-7"));
    free(dup);
    free(fmt);
    /* a failed resize leaves the block where it was, with its content, still
     * the caller's (the old lk_realloc lost it); SAN=1 checks it is not leaked */
    int *blk = lk_alloc(4, sizeof *blk, "a block", &e2), *was = blk;
    blk[3] = 42;
    CHECK(lk_resize(&blk, huge, sizeof *blk, "a larger block", &e2) == LK_ENOMEM && blk == was && blk[3] == 42);
    size_t cap = 4;
    CHECK(lk_grow(&blk, &cap, huge, sizeof *blk, "a larger block", &e2) == LK_ENOMEM && cap == 4 && blk == was);
    CHECK(lk_grow(&blk, &cap, 5, sizeof *blk, "a larger block", &e2) == 0 && cap == 16 && blk[3] == 42);
    CHECK(lk_grow(&blk, &cap, 16, sizeof *blk, "a larger block", &e2) == 0 && cap == 16);
    free(blk);

    /* a whole-file read is bounded: an endless file is refused by its size,
     * naming it and what was expected, not by running out of memory */
    e2 = (lk_err){0};
    data = (char *)1;
    CHECK(lk_read_file("/dev/zero", 1 << 20, "a test file", &data, &len, &e2) == LK_EINPUT && data == NULL);
    CHECKF(strstr(e2.msg, "/dev/zero: longer than 1.00 MiB (expected a test file)"), "%s", e2.msg);
    FILE *five = fopen(path, "w");
    CHECK(five && fputs("12345", five) >= 0 && fclose(five) == 0);
    CHECK(lk_read_file(path, 4, "four bytes", &data, &len, &e2) == LK_EINPUT && strstr(e2.msg, "longer than 4 B"));
    CHECK(lk_read_file(path, 5, "five bytes", &data, &len, &e2) == 0 && len == 5 && !strcmp(data, "12345"));
    free(data);
    unlink(path);

    /* bf16 / f16 round trips and rounding */
    CHECK(lk_bf16_to_f32(lk_f32_to_bf16(1.0f)) == 1.0f);
    CHECK(lk_bf16_to_f32(lk_f32_to_bf16(-3.5f)) == -3.5f);
    CHECK(lk_f32_to_bf16(1.00390625f) == 0x3f80); /* halfway: to even */
    CHECK(lk_f32_to_bf16(1.01171875f) == 0x3f82);
    CHECK(isnan(lk_bf16_to_f32(lk_f32_to_bf16(NAN))));
    for (int h = 0; h < 0x10000; h++) { /* every finite f16 survives f16 -> f32 -> f16 */
        if (((h >> 10) & 0x1f) == 0x1f) continue;
        if (lk_f32_to_f16(lk_f16_to_f32((uint16_t)h)) != h) { CHECKF(0, "f16 %04x", h); break; }
    }
    CHECK(lk_f16_to_f32(0x3c00) == 1.0f);
    CHECK(lk_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(lk_f32_to_f16(65520.0f) == 0x7c00);

    CHECK(lk_fnv1a64("a", 1, LK_FNV_OFFSET) == 0xaf63dc4c8601ec8cULL);
    rmdir(dir);
    free(path);
    return t_done();
}
