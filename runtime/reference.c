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
 * thread works too, so a failed pthread_create only means fewer workers. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

/* Loads n elements at stride s (elements) into out. */
static void load(spat_dtype t, const char *p, int64_t s, int64_t n, double *out)
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

static void store(spat_dtype t, char *p, int64_t s, int64_t n, const double *in)
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

/* ------------------------------------------------------------------ rows */

/* Per-thread scratch. */
typedef struct scratch {
    double *q, *kv, *acc, *o; /* head_dim each */
    sp_krange *rg;
    int rgcap;
} scratch;

static int scratch_init(scratch *s, int64_t d)
{
    memset(s, 0, sizeof *s);
    s->q = malloc(sizeof(double) * 4 * (size_t)d);
    s->rgcap = 64;
    s->rg = malloc(sizeof *s->rg * (size_t)s->rgcap);
    if (!s->q || !s->rg) {
        free(s->q);
        free(s->rg);
        return -1;
    }
    s->kv = s->q + d;
    s->acc = s->kv + d;
    s->o = s->acc + d;
    return 0;
}

static void scratch_free(scratch *s)
{
    free(s->q);
    free(s->rg);
}

/* Where (b, h, row) of a 4-d tensor starts. */
static const char *row_ptr(const void *base, const int64_t *st, size_t es, int64_t b, int64_t h,
                           int64_t r)
{
    return (const char *)base + (b * st[0] + h * st[1] + r * st[2]) * (int64_t)es;
}

typedef struct rowctx {
    const sp_fwd *f;
    sp_view *v;
    scratch *s;
    int64_t b, hk;
} rowctx;

static double dot(const double *x, const double *y, int64_t n)
{
    double z = 0;
    for (int64_t i = 0; i < n; i++)
        z += x[i] * y[i];
    return z;
}

/* The candidate key ranges of component c in row i, into s->rg. */
static int ranges(rowctx *c, int comp, int64_t i)
{
    for (;;) {
        int n = sp_view_ranges(c->v, comp, i, c->s->rg, c->s->rgcap);
        if (n < 0 || n <= c->s->rgcap)
            return n;
        sp_krange *g = realloc(c->s->rg, sizeof *g * (size_t)n);
        if (!g)
            return -1;
        c->s->rg = g;
        c->s->rgcap = n;
    }
}

/* Component comp's partial softmax of row i: an online softmax over its
 * owned keys. Returns the partial's LSE (-inf when it owns no key) with the
 * normalised output in s->acc, or NAN on out of memory. */
static double component(rowctx *c, int comp, int64_t i)
{
    const spat_forward_args *a = c->f->a;
    const int64_t d = a->head_dim;
    scratch *s = c->s;
    int n = ranges(c, comp, i);
    if (n < 0)
        return NAN;
    bool filter = c->v->hp->comps[comp].excl != 0;
    double m = -INFINITY, l = 0;
    memset(s->acc, 0, sizeof(double) * (size_t)d);
    for (int g = 0; g < n; g++) {
        const sp_krange rg = s->rg[g];
        /* A step <= 0 can only describe a single key; never loop on it. */
        const int64_t step = rg.step > 0 ? rg.step : rg.end - rg.start + 1;
        for (int64_t j = rg.start; j <= rg.end; j += step) {
            if (filter && !sp_view_owns(c->v, comp, i, j))
                continue;
            load(a->dtype, row_ptr(a->k, a->k_stride, c->f->esize, c->b, c->hk, j),
                 a->k_stride[3], d, s->kv);
            double sc = c->f->scale * dot(s->q, s->kv, d);
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
            load(a->dtype, row_ptr(a->v, a->v_stride, c->f->esize, c->b, c->hk, j),
                 a->v_stride[3], d, s->kv);
            for (int64_t x = 0; x < d; x++)
                s->acc[x] += p * s->kv[x];
        }
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
    load(a->dtype, row_ptr(a->q, a->q_stride, c->f->esize, c->b, h, r), a->q_stride[3], d, s->q);
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
    store(a->dtype, (char *)row_ptr(a->o, a->o_stride, c->f->esize, c->b, h, r), a->o_stride[3],
          d, s->o);
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
    store(a->dtype, (char *)row_ptr(a->o, a->o_stride, f->esize, b, h, r), a->o_stride[3],
          a->head_dim, s->o);
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

/* ------------------------------------------------------------- threading */

typedef struct job {
    const spat_kernel *k;
    const sp_fwd *f;
    int64_t nwork;
    atomic_llong next;
    atomic_int failed;
} job;

static void work(job *j, scratch *s)
{
    for (;;) {
        if (atomic_load(&j->failed))
            return;
        int64_t w = atomic_fetch_add(&j->next, 1);
        if (w >= j->nwork)
            return;
        int64_t b = w / j->f->a->heads_q, h = w % j->f->a->heads_q;
        if (head(j->k, j->f, s, b, h) != 0)
            atomic_store(&j->failed, 1);
    }
}

static void *worker(void *arg)
{
    job *j = arg;
    scratch s;
    /* A helper without memory just does not help; the caller's thread
     * finishes the work. */
    if (scratch_init(&s, j->f->a->head_dim) == 0) {
        work(j, &s);
        scratch_free(&s);
    }
    return NULL;
}

int sp_reference_forward(const spat_kernel *k, const sp_fwd *f)
{
    job j = {.k = k, .f = f, .nwork = f->a->batch * f->a->heads_q};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, 0);
    scratch s;
    if (scratch_init(&s, f->a->head_dim) != 0)
        return sp_set_error(SPAT_ENOMEM, "out of memory for the reference backend's buffers");
    int64_t nt = f->threads < j.nwork ? f->threads : j.nwork;
    pthread_t tid[SP_MAX_THREADS];
    int started = 0;
    for (int64_t t = 1; t < nt; t++) {
        if (pthread_create(&tid[started], NULL, worker, &j) != 0)
            break;
        started++;
    }
    work(&j, &s);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    scratch_free(&s);
    if (atomic_load(&j.failed))
        return sp_set_error(SPAT_ENOMEM,
                            "out of memory in the reference backend; O and LSE are partly "
                            "written");
    return SPAT_OK;
}
