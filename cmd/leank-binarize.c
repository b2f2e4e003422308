/* leank-binarize - (being written; see man/leank-binarize.1) */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: leank-binarize [OPTION]...\n"
               "  -h, --help     show this help and exit\n"
               "  -V, --version  show the version and exit\n");
}

int main(int argc, char **argv) {
    lk_progname = "leank-binarize";
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': lk_print_version(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    lk_die(LK_EUSAGE, "nothing to do (see --help)");
}
