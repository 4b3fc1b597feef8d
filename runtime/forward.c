/* spat_forward: describe the call as an sp_call, let the shared checks
 * (args.c) validate every argument, then hand the call to a backend.
 *
 * Nothing is written to O or LSE until every check has passed, so a
 * rejected call leaves the caller's buffers as they were. The rules (order
 * of the checks, layouts, overlaps) are args.c's; for the forward, LSE is
 * an optional output, so O and LSE must not alias themselves, O must not
 * meet Q, K, V or LSE, and LSE must not meet Q, K or V; Q, K and V may
 * overlap freely. */
#include "config.h"

#include <string.h>

#include "internal.h"

void spat_forward_args_init(spat_forward_args *a, int64_t batch, int64_t heads_q,
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
    sp_contiguous_strides(a->q_stride, 4, nq);
    sp_contiguous_strides(a->k_stride, 4, nk);
    sp_contiguous_strides(a->v_stride, 4, nk);
    sp_contiguous_strides(a->o_stride, 4, nq);
    sp_contiguous_strides(a->lse_stride, 3, nq);
}

int spat_forward(const spat_kernel *k, const spat_forward_args *a)
{
    if (!k)
        return sp_set_error(SPAT_EINVAL, "kernel is NULL");
    if (!a)
        return sp_set_error(SPAT_EINVAL, "args is NULL");
    sp_call c = {.backward = false, SP_CALL_FIELDS(a)};
    const size_t es = sp_dtype_size(a->dtype);
    const int64_t B = a->batch, Hq = a->heads_q, Hkv = a->heads_kv, Nq = a->seq_q,
                  Nk = a->seq_k, d = a->head_dim;
    const sp_targ t[] = {
        {"q", "Q", "q_stride", a->q, 4, {B, Hq, Nq, d}, a->q_stride, es, false, false, 0, 0},
        {"k", "K", "k_stride", a->k, 4, {B, Hkv, Nk, d}, a->k_stride, es, false, false, 0, 0},
        {"v", "V", "v_stride", a->v, 4, {B, Hkv, Nk, d}, a->v_stride, es, false, false, 0, 0},
        {"o", "O", "o_stride", a->o, 4, {B, Hq, Nq, d}, a->o_stride, es, true, false, 0, 0},
        {"lse", "LSE", "lse_stride", a->lse, 3, {B, Hq, Nq, 1}, a->lse_stride, sizeof(float),
         true, true, 0, 0},
    };
    c.nt = (int)(sizeof t / sizeof *t);
    memcpy(c.t, t, sizeof t);
    int rc, idx;
    const sp_backend_slot *slot;
    if ((rc = sp_call_check(k, &c, &idx, &slot)) != SPAT_OK)
        return rc;
    sp_fwd f = {
        .a = a,
        .scale = sp_resolve_scale(a->scale, a->head_dim),
        .threads = sp_resolve_threads(a->threads),
        .esize = es,
        .hd_index = idx,
    };
    return slot->forward[idx](k, &f);
}
