/* Deliberately naive: every rule is evaluated pair by pair from its
 * definition, and random blocks are drawn by testing every pair of every
 * block against the other rules. The generator is rewritten here from the
 * spat(5) text rather than taken from compiler/rng.h, so a change to either
 * shows up as a test failure. */
#include "brute.h"

#include <stdlib.h>
#include <string.h>

static int64_t val(int64_t v, bool from_end, int64_t L) { return from_end ? L - v : v; }

static bool in_set(const sp_set *s, int64_t x, int64_t L)
{
    if (x < 0 || x >= L)
        return false;
    for (int k = 0; k < s->n; k++) {
        int64_t lo = val(s->items[k].lo, s->items[k].lo_end, L);
        int64_t hi = val(s->items[k].hi, s->items[k].hi_end, L);
        if (lo <= x && x <= hi)
            return true;
    }
    return false;
}

static int64_t imod(int64_t a, int64_t m) { return ((a % m) + m) % m; }

/* Does rule r (not random) contain (i, j)? */
static bool rule_has(const sp_rule *r, int64_t B, int64_t L, int64_t i, int64_t j)
{
    int64_t d = j - i;
    switch (r->kind) {
    case SP_R_WINDOW:
        return r->u.window.lo <= d && d <= r->u.window.hi && imod(d, r->u.window.dil) == 0;
    case SP_R_WINDOW_EXP:
        if (d == 0)
            return true;
        for (int64_t g = 1; g <= r->u.wexp.w; g *= 2)
            if (d == g || d == -g)
                return true;
        return false;
    case SP_R_BLOCK_WINDOW:
        return r->u.bwindow.lo <= j / B - i / B && j / B - i / B <= r->u.bwindow.hi;
    case SP_R_STRIDE:
        return imod(i - j, r->u.stride.s) == 0;
    case SP_R_SEGMENT:
        return i / r->u.segment.s == j / r->u.segment.s;
    case SP_R_COLUMNS:
        return r->u.columns.a <= imod(j, r->u.columns.s) && imod(j, r->u.columns.s) <= r->u.columns.b;
    case SP_R_GLOBAL:
        return in_set(&r->u.set, i, L) || in_set(&r->u.set, j, L);
    case SP_R_GLOBAL_ROWS:
        return in_set(&r->u.set, i, L);
    case SP_R_GLOBAL_COLS:
        return in_set(&r->u.set, j, L);
    case SP_R_DENSE:
        return true;
    case SP_R_RANDOM:
        return false;
    }
    return false;
}

typedef struct head_rules {
    const sp_rule *r[512];
    int n;
    bool causal;
    const sp_rule *random;
} head_rules;

static void collect(const sp_pattern *p, int64_t head, head_rules *h)
{
    memset(h, 0, sizeof *h);
    h->causal = p->causal;
    for (int k = 0; k < p->nrules; k++)
        h->r[h->n++] = &p->rules[k];
    for (int g = 0; g < p->ngroups; g++)
        if (p->groups[g].h0 <= head && head <= p->groups[g].h1) {
            h->causal |= p->groups[g].causal;
            for (int k = 0; k < p->groups[g].nrules; k++)
                h->r[h->n++] = &p->groups[g].rules[k];
        }
    for (int k = 0; k < h->n; k++)
        if (h->r[k]->kind == SP_R_RANDOM)
            h->random = h->r[k];
}

static bool others_have(const head_rules *h, int64_t B, int64_t L, int64_t i, int64_t j)
{
    if (h->causal && j > i)
        return false;
    for (int k = 0; k < h->n; k++)
        if (rule_has(h->r[k], B, L, i, j))
            return true;
    return false;
}

/* The generator of spat(5), "Random blocks". */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Fills drawn[kb] = 1 for the key blocks query block qb draws. */
static void draw(const head_rules *h, int64_t B, int64_t L, int64_t head, int64_t qb, unsigned char *drawn)
{
    int64_t nb = (L + B - 1) / B, last = h->causal && qb < nb - 1 ? qb : nb - 1;
    int64_t *cand = malloc(sizeof *cand * (size_t)(nb + 1)), c = 0;
    for (int64_t kb = 0; kb <= last; kb++) {
        bool touched = false;
        /* Whole blocks, positions at and past L included. */
        for (int64_t i = qb * B; i < qb * B + B && !touched; i++)
            for (int64_t j = kb * B; j < kb * B + B && !touched; j++)
                touched = others_have(h, B, L, i, j);
        if (!touched)
            cand[c++] = kb;
    }
    memset(drawn, 0, (size_t)nb);
    int64_t r = h->random->u.random.r;
    if (c <= r) {
        for (int64_t k = 0; k < c; k++)
            drawn[cand[k]] = 1;
    } else {
        uint64_t key = mix(mix(mix(h->random->u.random.seed) ^ (uint64_t)head) ^ (uint64_t)qb);
        unsigned char *taken = calloc((size_t)c, 1);
        for (int64_t m = c - r; m < c; m++) {
            uint64_t t = (uint64_t)(m - (c - r));
            uint64_t x = ((mix(key + t) >> 32) * (uint64_t)(m + 1)) >> 32;
            if (taken[x])
                x = (uint64_t)m;
            taken[x] = 1;
        }
        for (int64_t k = 0; k < c; k++)
            if (taken[k])
                drawn[cand[k]] = 1;
        free(taken);
    }
    free(cand);
}

void brute_mask(const sp_pattern *p, int64_t head, int64_t L, unsigned char *mask)
{
    head_rules h;
    collect(p, head, &h);
    const int64_t B = p->block, nb = (L + B - 1) / B;
    unsigned char *drawn = malloc((size_t)nb + 1);
    for (int64_t i = 0; i < L; i++) {
        if (h.random && (i % B == 0))
            draw(&h, B, L, head, i / B, drawn);
        for (int64_t j = 0; j < L; j++) {
            bool a = others_have(&h, B, L, i, j);
            if (!a && h.random && !(h.causal && j > i))
                a = drawn[j / B];
            mask[i * L + j] = a;
        }
    }
    free(drawn);
}

bool brute_attends(const sp_pattern *p, int64_t head, int64_t L, int64_t i, int64_t j)
{
    head_rules h;
    collect(p, head, &h);
    if (others_have(&h, p->block, L, i, j))
        return true;
    if (!h.random || (h.causal && j > i))
        return false;
    unsigned char *drawn = malloc((size_t)((L + p->block - 1) / p->block) + 1);
    draw(&h, p->block, L, head, i / p->block, drawn);
    bool a = drawn[j / p->block];
    free(drawn);
    return a;
}
