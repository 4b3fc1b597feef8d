/* spat_backward against a dense masked softmax gradient in double.
 *
 * The oracle evaluates the pattern pair by pair from the IR rules
 * (brute_mask: no plan, no view) and differentiates a dense masked softmax
 * in double. The oracle itself is first checked against central finite
 * differences of a dense masked forward (loss = sum dO o O), so the
 * gradient formula is proven here, not assumed.
 *
 * Every backend of the table `backends` runs the same cases: the
 * reference, and the LLVM CPU backend once the kernel's CPU slot has
 * backward code for the head dim (until then those cases are skipped with a
 * note). O and LSE fed to the backward come from the reference forward on
 * the same inputs. Inputs are fresh random numbers each run (the seed is
 * printed; SPAT_TEST_SEED repeats a run); every tensor lives in a buffer
 * larger than its layout: inputs are surrounded by NaN (a read outside them
 * shows), outputs hold NaN at their elements (one left unwritten shows) and
 * POISON around them (a write outside shows). Every row of dQ, dK and dV is
 * judged on its own (see judge_row) and a failure names the worst row.
 *
 * The second half checks spat_backward's validation: each bad argument is
 * named, and a rejected call leaves every byte as it was. */
#include "config.h"

#include <check.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brute.h"
#include "frontend.h"
#include "cpu.h"
#include "internal.h"
#include "module.h"
#include "rule_patterns.h"
#include "spat.h"
#include "tensor.h"
#include "testutil.h"

static const int64_t lengths[] = {1, 7, 63, 64, 65, 200};
enum { NLENGTHS = sizeof lengths / sizeof *lengths };

/* ================================================================ oracle */

/* One batch of a call, dense, in double: Q and dO [Hq][nq][d], K and V
 * [Hkv][nk][d], and per query head the mask of the pattern at key length
 * nk (mask[h][i * nk + j]: position i attends key j). Query row r is
 * position r + off. */
typedef struct dense {
    int64_t Hq, Hkv, nq, nk, d, off;
    double scale;
    const double *q, *k, *v, *dout;
    unsigned char *const *mask;
} dense;

static double dotd(const double *x, const double *y, int64_t n)
{
    double z = 0;
    for (int64_t t = 0; t < n; t++)
        z += x[t] * y[t];
    return z;
}

static const double *qrow(const dense *D, const double *base, int64_t h, int64_t r)
{
    return base + (h * D->nq + r) * D->d;
}

static const double *krow(const dense *D, const double *base, int64_t h, int64_t j)
{
    return base + (h * D->nk + j) * D->d;
}

/* Row r of head h: p[j] = softmax weight of key j (0 off the mask).
 * Returns the number of attended keys (0: p all zero). */
static int64_t oracle_probs(const dense *D, int64_t h, int64_t r, double *p)
{
    const int64_t hk = h / (D->Hq / D->Hkv), i = r + D->off;
    const unsigned char *m = D->mask[h] + i * D->nk;
    double mx = -INFINITY;
    int64_t n = 0;
    for (int64_t j = 0; j < D->nk; j++) {
        p[j] = 0;
        if (!m[j])
            continue;
        p[j] = D->scale * dotd(qrow(D, D->q, h, r), krow(D, D->k, hk, j), D->d);
        mx = fmax(mx, p[j]);
        n++;
    }
    if (!n)
        return 0;
    double sum = 0;
    for (int64_t j = 0; j < D->nk; j++)
        if (m[j])
            sum += exp(p[j] - mx);
    const double lse = mx + log(sum);
    for (int64_t j = 0; j < D->nk; j++)
        p[j] = m[j] ? exp(p[j] - lse) : 0;
    return n;
}

/* O [Hq][nq][d]. */
static void oracle_forward(const dense *D, double *o)
{
    double *p = malloc(sizeof(double) * (size_t)(D->nk > 0 ? D->nk : 1));
    ck_assert(p);
    for (int64_t h = 0; h < D->Hq; h++)
        for (int64_t r = 0; r < D->nq; r++) {
            const int64_t hk = h / (D->Hq / D->Hkv);
            double *orow = o + (h * D->nq + r) * D->d;
            memset(orow, 0, sizeof(double) * (size_t)D->d);
            oracle_probs(D, h, r, p);
            for (int64_t j = 0; j < D->nk; j++)
                for (int64_t t = 0; p[j] != 0 && t < D->d; t++)
                    orow[t] += p[j] * krow(D, D->v, hk, j)[t];
        }
    free(p);
}

/* The gradient of sum(dO o O) and, per element, the sum of the absolute
 * values of the terms that make it up (mq, mk, mv: the scale against which
 * rounding errors are judged, see judge_row):
 *   D = dO . O,  dp_j = dO . v_j,  ds_j = p_j (dp_j - D),
 *   dQ_r += scale ds_j k_j,  dK_j += scale ds_j q_r,  dV_j += p_j dO_r,
 * with |D| and |dp_j| replaced by sum |dO||O| and sum |dO||v_j| in the
 * magnitudes. dq, mq [Hq][nq][d]; dk, dv, mk, mv [Hkv][nk][d]. */
static void oracle_backward(const dense *D, double *dq, double *dk, double *dv, double *mq,
                            double *mk, double *mv)
{
    const int64_t d = D->d;
    const size_t nqe = (size_t)(D->Hq * D->nq * d), nke = (size_t)(D->Hkv * D->nk * d);
    memset(dq, 0, sizeof(double) * nqe);
    memset(dk, 0, sizeof(double) * nke);
    memset(dv, 0, sizeof(double) * nke);
    if (mq) {
        memset(mq, 0, sizeof(double) * nqe);
        memset(mk, 0, sizeof(double) * nke);
        memset(mv, 0, sizeof(double) * nke);
    }
    double *p = malloc(sizeof(double) * (size_t)(D->nk > 0 ? D->nk : 1));
    double *o = malloc(sizeof(double) * (size_t)d);
    ck_assert(p && o);
    for (int64_t h = 0; h < D->Hq; h++)
        for (int64_t r = 0; r < D->nq; r++) {
            const int64_t hk = h / (D->Hq / D->Hkv);
            if (!oracle_probs(D, h, r, p))
                continue;
            const double *q = qrow(D, D->q, h, r), *g = qrow(D, D->dout, h, r);
            memset(o, 0, sizeof(double) * (size_t)d);
            for (int64_t j = 0; j < D->nk; j++)
                for (int64_t t = 0; p[j] != 0 && t < d; t++)
                    o[t] += p[j] * krow(D, D->v, hk, j)[t];
            double Dg = 0, Dabs = 0;
            for (int64_t t = 0; t < d; t++) {
                Dg += g[t] * o[t];
                Dabs += fabs(g[t] * o[t]);
            }
            for (int64_t j = 0; j < D->nk; j++) {
                if (p[j] == 0)
                    continue;
                const double *kj = krow(D, D->k, hk, j), *vj = krow(D, D->v, hk, j);
                double dp = 0, dpabs = 0;
                for (int64_t t = 0; t < d; t++) {
                    dp += g[t] * vj[t];
                    dpabs += fabs(g[t] * vj[t]);
                }
                const double ds = p[j] * (dp - Dg), dsabs = p[j] * (dpabs + Dabs);
                const double sc = D->scale, asc = fabs(D->scale);
                double *dqr = dq + (h * D->nq + r) * d;
                double *dkr = dk + (hk * D->nk + j) * d, *dvr = dv + (hk * D->nk + j) * d;
                for (int64_t t = 0; t < d; t++) {
                    dqr[t] += sc * ds * kj[t];
                    dkr[t] += sc * ds * q[t];
                    dvr[t] += p[j] * g[t];
                }
                if (!mq)
                    continue;
                double *mqr = mq + (h * D->nq + r) * d;
                double *mkr = mk + (hk * D->nk + j) * d, *mvr = mv + (hk * D->nk + j) * d;
                for (int64_t t = 0; t < d; t++) {
                    mqr[t] += asc * dsabs * fabs(kj[t]);
                    mkr[t] += asc * dsabs * fabs(q[t]);
                    mvr[t] += p[j] * fabs(g[t]);
                }
            }
        }
    free(p);
    free(o);
}

/* ------------------------------------------------- finite differences */

static double fd_loss(const dense *D, double *o)
{
    oracle_forward(D, o);
    double l = 0;
    for (int64_t x = 0; x < D->Hq * D->nq * D->d; x++)
        l += D->dout[x] * o[x];
    return l;
}

/* Central differences of sum(dO o O) in each element of Q, K and V against
 * the oracle's gradient. Returns the largest |gradient| seen. */
static double fd_check(dense *D, double *q, double *k, double *v, const char *what)
{
    const size_t nqe = (size_t)(D->Hq * D->nq * D->d), nke = (size_t)(D->Hkv * D->nk * D->d);
    double *dq = malloc(sizeof(double) * nqe), *dk = malloc(sizeof(double) * nke);
    double *dv = malloc(sizeof(double) * nke), *o = malloc(sizeof(double) * nqe);
    ck_assert(dq && dk && dv && o);
    oracle_backward(D, dq, dk, dv, NULL, NULL, NULL);
    double *params[3] = {q, k, v};
    const double *grads[3] = {dq, dk, dv};
    const size_t counts[3] = {nqe, nke, nke};
    static const char *const names[3] = {"dQ", "dK", "dV"};
    const double step = 1e-5;
    double biggest = 0;
    for (int t = 0; t < 3; t++)
        for (size_t x = 0; x < counts[t]; x++) {
            const double keep = params[t][x];
            params[t][x] = keep + step;
            const double up = fd_loss(D, o);
            params[t][x] = keep - step;
            const double down = fd_loss(D, o);
            params[t][x] = keep;
            const double fd = (up - down) / (2 * step), g = grads[t][x];
            /* Truncation error ~ step^2, rounding ~ 1e-16 / step: both far
             * below 1e-7 for inputs of order 1. */
            ck_assert_msg(fabs(fd - g) <= 1e-7 * (1 + fabs(g)),
                          "%s: %s[%zu] = %.12g but finite differences give %.12g", what,
                          names[t], x, g, fd);
            biggest = fmax(biggest, fabs(g));
        }
    free(dq);
    free(dk);
    free(dv);
    free(o);
    return biggest;
}

static void fill_uniform(double *x, size_t n, double amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = test_uniform(-amp, amp);
}

/* One finite-difference case: masks from `mask_of(h, L, out)`. */
static void fd_case(int64_t Hq, int64_t Hkv, int64_t nq, int64_t nk, int64_t off, double scale,
                    const sp_pattern *p, const char *what)
{
    const int64_t d = 4;
    const size_t nqe = (size_t)(Hq * nq * d), nke = (size_t)(Hkv * nk * d);
    double *q = malloc(sizeof(double) * nqe), *g = malloc(sizeof(double) * nqe);
    double *k = malloc(sizeof(double) * nke), *v = malloc(sizeof(double) * nke);
    unsigned char *mask[8];
    ck_assert(q && g && k && v && Hq <= 8);
    fill_uniform(q, nqe, 2);
    fill_uniform(g, nqe, 1);
    fill_uniform(k, nke, 1);
    fill_uniform(v, nke, 1);
    int64_t empty = 0;
    for (int64_t h = 0; h < Hq; h++) {
        mask[h] = malloc((size_t)(nk * nk));
        ck_assert(mask[h]);
        if (p) {
            brute_mask(p, h, nk, mask[h]);
        } else { /* random pairs, about one in two; some rows end up empty */
            for (int64_t x = 0; x < nk * nk; x++)
                mask[h][x] = test_rnd64() % 5 < 2;
            for (int64_t j = 0; j < nk; j++)
                mask[h][(off + h % nq) * nk + j] = 0; /* one empty row per head */
        }
        for (int64_t r = 0; r < nq; r++) {
            bool any = false;
            for (int64_t j = 0; j < nk; j++)
                any |= mask[h][(r + off) * nk + j] != 0;
            empty += !any;
        }
    }
    dense D = {.Hq = Hq, .Hkv = Hkv, .nq = nq, .nk = nk, .d = d, .off = off, .scale = scale,
               .q = q, .k = k, .v = v, .dout = g, .mask = mask};
    double biggest = fd_check(&D, q, k, v, what);
    /* The comparison is not vacuous: the gradient is far from zero. */
    ck_assert_msg(biggest > 1e-2, "%s: gradient %g is too small to test anything", what, biggest);
    printf("  finite differences: %-40s max |grad| %.3f, %" PRId64 " empty rows\n", what, biggest,
           empty);
    for (int64_t h = 0; h < Hq; h++)
        free(mask[h]);
    free(q);
    free(g);
    free(k);
    free(v);
}

typedef struct loaded {
    sp_arena a;
    sp_diag d;
    sp_program *prog;
} loaded;

static void load_source(loaded *l, const char *file, const char *src)
{
    sp_arena_init(&l->a);
    sp_diag_init(&l->d, file, src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &l->a, &l->d, &l->prog) == 0, "%s:\n%s", file,
                  sp_diag_text(&l->d));
}

static void unload(loaded *l)
{
    sp_diag_free(&l->d);
    sp_arena_free(&l->a);
}

START_TEST(oracle_vs_finite_differences)
{
    test_reseed(1);
    fd_case(2, 1, 8, 8, 0, 0.5, NULL, "random masks, GQA 2:1");
    fd_case(4, 2, 5, 8, 3, -0.7, NULL, "random masks, GQA 4:2, q_offset 3");
    static const char *const srcs[] = {
        "pattern a { causal; window -2..+0; }",
        "pattern b { global rows 3; }",
        "pattern c { stride 3; global 0; }",
        "pattern d { block 4; random 1 blocks seed 3; window +1..+2; }",
    };
    for (size_t s = 0; s < sizeof srcs / sizeof *srcs; s++) {
        loaded l;
        load_source(&l, "fd", srcs[s]);
        fd_case(2, 1, 8, 8, 0, 0.6, &l.prog->patterns[0], srcs[s]);
        fd_case(2, 2, 4, 7, 3, 1.1, &l.prog->patterns[0], srcs[s]);
        unload(&l);
    }
}
END_TEST

/* ============================================================ backends */

/* The backends under test. tol is the bound of judge_row for f32 storage:
 * see there. */
typedef struct backend {
    spat_backend be;
    const char *name;
    double tol;
} backend;

static const backend backends[] = {
    {SPAT_BACKEND_REFERENCE, "reference", 1e-5},
    {SPAT_BACKEND_CPU, "cpu", 1e-5},
};
enum { NBACKENDS = sizeof backends / sizeof *backends };

/* Whether backend b of a kernel compiled here has backward code for f32
 * at d = 16 (main probes it once and prints a note when not). */
static bool probed_runs[NBACKENDS];

static bool slot_has_backward(const spat_kernel *k, const backend *b, int64_t d, spat_dtype dt)
{
    const sp_backend_slot *s = &k->backends[b->be];
    int idx = sp_kernel_head_dim_index(k, d);
    return idx >= 0 && s->available && (s->dtypes >> dt & 1u) && s->backward[idx];
}

/* Does the kernel's slot of this backend have backward code for (d, dt)?
 * A backend without it is skipped: with a note when the probe of main
 * found it, or for a dtype it does not take (f16, bf16 on the CPU backend)
 * silently. The reference must run everything. */
static bool backend_runs(const spat_kernel *k, const backend *b, int64_t d, spat_dtype dt)
{
    if (slot_has_backward(k, b, d, dt))
        return true;
    if (b->be == SPAT_BACKEND_REFERENCE)
        ck_abort_msg("the reference has no backward for d %" PRId64 " dtype %d", d, (int)dt);
    if (probed_runs[b - backends] && (k->backends[b->be].dtypes >> dt & 1u))
        printf("  note: backend '%s' has no backward code for d %" PRId64 " in kernel '%s': "
               "skipped\n", b->name, d, spat_kernel_name(k));
    return false;
}

static void probe_backends(void)
{
    spat_compile_options o = {.head_dims = (const int[]){16}, .n_head_dims = 1};
    spat_kernel *k = NULL;
    if (spat_compile("pattern probe { window 3; }", NULL, &o, &k) != SPAT_OK) {
        printf("test_backward: cannot compile the probe: %s\n", spat_last_error());
        return;
    }
    for (int e = 0; e < NBACKENDS; e++) {
        probed_runs[e] = slot_has_backward(k, &backends[e], 16, SPAT_F32);
        if (!probed_runs[e])
            printf("test_backward: note: backend '%s' has no backward code in this build: its "
                   "cases are skipped\n", backends[e].name);
    }
    spat_kernel_free(k);
}

/* ============================================================== buffers */

/* A backward case: the forward's tcase (shape, dtype, layouts of Q, K, V,
 * O, LSE, lengths, offsets, scale, threads) plus the layouts of dO, dQ,
 * dK, dV. */
typedef struct bcase {
    tcase c;
    layout ldo, ldq, ldk, ldv;
    int deterministic;
} bcase;

static bcase bcase_base(int64_t heads, int64_t L, int64_t d)
{
    return (bcase){.c = tcase_base(heads, L, d), .ldo = BHSD, .ldq = BHSD, .ldk = BHSD,
                   .ldv = BHSD};
}

typedef struct bbufs {
    bufs x; /* q, k, v, o, lse */
    tensor dout, dq, dk, dv;
} bbufs;

/* An output: POISON around the elements, NaN at them. */
static void prefill_output(tensor *t)
{
    tensor_poison(t);
    for (int64_t a = 0; a < t->n[0]; a++)
        for (int64_t b = 0; b < t->n[1]; b++)
            for (int64_t c = 0; c < t->n[2]; c++)
                for (int64_t d = 0; d < t->n[3]; d++)
                    memset(t->buf + tensor_off(t, a, b, c, d) * (int64_t)t->es, 0xff, t->es);
}

static void bbufs_make(bbufs *y, const bcase *b)
{
    const tcase *c = &b->c;
    const size_t es = c->dt == SPAT_F32 ? 4 : 2;
    const int64_t nq[4] = {c->B, c->Hq, c->Nq, c->d}, nk[4] = {c->B, c->Hkv, c->Nk, c->d};
    bufs_make(&y->x, c);
    tensor_make(&y->dout, 4, nq, es, b->ldo);
    tensor_fill(&y->dout, c->dt, 1.0);
    tensor_make(&y->dq, 4, nq, es, b->ldq);
    tensor_make(&y->dk, 4, nk, es, b->ldk);
    tensor_make(&y->dv, 4, nk, es, b->ldv);
    prefill_output(&y->dq);
    prefill_output(&y->dk);
    prefill_output(&y->dv);
}

static void bbufs_free(bbufs *y)
{
    bufs_free(&y->x);
    tensor_free(&y->dout);
    tensor_free(&y->dq);
    tensor_free(&y->dk);
    tensor_free(&y->dv);
}

static void bargs_from(spat_backward_args *a, const bcase *b, const bbufs *y, spat_backend be)
{
    const tcase *c = &b->c;
    spat_backward_args_init(a, c->B, c->Hq, c->Hkv, c->Nq, c->Nk, c->d);
    a->dtype = c->dt;
    a->backend = be;
    a->q = tensor_ptr(&y->x.q);
    a->k = tensor_ptr(&y->x.k);
    a->v = tensor_ptr(&y->x.v);
    a->o = tensor_ptr(&y->x.o);
    a->lse = tensor_ptr(&y->x.lse);
    a->dout = tensor_ptr(&y->dout);
    a->dq = tensor_ptr(&y->dq);
    a->dk = tensor_ptr(&y->dk);
    a->dv = tensor_ptr(&y->dv);
    memcpy(a->q_stride, y->x.q.s, sizeof a->q_stride);
    memcpy(a->k_stride, y->x.k.s, sizeof a->k_stride);
    memcpy(a->v_stride, y->x.v.s, sizeof a->v_stride);
    memcpy(a->o_stride, y->x.o.s, sizeof a->o_stride);
    memcpy(a->lse_stride, y->x.lse.s, sizeof a->lse_stride);
    memcpy(a->dout_stride, y->dout.s, sizeof a->dout_stride);
    memcpy(a->dq_stride, y->dq.s, sizeof a->dq_stride);
    memcpy(a->dk_stride, y->dk.s, sizeof a->dk_stride);
    memcpy(a->dv_stride, y->dv.s, sizeof a->dv_stride);
    a->seqlens_q = c->seqlens_q;
    a->seqlens_k = c->seqlens_k;
    a->q_offsets = c->q_offsets;
    a->q_offset = c->q_offset;
    a->scale = c->scale;
    a->threads = c->threads;
    a->deterministic = b->deterministic;
}

/* ============================================================== judging */

/* Bounds of judge_row for 16-bit storage: four units in the last place of
 * the format (2^-11 for f16, 2^-8 for bf16). */
static double storage_tol(spat_dtype dt, double f32_tol)
{
    return dt == SPAT_F16 ? 4 * 0x1p-11 : dt == SPAT_BF16 ? 4 * 0x1p-8 : f32_tol;
}

/* The worst row seen, by error over bound. */
typedef struct worst {
    double ratio, err, bound;
    const char *tensor;
    int64_t b, h, r;
} worst;

typedef struct stats {
    int64_t rows, zero_rows;  /* dQ rows; those that must be exactly 0 */
    int64_t keys, zero_keys;  /* dK rows; those that must be exactly 0 */
    worst w;
} stats;

/* One row of an output: got (dtype dt in tensor t at row (b, h, r)) against
 * want[0..d-1], whose terms have absolute values summing to mag[0..d-1]
 * (NULL want and mag: the row must be exactly 0).
 *
 * The bound: max |got - want| <= tol * (max |want| + max |mag|). Why it is
 * sound for a backend that computes the formula in floating point: every
 * output element is a sum of terms (dQ: scale p_j (dp_j - D) k_j over the
 * row's keys; dK: the same with q_r over the key's rows and query heads;
 * dV: p_j dO_r), and the error of such a sum is at most a multiple of the
 * sum of the terms' absolute values, mag (with |D| and |dp_j| counted as
 * sum |dO||O| and sum |dO||v_j|, so that cancellation inside them is
 * covered too). Relative perturbations of the terms' factors, namely P from
 * the float32 LSE (|dLSE| <= 2^-24 |LSE|, under 1e-6 here), D from O as
 * stored (one rounding in the storage format per element), and the
 * backend's own arithmetic, add errors of at most (their sum) * mag; the
 * rounding of the result to storage adds at most one unit of |want|. So
 * tol is a few times the storage format's unit (16-bit) or 1e-5 for f32,
 * well above the 1e-6 of the LSE's rounding. A row whose terms are all 0
 * (no key, padding, a key nobody attends) gets a bound of 0: it must be
 * exactly 0, and NaN never passes. */
static void judge_row(worst *w, const tensor *t, spat_dtype dt, int64_t b, int64_t h, int64_t r,
                      int64_t d, const double *want, const double *mag, double tol,
                      const char *name)
{
    double err = 0, wmax = 0, mmax = 0;
    for (int64_t x = 0; x < d; x++) {
        const double g = tensor_get(t, dt, tensor_off(t, b, h, r, x));
        const double e = fabs(g - (want ? want[x] : 0));
        err = isnan(e) ? INFINITY : fmax(err, e);
        if (want) {
            wmax = fmax(wmax, fabs(want[x]));
            mmax = fmax(mmax, mag[x]);
        }
    }
    const double bound = tol * (wmax + mmax);
    const double ratio = bound > 0 ? err / bound : err == 0 ? 0 : INFINITY;
    if (ratio > w->ratio || !w->tensor)
        *w = (worst){.ratio = ratio, .err = err, .bound = bound, .tensor = name, .b = b, .h = h,
                     .r = r};
}

static bool all_zero(const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0)
            return false;
    return true;
}

/* Dense double copies of batch b: rows [0, n) of heads [0, H) of t. */
static double *extract(const tensor *t, spat_dtype dt, int64_t b, int64_t H, int64_t n,
                       int64_t d)
{
    double *x = malloc(sizeof(double) * (size_t)(H * n * d > 0 ? H * n * d : 1));
    ck_assert(x);
    for (int64_t h = 0; h < H; h++)
        for (int64_t r = 0; r < n; r++)
            for (int64_t e = 0; e < d; e++)
                x[(h * n + r) * d + e] = tensor_get(t, dt, tensor_off(t, b, h, r, e));
    return x;
}

/* Every row of dQ, dK and dV of the call against the oracle. */
static stats judge(const sp_pattern *p, const bcase *bc, const bbufs *y, double tol)
{
    const tcase *c = &bc->c;
    const int64_t d = c->d;
    stats st = {0};
    for (int64_t b = 0; b < c->B; b++) {
        const int64_t nq = c->seqlens_q ? c->seqlens_q[b] : c->Nq;
        const int64_t nk = c->seqlens_k ? c->seqlens_k[b] : c->Nk;
        const int64_t off = c->q_offsets ? c->q_offsets[b] : c->q_offset;
        unsigned char *mask[64];
        ck_assert(c->Hq <= 64);
        for (int64_t h = 0; h < c->Hq; h++) {
            mask[h] = malloc((size_t)(nk * nk > 0 ? nk * nk : 1));
            ck_assert(mask[h]);
            if (nk > 0)
                brute_mask(p, h, nk, mask[h]);
        }
        double *q = extract(&y->x.q, c->dt, b, c->Hq, nq, d);
        double *g = extract(&y->dout, c->dt, b, c->Hq, nq, d);
        double *k = extract(&y->x.k, c->dt, b, c->Hkv, nk, d);
        double *v = extract(&y->x.v, c->dt, b, c->Hkv, nk, d);
        const size_t nqe = (size_t)(c->Hq * nq * d + 1), nke = (size_t)(c->Hkv * nk * d + 1);
        double *dq = malloc(sizeof(double) * nqe), *mq = malloc(sizeof(double) * nqe);
        double *dk = malloc(sizeof(double) * nke), *mk = malloc(sizeof(double) * nke);
        double *dv = malloc(sizeof(double) * nke), *mv = malloc(sizeof(double) * nke);
        ck_assert(dq && mq && dk && mk && dv && mv);
        dense D = {.Hq = c->Hq, .Hkv = c->Hkv, .nq = nq, .nk = nk, .d = d, .off = off,
                   .scale = c->scale != 0 ? c->scale : 1 / sqrt((double)d),
                   .q = q, .k = k, .v = v, .dout = g, .mask = mask};
        oracle_backward(&D, dq, dk, dv, mq, mk, mv);
        for (int64_t h = 0; h < c->Hq; h++)
            for (int64_t r = 0; r < c->Nq; r++) {
                const double *w = r < nq ? dq + (h * nq + r) * d : NULL;
                const double *m = r < nq ? mq + (h * nq + r) * d : NULL;
                if (w && all_zero(m, d))
                    w = m = NULL;
                st.rows++;
                st.zero_rows += !w;
                judge_row(&st.w, &y->dq, c->dt, b, h, r, d, w, m, tol, "dQ");
            }
        for (int64_t hk = 0; hk < c->Hkv; hk++)
            for (int64_t j = 0; j < c->Nk; j++) {
                const size_t at = (size_t)((hk * nk + j) * d);
                const bool zero = j >= nk || (all_zero(mk + at, d) && all_zero(mv + at, d));
                st.keys++;
                st.zero_keys += zero;
                judge_row(&st.w, &y->dk, c->dt, b, hk, j, d, zero ? NULL : dk + at,
                          zero ? NULL : mk + at, tol, "dK");
                judge_row(&st.w, &y->dv, c->dt, b, hk, j, d, zero ? NULL : dv + at,
                          zero ? NULL : mv + at, tol, "dV");
            }
        for (int64_t h = 0; h < c->Hq; h++)
            free(mask[h]);
        free(q), free(g), free(k), free(v);
        free(dq), free(mq), free(dk), free(mk), free(dv), free(mv);
    }
    return st;
}

/* ================================================================ runs */

static void describe_case(char *buf, size_t cap, const bcase *b, const backend *be,
                          const char *what)
{
    const tcase *c = &b->c;
    snprintf(buf, cap, "%s, backend %s [B %" PRId64 " Hq %" PRId64 " Hkv %" PRId64 " Nq %" PRId64
             " Nk %" PRId64 " d %" PRId64 " dtype %d threads %d] (seed %" PRIu64 ")",
             what, be->name, c->B, c->Hq, c->Hkv, c->Nq, c->Nk, c->d, (int)c->dt, c->threads,
             test_seed);
}

/* The reference forward of the case into y's O and LSE. */
static void run_forward(const spat_kernel *k, const bcase *b, bbufs *y, const char *ctx)
{
    spat_forward_args fa;
    args_from(&fa, &b->c, &y->x, SPAT_BACKEND_REFERENCE);
    int rc = spat_forward(k, &fa);
    ck_assert_msg(rc == SPAT_OK, "%s: spat_forward = %d: %s", ctx, rc, spat_last_error());
}

/* Runs case b of pattern p (kernel k) on backend be and judges every row. */
static stats run_case(const spat_kernel *k, const sp_pattern *p, const bcase *b,
                      const backend *be, const char *what)
{
    char ctx[768];
    describe_case(ctx, sizeof ctx, b, be, what);
    bbufs y;
    bbufs_make(&y, b);
    run_forward(k, b, &y, ctx);
    spat_backward_args a;
    bargs_from(&a, b, &y, be->be);
    int rc = spat_backward(k, &a);
    ck_assert_msg(rc == SPAT_OK, "%s: spat_backward = %d: %s", ctx, rc, spat_last_error());
    check_untouched_outside(&y.dq, "dQ", ctx);
    check_untouched_outside(&y.dk, "dK", ctx);
    check_untouched_outside(&y.dv, "dV", ctx);
    stats st = judge(p, b, &y, storage_tol(b->c.dt, be->tol));
    ck_assert_msg(st.w.ratio <= 1,
                  "%s: worst row %s[b %" PRId64 ", h %" PRId64 ", row %" PRId64 "]: max-abs error "
                  "%.3g > bound %.3g",
                  ctx, st.w.tensor, st.w.b, st.w.h, st.w.r, st.w.err, st.w.bound);
    bbufs_free(&y);
    return st;
}

static const int test_dims[] = {8, 16, 64};

static spat_kernel *compile_or_fail(const char *src, const char *name)
{
    spat_compile_options o = {.head_dims = test_dims, .n_head_dims = 3, .filename = "test"};
    spat_kernel *k = NULL;
    int rc = spat_compile(src, name, &o, &k);
    ck_assert_msg(rc == SPAT_OK, "spat_compile(%s) = %d: %s", name ? name : "(only)", rc,
                  spat_last_error());
    return k;
}

/* Case b of the only pattern of src on every backend that runs it; the
 * stats of the reference's run. */
static stats check_simple(const char *src, const bcase *b, const char *what)
{
    loaded l;
    load_source(&l, what, src);
    spat_kernel *k = compile_or_fail(src, NULL);
    stats ref = {0};
    for (int e = 0; e < NBACKENDS; e++)
        if (backend_runs(k, &backends[e], b->c.d, b->c.dt)) {
            stats st = run_case(k, &l.prog->patterns[0], b, &backends[e], what);
            if (e == 0)
                ref = st;
        }
    spat_kernel_free(k);
    unload(&l);
    return ref;
}

/* Every pattern of src at every length, on every backend. The even lengths
 * run batch 1 with one KV head for every query head (GQA): too little work
 * for the CPU backward's single walk (FUSE_MIN_ITEMS in runtime/cpu.c), so
 * it runs its two walks. The odd lengths run batch 2 with two KV heads
 * where the heads split so (four of them, or the pattern's own even
 * count): its single walk, which adds dQ in the walk of the transposed
 * plan. */
static void check_source_all_lengths(const char *file, const char *src)
{
    loaded l;
    load_source(&l, file, src);
    for (int pi = 0; pi < l.prog->npatterns; pi++) {
        const sp_pattern *p = &l.prog->patterns[pi];
        spat_kernel *k = compile_or_fail(src, p->name);
        for (int e = 0; e < NBACKENDS; e++) {
            if (!backend_runs(k, &backends[e], 16, SPAT_F32))
                continue;
            for (int li = 0; li < NLENGTHS; li++) {
                bool odd = lengths[li] % 2;
                bcase b = bcase_base(p->nheads ? p->nheads : odd ? 4 : 2, lengths[li], 16);
                b.c.B = odd ? 2 : 1;
                b.c.Hkv = odd && b.c.Hq % 2 == 0 ? 2 : 1;
                char what[256];
                snprintf(what, sizeof what, "%s: pattern %s", file, p->name);
                run_case(k, p, &b, &backends[e], what);
            }
        }
        spat_kernel_free(k);
    }
    unload(&l);
}

static char *pattern_files[64];
static int npattern_files;

START_TEST(pattern_file)
{
    ck_assert_msg(npattern_files >= 9, "patterns/ not found (SPAT_SRCDIR): %d files", npattern_files);
    test_reseed(100 + (uint64_t)_i);
    char *src = test_slurp(pattern_files[_i]);
    check_source_all_lengths(pattern_files[_i], src);
    free(src);
}
END_TEST

START_TEST(rule_pattern)
{
    test_reseed(1000 + (uint64_t)_i);
    char name[64];
    snprintf(name, sizeof name, "rule_patterns[%d]", _i);
    check_source_all_lengths(name, rule_patterns[_i]);
}
END_TEST

/* ------------------------------------------------- the CPU backend's own */

/* The CPU backend's code at lengths where its tiles repeat (several query
 * and key tiles, several residue classes per remapped component, global
 * rows and columns across many key tiles), on every suite pattern, for
 * the ISA of this CPU and the ones forced below it. */
static const char *const cpu_features[] = {NULL, "-avx512f", "-avx,-avx2,-fma,-avx512f"};

static void check_cpu_long(const char *file, const char *src, const char *features, int64_t B,
                           int64_t N, int64_t Nq)
{
    loaded l;
    load_source(&l, file, src);
    spat_compile_options o = {.head_dims = test_dims, .n_head_dims = 3, .filename = file,
                              .cpu_features = features};
    for (int pi = 0; pi < l.prog->npatterns; pi++) {
        const sp_pattern *p = &l.prog->patterns[pi];
        spat_kernel *k = NULL;
        ck_assert_msg(spat_compile(src, p->name, &o, &k) == SPAT_OK, "%s", spat_last_error());
        if (backend_runs(k, &backends[1], 16, SPAT_F32)) {
            bcase b = bcase_base(p->nheads ? p->nheads : 2, N, 16);
            b.c.Hkv = p->nheads ? p->nheads : 1;
            b.c.B = B;
            b.c.Nq = Nq;
            b.c.q_offset = N - Nq;
            char what[256];
            snprintf(what, sizeof what, "%s: pattern %s (features %s)", file, p->name,
                     features ? features : "host");
            run_case(k, p, &b, &backends[1], what);
        }
        spat_kernel_free(k);
    }
    unload(&l);
}

/* Batch 2 at 1100 and at 2100 keys (two and three chunks of positions)
 * runs the single walk, batch 1 at 1000 the two walks (FUSE_MIN_ITEMS in
 * runtime/cpu.c). */
START_TEST(cpu_long_sequences)
{
    test_reseed(300 + (uint64_t)_i);
    char *src = test_slurp(pattern_files[_i]);
    check_cpu_long(pattern_files[_i], src, NULL, 2, 1100, 1100);
    check_cpu_long(pattern_files[_i], src, NULL, 2, 2100, 700);
    check_cpu_long(pattern_files[_i], src, NULL, 1, 1000, 333);
    free(src);
}
END_TEST

START_TEST(cpu_forced_isa)
{
    test_reseed(400 + (uint64_t)_i);
    uint64_t host = sp_cpu_host_features();
    int f = 1 + _i % 2, which = _i / 2;
    if (f == 1 && !((host & SP_CPU_F_AVX2) && (host & SP_CPU_F_FMA)))
        return; /* no AVX2 here: only the SSE code can run */
    char *src = test_slurp(pattern_files[which]);
    check_cpu_long(pattern_files[which], src, cpu_features[f], 1, 300, 300); /* two walks */
    check_cpu_long(pattern_files[which], src, cpu_features[f], 4, 300, 300); /* one */
    free(src);
}
END_TEST

/* A kernel.so written by spatc carries the backward: loaded, its CPU slot
 * has it, and gives the JIT's bytes. */
START_TEST(cpu_kernel_so)
{
    test_reseed(12);
    const char *src = "pattern a { block 16; window 20; global 0..2; random 1 blocks seed 4; }\n"
                      "pattern b { causal; stride 16; window -40..+0 dilation 4; segment 48; }\n";
    loaded l;
    load_source(&l, "t.spat", src);
    char dir[] = "/tmp/spat-bwd-XXXXXX", path[64];
    ck_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/k.so", dir);
    char err[4096];
    ck_assert_msg(sp_module_write_opts(path, src, strlen(src), "t.spat", l.prog, NULL, 0, test_dims,
                                       3, NULL, err, sizeof err) == SPAT_OK,
                  "%s", err);
    for (int pi = 0; pi < 2; pi++) {
        const sp_pattern *p = &l.prog->patterns[pi];
        spat_kernel *jit = compile_or_fail(src, p->name), *so = NULL;
        ck_assert_msg(spat_load(path, p->name, &so) == SPAT_OK, "%s", spat_last_error());
        ck_assert(slot_has_backward(so, &backends[1], 64, SPAT_F32));
        bcase b = bcase_base(3, 250, 64);
        b.c.Hkv = 3;
        run_case(so, p, &b, &backends[1], "kernel.so");
        bbufs y;
        bbufs_make(&y, &b);
        run_forward(jit, &b, &y, "kernel.so");
        tensor *outs[3] = {&y.dq, &y.dk, &y.dv};
        unsigned char *first[3];
        for (int run = 0; run < 2; run++) {
            spat_backward_args a;
            bargs_from(&a, &b, &y, SPAT_BACKEND_CPU);
            ck_assert_msg(spat_backward(run ? so : jit, &a) == SPAT_OK, "%s", spat_last_error());
            for (int t = 0; t < 3; t++) {
                size_t bytes = (size_t)outs[t]->nelem * outs[t]->es;
                if (!run) {
                    ck_assert(first[t] = malloc(bytes));
                    memcpy(first[t], outs[t]->buf, bytes);
                } else {
                    ck_assert_msg(!memcmp(first[t], outs[t]->buf, bytes),
                                  "pattern %s: the JIT's and kernel.so's output %d differ (seed %" PRIu64 ")",
                                  p->name, t, test_seed);
                    free(first[t]);
                }
            }
        }
        bbufs_free(&y);
        spat_kernel_free(jit);
        spat_kernel_free(so);
    }
    unlink(path);
    rmdir(dir);
    unload(&l);
}
END_TEST

/* The JIT compiles the backward's code on a kernel's first spat_backward:
 * threads that make that first call together all get it, and the bytes
 * of a call made after it. */
typedef struct racer {
    const spat_kernel *k;
    const bcase *b;
    bbufs y;
    int rc;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    spat_backward_args a;
    bargs_from(&a, r->b, &r->y, SPAT_BACKEND_CPU);
    a.threads = 1;
    r->rc = spat_backward(r->k, &a);
    return NULL;
}

START_TEST(cpu_first_backward_from_threads)
{
    test_reseed(13);
    spat_kernel *k = compile_or_fail("pattern w { window 17; global 3; stride 9; }", NULL);
    if (!backend_runs(k, &backends[1], 16, SPAT_F32)) {
        spat_kernel_free(k);
        return;
    }
    bcase b = bcase_base(2, 150, 16);
    enum { N = 4 };
    racer r[N];
    pthread_t tid[N];
    for (int x = 0; x < N; x++) {
        r[x] = (racer){.k = k, .b = &b};
        bbufs_make(&r[x].y, &b);
        run_forward(k, &b, &r[x].y, "first backward");
    }
    for (int x = 0; x < N; x++)
        ck_assert_int_eq(pthread_create(&tid[x], NULL, race, &r[x]), 0);
    for (int x = 0; x < N; x++) {
        pthread_join(tid[x], NULL);
        ck_assert_msg(r[x].rc == SPAT_OK, "thread %d: %s", x, spat_last_error());
    }
    for (int x = 0; x < N; x++) { /* each again, alone, the code compiled: the same bytes */
        tensor *t3[3] = {&r[x].y.dq, &r[x].y.dk, &r[x].y.dv};
        unsigned char *first[3];
        for (int t = 0; t < 3; t++) {
            size_t bytes = (size_t)t3[t]->nelem * t3[t]->es;
            ck_assert(first[t] = malloc(bytes));
            memcpy(first[t], t3[t]->buf, bytes);
            prefill_output(t3[t]);
        }
        race(&r[x]);
        ck_assert_int_eq(r[x].rc, SPAT_OK);
        for (int t = 0; t < 3; t++) {
            ck_assert_msg(!memcmp(first[t], t3[t]->buf, (size_t)t3[t]->nelem * t3[t]->es),
                          "thread %d's output %d differs from a later call's (seed %" PRIu64 ")", x, t,
                          test_seed);
            free(first[t]);
        }
    }
    for (int x = 0; x < N; x++)
        bbufs_free(&r[x].y);
    spat_kernel_free(k);
}
END_TEST

/* ---------------------------------------------------------- edge cases */

/* `global rows 3;` alone: every row but 3 attends nothing (LSE = -inf):
 * their dQ is exactly 0 and nothing else moves. */
START_TEST(empty_rows)
{
    test_reseed(2);
    for (int li = 0; li < NLENGTHS; li++) {
        bcase b = bcase_base(2, lengths[li], 16);
        stats st = check_simple("pattern g { global rows 3; }", &b, "global rows 3");
        const int64_t full = lengths[li] > 3 ? 1 : 0;
        ck_assert_int_eq(st.zero_rows, st.rows - full * b.c.Hq);
        /* Row 3 attends every key, so no key is left out when it exists. */
        ck_assert_int_eq(st.zero_keys, full ? 0 : st.keys);
    }
}
END_TEST

/* Keys that no query attends get dK = dV = 0 exactly. */
START_TEST(unattended_keys)
{
    test_reseed(3);
    static const char *const srcs[] = {
        "pattern c { columns 0..1 mod 4; }",       /* half of the keys */
        "pattern f { window +2..+6; }",             /* keys 0 and 1 */
        "pattern s { global cols 3..9; }",          /* all but 3..9 */
    };
    for (size_t s = 0; s < sizeof srcs / sizeof *srcs; s++) {
        bcase b = bcase_base(2, 65, 16);
        b.c.B = 2;
        stats st = check_simple(srcs[s], &b, srcs[s]);
        ck_assert_msg(st.zero_keys > 0, "%s: every key is attended", srcs[s]);
    }
}
END_TEST

static const char *const gqa_sources[] = {
    "pattern w { window 5; }",
    "pattern r { block 8; causal; random 2 blocks seed 3; window -3..+0; }",
    "pattern s { stride 6; global 0; }",
};

/* dK and dV of a KV head sum over its query heads: 4 query heads on 4, 2
 * and 1 KV heads. */
START_TEST(gqa)
{
    test_reseed(4);
    for (size_t s = 0; s < sizeof gqa_sources / sizeof *gqa_sources; s++)
        for (int hkv = 1; hkv <= 4; hkv *= 2) {
            bcase b = bcase_base(4, 65, 16);
            b.c.Hkv = hkv;
            b.c.B = 2;
            check_simple(gqa_sources[s], &b, gqa_sources[s]);
        }
}
END_TEST

/* BSHD, padded, strided and reversed layouts (negative strides) for each
 * of the nine tensors. */
START_TEST(layouts)
{
    test_reseed(5);
    const char *src = "pattern p { block 8; window 4; global 1; random 1 blocks seed 2; stride 9; }";
    const layout ls[] = {BHSD, BSHD_PAD, ODD, ODD2};
    for (int a = 0; a < 4; a++)
        for (int c = 0; c < 4; c++) {
            bcase b = bcase_base(4, 63, 16);
            b.c.B = 2;
            b.c.Hkv = 2;
            b.c.lq = ls[a];
            b.c.lk = ls[c];
            b.c.lv = ls[(a + c) % 4];
            b.c.lo = ls[(a + 3 * c) % 4];
            b.c.llse = ls[(2 * a + c) % 4];
            b.ldo = ls[(a + 2 * c) % 4];
            b.ldq = ls[(3 * a + c) % 4];
            b.ldk = ls[(a + c + 1) % 4];
            b.ldv = ls[(2 * a + 3 * c + 2) % 4];
            char what[64];
            snprintf(what, sizeof what, "layouts %d %d", a, c);
            check_simple(src, &b, what);
        }
}
END_TEST

/* Queries shorter than keys, at an offset (decoding, chunked prefill). */
START_TEST(q_offset)
{
    test_reseed(6);
    const char *srcs[] = {"pattern c { causal; window -9..+0; global 0..2; }",
                          "pattern f { block 16; window 1 blocks; random 1 blocks seed 8; }"};
    for (int s = 0; s < 2; s++)
        for (int64_t off = 0; off <= 150; off += 50) {
            bcase b = bcase_base(2, 200, 16);
            b.c.Nq = 200 - off - (off % 3);
            b.c.q_offset = off;
            check_simple(srcs[s], &b, srcs[s]);
        }
}
END_TEST

/* Padding and per-batch offsets: batch 0 full, 1 short, 2 empty (no query
 * and no key), 3 a decode step against a long cache. */
START_TEST(varlen)
{
    test_reseed(7);
    const char *srcs[] = {"pattern c { causal; window -9..+0; global 0..2, last 4; }",
                          "pattern v { block 8; window 1 blocks; columns 0..1 mod 10; random 2 blocks seed 6; }"};
    static const int32_t sq[] = {70, 33, 0, 1}, sk[] = {70, 50, 0, 61};
    static const int64_t offs[] = {0, 17, 0, 60};
    for (int s = 0; s < 2; s++) {
        bcase b = bcase_base(2, 70, 16);
        b.c.B = 4;
        b.c.seqlens_q = sq;
        b.c.seqlens_k = sk;
        b.c.q_offsets = offs;
        b.c.lq = BSHD_PAD;
        b.c.lo = BSHD_PAD;
        b.ldo = BSHD_PAD;
        b.ldq = BSHD_PAD;
        b.ldk = BSHD_PAD;
        stats st = check_simple(srcs[s], &b, srcs[s]);
        /* Batch 2's rows and keys, and the padding, are exactly 0. */
        ck_assert(st.zero_rows >= 2 * (37 + 70 + 69));
        ck_assert(st.zero_keys >= 20 + 70 + 9);
        /* The same lengths through seqlens alone (q_offset 0 everywhere). */
        static const int32_t sq2[] = {70, 50, 0, 61};
        b.c.seqlens_q = sq2;
        b.c.q_offsets = NULL;
        check_simple(srcs[s], &b, srcs[s]);
    }
}
END_TEST

/* f16 and bf16 storage (the reference; others where they support it). */
START_TEST(half_storage)
{
    test_reseed(8);
    const char *src = "pattern p { block 8; window 6; global 0, last 2; random 2 blocks seed 1; }";
    const spat_dtype dts[] = {SPAT_F16, SPAT_BF16};
    for (int t = 0; t < 2; t++) {
        bcase b = bcase_base(4, 65, 16);
        b.c.B = 2;
        b.c.Hkv = 2;
        b.c.dt = dts[t];
        b.c.lo = ODD;
        b.ldk = ODD2;
        check_simple(src, &b, t ? "bf16" : "f16");
        b.c.d = 64;
        b.c.Nq = b.c.Nk = 200;
        check_simple(src, &b, t ? "bf16 d64" : "f16 d64");
    }
}
END_TEST

START_TEST(head_dim_and_scale)
{
    test_reseed(9);
    const char *src = "pattern p { window 7 dilation 2; global 5; }";
    bcase b = bcase_base(3, 64, 64);
    check_simple(src, &b, "d 64");
    b.c.d = 8;
    b.c.scale = -0.75f;
    check_simple(src, &b, "d 8, scale -0.75");
    b.c.scale = 2.0f;
    check_simple(src, &b, "d 8, scale 2");
}
END_TEST

/* ------------------------------------------------------------- threads */

/* Threads 1, 2, 3 and every core, with and without `deterministic`: the
 * same bytes. */
START_TEST(threads)
{
    test_reseed(10);
    const char *src = "pattern r { block 8; window 3; random 2 blocks seed 9; global 4; }";
    spat_kernel *k = compile_or_fail(src, NULL);
    bcase b = bcase_base(4, 100, 16);
    b.c.B = 3;
    b.c.Hkv = 2;
    bbufs y;
    bbufs_make(&y, &b);
    run_forward(k, &b, &y, "threads");
    tensor *outs[3] = {&y.dq, &y.dk, &y.dv};
    for (int e = 0; e < NBACKENDS; e++) {
        if (!backend_runs(k, &backends[e], 16, SPAT_F32))
            continue;
        unsigned char *first[3];
        static const int counts[] = {1, 2, 3, 0, 3, 64};
        for (size_t n = 0; n < sizeof counts / sizeof *counts; n++) {
            for (int t = 0; t < 3; t++)
                prefill_output(outs[t]);
            spat_backward_args a;
            bargs_from(&a, &b, &y, backends[e].be);
            a.threads = counts[n];
            a.deterministic = n >= 4;
            ck_assert_msg(spat_backward(k, &a) == SPAT_OK, "%s", spat_last_error());
            for (int t = 0; t < 3; t++) {
                size_t bytes = (size_t)outs[t]->nelem * outs[t]->es;
                if (n == 0) {
                    first[t] = malloc(bytes);
                    ck_assert(first[t]);
                    memcpy(first[t], outs[t]->buf, bytes);
                } else {
                    ck_assert_msg(!memcmp(first[t], outs[t]->buf, bytes),
                                  "backend %s: threads %d (deterministic %d) changed output %d "
                                  "(seed %" PRIu64 ")",
                                  backends[e].name, counts[n], n >= 4, t, test_seed);
                }
            }
        }
        for (int t = 0; t < 3; t++)
            free(first[t]);
    }
    bbufs_free(&y);
    spat_kernel_free(k);
}
END_TEST

/* ========================================================== validation */

enum { B = 2, HQ = 4, HKV = 2, N = 16, D = 64 };
#define NQ ((size_t)B * HQ * N * D)
#define NK ((size_t)B * HKV * N * D)
#define NL ((size_t)B * HQ * N)

/* One block of floats holds every tensor, with slack around each, so
 * overlap tests can point tensors into each other and one comparison shows
 * that nothing was written anywhere. The slack holds any tensor, so one
 * placed at the last element of another meets that one alone. Order: as
 * the tensors in spat_backward_args. */
#define SLACK (NQ + 64)
enum { T_Q, T_K, T_V, T_O, T_DOUT, T_LSE, T_DQ, T_DK, T_DV, NT };
static const char *const tnames[NT] = {"Q", "K", "V", "O", "dO", "LSE", "dQ", "dK", "dV"};
static const char *const targs[NT] = {"q", "k", "v", "o", "dout", "lse", "dq", "dk", "dv"};
static const size_t tsizes[NT] = {NQ, NK, NK, NQ, NQ, NL, NQ, NK, NK};

typedef struct fixture {
    spat_kernel *k;
    float *mem, *snap;
    size_t off[NT], total;
    spat_backward_args a;
} fixture;

static fixture fx;

static void **tptr(spat_backward_args *a, int t)
{
    switch (t) {
    case T_Q: return (void **)&a->q;
    case T_K: return (void **)&a->k;
    case T_V: return (void **)&a->v;
    case T_O: return (void **)&a->o;
    case T_DOUT: return (void **)&a->dout;
    case T_LSE: return (void **)&a->lse;
    case T_DQ: return &a->dq;
    case T_DK: return &a->dk;
    default: return &a->dv;
    }
}

static void setup(void)
{
    ck_assert_int_eq(spat_compile("pattern window256 { window 256; }", NULL, NULL, &fx.k), SPAT_OK);
    size_t at = SLACK;
    for (int t = 0; t < NT; t++) {
        fx.off[t] = at;
        at += tsizes[t] + SLACK;
    }
    fx.total = at;
    fx.mem = malloc(fx.total * sizeof(float));
    fx.snap = malloc(fx.total * sizeof(float));
    ck_assert(fx.mem && fx.snap);
    for (size_t i = 0; i < fx.total; i++)
        fx.mem[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    /* A forward pass writes O and LSE for real; the outputs hold a byte
     * pattern no backward would write. */
    spat_forward_args f;
    spat_forward_args_init(&f, B, HQ, HKV, N, N, D);
    f.q = fx.mem + fx.off[T_Q];
    f.k = fx.mem + fx.off[T_K];
    f.v = fx.mem + fx.off[T_V];
    f.o = fx.mem + fx.off[T_O];
    f.lse = fx.mem + fx.off[T_LSE];
    ck_assert_int_eq(spat_forward(fx.k, &f), SPAT_OK);
    for (int t = T_DQ; t < NT; t++)
        memset(fx.mem + fx.off[t], 0xa5, tsizes[t] * sizeof(float));
    memcpy(fx.snap, fx.mem, fx.total * sizeof(float));
    spat_backward_args_init(&fx.a, B, HQ, HKV, N, N, D);
    for (int t = 0; t < NT; t++)
        *tptr(&fx.a, t) = fx.mem + fx.off[t];
}

static void teardown(void)
{
    spat_kernel_free(fx.k);
    free(fx.mem);
    free(fx.snap);
}

/* The call fails with `code`, says why (containing `needle` when given),
 * and memory is untouched. */
static void expect_k(const spat_kernel *k, const spat_backward_args *a, int code,
                     const char *needle, const char *what)
{
    sp_clear_error();
    int rc = spat_backward(k, a);
    const char *msg = spat_last_error();
    ck_assert_msg(rc == code, "%s: status %d (%s), want %d; message: %s", what, rc,
                  spat_strerror(rc), code, msg);
    ck_assert_msg(msg[0] != '\0', "%s: no message", what);
    if (needle)
        ck_assert_msg(strstr(msg, needle), "%s: message '%s' lacks '%s'", what, msg, needle);
    ck_assert_msg(!memcmp(fx.mem, fx.snap, fx.total * sizeof(float)),
                  "%s: memory changed by a failed call", what);
    printf("  %-34s %-14s %s\n", what, spat_strerror(rc), msg);
}

static void expect(const spat_backward_args *a, int code, const char *needle, const char *what)
{
    expect_k(fx.k, a, code, needle, what);
}

START_TEST(args_init)
{
    spat_backward_args a;
    spat_backward_args_init(&a, 2, 4, 2, 5, 7, 8);
    const int64_t sq[4] = {4 * 5 * 8, 5 * 8, 8, 1}, sk[4] = {2 * 7 * 8, 7 * 8, 8, 1};
    const int64_t *q_like[] = {a.q_stride, a.o_stride, a.dout_stride, a.dq_stride};
    const int64_t *k_like[] = {a.k_stride, a.v_stride, a.dk_stride, a.dv_stride};
    for (int t = 0; t < 4; t++)
        for (int d = 0; d < 4; d++) {
            ck_assert_int_eq(q_like[t][d], sq[d]);
            ck_assert_int_eq(k_like[t][d], sk[d]);
        }
    ck_assert_int_eq(a.lse_stride[0], 20);
    ck_assert_int_eq(a.lse_stride[1], 5);
    ck_assert_int_eq(a.lse_stride[2], 1);
    ck_assert(a.dtype == SPAT_F32 && a.device == SPAT_DEVICE_CPU && a.backend == SPAT_BACKEND_AUTO);
    ck_assert(a.scale == 0 && a.threads == 0 && a.deterministic == 0 && !a.q && !a.dq);
    /* A shape whose strides overflow: INT64_MAX, which the call refuses. */
    int64_t big = (int64_t)1 << 40;
    spat_backward_args_init(&a, big, big, big, big, big, D);
    ck_assert_int_eq(a.dq_stride[0], INT64_MAX);
    spat_backward_args_init(NULL, 1, 1, 1, 1, 1, 8); /* ignored */
}
END_TEST

START_TEST(fixture_is_valid)
{
    spat_backward_args a = fx.a;
    ck_assert_msg(spat_backward(fx.k, &a) == SPAT_OK, "%s", spat_last_error());
    /* Every output changed; nothing else did. */
    for (int t = 0; t < NT; t++) {
        const bool same = !memcmp(fx.mem + fx.off[t], fx.snap + fx.off[t], tsizes[t] * sizeof(float));
        ck_assert_msg(same == (t < T_DQ), "%s %s", tnames[t], same ? "unchanged" : "changed");
    }
    for (int t = 0; t < NT; t++) { /* the slack after each tensor */
        size_t end = fx.off[t] + tsizes[t];
        ck_assert(!memcmp(fx.mem + end, fx.snap + end, SLACK * sizeof(float)));
    }
    ck_assert(!memcmp(fx.mem, fx.snap, SLACK * sizeof(float)));
    /* Inputs may share memory: Q, K and V one buffer, O and dO one, and an
     * LSE whose rows all read one float (inputs may alias themselves). */
    a = fx.a;
    a.k = a.v = a.q;
    a.heads_kv = HQ;
    memcpy(a.k_stride, a.q_stride, sizeof a.k_stride);
    memcpy(a.v_stride, a.q_stride, sizeof a.v_stride);
    memcpy(a.dk_stride, a.q_stride, sizeof a.dk_stride);
    memcpy(a.dv_stride, a.q_stride, sizeof a.dv_stride);
    /* dK and dV hold HQ heads now, which the slack after them has room for. */
    a.dout = a.o;
    a.lse_stride[2] = 0;
    ck_assert_msg(spat_backward(fx.k, &a) == SPAT_OK, "%s", spat_last_error());
}
END_TEST

START_TEST(null_arguments)
{
    spat_backward_args a = fx.a;
    expect_k(NULL, &a, SPAT_EINVAL, "kernel is NULL", "kernel NULL");
    expect_k(fx.k, NULL, SPAT_EINVAL, "args is NULL", "args NULL");
    for (int t = 0; t < NT; t++) {
        a = fx.a;
        *tptr(&a, t) = NULL;
        char needle[32], what[32];
        snprintf(needle, sizeof needle, "%s is NULL", targs[t]);
        snprintf(what, sizeof what, "%s NULL", targs[t]);
        expect(&a, SPAT_EINVAL, needle, what);
    }
}
END_TEST

START_TEST(bad_enums_shapes_scalars)
{
    spat_backward_args a = fx.a;
    a.dtype = (spat_dtype)3;
    expect(&a, SPAT_EINVAL, "dtype = 3 is not a spat_dtype", "bad dtype");
    a = fx.a, a.device = (spat_device)2;
    expect(&a, SPAT_EINVAL, "device = 2 is not a spat_device", "bad device");
    a = fx.a, a.backend = (spat_backend)4;
    expect(&a, SPAT_EINVAL, "backend = 4 is not a spat_backend", "bad backend");
    a = fx.a, a.seq_k = 0;
    expect(&a, SPAT_EINVAL, "seq_k = 0", "seq_k 0");
    a = fx.a, a.heads_kv = 3;
    expect(&a, SPAT_EINVAL, "not a multiple of heads_kv", "heads 4 on 3");
    a = fx.a, a.threads = -1;
    expect(&a, SPAT_EINVAL, "threads = -1", "threads < 0");
    a = fx.a, a.scale = NAN;
    expect(&a, SPAT_EINVAL, "scale = nan", "scale NaN");
    static const int64_t offs[B] = {0, 1};
    a = fx.a, a.q_offsets = offs, a.q_offset = 1;
    expect(&a, SPAT_EINVAL, "q_offset = 1 and q_offsets", "both offsets");
    static const int32_t bad_len[B] = {16, 17};
    a = fx.a, a.seqlens_q = bad_len;
    expect(&a, SPAT_EINVAL, "seqlens_q[1] = 17", "seqlens_q too long");
    a = fx.a, a.q_offsets = offs;
    expect(&a, SPAT_EINVAL, "q_offsets[1] = 1 plus 16 query rows", "offset past the keys");
}
END_TEST

START_TEST(bad_head_dim)
{
    spat_backward_args a = fx.a;
    a.head_dim = 32;
    expect(&a, SPAT_EHEADDIM, "head_dim 32: kernel 'window256' was built for 64, 128", "d 32");
}
END_TEST

/* Each output must not alias itself. */
START_TEST(aliasing_outputs)
{
    spat_backward_args a = fx.a;
    a.dq_stride[2] = 0;
    expect(&a, SPAT_EOVERLAP, "dq_stride[2] = 0 makes distinct rows of dQ overlap", "dq rows alias");
    a = fx.a, a.dq_stride[3] = 0;
    expect(&a, SPAT_EOVERLAP, "dq_stride[3] = 0 makes distinct elements of a row of dQ overlap",
           "dq elements alias");
    a = fx.a, a.dk_stride[1] = N * D / 2;
    expect(&a, SPAT_EOVERLAP, "dk_stride[1] = 512 makes distinct heads of dK overlap", "dk heads alias");
    a = fx.a, a.dv_stride[0] = a.dv_stride[1];
    expect(&a, SPAT_EOVERLAP, "dv_stride[", "dv batch = head stride");
    a = fx.a, a.dq_stride[2] = -D / 2;
    a.dq = fx.mem + fx.off[T_DQ] + D * (N - 1);
    expect(&a, SPAT_EOVERLAP, "dq_stride[2] = -32", "negative dq stride aliasing");
    /* A transposed, non-overlapping dQ is fine: d outermost. */
    a = fx.a;
    a.dq_stride[3] = B * HQ * N, a.dq_stride[0] = HQ * N, a.dq_stride[1] = N, a.dq_stride[2] = 1;
    ck_assert_msg(spat_backward(fx.k, &a) == SPAT_OK, "%s", spat_last_error());
}
END_TEST

/* Each output against each input and each other output: placed so that its
 * first element is the other tensor's last, the two share one element. The
 * message names both, the output that is checked first (table order:
 * dQ, dK, dV) first. */
START_TEST(overlapping_tensors)
{
    for (int x = T_DQ; x < NT; x++)
        for (int y = 0; y < NT; y++) {
            if (y == x)
                continue;
            spat_backward_args a = fx.a;
            *tptr(&a, x) = fx.mem + fx.off[y] + tsizes[y] - 1;
            const int first = y < T_DQ ? x : x < y ? x : y, second = first == x ? y : x;
            char needle[64], what[64];
            snprintf(needle, sizeof needle, "overlaps %s (bytes", tnames[second]);
            snprintf(what, sizeof what, "%s at the end of %s", tnames[x], tnames[y]);
            expect(&a, SPAT_EOVERLAP, needle, what);
            char head[32];
            snprintf(head, sizeof head, "%s (bytes", tnames[first]);
            ck_assert_msg(!strncmp(spat_last_error(), head, strlen(head)), "%s: '%s' does not start "
                          "with '%s'", what, spat_last_error(), head);
        }
    /* An output whose negative stride reaches down into an input. */
    spat_backward_args a = fx.a;
    a.dq = fx.mem + fx.off[T_DQ] + 10;
    a.dq_stride[0] = -(int64_t)(fx.off[T_DQ] - fx.off[T_LSE]);
    expect(&a, SPAT_EOVERLAP, "overlaps LSE", "negative dq stride reaching into lse");
}
END_TEST

START_TEST(overflowing_sizes)
{
    spat_backward_args a = fx.a;
    a.dq_stride[0] = INT64_MAX / 2;
    a.batch = 3;
    expect(&a, SPAT_EINVAL, "overflow", "q element offsets overflow");
    a = fx.a, a.dv_stride[0] = INT64_MAX / 4 + 1;
    expect(&a, SPAT_EINVAL, "dV with shape", "dv byte offsets overflow");
    a = fx.a, a.dout_stride[2] = -((int64_t)1 << 50);
    expect(&a, SPAT_EINVAL, "dO with shape", "dout below address 0");
    int64_t big = (int64_t)1 << 40;
    spat_backward_args_init(&a, big, big, big, big, big, D);
    for (int t = 0; t < NT; t++)
        *tptr(&a, t) = *tptr(&fx.a, t);
    expect(&a, SPAT_EINVAL, "overflow", "shape whose strides overflow");
}
END_TEST

START_TEST(device_pointers)
{
    /* A CPU backend given device memory is refused by the checks the
     * forward shares (tests/test_api.c runs them on a GPU); here there is
     * no GPU to allocate from. */
    printf("  device_pointers: not testable without a GPU here, skipped (test_api checks the "
           "shared code)\n");
}
END_TEST

/* ------------------------------------------------------- backend choice */

static int stub_calls;

static int stub_backward(const spat_kernel *k, const sp_bwd *w)
{
    stub_calls++;
    return sp_reference_backward(k, w);
}

/* Makes k's CPU slot look like an old kernel.so's at head dim D: forward
 * code (the reference's, standing in), no backward code and the loader's
 * reason. Returns D's index; the caller restores the slot. */
static int old_kernel_so_slot(spat_kernel *k)
{
    sp_backend_slot *s = &k->backends[SPAT_BACKEND_CPU];
    const int idx = sp_kernel_head_dim_index(k, D);
    s->available = true;
    s->dtypes = 1u << SPAT_F32;
    s->forward[idx] = sp_reference_forward;
    s->backward[idx] = NULL;
    s->no_backward = "kernel.so was written by a spatc without backward code";
    return idx;
}

/* The CPU slot as a kernel.so without backward code leaves it, and as one
 * with: AUTO refuses the first with SPAT_ELOAD (no silent fallback), an
 * explicit reference still runs, and AUTO picks the second. The slot is
 * set by hand (the test owns the kernel) and restored. */
START_TEST(backend_choice)
{
    spat_kernel *k = fx.k;
    sp_backend_slot *s = &k->backends[SPAT_BACKEND_CPU], keep = *s;
    const int idx = old_kernel_so_slot(k);
    spat_backward_args a = fx.a;
    expect(&a, SPAT_ELOAD, "kernel.so was written by a spatc without backward code; pass backend = "
           "SPAT_BACKEND_REFERENCE to use the reference", "old kernel.so, AUTO");
    a.backend = SPAT_BACKEND_CPU;
    expect(&a, SPAT_ELOAD, "backend 'cpu' has no backward code: kernel.so was written", "old kernel.so, CPU");
    a.backend = SPAT_BACKEND_REFERENCE;
    ck_assert_msg(spat_backward(k, &a) == SPAT_OK, "%s", spat_last_error());
    memcpy(fx.mem, fx.snap, fx.total * sizeof(float));
    /* No reason given: the CPU slot just lacks the code; AUTO takes the
     * reference, an explicit CPU names the head dim. */
    s->no_backward = NULL;
    a.backend = SPAT_BACKEND_CPU;
    expect(&a, SPAT_EHEADDIM, "head_dim 64: backend 'cpu' has no backward code for it", "no CPU backward");
    a.backend = SPAT_BACKEND_AUTO;
    ck_assert_msg(spat_backward(k, &a) == SPAT_OK, "%s", spat_last_error());
    memcpy(fx.mem, fx.snap, fx.total * sizeof(float));
    /* With backward code, AUTO picks the CPU slot. */
    s->backward[idx] = stub_backward;
    stub_calls = 0;
    ck_assert_msg(spat_backward(k, &a) == SPAT_OK, "%s", spat_last_error());
    ck_assert_int_eq(stub_calls, 1);
    a.backend = SPAT_BACKEND_REFERENCE;
    ck_assert_msg(spat_backward(k, &a) == SPAT_OK, "%s", spat_last_error());
    ck_assert_int_eq(stub_calls, 1);
    *s = keep;
    memcpy(fx.mem, fx.snap, fx.total * sizeof(float));
    /* SPAT_DEVICE_CUDA: no backend has backward code there. */
    a = fx.a;
    a.device = SPAT_DEVICE_CUDA;
    if (k->backends[SPAT_BACKEND_CUDA].available)
        expect(&a, SPAT_EHEADDIM, "backend 'cuda' has no backward code", "CUDA, AUTO");
    else
        expect(&a, SPAT_EBACKEND, "no CUDA backend", "CUDA, AUTO");
    a.device = SPAT_DEVICE_CPU;
    a.backend = SPAT_BACKEND_CUDA;
    expect(&a, SPAT_EDEVICE, "backend 'cuda' runs on CUDA device memory", "CUDA backend on the CPU");
}
END_TEST

/* f16 through AUTO while the CPU slot is an old kernel.so's: the slot
 * could not run the forward of an f16 call either, so the reference runs. */
START_TEST(backend_choice_dtype)
{
    spat_kernel *k = fx.k;
    sp_backend_slot *s = &k->backends[SPAT_BACKEND_CPU], keep = *s;
    old_kernel_so_slot(k);
    spat_backward_args a = fx.a;
    a.dtype = SPAT_F16; /* the f32 buffers hold twice the f16 elements needed */
    int rc = spat_backward(k, &a);
    *s = keep;
    ck_assert_msg(rc == SPAT_OK, "%s", spat_last_error());
}
END_TEST

int main(void)
{
    test_seed_init("test_backward");
    npattern_files = test_pattern_files(pattern_files, 64);
    probe_backends();
    Suite *s = suite_create("backward");
    TCase *t = tcase_create("gradients");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, oracle_vs_finite_differences);
    tcase_add_loop_test(t, pattern_file, 0, npattern_files ? npattern_files : 1);
    tcase_add_loop_test(t, rule_pattern, 0, n_rule_patterns);
    tcase_add_test(t, empty_rows);
    tcase_add_test(t, unattended_keys);
    tcase_add_test(t, gqa);
    tcase_add_test(t, layouts);
    tcase_add_test(t, q_offset);
    tcase_add_test(t, varlen);
    tcase_add_test(t, half_storage);
    tcase_add_test(t, head_dim_and_scale);
    tcase_add_test(t, threads);
    tcase_add_loop_test(t, cpu_long_sequences, 0, npattern_files ? npattern_files : 1);
    tcase_add_loop_test(t, cpu_forced_isa, 0, 2 * (npattern_files ? npattern_files : 1));
    tcase_add_test(t, cpu_kernel_so);
    tcase_add_test(t, cpu_first_backward_from_threads);
    suite_add_tcase(s, t);
    TCase *v = tcase_create("validation");
    tcase_add_checked_fixture(v, setup, teardown);
    tcase_add_test(v, args_init);
    tcase_add_test(v, fixture_is_valid);
    tcase_add_test(v, null_arguments);
    tcase_add_test(v, bad_enums_shapes_scalars);
    tcase_add_test(v, bad_head_dim);
    tcase_add_test(v, aliasing_outputs);
    tcase_add_test(v, overlapping_tensors);
    tcase_add_test(v, overflowing_sizes);
    tcase_add_test(v, device_pointers);
    tcase_add_test(v, backend_choice);
    tcase_add_test(v, backend_choice_dtype);
    suite_add_tcase(s, v);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    for (int k = 0; k < npattern_files; k++)
        free(pattern_files[k]);
    return failed ? 1 : 0;
}
