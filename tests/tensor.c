#include "tensor.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------ seed and streams */

uint64_t test_seed;
static uint64_t rng_state;

void test_seed_init(const char *prog)
{
    const char *s = getenv("SPAT_TEST_SEED");
    if (s && *s) {
        test_seed = strtoull(s, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        test_seed = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid() << 40;
    }
    printf("%s: seed %" PRIu64 " (SPAT_TEST_SEED=%" PRIu64 " repeats this run)\n", prog, test_seed,
           test_seed);
}

void test_reseed(uint64_t salt) { rng_state = test_seed * 0x2545f4914f6cdd1dull + salt; }

void test_rng_set(uint64_t state) { rng_state = state; }

uint64_t test_rnd64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double test_uniform(double lo, double hi) { return lo + (hi - lo) * (double)(test_rnd64() >> 11) * 0x1p-53; }

/* ---------------------------------------------------------------- values */

double test_f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, f = h & 1023;
    double v = e == 0 ? f * pow(2, -24) : e == 31 ? (f ? NAN : INFINITY) : (1024 + f) * pow(2, e - 25);
    return h & 0x8000 ? -v : v;
}

double test_bf16_value(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

double test_get(const void *buf, spat_dtype dt, int64_t i)
{
    if (dt == SPAT_F32) {
        float f;
        memcpy(&f, (const unsigned char *)buf + i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, (const unsigned char *)buf + i * 2, 2);
    return dt == SPAT_F16 ? test_f16_value(h) : test_bf16_value(h);
}

void test_put(void *buf, spat_dtype dt, int64_t i, double v)
{
    if (dt == SPAT_F32) {
        float f = (float)v;
        memcpy((unsigned char *)buf + i * 4, &f, 4);
    } else {
        uint16_t h = dt == SPAT_F16 ? sp_f16_from_double(v) : sp_bf16_from_double(v);
        memcpy((unsigned char *)buf + i * 2, &h, 2);
    }
}

/* --------------------------------------------------------------- tensors */

const layout BHSD = {{0, 1, 2, 3}, 0, 1, 0};
const layout BSHD_PAD = {{0, 2, 1, 3}, 3, 1, 0};
const layout ODD = {{2, 0, 3, 1}, 1, 2, 1u << 2};
const layout ODD2 = {{1, 3, 0, 2}, 2, 1, 1u << 0 | 1u << 3};

static void tensor_alloc(tensor *t)
{
    t->buf = malloc((size_t)t->nelem * t->es);
    if (!t->buf) {
        fprintf(stderr, "out of memory for a tensor of %" PRId64 " elements\n", t->nelem);
        abort();
    }
}

void tensor_make(tensor *t, int nd, const int64_t *n, size_t es, layout l)
{
    memset(t, 0, sizeof *t);
    t->nd = nd;
    t->es = es;
    int64_t s = l.step;
    int perm[4], m = 0;
    for (int k = 0; k < 4; k++)
        if (l.perm[k] < nd)
            perm[m++] = l.perm[k];
    for (int k = nd - 1; k >= 0; k--) {
        t->n[perm[k]] = n[perm[k]];
        t->s[perm[k]] = s;
        s = s * n[perm[k]] + l.pad;
    }
    int64_t lo = 0, hi = 0;
    for (int d = 0; d < nd; d++) {
        if (l.neg >> d & 1)
            t->s[d] = -t->s[d];
        int64_t span = t->s[d] * (t->n[d] - 1);
        if (span < 0)
            lo += span;
        else
            hi += span;
    }
    t->base = -lo;
    t->nelem = hi - lo + 1 + l.pad;
    tensor_alloc(t);
}

void tensor_make_like(tensor *t, const tensor *like)
{
    *t = *like;
    tensor_alloc(t);
}

void tensor_free(tensor *t) { free(t->buf); }

int64_t tensor_off(const tensor *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    return t->base + a * t->s[0] + b * t->s[1] + c * t->s[2] + (t->nd == 4 ? d * t->s[3] : 0);
}

void *tensor_ptr(const tensor *t) { return t->buf + t->base * (int64_t)t->es; }

double tensor_get(const tensor *t, spat_dtype dt, int64_t off) { return test_get(t->buf, dt, off); }

void tensor_fill(tensor *t, spat_dtype dt, double amp)
{
    memset(t->buf, 0xff, (size_t)t->nelem * t->es); /* NaN in every dtype */
    for (int64_t a = 0; a < t->n[0]; a++)
        for (int64_t b = 0; b < t->n[1]; b++)
            for (int64_t c = 0; c < t->n[2]; c++)
                for (int64_t d = 0; d < t->n[3]; d++)
                    test_put(t->buf, dt, tensor_off(t, a, b, c, d), test_uniform(-amp, amp));
}

void tensor_poison(tensor *t) { memset(t->buf, POISON, (size_t)t->nelem * t->es); }

int64_t tensor_written_outside(const tensor *t)
{
    unsigned char *el = calloc((size_t)t->nelem, 1);
    if (!el) {
        fprintf(stderr, "out of memory checking a tensor of %" PRId64 " elements\n", t->nelem);
        abort();
    }
    for (int64_t a = 0; a < t->n[0]; a++)
        for (int64_t b = 0; b < t->n[1]; b++)
            for (int64_t c = 0; c < t->n[2]; c++)
                for (int64_t d = 0; d < (t->nd == 4 ? t->n[3] : 1); d++)
                    el[tensor_off(t, a, b, c, d)] = 1;
    int64_t bad = -1;
    for (int64_t x = 0; x < t->nelem && bad < 0; x++)
        if (!el[x])
            for (size_t y = 0; y < t->es; y++)
                if (t->buf[x * (int64_t)t->es + (int64_t)y] != POISON)
                    bad = x;
    free(el);
    return bad;
}

/* ----------------------------------------------------------------- calls */

tcase tcase_base(int64_t heads, int64_t L, int64_t d)
{
    return (tcase){.B = 1, .Hq = heads, .Hkv = 1, .Nq = L, .Nk = L, .d = d, .dt = SPAT_F32,
                   .lq = BHSD, .lk = BHSD, .lv = BHSD, .lo = BHSD, .llse = BHSD};
}

void bufs_make(bufs *x, const tcase *c)
{
    size_t es = c->dt == SPAT_F32 ? 4 : 2;
    int64_t nq[4] = {c->B, c->Hq, c->Nq, c->d}, nk[4] = {c->B, c->Hkv, c->Nk, c->d};
    int64_t nl[4] = {c->B, c->Hq, c->Nq, 1};
    tensor_make(&x->q, 4, nq, es, c->lq);
    tensor_make(&x->k, 4, nk, es, c->lk);
    tensor_make(&x->v, 4, nk, es, c->lv);
    tensor_make(&x->o, 4, nq, es, c->lo);
    tensor_make(&x->lse, 3, nl, 4, c->llse);
    tensor_fill(&x->q, c->dt, 2.0);
    tensor_fill(&x->k, c->dt, 1.0);
    tensor_fill(&x->v, c->dt, 1.0);
    tensor_poison(&x->o);
    tensor_poison(&x->lse);
}

void bufs_free(bufs *x)
{
    tensor_free(&x->q);
    tensor_free(&x->k);
    tensor_free(&x->v);
    tensor_free(&x->o);
    tensor_free(&x->lse);
}

void args_from(spat_forward_args *a, const tcase *c, const bufs *x, spat_backend be)
{
    spat_forward_args_init(a, c->B, c->Hq, c->Hkv, c->Nq, c->Nk, c->d);
    a->dtype = c->dt;
    a->backend = be;
    a->q = tensor_ptr(&x->q);
    a->k = tensor_ptr(&x->k);
    a->v = tensor_ptr(&x->v);
    a->o = tensor_ptr(&x->o);
    a->lse = c->no_lse ? NULL : tensor_ptr(&x->lse);
    memcpy(a->q_stride, x->q.s, sizeof a->q_stride);
    memcpy(a->k_stride, x->k.s, sizeof a->k_stride);
    memcpy(a->v_stride, x->v.s, sizeof a->v_stride);
    memcpy(a->o_stride, x->o.s, sizeof a->o_stride);
    memcpy(a->lse_stride, x->lse.s, sizeof a->lse_stride);
    a->seqlens_q = c->seqlens_q;
    a->seqlens_k = c->seqlens_k;
    a->q_offsets = c->q_offsets;
    a->q_offset = c->q_offset;
    a->scale = c->scale;
    a->threads = c->threads;
}
