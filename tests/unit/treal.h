/* treal.h - what test_real.c (the CPU engine) and tests/gpu/gpu_real.c (the
 * CUDA engine) share: the real models' names, where they are looked for, and
 * the id arrays of the HF references (dev/real/README.md). */
#ifndef LEANK_TREAL_H
#define LEANK_TREAL_H
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const real_names[] = {"qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"};
#define REAL_MODELS ((int)(sizeof real_names / sizeof real_names[0]))

/* The folder holding the models: $LEANK_REAL_MODELS, else ~/.cache/leank/models
 * (dev/models/get.sh's default), written into buf when it is the default. */
static inline const char *real_root(char *buf, size_t n) {
    const char *root = getenv("LEANK_REAL_MODELS");
    if (root && *root) return root;
    const char *home = getenv("HOME");
    snprintf(buf, n, "%.900s/.cache/leank/models", home ? home : ".");
    return buf;
}

/* A JSON array of integers as a malloc'd int array of *n entries. */
static inline int *json_ints(json_t *a, int *n) {
    *n = (int)json_array_size(a);
    int *v = malloc(sizeof(int) * (*n > 0 ? *n : 1));
    for (int i = 0; i < *n; i++) v[i] = (int)json_integer_value(json_array_get(a, i));
    return v;
}
#endif
