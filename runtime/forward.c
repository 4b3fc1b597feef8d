/* spat_forward: validate every argument, then hand the call to a backend.
 *
 * Nothing is written to O or LSE until every check has passed, so a
 * rejected call leaves the caller's buffers as they were. The checks run in
 * a fixed order (handles, enum values, shape, heads, head dim, pointers,
 * backend and dtype, scalars, devices, per-batch lengths and offsets,
 * layouts) and the first failure is reported, naming the argument at fault.
 *
 * Layout rules, which man/libspat.3 documents:
 *  - strides are in elements and may be negative (the tensor pointer is
 *    then still the address of element [0,0,0,0]); a stride of a dimension
 *    of extent 1 is never used and may be anything;
 *  - every element offset, and every byte offset, must fit in int64, and
 *    the addressed bytes must not wrap around the address space;
 *  - O, and LSE, must not alias themselves: sorted by |stride|, each
 *    dimension of extent > 1 must step over the whole span of the
 *    dimensions inside it (SPAT_EOVERLAP);
 *  - the bytes that O spans (from its lowest to its highest element) must
 *    not intersect those of Q, K, V or LSE, nor LSE's those of Q, K, V
 *    (SPAT_EOVERLAP). This is conservative: two interleaved but disjoint
 *    layouts in one buffer are refused too. Q, K and V may overlap freely. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#ifdef SPAT_HAVE_CUDA
#include "cuda_run.h"
#endif

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
    /* A stride that does not fit becomes INT64_MAX, so that spat_forward
     * reports the overflow instead of running on a wrapped value. */
    int64_t n[3][4] = {{batch, heads_q, seq_q, head_dim},
                       {batch, heads_kv, seq_k, head_dim},
                       {batch, heads_q, seq_q, 1}};
    int64_t *strides[5] = {a->q_stride, a->k_stride, a->v_stride, a->o_stride, a->lse_stride};
    const int shape_of[5] = {0, 1, 1, 0, 2};
    for (int t = 0; t < 5; t++) {
        const int64_t *e = n[shape_of[t]];
        int nd = t == 4 ? 3 : 4;
        int64_t s = 1;
        for (int d = nd - 1; d >= 0; d--) {
            strides[t][d] = s;
            int64_t ext = e[d] > 0 ? e[d] : 1;
            if (s != INT64_MAX && __builtin_mul_overflow(s, ext, &s))
                s = INT64_MAX;
        }
    }
}

/* ------------------------------------------------------------------ shapes */

static int check_enums(const spat_forward_args *a)
{
    if ((unsigned)a->dtype > SPAT_BF16)
        return sp_set_error(SPAT_EINVAL, "dtype = %d is not a spat_dtype", (int)a->dtype);
    if ((unsigned)a->device > SPAT_DEVICE_CUDA)
        return sp_set_error(SPAT_EINVAL, "device = %d is not a spat_device", (int)a->device);
    if ((unsigned)a->backend > SPAT_BACKEND_CUDA)
        return sp_set_error(SPAT_EINVAL, "backend = %d is not a spat_backend", (int)a->backend);
    return SPAT_OK;
}

static int check_shape(const spat_forward_args *a)
{
    const struct { const char *name; int64_t v; } f[] = {
        {"batch", a->batch}, {"heads_q", a->heads_q}, {"heads_kv", a->heads_kv},
        {"seq_q", a->seq_q}, {"seq_k", a->seq_k},     {"head_dim", a->head_dim},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        if (f[i].v <= 0)
            return sp_set_error(SPAT_EINVAL, "%s = %lld: %s must be positive", f[i].name,
                                (long long)f[i].v,
                                i >= 3 && i <= 4 ? "sequence lengths" : "tensor dimensions");
        /* Positions and heads go through the plan's arithmetic, which is
         * exact for values up to SP_MAX_VALUE. */
        if (f[i].v > SP_MAX_VALUE)
            return sp_set_error(SPAT_EINVAL, "%s = %lld exceeds the largest supported value %lld",
                                f[i].name, (long long)f[i].v, (long long)SP_MAX_VALUE);
    }
    return SPAT_OK;
}

static int check_heads(const spat_kernel *k, const spat_forward_args *a)
{
    if (a->heads_q % a->heads_kv != 0)
        return sp_set_error(SPAT_EINVAL,
                            "heads_q = %lld is not a multiple of heads_kv = %lld (GQA: query head "
                            "h reads KV head h / (heads_q / heads_kv))",
                            (long long)a->heads_q, (long long)a->heads_kv);
    int64_t nh = k->plan->nheads;
    if (nh > 0 && a->heads_q != nh)
        return sp_set_error(SPAT_EINVAL, "heads_q = %lld: pattern '%s' describes %lld heads",
                            (long long)a->heads_q, k->name, (long long)nh);
    return SPAT_OK;
}

/* "64, 128" */
static void format_dims(const spat_kernel *k, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < k->nhd && len < cap; i++) {
        int n = snprintf(buf + len, cap - len, "%s%d", i ? ", " : "", k->head_dims[i]);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

static int check_head_dim(const spat_kernel *k, const spat_forward_args *a, int *idx)
{
    *idx = sp_kernel_head_dim_index(k, a->head_dim);
    if (*idx >= 0)
        return SPAT_OK;
    char dims[256];
    format_dims(k, dims, sizeof dims);
    return sp_set_error(SPAT_EHEADDIM, "head_dim %lld: kernel '%s' was built for %s",
                        (long long)a->head_dim, k->name, dims);
}

static int check_null_pointers(const spat_forward_args *a)
{
    const struct { const char *name; const void *p; } t[] = {
        {"q", a->q}, {"k", a->k}, {"v", a->v}, {"o", a->o}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!t[i].p)
            return sp_set_error(SPAT_EINVAL, "%s is NULL", t[i].name);
    return SPAT_OK;
}

/* ----------------------------------------------------------------- backend */

static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const device_names[] = {"SPAT_DEVICE_CPU", "SPAT_DEVICE_CUDA"};

static bool slot_runs(const sp_backend_slot *s, const spat_forward_args *a, int idx)
{
    return s->available && s->device == a->device && (s->dtypes >> a->dtype & 1u) &&
           s->forward[idx];
}

/* Refuses an explicit backend that cannot run this call, naming why. */
static int check_slot(const sp_backend_slot *s, const spat_forward_args *a, int idx)
{
    if (s->device != a->device)
        return sp_set_error(SPAT_EDEVICE, "backend '%s' runs on %s memory, but device = %s",
                            s->name, s->device == SPAT_DEVICE_CPU ? "host" : "CUDA device",
                            device_names[a->device]);
    if (!s->available)
        return sp_set_error(SPAT_EBACKEND, "backend '%s' is not available in this libspat",
                            s->name);
    if (!(s->dtypes >> a->dtype & 1u))
        return sp_set_error(SPAT_EDTYPE, "dtype %s: backend '%s' does not support it",
                            dtype_names[a->dtype], s->name);
    if (!s->forward[idx])
        return sp_set_error(SPAT_EHEADDIM, "head_dim %lld: backend '%s' has no code for it",
                            (long long)a->head_dim, s->name);
    return SPAT_OK;
}

static int pick_backend(const spat_kernel *k, const spat_forward_args *a, int idx,
                        const sp_backend_slot **out)
{
    if (a->backend != SPAT_BACKEND_AUTO) {
        *out = &k->backends[a->backend];
        return check_slot(*out, a, idx);
    }
    /* Fastest first. */
    static const spat_backend order[] = {SPAT_BACKEND_CUDA, SPAT_BACKEND_CPU,
                                         SPAT_BACKEND_REFERENCE};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (slot_runs(&k->backends[order[i]], a, idx)) {
            *out = &k->backends[order[i]];
            return SPAT_OK;
        }
    if (a->device == SPAT_DEVICE_CUDA)
        return sp_set_error(SPAT_EBACKEND,
                            "device = SPAT_DEVICE_CUDA: no CUDA backend is available in this "
                            "libspat");
    return sp_set_error(SPAT_EDTYPE, "dtype %s: no available backend supports it on %s",
                        dtype_names[a->dtype], device_names[a->device]);
}

/* ----------------------------------------------------------------- scalars */

static int check_scalars(const spat_forward_args *a)
{
    if (!isfinite(a->scale))
        return sp_set_error(SPAT_EINVAL, "scale = %g: must be finite (0 means 1/sqrt(head_dim))",
                            (double)a->scale);
    if (a->threads < 0)
        return sp_set_error(SPAT_EINVAL, "threads = %d: must be >= 0 (0 means every core)",
                            a->threads);
    if (a->q_offsets && a->q_offset != 0)
        return sp_set_error(SPAT_EINVAL,
                            "q_offset = %lld and q_offsets are both given: pass one of them",
                            (long long)a->q_offset);
    return SPAT_OK;
}

/* A CPU backend reading device memory would crash; the driver says. A
 * CUDA call needs device memory instead (and host per-batch arrays). */
static int check_devices(const spat_forward_args *a)
{
#ifdef SPAT_HAVE_CUDA
    if (a->device == SPAT_DEVICE_CUDA)
        return sp_cuda_check_pointers(a);
#endif
    if (a->device != SPAT_DEVICE_CPU)
        return SPAT_OK;
    const void *const p[] = {a->q, a->k, a->v, a->o, a->lse,
                             a->seqlens_q, a->seqlens_k, a->q_offsets};
    static const char *const names[] = {"q", "k", "v", "o", "lse",
                                        "seqlens_q", "seqlens_k", "q_offsets"};
    int i = sp_device_find_gpu_pointer(p, (int)(sizeof p / sizeof *p));
    if (i >= 0)
        return sp_set_error(SPAT_EDEVICE,
                            "%s = %p is CUDA device memory, but device = SPAT_DEVICE_CPU",
                            names[i], p[i]);
    return SPAT_OK;
}

/* Valid lengths and the position of row 0, batch by batch. */
static int check_batch(const spat_forward_args *a, int64_t b)
{
    int64_t nq = a->seq_q, nk = a->seq_k, off = a->q_offset;
    if (a->seqlens_q) {
        nq = a->seqlens_q[b];
        if (nq < 0 || nq > a->seq_q)
            return sp_set_error(SPAT_EINVAL, "seqlens_q[%lld] = %lld: must be in 0..seq_q (%lld)",
                                (long long)b, (long long)nq, (long long)a->seq_q);
    }
    if (a->seqlens_k) {
        nk = a->seqlens_k[b];
        if (nk < 0 || nk > a->seq_k)
            return sp_set_error(SPAT_EINVAL, "seqlens_k[%lld] = %lld: must be in 0..seq_k (%lld)",
                                (long long)b, (long long)nk, (long long)a->seq_k);
    }
    char name[64];
    if (a->q_offsets) {
        off = a->q_offsets[b];
        snprintf(name, sizeof name, "q_offsets[%lld]", (long long)b);
    } else {
        snprintf(name, sizeof name, "q_offset");
    }
    if (off < 0 || off > SP_MAX_VALUE)
        return sp_set_error(SPAT_EINVAL, "%s = %lld: must be in 0..%lld", name, (long long)off,
                            (long long)SP_MAX_VALUE);
    if (off + nq > nk)
        return sp_set_error(SPAT_EINVAL,
                            "batch %lld: %s = %lld plus %lld query rows exceeds the %lld keys "
                            "(query row r is position r + q_offset, which must be < the key "
                            "length)",
                            (long long)b, name, (long long)off, (long long)nq, (long long)nk);
    return SPAT_OK;
}

static int check_lengths(const spat_forward_args *a)
{
    bool per_batch = a->seqlens_q || a->seqlens_k || a->q_offsets;
    int64_t nb = per_batch ? a->batch : 1;
    for (int64_t b = 0; b < nb; b++) {
        int rc = check_batch(a, b);
        if (rc != SPAT_OK)
            return rc;
    }
    return SPAT_OK;
}

/* ----------------------------------------------------------------- layouts */

typedef struct tensor {
    const char *name;    /* "O" */
    const char *sname;   /* "o_stride" */
    const void *ptr;
    int nd;
    int64_t n[4];
    const int64_t *s;
    size_t esize;
    uintptr_t lo, hi;    /* the bytes it spans: [lo, hi) */
} tensor;

static const char *const dim_names[4] = {"batches", "heads", "rows", "elements of a row"};

static void describe(const tensor *t, char *buf, size_t cap)
{
    if (t->nd == 4)
        snprintf(buf, cap, "shape [%lld, %lld, %lld, %lld], %s {%lld, %lld, %lld, %lld}",
                 (long long)t->n[0], (long long)t->n[1], (long long)t->n[2], (long long)t->n[3],
                 t->sname, (long long)t->s[0], (long long)t->s[1], (long long)t->s[2],
                 (long long)t->s[3]);
    else
        snprintf(buf, cap, "shape [%lld, %lld, %lld], %s {%lld, %lld, %lld}", (long long)t->n[0],
                 (long long)t->n[1], (long long)t->n[2], t->sname, (long long)t->s[0],
                 (long long)t->s[1], (long long)t->s[2]);
}

/* The byte range the tensor spans; fails when an element or byte offset
 * overflows int64 or the range wraps around the address space. */
static int extent(tensor *t)
{
    int64_t lo = 0, hi = 0;
    bool ovf = false;
    for (int d = 0; d < t->nd && !ovf; d++) {
        if (t->n[d] == 1)
            continue; /* the stride of an extent-1 dim is never used */
        int64_t span;
        ovf |= __builtin_mul_overflow(t->s[d], t->n[d] - 1, &span);
        if (!ovf)
            ovf |= span < 0 ? __builtin_add_overflow(lo, span, &lo)
                            : __builtin_add_overflow(hi, span, &hi);
    }
    int64_t blo = 0, bhi = 0;
    if (!ovf)
        ovf |= __builtin_mul_overflow(lo, (int64_t)t->esize, &blo) ||
               __builtin_add_overflow(hi, 1, &bhi) ||
               __builtin_mul_overflow(bhi, (int64_t)t->esize, &bhi);
    uintptr_t p = (uintptr_t)t->ptr;
    if (!ovf) {
        uint64_t below = (uint64_t)0 - (uint64_t)blo; /* blo <= 0 */
        ovf |= below > p || (uint64_t)bhi > UINTPTR_MAX - p;
    }
    if (ovf) {
        char d[256];
        describe(t, d, sizeof d);
        return sp_set_error(SPAT_EINVAL, "%s with %s: element offsets overflow int64 or wrap "
                            "around the address space", t->name, d);
    }
    t->lo = p - ((uint64_t)0 - (uint64_t)blo);
    t->hi = p + (uint64_t)bhi;
    return SPAT_OK;
}

static uint64_t mag(int64_t s) { return s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s; }

/* Distinct elements at distinct addresses: sorted by |stride|, each dim of
 * extent > 1 steps over the span of the dims inside it. */
static int check_alias(const tensor *t)
{
    int ord[4], m = 0;
    for (int d = 0; d < t->nd; d++)
        if (t->n[d] > 1)
            ord[m++] = d;
    for (int x = 1; x < m; x++) /* insertion sort, stable: ties keep dim order */
        for (int y = x; y > 0 && mag(t->s[ord[y]]) < mag(t->s[ord[y - 1]]); y--) {
            int tmp = ord[y];
            ord[y] = ord[y - 1];
            ord[y - 1] = tmp;
        }
    uint64_t span = 1; /* elements covered by the dims so far; fits: extent() passed */
    for (int x = 0; x < m; x++) {
        int d = ord[x];
        if (mag(t->s[d]) < span) {
            char desc[256];
            describe(t, desc, sizeof desc);
            return sp_set_error(SPAT_EOVERLAP,
                                "%s[%d] = %lld makes distinct %s of %s overlap (%s: |%s[%d]| "
                                "must be at least %llu, the span of the dims inside it)",
                                t->sname, d, (long long)t->s[d],
                                t->nd == 3 && d == 2 ? "rows" : dim_names[d], t->name, desc,
                                t->sname, d, (unsigned long long)span);
        }
        span += mag(t->s[d]) * (uint64_t)(t->n[d] - 1);
    }
    return SPAT_OK;
}

static int check_disjoint(const tensor *out, const tensor *in)
{
    if (out->lo < in->hi && in->lo < out->hi)
        return sp_set_error(SPAT_EOVERLAP,
                            "%s (bytes %p..%p) overlaps %s (bytes %p..%p): the output must not "
                            "share memory with an input",
                            out->name, (void *)out->lo, (void *)out->hi, in->name,
                            (void *)in->lo, (void *)in->hi);
    return SPAT_OK;
}

static int check_layouts(const spat_forward_args *a, size_t esize)
{
    tensor t[5] = {
        {"Q", "q_stride", a->q, 4, {a->batch, a->heads_q, a->seq_q, a->head_dim}, a->q_stride, esize, 0, 0},
        {"K", "k_stride", a->k, 4, {a->batch, a->heads_kv, a->seq_k, a->head_dim}, a->k_stride, esize, 0, 0},
        {"V", "v_stride", a->v, 4, {a->batch, a->heads_kv, a->seq_k, a->head_dim}, a->v_stride, esize, 0, 0},
        {"O", "o_stride", a->o, 4, {a->batch, a->heads_q, a->seq_q, a->head_dim}, a->o_stride, esize, 0, 0},
        {"LSE", "lse_stride", a->lse, 3, {a->batch, a->heads_q, a->seq_q, 1}, a->lse_stride, sizeof(float), 0, 0},
    };
    int nt = a->lse ? 5 : 4;
    int rc;
    for (int i = 0; i < nt; i++)
        if ((rc = extent(&t[i])) != SPAT_OK)
            return rc;
    for (int i = 3; i < nt; i++)
        if ((rc = check_alias(&t[i])) != SPAT_OK)
            return rc;
    for (int i = 0; i < nt; i++) /* O against Q, K, V, LSE */
        if (i != 3 && (rc = check_disjoint(&t[3], &t[i])) != SPAT_OK)
            return rc;
    for (int i = 0; nt == 5 && i < 3; i++) /* LSE against Q, K, V */
        if ((rc = check_disjoint(&t[4], &t[i])) != SPAT_OK)
            return rc;
    return SPAT_OK;
}

/* ----------------------------------------------------------------- forward */

static int resolve_threads(int threads)
{
    long n = threads;
    if (n == 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
            n = 1;
    }
    return n > SP_MAX_THREADS ? SP_MAX_THREADS : (int)n;
}

static const size_t dtype_size[] = {4, 2, 2};

int spat_forward(const spat_kernel *k, const spat_forward_args *a)
{
    if (!k)
        return sp_set_error(SPAT_EINVAL, "kernel is NULL");
    if (!a)
        return sp_set_error(SPAT_EINVAL, "args is NULL");
    int rc, idx;
    const sp_backend_slot *slot = NULL;
    if ((rc = check_enums(a)) || (rc = check_shape(a)) || (rc = check_heads(k, a)) ||
        (rc = check_head_dim(k, a, &idx)) || (rc = check_null_pointers(a)) ||
        (rc = pick_backend(k, a, idx, &slot)) || (rc = check_scalars(a)) ||
        (rc = check_devices(a)) || (rc = check_lengths(a)) ||
        (rc = check_layouts(a, dtype_size[a->dtype])))
        return rc;
    sp_fwd f = {
        .a = a,
        .scale = a->scale != 0.0f ? (double)a->scale : 1.0 / sqrt((double)a->head_dim),
        .threads = resolve_threads(a->threads),
        .esize = dtype_size[a->dtype],
        .hd_index = idx,
    };
    return slot->forward[idx](k, &f);
}
