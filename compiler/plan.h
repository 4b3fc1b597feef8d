/* The kernel plan (DESIGN.md §4): for each head, an ordered list of
 * components, each an iteration space that a tile kernel runs densely.
 * Components may overlap as sets; the owner rule makes them disjoint: a pair
 * belongs to the first component (in plan order) that contains it, and a
 * later component skips the pairs of every earlier component named in its
 * `excl` mask. Every component is cut by the head's causal constraint.
 * Partial results of the components of a row are merged through their LSEs.
 *
 * The plan is pure data, independent of the sequence length: position sets
 * stay symbolic (`last 16`) and are resolved by a view (sp_view) for a given
 * length L and head. */
#ifndef SPAT_PLAN_H
#define SPAT_PLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "ir.h"

typedef enum sp_comp_kind {
    SP_C_ROWS,      /* i in rows: every key */
    SP_C_COLS,      /* j in cols (spans, and classes a..b mod s): a gathered key set */
    SP_C_DENSE,     /* every pair */
    SP_C_BAND,      /* lo <= j-i <= hi and (j-i) mod dil = 0 */
    SP_C_BLOCKBAND, /* lo <= j/B - i/B <= hi */
    SP_C_SEGMENT,   /* i/s = j/s */
    SP_C_RESIDUE,   /* (i-j) mod s = 0 */
    SP_C_OFFSETS,   /* j-i in off[0..n-1] (sorted ascending) */
    SP_C_RANDOM,    /* key blocks drawn per query block (rng.h) */
} sp_comp_kind;

#define SP_MAX_COMPS 16

typedef struct sp_period {
    int64_t a, b, s; /* position mod s in [a, b] */
} sp_period;

/* A set of positions: the items of `spans` and the periodic classes. */
typedef struct sp_posset {
    sp_set spans;
    sp_period *per;
    int nper;
} sp_posset;

typedef struct sp_comp {
    sp_comp_kind kind;
    uint32_t excl; /* bit k set: pairs also in component k belong to k */
    union {
        sp_posset rows; /* periods only in a transposed plan (the transpose of cols) */
        sp_posset cols;
        struct { int64_t lo, hi, dil; } band;
        struct { int64_t lo, hi; } bband;
        int64_t segment;
        int64_t residue;
        struct { int64_t *off; int n; } offsets;
        struct { int64_t r; uint64_t seed; } random;
    } u;
} sp_comp;

/* The components of one class of heads (heads with the same rules). */
typedef struct sp_headplan {
    bool causal;     /* only j <= i */
    bool anticausal; /* only j >= i: the causal cut of a transposed plan (comp.h) */
    int ncomps;
    sp_comp comps[SP_MAX_COMPS];
} sp_headplan;

typedef struct sp_plan {
    const char *name;
    int64_t block;
    int64_t nheads; /* 0: any number of heads, all of class 0 */
    int nclasses;
    sp_headplan *classes;
    int *head_class; /* [nheads] when nheads > 0 */
    const struct sp_plan *transposed_of; /* the plan this one transposes (comp.h), or NULL */
} sp_plan;

/* Builds the plan of one pattern; errors (a pattern too complex for
 * SP_MAX_COMPS components, out of memory) go to `d`. Returns 0 or -1. */
int sp_plan_build(const sp_pattern *p, sp_arena *a, sp_diag *d, sp_plan **out);

/* The class of query head h (h < nheads when nheads > 0). */
const sp_headplan *sp_plan_head(const sp_plan *p, int64_t h);

/* Readable text of the plan (`spatc --emit=ir`). */
void sp_plan_print(const sp_plan *p, FILE *f);
/* FNV-1a hash of the printed plan: identifies a plan across processes. */
uint64_t sp_plan_hash(const sp_plan *p);
const char *sp_comp_kind_name(sp_comp_kind k);

/* ------------------------------------------------------------------------
 * Views: the plan of one head at one sequence length L, with position sets
 * resolved. A view is cheap to make and owns malloc'd memory (sp_view_free).
 * Positions are absolute: 0 <= i, j < L. */

typedef struct sp_span {
    int64_t lo, hi; /* inclusive */
} sp_span;

/* A strided key range: start, start+step, ..., up to and including <= end. */
typedef struct sp_krange {
    int64_t start, end, step;
} sp_krange;

typedef struct sp_cview {
    sp_span *spans; /* ROWS / COLS, sorted, disjoint, clipped to 0..L-1 */
    int nspans;
} sp_cview;

typedef struct sp_view {
    const sp_plan *plan;
    const sp_headplan *hp;
    int64_t head, L, B, nblocks; /* nblocks = ceil(L / B) */
    sp_cview c[SP_MAX_COMPS];
    /* Random blocks of one query block, recomputed when qb changes. */
    int64_t rnd_qb;
    int64_t *rnd_kb;
    int rnd_n;
    int64_t *rnd_scratch;
    /* A transposed plan's random component: the query blocks that drew key
     * block kb are inv[inv_start[kb] .. inv_start[kb + 1]), ascending. */
    int64_t *inv_start, *inv;
} sp_view;

int sp_view_init(sp_view *v, const sp_plan *p, int64_t head, int64_t L);
void sp_view_free(sp_view *v);

/* Does component c contain (i, j)? Ignores causal and ownership. */
bool sp_view_has(sp_view *v, int c, int64_t i, int64_t j);
/* Does component c own (i, j): contains it, the class's cut (causal or
 * anticausal) allows it, and no excluded earlier component contains it? */
bool sp_view_owns(sp_view *v, int c, int64_t i, int64_t j);
/* The keys of row i that component c contains (before ownership), as
 * strided ranges in ascending order, clipped to 0..L-1 and by the cut.
 * Writes up to cap ranges and returns how many there are (call again with a
 * larger buffer when the result exceeds cap). */
int sp_view_ranges(sp_view *v, int c, int64_t i, sp_krange *out, int cap);
/* Calls fn for every pair of row i in plan order: component by component,
 * keys ascending within each; each attended pair exactly once. Returns the
 * number of pairs, or -1 when memory runs out. */
typedef void (*sp_pair_fn)(void *arg, int comp, int64_t i, int64_t j);
int64_t sp_view_row(sp_view *v, int64_t i, sp_pair_fn fn, void *arg);
/* Does any pair of block (qb, kb), taken over whole blocks of B positions
 * (not cut at L), belong to component c after the cut? The random rule's
 * candidates are the blocks that no other component touches. */
bool sp_view_touches_block(sp_view *v, int c, int64_t qb, int64_t kb);
/* Random key blocks of query block qb for component c (SP_C_RANDOM), sorted
 * ascending; valid until the next call. Returns the count, or -1 on OOM.
 * In a view of a transposed plan: the query blocks that drew block qb. */
int sp_view_random_blocks(sp_view *v, int c, int64_t qb, const int64_t **kb);

#endif
