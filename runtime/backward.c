/* spat_backward: describe the call as an sp_call, let the shared checks
 * (args.c) validate every argument, then hand the call to a backend's
 * backward code.
 *
 * Nothing is written to dQ, dK or dV until every check has passed. The
 * inputs (Q, K, V, O, dO, LSE) may share memory with each other; the
 * outputs must not alias themselves, and the bytes each output spans must
 * not meet those of any input nor of another output (SPAT_EOVERLAP, naming
 * both). LSE is required: the backward recomputes P from it. */
#include "config.h"

#include <string.h>

#include "internal.h"

void spat_backward_args_init(spat_backward_args *a, int64_t batch, int64_t heads_q,
                             int64_t heads_kv, int64_t seq_q, int64_t seq_k, int64_t head_dim)
{
    if (!a)
        return;
    memset(a, 0, sizeof *a);
    a->batch = batch;
    a->heads_q = heads_q;
    a->heads_kv = heads_kv;
    a->seq_q = seq_q;
    a->seq_k = seq_k;
    a->head_dim = head_dim;
    a->dtype = SPAT_F32;
    a->device = SPAT_DEVICE_CPU;
    a->backend = SPAT_BACKEND_AUTO;
    const int64_t nq[4] = {batch, heads_q, seq_q, head_dim};
    const int64_t nk[4] = {batch, heads_kv, seq_k, head_dim};
    int64_t *const like_q[] = {a->q_stride, a->o_stride, a->dout_stride, a->dq_stride};
    int64_t *const like_k[] = {a->k_stride, a->v_stride, a->dk_stride, a->dv_stride};
    for (int t = 0; t < 4; t++) {
        sp_contiguous_strides(like_q[t], 4, nq);
        sp_contiguous_strides(like_k[t], 4, nk);
    }
    sp_contiguous_strides(a->lse_stride, 3, nq);
}

int spat_backward(const spat_kernel *k, const spat_backward_args *a)
{
    if (!k)
        return sp_set_error(SPAT_EINVAL, "kernel is NULL");
    if (!a)
        return sp_set_error(SPAT_EINVAL, "args is NULL");
    sp_call c = {.backward = true, SP_CALL_FIELDS(a)};
    const size_t es = sp_dtype_size(a->dtype);
    const int64_t B = a->batch, Hq = a->heads_q, Hkv = a->heads_kv, Nq = a->seq_q,
                  Nk = a->seq_k, d = a->head_dim;
    /* Inputs in the struct's order, then the outputs. */
    const sp_targ t[] = {
        {"q", "Q", "q_stride", a->q, 4, {B, Hq, Nq, d}, a->q_stride, es, false, false, 0, 0},
        {"k", "K", "k_stride", a->k, 4, {B, Hkv, Nk, d}, a->k_stride, es, false, false, 0, 0},
        {"v", "V", "v_stride", a->v, 4, {B, Hkv, Nk, d}, a->v_stride, es, false, false, 0, 0},
        {"o", "O", "o_stride", a->o, 4, {B, Hq, Nq, d}, a->o_stride, es, false, false, 0, 0},
        {"dout", "dO", "dout_stride", a->dout, 4, {B, Hq, Nq, d}, a->dout_stride, es, false,
         false, 0, 0},
        {"lse", "LSE", "lse_stride", a->lse, 3, {B, Hq, Nq, 1}, a->lse_stride, sizeof(float),
         false, false, 0, 0},
        {"dq", "dQ", "dq_stride", a->dq, 4, {B, Hq, Nq, d}, a->dq_stride, es, true, false, 0, 0},
        {"dk", "dK", "dk_stride", a->dk, 4, {B, Hkv, Nk, d}, a->dk_stride, es, true, false, 0, 0},
        {"dv", "dV", "dv_stride", a->dv, 4, {B, Hkv, Nk, d}, a->dv_stride, es, true, false, 0, 0},
    };
    _Static_assert(sizeof t / sizeof *t <= SP_MAX_TARGS, "sp_call holds every tensor");
    c.nt = (int)(sizeof t / sizeof *t);
    memcpy(c.t, t, sizeof t);
    int rc, idx;
    const sp_backend_slot *slot;
    if ((rc = sp_call_check(k, &c, &idx, &slot)) != SPAT_OK)
        return rc;
    sp_bwd w = {
        .a = a,
        .scale = sp_resolve_scale(a->scale, a->head_dim),
        .threads = sp_resolve_threads(a->threads),
        .esize = es,
        .hd_index = idx,
    };
    return slot->backward[idx](k, &w);
}
