/* The reference backend's backward: portable C, double accumulation, every
 * dtype on host memory. Every fast backward is tested against it (and it
 * against a dense masked softmax gradient, tests/test_backward.c).
 *
 * With P = exp(scale Q K^T - LSE) on the attended pairs and
 * D = rowsum(dO o O):  dS = P o (dO V^T - D),  dQ = scale dS K,
 * dK = scale dS^T Q,  dV = P^T dO.
 *
 * It walks the plan as the forward reference does: for each query row, the
 * keys each component owns (reference.h's key enumeration: candidate ranges
 * filtered by the owner rule), so every attended pair contributes exactly
 * once. P comes from the LSE the forward wrote, not from a new softmax.
 *
 * The unit of work is one (batch, KV head): a thread takes every query head
 * of that GQA group, so it alone adds into the group's dK and dV rows,
 * which it accumulates in double over the whole group before storing them.
 * No two threads ever write the same element and every sum runs in one
 * fixed order, so the outputs are bitwise the same for any thread count. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "reference.h"

typedef struct bwd_ctx {
    const spat_kernel *k;
    const sp_bwd *w;
} bwd_ctx;

/* Per-thread scratch: a row's vectors (head_dim each) and the group's dK,
 * dV accumulators ([key][dim], grown to the largest key length met). */
typedef struct scratch {
    double *q, *o, *dout, *dq, *kr, *vr, *zero;
    double *dk, *dv;
    size_t acc_cap; /* doubles in each of dk, dv */
    sp_ref_ranges rg;
} scratch;

static void *scratch_new(void *ctx)
{
    const int64_t d = ((const bwd_ctx *)ctx)->w->a->head_dim;
    scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->q = calloc(7 * (size_t)d, sizeof(double));
    if (!s->q || sp_ref_ranges_init(&s->rg) != 0) {
        free(s->q);
        free(s);
        return NULL;
    }
    s->o = s->q + d;
    s->dout = s->o + d;
    s->dq = s->dout + d;
    s->kr = s->dq + d;
    s->vr = s->kr + d;
    s->zero = s->vr + d; /* stays all zero */
    return s;
}

static void scratch_free(void *p)
{
    scratch *s = p;
    free(s->q);
    free(s->dk);
    free(s->dv);
    sp_ref_ranges_free(&s->rg);
    free(s);
}

/* Room for n doubles in each accumulator; -1 when out of memory. */
static int grow(scratch *s, int64_t nk, int64_t d)
{
    size_t n;
    if (__builtin_mul_overflow((size_t)nk, (size_t)d, &n) || n > SIZE_MAX / sizeof(double))
        return -1;
    if (n <= s->acc_cap)
        return 0;
    free(s->dk);
    free(s->dv);
    s->dk = malloc(n * sizeof(double));
    s->dv = malloc(n * sizeof(double));
    if (!s->dk || !s->dv) {
        free(s->dk);
        free(s->dv);
        s->dk = s->dv = NULL;
        s->acc_cap = 0;
        return -1;
    }
    s->acc_cap = n;
    return 0;
}

static void store_row(const sp_bwd *w, void *base, const int64_t *st, int64_t b, int64_t h,
                      int64_t r, const double *x)
{
    sp_ref_store(w->a->dtype, (char *)sp_ref_row(base, st, w->esize, b, h, r), st[3],
                 w->a->head_dim, x);
}

/* Query row r (position i) of head h: its dQ, and its share of the group's
 * dK and dV. -1 when out of memory. */
static int row(const sp_bwd *w, scratch *s, sp_view *v, int64_t b, int64_t h, int64_t hk,
               int64_t r, int64_t i)
{
    const spat_backward_args *a = w->a;
    const int64_t d = a->head_dim;
    const spat_dtype t = a->dtype;
    memset(s->dq, 0, sizeof(double) * (size_t)d);
    const double lse = a->lse[b * a->lse_stride[0] + h * a->lse_stride[1] + r * a->lse_stride[2]];
    /* A row without keys (LSE = -inf) has no gradient: never exp(s + inf). */
    if (lse != -INFINITY) {
        sp_ref_load(t, sp_ref_row(a->q, a->q_stride, w->esize, b, h, r), a->q_stride[3], d, s->q);
        sp_ref_load(t, sp_ref_row(a->o, a->o_stride, w->esize, b, h, r), a->o_stride[3], d, s->o);
        sp_ref_load(t, sp_ref_row(a->dout, a->dout_stride, w->esize, b, h, r),
                    a->dout_stride[3], d, s->dout);
        const double D = sp_ref_dot(s->dout, s->o, d);
        for (int comp = 0; comp < v->hp->ncomps; comp++) {
            sp_ref_keys it;
            if (sp_ref_keys_begin(&it, v, &s->rg, comp, i) != 0)
                return -1;
            for (int64_t j; sp_ref_keys_next(&it, &j);) {
                sp_ref_load(t, sp_ref_row(a->k, a->k_stride, w->esize, b, hk, j), a->k_stride[3],
                            d, s->kr);
                const double p = exp(w->scale * sp_ref_dot(s->q, s->kr, d) - lse);
                if (p == 0)
                    continue; /* contributes nothing (also a score of -inf) */
                sp_ref_load(t, sp_ref_row(a->v, a->v_stride, w->esize, b, hk, j), a->v_stride[3],
                            d, s->vr);
                const double ds = p * (sp_ref_dot(s->dout, s->vr, d) - D);
                double *dk = s->dk + j * d, *dv = s->dv + j * d;
                for (int64_t x = 0; x < d; x++) {
                    s->dq[x] += ds * s->kr[x];
                    dk[x] += ds * s->q[x];
                    dv[x] += p * s->dout[x];
                }
            }
        }
        for (int64_t x = 0; x < d; x++)
            s->dq[x] *= w->scale;
    }
    store_row(w, a->dq, a->dq_stride, b, h, r, s->dq);
    return 0;
}

/* One unit: batch b, KV head hk, and every query head that reads it. */
static int unit(void *ctx, void *sp, int64_t u)
{
    const bwd_ctx *c = ctx;
    const sp_bwd *w = c->w;
    const spat_backward_args *a = w->a;
    scratch *s = sp;
    const int64_t b = u / a->heads_kv, hk = u % a->heads_kv, d = a->head_dim;
    const int64_t group = a->heads_q / a->heads_kv;
    const int64_t nq = sp_bwd_nq(w, b), nk = sp_bwd_nk(w, b), off = sp_bwd_qoff(w, b);
    if (grow(s, nk, d) != 0)
        return -1;
    if (nk > 0) { /* no keys (a varlen batch of length 0): no buffers, nothing to zero */
        memset(s->dk, 0, sizeof(double) * (size_t)(nk * d));
        memset(s->dv, 0, sizeof(double) * (size_t)(nk * d));
    }
    for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
        for (int64_t r = nq; r < a->seq_q; r++) /* padding rows */
            store_row(w, a->dq, a->dq_stride, b, h, r, s->zero);
        if (nq == 0)
            continue;
        sp_view v;
        if (sp_view_init(&v, c->k->plan, h, nk) != 0)
            return -1;
        int rc = 0;
        for (int64_t r = 0; r < nq && rc == 0; r++)
            rc = row(w, s, &v, b, h, hk, r, r + off);
        sp_view_free(&v);
        if (rc != 0)
            return -1;
    }
    for (int64_t j = 0; j < a->seq_k; j++) {
        const double *dk = j < nk ? s->dk + j * d : s->zero;
        const double *dv = j < nk ? s->dv + j * d : s->zero;
        if (j < nk)
            for (int64_t x = 0; x < d; x++)
                s->dk[j * d + x] *= w->scale;
        store_row(w, a->dk, a->dk_stride, b, hk, j, dk);
        store_row(w, a->dv, a->dv_stride, b, hk, j, dv);
    }
    return 0;
}

int sp_reference_backward(const spat_kernel *k, const sp_bwd *w)
{
    bwd_ctx c = {.k = k, .w = w};
    sp_ref_team t = {.nwork = w->a->batch * w->a->heads_kv, .threads = w->threads, .ctx = &c,
                     .scratch_new = scratch_new, .scratch_free = scratch_free, .unit = unit};
    int rc = sp_ref_run(&t);
    if (rc > 0)
        return sp_set_error(SPAT_ENOMEM, "out of memory for the reference backend's buffers");
    if (rc < 0)
        return sp_set_error(SPAT_ENOMEM,
                            "out of memory in the reference backend's backward; dQ, dK and dV "
                            "may be partly written");
    return SPAT_OK;
}
