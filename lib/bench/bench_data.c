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
