/* util.c - errors, allocation that reports, I/O, atomic output files. */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *lk_progname = "leank";

int lk_seterr(lk_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void lk_warn(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", lk_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- memory ---- */

int lk_nomem(lk_err *err, size_t n, const char *what) {
    if (!n) return lk_seterr(err, LK_ENOMEM, "out of memory (allocating %s)", what ? what : "memory");
    return what ? lk_seterr(err, LK_ENOMEM, "out of memory (allocating %zu bytes for %s)", n, what)
                : lk_seterr(err, LK_ENOMEM, "out of memory (allocating %zu bytes)", n);
}

/* count * size too large for a size_t: reported as such, never allocated */
static int overflows(size_t count, size_t size) { return size && count > SIZE_MAX / size; }
static int nomem_n(lk_err *err, size_t count, size_t size, const char *what) {
    if (!overflows(count, size)) return lk_nomem(err, count * size, what);
    return lk_seterr(err, LK_ENOMEM, "out of memory (allocating %zu x %zu bytes for %s)", count, size,
                     what ? what : "memory");
}

static void *alloc(size_t count, size_t size, int zero, const char *what, lk_err *err) {
    void *p = NULL;
    if (!overflows(count, size)) {
        size_t n = count * size;
        p = zero ? calloc(n ? n : 1, 1) : malloc(n ? n : 1);
    }
    if (!p) nomem_n(err, count, size, what);
    return p;
}
void *lk_alloc(size_t count, size_t size, const char *what, lk_err *err) {
    return alloc(count, size, 0, what, err);
}
void *lk_zalloc(size_t count, size_t size, const char *what, lk_err *err) {
    return alloc(count, size, 1, what, err);
}

int lk_resize(void *pp, size_t count, size_t size, const char *what, lk_err *err) {
    if (overflows(count, size)) return nomem_n(err, count, size, what);
    void *old, *p;
    memcpy(&old, pp, sizeof old); /* pp is a T **: object pointers share one representation here */
    size_t n = count * size;
    if (!(p = realloc(old, n ? n : 1)))
        return nomem_n(err, count, size, what); /* old is untouched, still the caller's */
    memcpy(pp, &p, sizeof p);
    return 0;
}

int lk_grow(void *pp, size_t *cap, size_t need, size_t size, const char *what, lk_err *err) {
    if (need <= *cap) return 0;
    size_t c = *cap <= SIZE_MAX / 2 ? 2 * *cap : need;
    if (c < need) c = need;
    if (c < 16) c = 16;
    if (lk_resize(pp, c, size, what, err)) return LK_ENOMEM;
    *cap = c;
    return 0;
}

char *lk_dup(const char *s, lk_err *err) {
    size_t n = strlen(s) + 1;
    char *d = lk_alloc(n, 1, "a string", err);
    return d ? memcpy(d, s, n) : NULL;
}

char *lk_fmt(lk_err *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : lk_alloc((size_t)n + 1, 1, "a string", err);
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

int lk_read_file(const char *path, size_t max, const char *what, char **data, size_t *len, lk_err *err) {
    int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    *data = NULL;
    *len = 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return lk_seterr(err, LK_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (max > SIZE_MAX / 4) max = SIZE_MAX / 4;
    /* a regular file says its size: one block for all of it and the NUL,
     * with a byte to spare so that its end is seen without growing; anything
     * else (a pipe, a device) grows as it comes, to at most max + 1 bytes: one
     * byte more than allowed tells an endless file from a full one */
    size_t cap = 1 << 16, n = 0;
    struct stat st;
    int rc = 0;
    char hb[32];
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
        off_t at = ftello(f);
        uint64_t left = (uint64_t)st.st_size - (at > 0 && at <= st.st_size ? (uint64_t)at : 0);
        if (left > max) rc = lk_seterr(err, LK_EINPUT, "%s: longer than %s (expected %s)", name,
                                       lk_human_bytes(hb, sizeof hb, (double)max), what);
        cap = (size_t)left + 2;
    }
    if (cap > max + 2) cap = max + 2;
    char *buf = rc ? NULL : lk_alloc(cap, 1, what, err);
    if (!rc && !buf) rc = LK_ENOMEM;
    while (!rc) {
        if (n + 1 == cap) {
            size_t want = cap <= (max + 2) / 2 ? cap * 2 : max + 2;
            if ((rc = lk_resize(&buf, want, 1, what, err))) break;
            cap = want;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n > max)
            rc = lk_seterr(err, LK_EINPUT, "%s: longer than %s (expected %s)", name,
                           lk_human_bytes(hb, sizeof hb, (double)max), what);
        else if (got == 0) break;
    }
    if (!rc && ferror(f)) rc = lk_seterr(err, LK_EIO, "%s: read error", name);
    if (!is_stdin) fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int lk_map_file(const char *path, lk_map *m, lk_err *err) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lk_seterr(err, LK_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lk_seterr(err, LK_EIO, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size == 0) {
        close(fd);
        m->data = (const uint8_t *)"";
        return 0;
    }
    void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return lk_seterr(err, LK_EIO, "%s: cannot map: %s", path, strerror(errno));
    m->data = p;
    return 0;
}

void lk_unmap(lk_map *m) {
    if (m->data && m->size) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

/* ---- atomic outputs ---- */
static lk_out *open_outs;

static void out_unlink(lk_out *o) {
    lk_out **pp = &open_outs;
    while (*pp && *pp != o) pp = &(*pp)->next_open;
    if (*pp) *pp = o->next_open;
    o->next_open = NULL;
}

/* Temporaries are PATH.leank-tmp.PID.XXXXXX: a run killed too hard to clean
 * up (SIGKILL, power loss) leaves one that the next run writing PATH removes
 * once PID is gone, and `make clean` finds by name. */
#define TMP_TAG ".leank-tmp."

static void remove_stale(const char *path) {
    const char *slash = strrchr(path, '/');
    /* best effort: out of memory, nothing is removed (and lk_out_open's own
     * allocations will say so) */
    char *dir = slash ? lk_fmt(NULL, "%.*s", (int)(slash - path + (slash == path)), path) : lk_dup(".", NULL);
    if (!dir) return;
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base), tlen = strlen(TMP_TAG);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, base, blen) || strncmp(e->d_name + blen, TMP_TAG, tlen)) continue;
        long pid = strtol(e->d_name + blen + tlen, &end, 10);
        if (pid <= 0 || *end != '.' || strlen(end) != 7) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* its writer still runs */
        char *stale = lk_fmt(NULL, "%s/%s", dir, e->d_name);
        if (stale) unlink(stale);
        free(stale);
    }
    if (d) closedir(d);
    free(dir);
}

/* An existing output that is not a regular file (/dev/null, a FIFO, a
 * terminal) is written in place: renaming over it would replace it. */
static int is_special(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

int lk_out_open(lk_out *o, const char *path, lk_err *err) {
    memset(o, 0, sizeof *o);
    if (strcmp(path, "-") == 0 || is_special(path)) {
        o->f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
        if (!o->f) return lk_seterr(err, LK_EIO, "%s: cannot open for writing: %s", path, strerror(errno));
        if (!(o->path = lk_dup(path, err))) {
            if (o->f != stdout) fclose(o->f);
            o->f = NULL;
            return LK_ENOMEM;
        }
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return lk_seterr(err, LK_EIO, "%s: is a directory (expected a file name)", path);
    remove_stale(path);
    o->path = lk_dup(path, err);
    o->tmp = lk_fmt(err, "%s" TMP_TAG "%ld.XXXXXX", path, (long)getpid());
    if (!o->path || !o->tmp) {
        free(o->path);
        free(o->tmp);
        memset(o, 0, sizeof *o);
        return LK_ENOMEM;
    }
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int e = errno;
        free(o->path);
        free(o->tmp);
        memset(o, 0, sizeof *o);
        return lk_seterr(err, LK_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    if (!(o->f = fdopen(fd, "wb"))) {
        close(fd);
        unlink(o->tmp);
        free(o->path);
        free(o->tmp);
        memset(o, 0, sizeof *o);
        return lk_nomem(err, 0, "a FILE for the output");
    }
    o->next_open = open_outs;
    open_outs = o;
    return 0;
}

int lk_out_check(const char *path, lk_err *err) {
    if (strcmp(path, "-") == 0) return 0;
    if (is_special(path)) /* not opened: a FIFO would block, or see an early end */
        return access(path, W_OK) == 0 ? 0 : lk_seterr(err, LK_EIO, "%s: cannot open for writing: %s", path,
                                                       strerror(errno));
    lk_out o;
    int rc = lk_out_open(&o, path, err);
    if (!rc) lk_out_abort(&o);
    return rc;
}

int lk_out_commit(lk_out *o, lk_err *err) {
    if (!o->f) return lk_seterr(err, LK_EFAIL, "output not open");
    if (!o->tmp) { /* stdout or a special file, written in place */
        int bad = fflush(o->f) != 0 || ferror(o->f);
        int e = errno;
        if (o->f != stdout) bad |= fclose(o->f) != 0;
        else if (bad) clearerr(o->f); /* reported here, not again at exit */
        o->f = NULL;
        if (bad) lk_seterr(err, LK_EIO, "%s: write error: %s", strcmp(o->path, "-") ? o->path : "<stdout>",
                           strerror(e));
        free(o->path);
        o->path = NULL;
        return bad ? LK_EIO : 0;
    }
    int bad = fflush(o->f) != 0 || ferror(o->f);
    bad |= fclose(o->f) != 0;
    o->f = NULL;
    out_unlink(o);
    if (bad) {
        unlink(o->tmp);
        lk_seterr(err, LK_EIO, "%s: write error: %s", o->path, strerror(errno));
    } else if (rename(o->tmp, o->path) != 0) {
        bad = 1;
        lk_seterr(err, LK_EIO, "%s: cannot rename into place: %s", o->path, strerror(errno));
        unlink(o->tmp);
    }
    free(o->path);
    free(o->tmp);
    o->path = o->tmp = NULL;
    return bad ? LK_EIO : 0;
}

void lk_out_abort(lk_out *o) {
    if (!o->f) return;
    if (o->tmp) {
        fclose(o->f);
        unlink(o->tmp);
        out_unlink(o);
    } else if (o->f != stdout) {
        fclose(o->f);
    }
    o->f = NULL;
    free(o->path);
    free(o->tmp);
    o->path = o->tmp = NULL;
}

int lk_tmp_copy(lk_out *o, const char *name, const void *data, size_t len, lk_err *err) {
    const char *dir = getenv("TMPDIR");
    char *base = lk_fmt(err, "%s/leank-%s", dir && *dir ? dir : "/tmp", name);
    if (!base) return LK_ENOMEM;
    int rc = lk_out_open(o, base, err);
    free(base);
    if (rc) return rc;
    if (fwrite(data, 1, len, o->f) != len || fflush(o->f)) {
        rc = lk_seterr(err, LK_EIO, "%s: cannot write a temporary copy of <stdin>: %s", o->tmp, strerror(errno));
        lk_out_abort(o);
    }
    return rc;
}

void lk_out_cleanup_all(void) {
    for (lk_out *o = open_outs; o; o = o->next_open)
        if (o->tmp) unlink(o->tmp); /* async-signal-safe part only */
    open_outs = NULL;
}




const char *lk_human_bytes(char *buf, size_t n, double bytes) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) {
        bytes /= 1024;
        i++;
    }
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", bytes, u[i]);
    return buf;
}

const char *lk_kv_phrase(char *buf, size_t n, double bytes, double dense, const char *dtype) {
    char a[32], b[32];
    double pct = dense > 0 ? 100.0 * bytes / dense : 100.0;
    snprintf(buf, n, "KV %.1f %% of dense, %.1f %% saved (%s cache, %s of %s)", pct, 100.0 - pct, dtype,
             lk_human_bytes(a, sizeof a, bytes), lk_human_bytes(b, sizeof b, dense));
    return buf;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *lk_share_dir(void) {
    const char *env = getenv("LEANK_SHARE");
    if (env && *env) return is_dir(env) ? lk_dup(env, NULL) : NULL;
    char exe[4096], d[4096 + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    const char *tails[2] = {"../share/leank", "../data"};
    for (int i = 0; i < 2; i++) {
        snprintf(d, sizeof d, "%s/%s", exe, tails[i]);
        if (is_dir(d)) return realpath(d, NULL);
    }
    return NULL;
}

char *lk_share_find(const char *sub, const char *name) {
    if (strchr(name, '/') || access(name, F_OK) == 0) return NULL;
    char *d = lk_share_dir();
    if (!d) return NULL;
    char *p = lk_fmt(NULL, "%s/%s/%s", d, sub, name);
    free(d);
    if (p && access(p, R_OK) == 0) return p;
    free(p);
    return NULL;
}

int lk_progress_enabled(int forced) { return forced || isatty(STDERR_FILENO); }

double lk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void lk_print_version(FILE *f) { fprintf(f, "%s (leank) %s\n", lk_progname, LEANK_VERSION); }


uint64_t lk_fnv1a64(const void *data, size_t len, uint64_t h) {
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

float lk_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t lk_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float lk_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal */
            float f = ldexpf((float)man, -24);
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (exp == 31) u = sign | 0x7f800000 | (man << 13);
    else u = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t lk_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) return sign | 0x7e00;
    if (a >= 0x477ff000) return sign | 0x7c00; /* overflow -> inf */
    if (a < 0x38800000) { /* subnormal or zero: round f * 2^24 to nearest even */
        float m = fabsf(f) * 16777216.0f;
        return sign | (uint16_t)lrintf(m);
    }
    uint32_t r = a + 0xfff + ((a >> 13) & 1) - (112u << 23);
    return sign | (uint16_t)(r >> 13);
}
