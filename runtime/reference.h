/* What the reference backend's forward (reference.c) and backward
 * (reference_bwd.c) share: element loads and stores in every dtype, row
 * addresses, the enumeration of the keys a component owns in a row, and the
 * thread team that runs units of work from a shared counter. */
#ifndef SPAT_REFERENCE_H
#define SPAT_REFERENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* Loads n elements at stride s (elements) into out; stores them back,
 * rounding to nearest even. */
void sp_ref_load(spat_dtype t, const char *p, int64_t s, int64_t n, double *out);
void sp_ref_store(spat_dtype t, char *p, int64_t s, int64_t n, const double *in);

/* Where (b, h, row) of a 4-d tensor starts. */
static inline const char *sp_ref_row(const void *base, const int64_t *st, size_t es, int64_t b,
                                     int64_t h, int64_t r)
{
    return (const char *)base + (b * st[0] + h * st[1] + r * st[2]) * (int64_t)es;
}

static inline double sp_ref_dot(const double *x, const double *y, int64_t n)
{
    double z = 0;
    for (int64_t i = 0; i < n; i++)
        z += x[i] * y[i];
    return z;
}

/* ------------------------------------------------------------------ keys */

/* A growable buffer for a row's candidate key ranges (one per thread). */
typedef struct sp_ref_ranges {
    sp_krange *rg;
    int cap;
} sp_ref_ranges;

int sp_ref_ranges_init(sp_ref_ranges *r);
void sp_ref_ranges_free(sp_ref_ranges *r);

/* The keys that component comp owns in row i (position i), ascending: its
 * candidate ranges from sp_view_ranges, filtered by the owner rule
 * (sp_view_owns) when the component excludes earlier ones. So each attended
 * pair of the row comes out of exactly one component. */
typedef struct sp_ref_keys {
    sp_view *v;
    const sp_krange *rg;
    int n, g, comp;
    int64_t i, j, end, step;
    bool filter;
} sp_ref_keys;

/* Starts the enumeration; -1 when out of memory. The ranges live in buf
 * until its next use. */
int sp_ref_keys_begin(sp_ref_keys *it, sp_view *v, sp_ref_ranges *buf, int comp, int64_t i);

/* The next key into *j; false when there is none left. */
static inline bool sp_ref_keys_next(sp_ref_keys *it, int64_t *j)
{
    for (;;) {
        if (it->j > it->end) {
            if (++it->g >= it->n)
                return false;
            const sp_krange r = it->rg[it->g];
            it->j = r.start;
            it->end = r.end;
            /* A step <= 0 can only describe a single key; never loop on it. */
            it->step = r.step > 0 ? r.step : r.end - r.start + 1;
            continue;
        }
        int64_t x = it->j;
        it->j += it->step;
        if (it->filter && !sp_view_owns(it->v, it->comp, it->i, x))
            continue;
        *j = x;
        return true;
    }
}

/* ------------------------------------------------------------------ team */

/* Units 0..nwork-1, run by up to `threads` threads (the caller's among
 * them) that take them from a shared counter; each thread has a scratch of
 * its own. */
typedef struct sp_ref_team {
    int64_t nwork;
    int threads;
    void *ctx;
    void *(*scratch_new)(void *ctx); /* NULL when out of memory */
    void (*scratch_free)(void *scratch);
    int (*unit)(void *ctx, void *scratch, int64_t w); /* 0, or -1 out of memory */
} sp_ref_team;

/* 0 when every unit ran; 1 when the caller's scratch could not be made
 * (nothing ran); -1 when a unit failed (the others may have run). A helper
 * thread without memory, or that cannot start, just does not help. */
int sp_ref_run(const sp_ref_team *t);

#endif
