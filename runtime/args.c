/* The argument checks that spat_forward and spat_backward share.
 *
 * Each call describes itself as an sp_call (internal.h): the fields of its
 * argument struct that mean the same in both, and a table of its tensors
 * (name, pointer, strides, extents, input or output). One implementation
 * checks that table, so the two calls cannot drift apart.
 *
 * Nothing is written to an output until every check has passed, so a
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
 *  - an output must not alias itself: sorted by |stride|, each dimension of
 *    extent > 1 must step over the whole span of the dimensions inside it
 *    (SPAT_EOVERLAP);
 *  - the bytes that an output spans (from its lowest to its highest
 *    element) must not intersect those of any other tensor of the call,
 *    input or output (SPAT_EOVERLAP). This is conservative: two interleaved
 *    but disjoint layouts in one buffer are refused too. Inputs may overlap
 *    each other freely. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "internal.h"
#ifdef SPAT_HAVE_CUDA
#include "cuda_run.h"
#endif

/* ------------------------------------------------------------------ values */

size_t sp_dtype_size(spat_dtype t)
{
    switch (t) {
    case SPAT_F32:
        return 4;
    case SPAT_F16:
    case SPAT_BF16:
        return 2;
    }
    return 0;
}

double sp_resolve_scale(float scale, int64_t head_dim)
{
    return scale != 0.0f ? (double)scale : 1.0 / sqrt((double)head_dim);
}

int sp_resolve_threads(int threads)
{
    long n = threads;
    if (n == 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
            n = 1;
    }
    return n > SP_MAX_THREADS ? SP_MAX_THREADS : (int)n;
}

void sp_contiguous_strides(int64_t *s, int nd, const int64_t *n)
{
    /* A stride that does not fit becomes INT64_MAX, so that the call
     * reports the overflow instead of running on a wrapped value. */
    int64_t x = 1;
    for (int d = nd - 1; d >= 0; d--) {
        s[d] = x;
        int64_t ext = n[d] > 0 ? n[d] : 1;
        if (x != INT64_MAX && __builtin_mul_overflow(x, ext, &x))
            x = INT64_MAX;
    }
}

/* ------------------------------------------------------------------ shapes */

static int check_enums(const sp_call *c)
{
    if ((unsigned)c->dtype > SPAT_BF16)
        return sp_set_error(SPAT_EINVAL, "dtype = %d is not a spat_dtype", (int)c->dtype);
    if ((unsigned)c->device > SPAT_DEVICE_CUDA)
        return sp_set_error(SPAT_EINVAL, "device = %d is not a spat_device", (int)c->device);
    if ((unsigned)c->backend > SPAT_BACKEND_CUDA)
        return sp_set_error(SPAT_EINVAL, "backend = %d is not a spat_backend", (int)c->backend);
    return SPAT_OK;
}

static int check_shape(const sp_call *c)
{
    const struct { const char *name; int64_t v; } f[] = {
        {"batch", c->batch}, {"heads_q", c->heads_q}, {"heads_kv", c->heads_kv},
        {"seq_q", c->seq_q}, {"seq_k", c->seq_k},     {"head_dim", c->head_dim},
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

static int check_heads(const spat_kernel *k, const sp_call *c)
{
    if (c->heads_q % c->heads_kv != 0)
        return sp_set_error(SPAT_EINVAL,
                            "heads_q = %lld is not a multiple of heads_kv = %lld (GQA: query head "
                            "h reads KV head h / (heads_q / heads_kv))",
                            (long long)c->heads_q, (long long)c->heads_kv);
    int64_t nh = k->plan->nheads;
    if (nh > 0 && c->heads_q != nh)
        return sp_set_error(SPAT_EINVAL, "heads_q = %lld: pattern '%s' describes %lld heads",
                            (long long)c->heads_q, k->name, (long long)nh);
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

static int check_head_dim(const spat_kernel *k, const sp_call *c, int *idx)
{
    *idx = sp_kernel_head_dim_index(k, c->head_dim);
    if (*idx >= 0)
        return SPAT_OK;
    char dims[256];
    format_dims(k, dims, sizeof dims);
    return sp_set_error(SPAT_EHEADDIM, "head_dim %lld: kernel '%s' was built for %s",
                        (long long)c->head_dim, k->name, dims);
}

static int check_null_pointers(const sp_call *c)
{
    for (int i = 0; i < c->nt; i++)
        if (!c->t[i].ptr && !c->t[i].optional)
            return sp_set_error(SPAT_EINVAL, "%s is NULL", c->t[i].arg);
    return SPAT_OK;
}

/* ----------------------------------------------------------------- backend */

static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const device_names[] = {"SPAT_DEVICE_CPU", "SPAT_DEVICE_CUDA"};

/* The slot could run this call's forward: available, on the device, with
 * the dtype and code for the head dim. */
static bool slot_runs_forward(const sp_backend_slot *s, const sp_call *c, int idx)
{
    return s->available && s->device == c->device && (s->dtypes >> c->dtype & 1u) &&
           s->forward[idx];
}

static bool slot_runs(const sp_backend_slot *s, const sp_call *c, int idx)
{
    if (!c->backward)
        return slot_runs_forward(s, c, idx);
    return s->available && s->device == c->device && (s->dtypes >> c->dtype & 1u) &&
           s->backward[idx];
}

/* Refuses a backend that cannot run this call, naming why. */
static int check_slot(const sp_backend_slot *s, const sp_call *c, int idx)
{
    if (s->device != c->device)
        return sp_set_error(SPAT_EDEVICE, "backend '%s' runs on %s memory, but device = %s",
                            s->name, s->device == SPAT_DEVICE_CPU ? "host" : "CUDA device",
                            device_names[c->device]);
    if (!s->available)
        return sp_set_error(SPAT_EBACKEND, "backend '%s' is not available in this libspat",
                            s->name);
    if (!(s->dtypes >> c->dtype & 1u))
        return sp_set_error(SPAT_EDTYPE, "dtype %s: backend '%s' does not support it",
                            dtype_names[c->dtype], s->name);
    if (!s->forward[idx] && (!c->backward || !s->backward[idx]))
        return sp_set_error(SPAT_EHEADDIM, "head_dim %lld: backend '%s' has no code for it",
                            (long long)c->head_dim, s->name);
    if (c->backward && !s->backward[idx]) {
        if (s->no_backward)
            return sp_set_error(SPAT_ELOAD, "backend '%s' has no backward code: %s", s->name,
                                s->no_backward);
        return sp_set_error(SPAT_EHEADDIM, "head_dim %lld: backend '%s' has no backward code "
                            "for it", (long long)c->head_dim, s->name);
    }
    return SPAT_OK;
}

static int pick_backend(const spat_kernel *k, const sp_call *c, int idx,
                        const sp_backend_slot **out)
{
    if (c->backend != SPAT_BACKEND_AUTO) {
        *out = &k->backends[c->backend];
        return check_slot(*out, c, idx);
    }
    /* Fastest first. */
    static const spat_backend order[] = {SPAT_BACKEND_CUDA, SPAT_BACKEND_CPU,
                                         SPAT_BACKEND_REFERENCE};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const sp_backend_slot *s = &k->backends[order[i]];
        /* A backward that the forward's backend lacks for a reason (an old
         * kernel.so) is refused, not run quietly on a slower backend. */
        if (c->backward && !s->backward[idx] && s->no_backward && slot_runs_forward(s, c, idx))
            return sp_set_error(SPAT_ELOAD,
                                "backend '%s' has no backward code: %s; pass backend = "
                                "SPAT_BACKEND_REFERENCE to use the reference",
                                s->name, s->no_backward);
        if (slot_runs(s, c, idx)) {
            *out = s;
            return SPAT_OK;
        }
    }
    /* The device's own backend is there but cannot run this backward:
     * say why. */
    const sp_backend_slot *own = &k->backends[c->device == SPAT_DEVICE_CUDA ? SPAT_BACKEND_CUDA
                                                                            : SPAT_BACKEND_CPU];
    if (c->backward && slot_runs_forward(own, c, idx))
        return check_slot(own, c, idx);
    if (c->device == SPAT_DEVICE_CUDA)
        return sp_set_error(SPAT_EBACKEND,
                            "device = SPAT_DEVICE_CUDA: no CUDA backend is available in this "
                            "libspat");
    return sp_set_error(SPAT_EDTYPE, "dtype %s: no available backend supports it on %s",
                        dtype_names[c->dtype], device_names[c->device]);
}

/* ----------------------------------------------------------------- scalars */

static int check_scalars(const sp_call *c)
{
    if (!isfinite(c->scale))
        return sp_set_error(SPAT_EINVAL, "scale = %g: must be finite (0 means 1/sqrt(head_dim))",
                            (double)c->scale);
    if (c->threads < 0)
        return sp_set_error(SPAT_EINVAL, "threads = %d: must be >= 0 (0 means every core)",
                            c->threads);
    if (c->q_offsets && c->q_offset != 0)
        return sp_set_error(SPAT_EINVAL,
                            "q_offset = %lld and q_offsets are both given: pass one of them",
                            (long long)c->q_offset);
    return SPAT_OK;
}

/* A CPU backend reading device memory would crash; the driver says. A
 * CUDA call needs device memory instead (and host per-batch arrays). */
static int check_devices(const sp_call *c)
{
    enum { NHOST = 3 };
    const void *p[SP_MAX_TARGS + NHOST];
    const char *names[SP_MAX_TARGS + NHOST];
    for (int i = 0; i < c->nt; i++) {
        p[i] = c->t[i].ptr;
        names[i] = c->t[i].arg;
    }
    const void *const host[NHOST] = {c->seqlens_q, c->seqlens_k, c->q_offsets};
    static const char *const hnames[NHOST] = {"seqlens_q", "seqlens_k", "q_offsets"};
#ifdef SPAT_HAVE_CUDA
    if (c->device == SPAT_DEVICE_CUDA)
        return sp_cuda_check_pointers(p, names, c->nt, host, hnames, NHOST);
#endif
    if (c->device != SPAT_DEVICE_CPU)
        return SPAT_OK;
    for (int i = 0; i < NHOST; i++) {
        p[c->nt + i] = host[i];
        names[c->nt + i] = hnames[i];
    }
    int i = sp_device_find_gpu_pointer(p, c->nt + NHOST);
    if (i >= 0)
        return sp_set_error(SPAT_EDEVICE,
                            "%s = %p is CUDA device memory, but device = SPAT_DEVICE_CPU",
                            names[i], p[i]);
    return SPAT_OK;
}

/* Valid lengths and the position of row 0, batch by batch. */
static int check_batch(const sp_call *c, int64_t b)
{
    int64_t nq = c->seq_q, nk = c->seq_k, off = c->q_offset;
    if (c->seqlens_q) {
        nq = c->seqlens_q[b];
        if (nq < 0 || nq > c->seq_q)
            return sp_set_error(SPAT_EINVAL, "seqlens_q[%lld] = %lld: must be in 0..seq_q (%lld)",
                                (long long)b, (long long)nq, (long long)c->seq_q);
    }
    if (c->seqlens_k) {
        nk = c->seqlens_k[b];
        if (nk < 0 || nk > c->seq_k)
            return sp_set_error(SPAT_EINVAL, "seqlens_k[%lld] = %lld: must be in 0..seq_k (%lld)",
                                (long long)b, (long long)nk, (long long)c->seq_k);
    }
    char name[64];
    if (c->q_offsets) {
        off = c->q_offsets[b];
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

static int check_lengths(const sp_call *c)
{
    bool per_batch = c->seqlens_q || c->seqlens_k || c->q_offsets;
    int64_t nb = per_batch ? c->batch : 1;
    for (int64_t b = 0; b < nb; b++) {
        int rc = check_batch(c, b);
        if (rc != SPAT_OK)
            return rc;
    }
    return SPAT_OK;
}

/* ----------------------------------------------------------------- layouts */

static const char *const dim_names[4] = {"batches", "heads", "rows", "elements of a row"};

static void describe(const sp_targ *t, char *buf, size_t cap)
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
static int extent(sp_targ *t)
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
static int check_alias(const sp_targ *t)
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

static int check_disjoint(const sp_targ *out, const sp_targ *other)
{
    if (out->lo < other->hi && other->lo < out->hi)
        return sp_set_error(SPAT_EOVERLAP,
                            "%s (bytes %p..%p) overlaps %s (bytes %p..%p): %s",
                            out->name, (void *)out->lo, (void *)out->hi, other->name,
                            (void *)other->lo, (void *)other->hi,
                            other->output ? "outputs must not share memory with each other"
                                          : "the output must not share memory with an input");
    return SPAT_OK;
}

static int check_layouts(sp_call *c)
{
    int rc;
    for (int i = 0; i < c->nt; i++)
        if (c->t[i].ptr && (rc = extent(&c->t[i])) != SPAT_OK)
            return rc;
    for (int i = 0; i < c->nt; i++)
        if (c->t[i].ptr && c->t[i].output && (rc = check_alias(&c->t[i])) != SPAT_OK)
            return rc;
    /* Each output against every other tensor, in table order; a pair of
     * outputs is checked once, under the first of the two. */
    for (int i = 0; i < c->nt; i++) {
        if (!c->t[i].ptr || !c->t[i].output)
            continue;
        for (int j = 0; j < c->nt; j++)
            if (j != i && c->t[j].ptr && !(c->t[j].output && j < i) &&
                (rc = check_disjoint(&c->t[i], &c->t[j])) != SPAT_OK)
                return rc;
    }
    return SPAT_OK;
}

/* -------------------------------------------------------------------- all */

int sp_call_check(const spat_kernel *k, sp_call *c, int *hd_index, const sp_backend_slot **slot)
{
    int rc;
    *slot = NULL;
    if ((rc = check_enums(c)) || (rc = check_shape(c)) || (rc = check_heads(k, c)) ||
        (rc = check_head_dim(k, c, hd_index)) || (rc = check_null_pointers(c)) ||
        (rc = pick_backend(k, c, *hd_index, slot)) || (rc = check_scalars(c)) ||
        (rc = check_devices(c)) || (rc = check_lengths(c)) || (rc = check_layouts(c)))
        return rc;
    return SPAT_OK;
}
