/* cli.c - the programs' side of the error convention: exiting (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failing; /* lk_fail/lk_die ran: the exit status already says so */

void lk_fail(const lk_err *err) {
    failing = 1;
    lk_out_cleanup_all();
    fprintf(stderr, "%s: %s\n", lk_progname, err->msg[0] ? err->msg : "failed");
    exit(err->code ? err->code : LK_EFAIL);
}

void lk_die(int code, const char *fmt, ...) {
    va_list ap;
    failing = 1;
    lk_out_cleanup_all();
    fprintf(stderr, "%s: ", lk_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code ? code : LK_EFAIL);
}

/* ---- allocation: the library's, exiting on failure ---- */

void *lk_malloc(size_t n) {
    lk_err err;
    void *p = lk_alloc(n, 1, NULL, &err);
    if (!p) lk_fail(&err);
    return p;
}
void *lk_calloc(size_t n, size_t size) {
    lk_err err;
    void *p = lk_zalloc(n, size, NULL, &err);
    if (!p) lk_fail(&err);
    return p;
}
void *lk_realloc(void *p, size_t n) {
    lk_err err;
    if (lk_resize(&p, n, 1, NULL, &err)) lk_fail(&err);
    return p;
}
char *lk_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(lk_malloc(n), s, n);
}
char *lk_asprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = lk_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- option values ---- */

long lk_parse_long(const char *opt, const char *s, long min, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        lk_die(LK_EUSAGE, "%s: '%s' is not an integer in [%ld, %ld]", opt, s, min, max);
    return v;
}

double lk_parse_double(const char *opt, const char *s, double min, double max) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        lk_die(LK_EUSAGE, "%s: '%s' is not a number in [%g, %g]", opt, s, min, max);
    return v;
}

void lk_refuse_tty_stdout(const char *what) {
    if (isatty(STDOUT_FILENO)) lk_die(LK_EUSAGE, "refusing to write %s to a terminal (use -o FILE or a pipe)", what);
}

/* ---- the process: signals, stdout at exit ---- */

static void cleanup_signal(int sig) {
    lk_out_cleanup_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

void lk_install_cleanup(void) {
    /* every signal whose default action ends the process: quietly, or with a
     * core dump (SIGQUIT, and the crashes: their handler unlinks and re-raises
     * so the core is still dumped) */
    static const int sigs[] = {SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGALRM, SIGUSR1, SIGUSR2, SIGXCPU, SIGXFSZ,
                               SIGQUIT, SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        /* a handler already there (a sanitizer's crash report) stays */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_DFL) continue;
        signal(sigs[i], cleanup_signal);
    }
}

void lk_close_stdout(void) {
    if (failing) return;
    int bad = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    if (bad) {
        lk_out_cleanup_all();
        fprintf(stderr, "%s: <stdout>: write error: %s\n", lk_progname, e ? strerror(e) : "I/O error");
        _exit(LK_EIO);
    }
}
