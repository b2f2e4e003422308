/* util.h - the one error convention, allocation that reports, I/O, atomic
 * output.
 *
 * Convention: a library function that can fail returns int (0 = success,
 * otherwise an LK_E* code) and fills an lk_err with one line of text of the
 * form "FILE: what went wrong (expected ...)"; running out of memory is one
 * such failure (LK_ENOMEM). The library never exits: programs print the
 * message as "leank-X: <msg>" through lk_fail() (cmd/cli.h, with the other
 * helpers that exit) and exit with the code (exit codes below are the
 * programs' exit statuses too). tests/sh/exits.sh keeps lib/ free of exits. */
#ifndef LEANK_UTIL_H
#define LEANK_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LEANK_VERSION "0.1.0"

enum {
    LK_OK = 0,
    LK_EFAIL = 1,   /* generic runtime failure */
    LK_EUSAGE = 2,  /* bad command line */
    LK_EINPUT = 3,  /* input file malformed or inconsistent */
    LK_EIO = 4,     /* cannot open/read/write */
    LK_ENOMEM = 5,  /* out of memory / resources */
    LK_EDEVICE = 6, /* GPU / CUDA failure */
    LK_EINTR = 130, /* interrupted (SIGINT), state saved */
};

typedef struct {
    int code;
    char msg[1024];
} lk_err;

/* Set err (may be NULL) to code and a printf-style message; returns code. */
int lk_seterr(lk_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Program name used in messages ("leank-prep"); set once in main(). */
extern const char *lk_progname;

/* Print "leank-X: msg" to stderr. */
void lk_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- memory: allocation that reports, never exits ----
 * Each allocates count * size bytes (the product checked for overflow; a zero
 * size still gets a block of its own, so NULL only ever means failure). On
 * failure: NULL (lk_resize: LK_ENOMEM), with err (may be NULL) set to
 * LK_ENOMEM, "out of memory (allocating N bytes for WHAT)". Several
 * allocations may be made and checked once: err keeps the last failure. */
void *lk_alloc(size_t count, size_t size, const char *what, lk_err *err);
void *lk_zalloc(size_t count, size_t size, const char *what, lk_err *err); /* zeroed */
/* Resize the block at *pp (pp: the address of any object pointer, e.g. an
 * int **; NULL *pp allocates) to count * size bytes. On failure *pp is left
 * as it was, still the caller's to use and free. */
int lk_resize(void *pp, size_t count, size_t size, const char *what, lk_err *err);
/* Room for need elements of size bytes in the array at *pp of capacity *cap:
 * when *cap < need, grown to the larger of need and twice *cap (at least 16),
 * *cap updated on success only. */
int lk_grow(void *pp, size_t *cap, size_t need, size_t size, const char *what, lk_err *err);
char *lk_dup(const char *s, lk_err *err);
/* printf into a new heap string; NULL on failure */
char *lk_fmt(lk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fill err for a failed allocation of n bytes of what (n 0: size unknown,
 * e.g. another library's context); returns LK_ENOMEM. */
int lk_nomem(lk_err *err, size_t n, const char *what);

/* Whole file into memory (NUL-terminated for convenience; len excludes it).
 * path "-" reads stdin. A file of more than max bytes -- the wrong file, or
 * an endless one such as /dev/zero -- is refused once max bytes are read
 * (LK_EINPUT, "PATH: longer than MAX (expected WHAT)"); what says what the
 * caller reads, e.g. "a model's config.json". */
int lk_read_file(const char *path, size_t max, const char *what, char **data, size_t *len, lk_err *err);

/* Read-only mapping of a whole file (path "-" not allowed). */
typedef struct {
    const uint8_t *data;
    size_t size;
} lk_map;
int lk_map_file(const char *path, lk_map *m, lk_err *err);
void lk_unmap(lk_map *m);

/* Output written to PATH.leank-tmp.PID.XXXXXX and renamed to PATH only on
 * commit; "-" is stdout and an existing PATH that is not a regular file
 * (/dev/null, a FIFO) is written in place (commit flushes). abort removes the
 * temporary file. An lk_out that is neither committed nor aborted when the
 * process exits through lk_fail/lk_die, or on a terminating signal or a
 * crash (lk_install_cleanup, cmd/cli.h), is removed too (no partial output
 * file); a temporary left by a killed run is
 * removed by the next lk_out_open of the same PATH once its PID is gone. */
typedef struct lk_out {
    FILE *f;
    char *path; /* final path */
    char *tmp;  /* temporary path, NULL for stdout */
    struct lk_out *next_open;
} lk_out;
int lk_out_open(lk_out *o, const char *path, lk_err *err);
int lk_out_commit(lk_out *o, lk_err *err);
/* Can PATH be written? (its directory exists and is writable; nothing is left
 * behind). Programs check every output before the work starts. */
int lk_out_check(const char *path, lk_err *err);
void lk_out_abort(lk_out *o);
/* LEN bytes of DATA (stdin, read whole) written to a temporary file for a
 * reader that needs a path (a mapped file): $TMPDIR (else /tmp)/leank-NAME,
 * as lk_out_open's temporary. o->tmp is its path; lk_out_abort(o) removes it
 * (as do lk_fail/lk_die and a terminating signal). */
int lk_tmp_copy(lk_out *o, const char *name, const void *data, size_t len, lk_err *err);
/* Remove every still-open temporary output (called by lk_fail/lk_die and the
 * signal handler installed by lk_install_cleanup). Async-signal-safe. */
void lk_out_cleanup_all(void);

/* Progress on stderr: on when stderr is a terminal or when forced. */
int lk_progress_enabled(int forced);

/* The one way leank states cache memory: "KV 71.3 % of dense, 28.7 % saved
 * (bf16 cache, 1.21 GiB of 1.70 GiB)" -- bytes of the cache actually
 * allocated against a dense cache of the same dtype. Returns buf. */
const char *lk_kv_phrase(char *buf, size_t n, double bytes, double dense, const char *dtype);
/* "1.21 GiB", "512 B" */
const char *lk_human_bytes(char *buf, size_t n, double bytes);

/* leank's own data (configs/, models/leank-mini, bench/): $LEANK_SHARE if
 * set, else PREFIX/share/leank beside an installed program (PREFIX/bin), else
 * the data/ of the source tree the program was built in (bin/../data). NULL
 * when none is a directory (or when memory runs out: a lookup that fails
 * quietly, the caller then reports what it could not find). Returns a heap
 * string. */
char *lk_share_dir(void);
/* A file named without a directory (e.g. "leank-mini.yaml") that is not in
 * the working directory: SHARE/sub/name if that exists (heap string), else
 * NULL (out of memory too, as lk_share_dir). */
char *lk_share_find(const char *sub, const char *name);

/* Monotonic wall clock in seconds. */
double lk_now(void);

/* Standard --version text: "leank-X (leank) 0.1.0". */
void lk_print_version(FILE *f);

/* 64-bit FNV-1a, for fingerprints. */
uint64_t lk_fnv1a64(const void *data, size_t len, uint64_t h);
#define LK_FNV_OFFSET 0xcbf29ce484222325ULL

/* bf16/f16 <-> f32 */
float lk_bf16_to_f32(uint16_t h);
uint16_t lk_f32_to_bf16(float f); /* round to nearest even */
float lk_f16_to_f32(uint16_t h);
uint16_t lk_f32_to_f16(float f);

#endif
