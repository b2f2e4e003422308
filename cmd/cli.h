/* cli.h - what every leank program shares and the library must not do:
 * exit. Reporting an lk_err and exiting with its code, allocation that exits
 * when memory runs out (programs have nothing better to do; lib/ uses
 * util.h's lk_alloc family and returns LK_ENOMEM), option values, and the
 * process-wide setup of main(): signal cleanup of temporary outputs and the
 * check of stdout at exit. Linked into every program (and the test
 * programs), never into lib/: a lib/ file that calls one of these does not
 * compile (tests/sh/exits.sh checks the rest). */
#ifndef LEANK_CLI_H
#define LEANK_CLI_H

#include "util.h"

/* Print err's message ("leank-X: msg") and exit with its code (LK_EFAIL if
 * code is 0), after removing every open temporary output. */
void lk_fail(const lk_err *err) __attribute__((noreturn));
/* Print "leank-X: msg" and exit with code, likewise. */
void lk_die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Allocation that exits: on failure lk_fail with "out of memory (allocating
 * N bytes)" (LK_ENOMEM). lk_realloc keeps p on failure (the process ends). */
void *lk_malloc(size_t n);
void *lk_calloc(size_t n, size_t size);
void *lk_realloc(void *p, size_t n);
char *lk_strdup(const char *s);
/* printf into a new heap string */
char *lk_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Option values: print a usage error ("OPT: 'S' is not an integer in [MIN,
 * MAX]") and exit LK_EUSAGE unless s is one. */
long lk_parse_long(const char *opt, const char *s, long min, long max);
double lk_parse_double(const char *opt, const char *s, double min, double max);

/* Binary outputs never go to a terminal: when stdout is one, print
 * "refusing to write WHAT to a terminal (use -o FILE or a pipe)" and exit
 * LK_EUSAGE. Call it up front when the output path is "-". */
void lk_refuse_tty_stdout(const char *what);

/* Every signal whose default action ends the process removes the open
 * temporary outputs first (lk_out_cleanup_all), then ends it as it would have.
 * Call once in main(). */
void lk_install_cleanup(void);
/* atexit handler: a write error on stdout (a full disk, /dev/full) makes a
 * program that would exit 0 print one line and exit LK_EIO instead. */
void lk_close_stdout(void);

#endif
