/* cpu.h - the CPU engine's vector kernels and thread pool (internal to lib/).
 *
 * Kernels come in a portable C version and AVX2 / AVX-512 versions compiled
 * with __attribute__((target)) and picked once at run time from the CPU found
 * (__builtin_cpu_supports), so a default build runs everywhere and still uses
 * the wide units. LEANK_CPU=generic|avx2|avx512 caps the choice (tests, and
 * comparisons in docs/perf.md).
 *
 * Results that must not depend on the machine are defined by a canonical
 * order of operations that every version follows exactly (multiplies and adds
 * rounded separately, never fused; the library is built -std=c11, where GCC
 * does not contract a*b+c either):
 *   lk_dot       eight partial sums s[i % 8] += a[i]*b[i], then
 *                ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)), then the tail in order;
 *   lk_exp_sum   x[i] = exp(x[i] - m) by one fixed range reduction and
 *                polynomial (Cephes expf, ~1 ulp), exact 0 below -87; the sum
 *                in the same eight-lane order as lk_dot;
 *   lk_axpy      y[c] = y[c] + a*x[c] per channel.
 * So attention logits, probabilities and outputs are bitwise the same on
 * every CPU and for any thread count. Matrix products (lk_matvec, BLAS) are
 * not: their rounding differs by machine as OpenBLAS's always did. */
#ifndef LEANK_CPU_H
#define LEANK_CPU_H

#include <stddef.h>

/* ---- threads ---- */

/* Threads of the pool: LEANK_THREADS if set (>= 1), else the CPUs this
 * process may run on. */
int lk_threads(void);
/* Set the pool size (n >= 1) before or between forwards; 0 = the default. */
void lk_set_threads(int n);
/* Run fn(ctx, task, thread) for task = 0 .. n_tasks-1 over the pool; thread is
 * in 0 .. lk_threads()-1 and no two tasks run on one thread at once. Tasks are
 * handed out dynamically. Runs everything on the caller (thread 0) when the
 * pool has one thread, n_tasks is 1, the pool is already in use (a nested call
 * or another thread's call), or more than one lk_forward is running in this
 * process (leank-bench accuracy's workers: each is already a thread). */
typedef void (*lk_task_fn)(void *ctx, int task, int thread);
void lk_parallel_for(int n_tasks, lk_task_fn fn, void *ctx);
/* lk_forward brackets itself with these (see above). */
void lk_forward_enter(void);
void lk_forward_leave(void);

/* ---- kernels (dispatched) ---- */

float lk_dot(const float *a, const float *b, int n);
/* out[i] = lk_dot(q, k[i], n) for four keys (the same bits as four calls;
 * four independent chains for the out-of-order core). */
void lk_dot4(const float *q, const float *const k[4], int n, float out[4]);
void lk_axpy(float *y, float a, const float *x, int n);
/* out[u] = lk_dot(q, k[u], n) * scale, u < cnt (the same bits as the calls). */
void lk_dots(const float *q, const float *const *k, int cnt, int n, float scale, float *out);
/* po[h] += e[h][u] * v[u] for u = 0 .. cnt-1 in order, h < nh: the same bits
 * as lk_axpy(po[h], e[h][u], v[u], n) for each u (one call for a list). */
void lk_wsum(float *const *po, const float *const *e, int nh, const float *const *v, int cnt, int n);
/* max of x[0..n) (n >= 1) */
float lk_vmax(const float *x, int n);
/* x[i] = exp(x[i] - m) (-INFINITY -> 0); returns the sum (canonical order). */
float lk_exp_sum(float *x, int n, float m);
void lk_vscale(float *x, float a, int n);
/* out (d_out) = W (d_out, d_in) x, one thread. */
void lk_matvec(float *out, const float *w, const float *x, int d_out, int d_in);
/* gate[i] = silu(gate[i]) * up[i] with the canonical exp. */
void lk_swiglu_fast(float *gate, const float *up, size_t n);

/* Name of the kernel set in use: "generic", "avx2" or "avx512". */
const char *lk_cpu_kernels(void);

#endif
