/* Inputs and outputs for the tests that run kernels (test_reference,
 * test_cpu, tests/gpu/test_gpu): the run's seed and its random streams,
 * f32 / f16 / bf16 element values, tensors in strided layouts inside
 * larger buffers, and the arguments of one call.
 *
 * No Check here: test_gpu links this file and is built on a GPU machine
 * that may not have Check. The Check assertion over these tensors,
 * check_untouched_outside, is in testutil.h. */
#ifndef SPAT_TEST_TENSOR_H
#define SPAT_TEST_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spat.h"

/* ------------------------------------------------------ seed and streams */

/* The run's seed. */
extern uint64_t test_seed;

/* Sets test_seed from $SPAT_TEST_SEED, else from the clock and the pid,
 * and prints "PROG: seed N (SPAT_TEST_SEED=N repeats this run)". */
void test_seed_init(const char *prog);
/* Stream `salt` of the run's seed: each test draws from its own. */
void test_reseed(uint64_t salt);
/* Sets the generator's state itself (test_gpu, whose --seed is the state). */
void test_rng_set(uint64_t state);
/* SplitMix64: the next 64 random bits; a double uniform in [lo, hi). */
uint64_t test_rnd64(void);
double test_uniform(double lo, double hi);

/* ---------------------------------------------------------------- values */

/* f16 and bf16 decoded independently of libspat's conversions (which
 * test_reference checks against these). */
double test_f16_value(uint16_t h);
double test_bf16_value(uint16_t h);
/* Element i of an array of dtype dt; f16 and bf16 stores round to nearest
 * even (libspat's sp_f16_from_double, sp_bf16_from_double). */
double test_get(const void *buf, spat_dtype dt, int64_t i);
void test_put(void *buf, spat_dtype dt, int64_t i, double v);

/* --------------------------------------------------------------- tensors */

/* A layout: dims listed outermost first, `step` elements between
 * neighbours of the innermost dim, `pad` extra elements per outer step,
 * dims in `neg` run backwards (negative strides). */
typedef struct layout {
    int perm[4];
    int64_t pad, step;
    unsigned neg;
} layout;

extern const layout BHSD, BSHD_PAD;
extern const layout ODD;  /* d strided, seq backwards */
extern const layout ODD2; /* seq innermost */

/* nd (3 or 4) dims n[] with strides s[] in elements of es bytes; element
 * (0, 0, 0, 0) is buf's element `base`; buf holds nelem elements, the
 * unused ones included. */
typedef struct tensor {
    int nd;
    int64_t n[4], s[4], base, nelem;
    size_t es;
    unsigned char *buf;
} tensor;

/* The bytes of every slot that is not an element, in an output buffer. */
#define POISON 0xa5

void tensor_make(tensor *t, int nd, const int64_t *n, size_t es, layout l);
/* A new buffer of the shape and layout of `like` (contents undefined). */
void tensor_make_like(tensor *t, const tensor *like);
void tensor_free(tensor *t);
/* The element index of (a, b, c, d) in buf; d is ignored when nd is 3. */
int64_t tensor_off(const tensor *t, int64_t a, int64_t b, int64_t c, int64_t d);
/* The address of element (0, 0, 0, 0), for spat_forward_args. */
void *tensor_ptr(const tensor *t);
/* Element `off` (a tensor_off) of t, stored as dt. */
double tensor_get(const tensor *t, spat_dtype dt, int64_t off);
/* An input: NaN in every byte, then random values in [-amp, amp) at the
 * elements (so that a read outside them shows in O). */
void tensor_fill(tensor *t, spat_dtype dt, double amp);
/* An output: POISON in every byte. */
void tensor_poison(tensor *t);
/* The first slot that is not an element and whose bytes do not all hold
 * POISON any more; -1 when there is none. */
int64_t tensor_written_outside(const tensor *t);

/* ----------------------------------------------------------------- calls */

/* One call: shapes, dtype, layouts of Q, K, V, O, LSE and the optional
 * arguments of spat_forward_args. */
typedef struct tcase {
    int64_t B, Hq, Hkv, Nq, Nk, d;
    spat_dtype dt;
    layout lq, lk, lv, lo, llse;
    const int32_t *seqlens_q, *seqlens_k;
    const int64_t *q_offsets;
    int64_t q_offset;
    float scale;
    int threads;
    bool no_lse; /* no LSE for the call (test_cpu's backend under test) */
    double tol;  /* test_reference's bound on O's relative error */
} tcase;

/* B 1, Hkv 1, Nq = Nk = L, f32, every tensor BHSD, the rest 0. */
tcase tcase_base(int64_t heads, int64_t L, int64_t d);

typedef struct bufs {
    tensor q, k, v, o, lse;
} bufs;

/* Q (amplitude 2), K and V (1) filled in this order from the current
 * stream; O and LSE poisoned. */
void bufs_make(bufs *x, const tcase *c);
void bufs_free(bufs *x);
/* The arguments of c on x for backend be (LSE NULL with c->no_lse). */
void args_from(spat_forward_args *a, const tcase *c, const bufs *x, spat_backend be);

#endif
