/* t.h - minimal unit-test helpers. A test program exits 0 when every check
 * passed, 1 otherwise, 77 to skip (e.g. ../shared absent). A part skipped
 * inside a test that otherwise runs is T_SKIP_PART: it prints "skip: ..." and
 * tests/run.sh counts it as a skipped check, not as a pass. */
#ifndef LEANK_T_H
#define LEANK_T_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int t_fails, t_checks, t_skips;
#define CHECK(cond) do { t_checks++; if (!(cond)) { t_fails++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { t_checks++; if (!(cond)) { t_fails++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b); t_checks++; \
    if (!(fabs(_a - _b) <= (tol))) { t_fails++; fprintf(stderr, \
    "%s:%d: %s = %.9g, %s = %.9g, |diff| %.3g > %.3g\n", __FILE__, __LINE__, #a, _a, #b, _b, \
    fabs(_a - _b), (double)(tol)); } } while (0)
/* Directory ../shared (LEANK_SHARED overrides); NULL if absent. */
static inline const char *t_shared(void) {
    const char *s = getenv("LEANK_SHARED");
    static char buf[4096];
    if (!s) s = "../shared";
    struct stat st;
    if (stat(s, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    snprintf(buf, sizeof buf, "%s", s);
    return buf;
}
#define T_SKIP(...) do { printf("skip: "); printf(__VA_ARGS__); printf("\n"); exit(77); } while (0)
#define T_SKIP_PART(...) do { t_skips++; printf("skip: "); printf(__VA_ARGS__); printf("\n"); } while (0)
static inline int t_done(void) {
    printf("%d checks, %d failed, %d parts skipped\n", t_checks, t_fails, t_skips);
    return t_fails ? 1 : 0;
}
#endif
