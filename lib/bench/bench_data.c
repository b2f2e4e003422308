/* bench_data.c - where leank-bench finds the reference data (see bench.h). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "util.h"

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int lk_bench_data_dir(const char *opt, const char *bench, const char *needs, const char *alt, char **dir,
                      lk_err *err) {
    const char *from = "--data", *d = opt;
    *dir = NULL;
    if (!d && (d = getenv("LEANK_DATA")) && *d) from = "LEANK_DATA";
    else if (!opt && (d = getenv("LEANK_SHARED")) && *d) from = "LEANK_SHARED";
    else if (!opt) {
        d = "../shared";
        from = "the default";
    }
    if (!is_dir(d))
        return lk_seterr(err, LK_EIO, "%s: %s (%s) is not a directory; it would hold %s: give --data DIR or set "
                         "LEANK_DATA to the reference data (the project's ../shared, with data/ and models/), or %s",
                         bench, d, from, needs, alt);
    return (*dir = lk_dup(d, err)) ? 0 : LK_ENOMEM;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void lk_bench_spread(double *v, int n, double *min, double *median, double *max) {
    if (n < 1) {
        *min = *median = *max = 0;
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *min = v[0];
    *max = v[n - 1];
    *median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
