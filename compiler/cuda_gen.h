/* Internals of the CUDA generator, shared by backend_cuda.c (the source's
 * frame: classes, environment, dispatch, kernels) and cuda_comp.c (what
 * each component kind contributes: its tests and its schedule step). */
#ifndef SPAT_CUDA_GEN_H
#define SPAT_CUDA_GEN_H

#include <stdio.h>

#include "backend_cuda.h"
#include "plan.h"

typedef struct cuda_gen {
    FILE *f;
    const sp_plan *p;
    int ncls;
    int *base;           /* [ncls]: global id of each class's component 0 */
    sp_cuda_class *cc;   /* [ncls] */
} cuda_gen;

/* Global id of component c of class cls. */
static inline int cg_gid(const cuda_gen *g, int cls, int c) { return g->base[cls] + c; }

static inline const sp_comp *cg_comp(const cuda_gen *g, int cls, int c)
{
    return &g->p->classes[cls].comps[c];
}

/* Does component c keep an environment set (resolved `global` items)? */
bool cg_has_set(const sp_comp *c);
/* Number of sub-runs a gathered-columns component is enumerated in: its
 * spans, then each period. */
int cg_cols_subs(const sp_comp *c);

/* Expressions (C++ text, no trailing newline) for component c of class cls:
 *  has:   does it contain the pair (i, j)?
 *  meets: may it hold a pair of the box rows [i0, i1] x keys [j0, j1]?
 *         (conservative: true when unsure)
 *  touch: does it touch the whole block pair (qb, kb), exactly as
 *         sp_view_touches_block? In scope: qb kb i0 i1 j0 j1 dlo dhi L. */
void cg_has(cuda_gen *g, int cls, int c, const char *i, const char *j);
void cg_meets(cuda_gen *g, int cls, int c, const char *i0, const char *i1, const char *j0,
              const char *j1);
void cg_touch(cuda_gen *g, int cls, int c);

/* Helper functions a component needs at namespace scope (offset lists). */
void cg_helpers(cuda_gen *g, int cls, int c);
/* The direct-pass step function of a component: d<gid>. */
void cg_direct_step(cuda_gen *g, int cls, int c);
/* The remap-pass step function: r<gid>. */
void cg_remap_step(cuda_gen *g, int cls, int c);
/* The gather cases of a COLS component (inside gather()). */
void cg_gather_cases(cuda_gen *g, int cls, int c);
/* Statements of own() for component c: return false when (i, j) is not
 * owned. */
void cg_own_body(cuda_gen *g, int cls, int c);
/* The case of pattern::band for component c: its own test as a band of
 * j - i, where it is one (bands, and the components own tests nothing of). */
void cg_band_case(cuda_gen *g, int cls, int c);
/* v.xm = ... for the box of the visit v (rows v.ilo..v.ihi, keys v.j0..v.j1),
 * the rows first trimmed off excluded global rows; may_end: the step
 * function returns false when no row is left. */
void cg_xm(cuda_gen *g, int cls, int c, const char *indent, bool may_end);
/* The plan's text for component c, for comments. */
void cg_describe(cuda_gen *g, int cls, int c);

/* A 64-bit literal. */
void cg_i64(cuda_gen *g, int64_t v);

#endif
