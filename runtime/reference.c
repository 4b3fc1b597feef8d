/* The reference backend: portable C that executes the kernel plan, with
 * double accumulation. Every fast backend is tested against it.
 *
 * It runs the plan the way the fast kernels will: for a query row, each
 * component of the head's plan yields a partial softmax over the keys it
 * owns (its candidate keys from sp_view_ranges, filtered by the owner rule
 * when the component excludes earlier ones), and the partials are merged
 * through their log-sum-exp. So a plan that drops or double-counts a pair,
 * or a broken merge, shows up here against the dense masked softmax of the
 * tests, which evaluates the IR rules directly.
 *
 * Work is split over (batch, query head) pairs, which threads take from a
 * shared counter; each thread has its own views and buffers. The calling
 * thread works too, so a failed pthread_create only means fewer workers.
 * The backward (reference_bwd.c) shares the loads and stores, the key
 * enumeration and the thread team (reference.h). */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "reference.h"

/* ------------------------------------------------------------ conversions */

/* Rounds x to a binary format with `mant` fraction bits, exponent bias
 * `bias` and an exponent field of `ebits` bits, to nearest even, straight
 * from double (rounding through float first could round twice). */
static uint16_t round_to_format(double x, int mant, int ebits, int bias)
{
    uint16_t sign = signbit(x) ? (uint16_t)(1u << (mant + ebits)) : 0;
    uint16_t inf = (uint16_t)(((1u << ebits) - 1) << mant);
    if (isnan(x))
        return (uint16_t)(sign | inf | 1u << (mant - 1)); /* quiet NaN */
    double ax = fabs(x);
    if (isinf(ax))
        return sign | inf;
    int emin = 1 - bias; /* exponent of the smallest normal */
    int e;
    frexp(ax, &e);       /* ax = f * 2^e, f in [0.5, 1) */
    int exp2 = e - 1 < emin ? emin : e - 1;
    /* The quantum at this exponent; ax / q is exact (a power-of-two scale)
     * and nearbyint rounds it to nearest even in the default mode. */
    double q = ldexp(1.0, exp2 - mant);
    double n = nearbyint(ax / q);
    double v = n * q;
    if (v == 0)
        return sign;
    frexp(v, &e);
    if (e - 1 > bias) /* rounded past the largest finite value */
        return sign | inf;
    if (e - 1 < emin) /* subnormal: the count of quanta is the field */
        return (uint16_t)(sign | (uint16_t)n);
    uint32_t biased = (uint32_t)(e - 1 + bias);
    uint32_t frac = (uint32_t)(ldexp(v, mant - (e - 1)) - ldexp(1.0, mant));
    return (uint16_t)(sign | biased << mant | frac);
}

uint16_t sp_f16_from_double(double x) { return round_to_format(x, 10, 5, 15); }
uint16_t sp_bf16_from_double(double x) { return round_to_format(x, 7, 8, 127); }

double sp_f16_to_double(uint16_t h)
{
    int e = h >> 10 & 0x1f, f = h & 0x3ff;
    double s = h & 0x8000 ? -1.0 : 1.0;
    if (e == 0x1f)
        return f ? NAN : s * INFINITY;
    if (e == 0)
        return s * ldexp(f, -24);
    return s * ldexp(f + 1024, e - 25);
}

double sp_bf16_to_double(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void sp_ref_load(spat_dtype t, const char *p, int64_t s, int64_t n, double *out)
{
    switch (t) {
    case SPAT_F32:
        for (int64_t x = 0; x < n; x++) {
            float v;
            memcpy(&v, p + x * s * 4, sizeof v);
            out[x] = v;
        }
        break;
    case SPAT_F16:
    case SPAT_BF16:
        for (int64_t x = 0; x < n; x++) {
            uint16_t v;
            memcpy(&v, p + x * s * 2, sizeof v);
            out[x] = t == SPAT_F16 ? sp_f16_to_double(v) : sp_bf16_to_double(v);
        }
        break;
    }
}

void sp_ref_store(spat_dtype t, char *p, int64_t s, int64_t n, const double *in)
{
    for (int64_t x = 0; x < n; x++) {
        if (t == SPAT_F32) {
            float v = (float)in[x];
            memcpy(p + x * s * 4, &v, sizeof v);
        } else {
            uint16_t v = t == SPAT_F16 ? sp_f16_from_double(in[x]) : sp_bf16_from_double(in[x]);
            memcpy(p + x * s * 2, &v, sizeof v);
        }
    }
}

/* ------------------------------------------------------------------ keys */

int sp_ref_ranges_init(sp_ref_ranges *r)
{
    r->cap = 64;
    r->rg = malloc(sizeof *r->rg * (size_t)r->cap);
    return r->rg ? 0 : -1;
}

void sp_ref_ranges_free(sp_ref_ranges *r) { free(r->rg); }

int sp_ref_keys_begin(sp_ref_keys *it, sp_view *v, sp_ref_ranges *buf, int comp, int64_t i)
{
    int n;
    for (;;) {
        n = sp_view_ranges(v, comp, i, buf->rg, buf->cap);
        if (n < 0)
            return -1;
        if (n <= buf->cap)
            break;
        sp_krange *g = realloc(buf->rg, sizeof *g * (size_t)n);
        if (!g)
            return -1;
        buf->rg = g;
        buf->cap = n;
    }
    *it = (sp_ref_keys){.v = v, .rg = buf->rg, .n = n, .g = -1, .comp = comp, .i = i,
                        .j = 1, .end = 0, .filter = v->hp->comps[comp].excl != 0};
    return 0;
}

/* ------------------------------------------------------------- threading */

typedef struct job {
    const sp_ref_team *t;
    atomic_llong next;
    atomic_int failed;
} job;

static void work(job *j, void *scratch)
{
    for (;;) {
        if (atomic_load(&j->failed))
            return;
        int64_t w = atomic_fetch_add(&j->next, 1);
        if (w >= j->t->nwork)
            return;
        if (j->t->unit(j->t->ctx, scratch, w) != 0)
            atomic_store(&j->failed, 1);
    }
}

static void *worker(void *arg)
{
    job *j = arg;
    /* A helper without memory just does not help; the caller's thread
     * finishes the work. */
    void *s = j->t->scratch_new(j->t->ctx);
    if (s) {
        work(j, s);
        j->t->scratch_free(s);
    }
    return NULL;
}

int sp_ref_run(const sp_ref_team *t)
{
    job j = {.t = t};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, 0);
    void *s = t->scratch_new(t->ctx);
    if (!s)
        return 1;
    int64_t nt = t->threads < t->nwork ? t->threads : t->nwork;
    pthread_t tid[SP_MAX_THREADS];
    int started = 0;
    for (int64_t x = 1; x < nt; x++) {
        if (pthread_create(&tid[started], NULL, worker, &j) != 0)
            break;
        started++;
    }
    work(&j, s);
    for (int x = 0; x < started; x++)
        pthread_join(tid[x], NULL);
    t->scratch_free(s);
    return atomic_load(&j.failed) ? -1 : 0;
}

/* ---------------------------------------------------------------- forward */

/* The forward's call, and its per-thread scratch. */
typedef struct fwd_ctx {
    const spat_kernel *k;
    const sp_fwd *f;
} fwd_ctx;

typedef struct scratch {
    double *q, *kv, *acc, *o; /* head_dim each */
    sp_ref_ranges rg;
} scratch;

static void *scratch_new(void *ctx)
{
    const int64_t d = ((const fwd_ctx *)ctx)->f->a->head_dim;
    scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->q = malloc(sizeof(double) * 4 * (size_t)d);
    if (!s->q || sp_ref_ranges_init(&s->rg) != 0) {
        free(s->q);
        free(s);
        return NULL;
    }
    s->kv = s->q + d;
    s->acc = s->kv + d;
    s->o = s->acc + d;
    return s;
}

static void scratch_free(void *p)
{
    scratch *s = p;
    free(s->q);
    sp_ref_ranges_free(&s->rg);
    free(s);
}

typedef struct rowctx {
    const sp_fwd *f;
    sp_view *v;
    scratch *s;
    int64_t b, hk;
} rowctx;

/* Component comp's partial softmax of row i: an online softmax over its
 * owned keys. Returns the partial's LSE (-inf when it owns no key) with the
 * normalised output in s->acc, or NAN on out of memory. */
static double component(rowctx *c, int comp, int64_t i)
{
    const spat_forward_args *a = c->f->a;
    const int64_t d = a->head_dim;
    scratch *s = c->s;
    sp_ref_keys it;
    if (sp_ref_keys_begin(&it, c->v, &s->rg, comp, i) != 0)
        return NAN;
    double m = -INFINITY, l = 0;
    memset(s->acc, 0, sizeof(double) * (size_t)d);
    for (int64_t j; sp_ref_keys_next(&it, &j);) {
        sp_ref_load(a->dtype, sp_ref_row(a->k, a->k_stride, c->f->esize, c->b, c->hk, j),
                    a->k_stride[3], d, s->kv);
        double sc = c->f->scale * sp_ref_dot(s->q, s->kv, d);
        if (sc == -INFINITY)
            continue; /* weight exp(-inf) = 0 */
        if (sc > m) {
            double r = exp(m - sc);
            l *= r;
            for (int64_t x = 0; x < d; x++)
                s->acc[x] *= r;
            m = sc;
        }
        double p = exp(sc - m);
        l += p;
        sp_ref_load(a->dtype, sp_ref_row(a->v, a->v_stride, c->f->esize, c->b, c->hk, j),
                    a->v_stride[3], d, s->kv);
        for (int64_t x = 0; x < d; x++)
            s->acc[x] += p * s->kv[x];
    }
    if (l == 0)
        return -INFINITY;
    for (int64_t x = 0; x < d; x++)
        s->acc[x] /= l;
    return m + log(l);
}

/* One query row: merge the components' partials through their LSEs, as a
 * fast kernel merges tiles. Writes O and LSE of the row. */
static int row(rowctx *c, int64_t h, int64_t r, int64_t i)
{
    const spat_forward_args *a = c->f->a;
    const int64_t d = a->head_dim;
    scratch *s = c->s;
    sp_ref_load(a->dtype, sp_ref_row(a->q, a->q_stride, c->f->esize, c->b, h, r), a->q_stride[3],
                d, s->q);
    double lse = -INFINITY;
    memset(s->o, 0, sizeof(double) * (size_t)d);
    for (int comp = 0; comp < c->v->hp->ncomps; comp++) {
        double lc = component(c, comp, i);
        if (isnan(lc))
            return -1;
        if (lc == -INFINITY)
            continue;
        double hi = lse > lc ? lse : lc;
        double merged = hi + log(exp(lse - hi) + exp(lc - hi));
        double wo = exp(lse - merged), wc = exp(lc - merged);
        for (int64_t x = 0; x < d; x++)
            s->o[x] = s->o[x] * wo + s->acc[x] * wc;
        lse = merged;
    }
    sp_ref_store(a->dtype, (char *)sp_ref_row(a->o, a->o_stride, c->f->esize, c->b, h, r),
                 a->o_stride[3], d, s->o);
    if (a->lse)
        a->lse[c->b * a->lse_stride[0] + h * a->lse_stride[1] + r * a->lse_stride[2]] =
            (float)lse;
    return 0;
}

/* A padding row, or a row of a batch without keys: O = 0, LSE = -inf. */
static void empty_row(const sp_fwd *f, scratch *s, int64_t b, int64_t h, int64_t r)
{
    const spat_forward_args *a = f->a;
    memset(s->o, 0, sizeof(double) * (size_t)a->head_dim);
    sp_ref_store(a->dtype, (char *)sp_ref_row(a->o, a->o_stride, f->esize, b, h, r),
                 a->o_stride[3], a->head_dim, s->o);
    if (a->lse)
        a->lse[b * a->lse_stride[0] + h * a->lse_stride[1] + r * a->lse_stride[2]] = -INFINITY;
}

/* Every row of (batch b, query head h). */
static int head(const spat_kernel *k, const sp_fwd *f, scratch *s, int64_t b, int64_t h)
{
    const spat_forward_args *a = f->a;
    int64_t nq = sp_fwd_nq(f, b), nk = sp_fwd_nk(f, b), off = sp_fwd_qoff(f, b);
    for (int64_t r = nq; r < a->seq_q; r++)
        empty_row(f, s, b, h, r);
    if (nq == 0)
        return 0;
    sp_view v;
    if (sp_view_init(&v, k->plan, h, nk) != 0)
        return -1;
    rowctx c = {.f = f, .v = &v, .s = s, .b = b, .hk = h / (a->heads_q / a->heads_kv)};
    int rc = 0;
    for (int64_t r = 0; r < nq && rc == 0; r++)
        rc = row(&c, h, r, r + off);
    sp_view_free(&v);
    return rc;
}

/* One unit of the forward: (batch, query head) number w. */
static int fwd_unit(void *ctx, void *s, int64_t w)
{
    const fwd_ctx *c = ctx;
    return head(c->k, c->f, s, w / c->f->a->heads_q, w % c->f->a->heads_q);
}

int sp_reference_forward(const spat_kernel *k, const sp_fwd *f)
{
    fwd_ctx c = {.k = k, .f = f};
    sp_ref_team t = {.nwork = f->a->batch * f->a->heads_q, .threads = f->threads, .ctx = &c,
                     .scratch_new = scratch_new, .scratch_free = scratch_free,
                     .unit = fwd_unit};
    int rc = sp_ref_run(&t);
    if (rc > 0)
        return sp_set_error(SPAT_ENOMEM, "out of memory for the reference backend's buffers");
    if (rc < 0)
        return sp_set_error(SPAT_ENOMEM,
                            "out of memory in the reference backend; O and LSE are partly "
                            "written");
    return SPAT_OK;
}
