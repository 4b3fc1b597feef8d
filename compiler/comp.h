/* What each kind of plan component means, written once. Every consumer of
 * the plan (the views, the planner's overlap test, the CPU runtime and both
 * code generators) asks here which pass a component runs in, which pairs
 * it holds and how it reads backwards; none re-derives a kind's meaning.
 *
 * Diagonal kinds. Six of the nine kinds hold the pairs whose term
 *     t = floor(j / q) - floor(i / q)
 * lies in a set T = [lo, hi] ∩ mZ (∩ an explicit list): a band is t = j - i
 * (q = 1) in [lo, hi] by its dilation, a residue class t in mZ, a segment
 * t = 0 with q = s, a block band t in [lo, hi] with q = B, an offset list
 * t in its list, dense every t. This one form (sp_dform) gives each of
 * them its membership test, the keys of a row, the pairs of a box of rows
 * and keys, and its transpose: swapping i and j negates t, so T becomes -T.
 *
 * The other kinds hold position sets (rows: i in S, cols: j in S, the
 * transpose of one is the other) or random blocks drawn from the seed (the
 * transpose lists, for a key block, the query blocks that drew it). */
#ifndef SPAT_COMP_H
#define SPAT_COMP_H

#include <stdbool.h>
#include <stdint.h>

#include "plan.h"

/* Stands for an unbounded end of T: far beyond any offset of positions
 * (which are below SP_MAX_VALUE), and safe to add to one. */
#define SP_DFORM_INF (4 * SP_MAX_VALUE)

typedef struct sp_dform {
    int64_t q;            /* >= 1; t = j - i when 1 */
    int64_t lo, hi;       /* T's bounds, inclusive (+-SP_DFORM_INF: none) */
    int64_t m;            /* >= 1: t = 0 mod m; q > 1 implies m = 1 */
    const int64_t *list;  /* when not NULL: T is exactly these, ascending */
    int nlist;
} sp_dform;

/* The diagonal form of c (block size B), or false for rows, cols, random. */
bool sp_comp_dform(const sp_comp *c, int64_t B, sp_dform *f);
/* Is t in T? */
bool sp_dform_has_t(const sp_dform *f, int64_t t);
/* Is (i, j) a pair of the form (no cut, no ownership)? i, j >= 0. */
bool sp_dform_has(const sp_dform *f, int64_t i, int64_t j);
/* The values of t over the box of rows [i0, i1] and keys [j0, j1]
 * (non-negative, non-empty): every value in [*tlo, *thi] is taken. */
void sp_dform_box(const sp_dform *f, int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t *tlo,
                  int64_t *thi);
/* Does T hold a value of [tlo, thi]? */
bool sp_dform_meets(const sp_dform *f, int64_t tlo, int64_t thi);
/* Offsets j - i that the form's pairs can have, as [*lo, *hi] by *m (a
 * superset when q > 1: every offset of the blocks or segments in T). */
void sp_dform_offsets(const sp_dform *f, int64_t *lo, int64_t *hi, int64_t *m);

/* The largest random block count R of any component of the plan: the
 * stride of the CPU code's table of drawn blocks (sp_cpu_info.rnd_cap). */
int64_t sp_plan_max_random(const sp_plan *p);

/* The pass a component runs in (forward and backward alike). */
typedef enum sp_pass {
    SP_PASS_DIRECT, /* contiguous tiles of rows, with the class's other direct components */
    SP_PASS_REMAP,  /* the rows of one residue class against keys of the same class, as a
                     * dense band: dilated bands and residues */
    SP_PASS_ROWS,   /* whole rows of a position set, split over keys: global rows */
} sp_pass;

sp_pass sp_comp_pass(const sp_comp *c);
/* The row step of a remapped component (its dilation or stride); 1 else. */
int64_t sp_comp_step(const sp_comp *c);

/* Lowering: the plan as the table of passes that a backend runs, class by
 * class in plan order: the direct pass (when a component of the class runs
 * in it), each remapped component, then the global rows. A pass leaves a
 * partial result over its rows, which the direction combines: the forward
 * merges partial softmaxes by their LSEs, the backward sums the gradients
 * into dQ (walking the plan) or into dK and dV (walking its transpose). */
typedef enum sp_direction {
    SP_DIR_FORWARD, /* O and LSE: merge by LSE */
    SP_DIR_DQ,      /* dQ, row by row of the plan: sum */
    SP_DIR_DKDV,    /* dK and dV, key by key of the transposed plan: sum */
} sp_direction;

typedef enum sp_combine { SP_COMBINE_LSE, SP_COMBINE_SUM } sp_combine;

typedef struct sp_passdef {
    sp_pass kind;
    int cls;
    int comp;     /* REMAP and ROWS: the component; DIRECT: -1 (every direct one) */
    int64_t step; /* REMAP: the row step; else 1 */
    sp_combine combine;
} sp_passdef;

typedef struct sp_lowered {
    const sp_plan *plan;
    sp_direction dir;
    int npasses;
    sp_passdef *pass;
} sp_lowered;

/* Lowers p for direction dir (SP_DIR_DKDV takes a transposed plan, the
 * others a plan) into arena a. Returns 0, or -1 when memory runs out. */
int sp_plan_lower(const sp_plan *p, sp_direction dir, sp_arena *a, sp_lowered **out);
/* The index of the pass (kind, cls, comp) in the table, or -1; comp is
 * ignored for DIRECT. */
int sp_lowered_find(const sp_lowered *l, sp_pass kind, int cls, int comp);

/* The transposed plan: the pair (i, j) of p is the pair (j, i) of *out, so
 * that a backward pass walks, for each key, the query rows that attend it,
 * under the same owner rule (same component order, same exclusions). The
 * causal cut j <= i becomes j >= i (sp_headplan.anticausal). A transposed
 * plan keeps p as `transposed_of`, whose random draws it inverts. Lives in
 * arena a. Returns 0, or -1 when memory runs out. */
int sp_plan_transpose(const sp_plan *p, sp_arena *a, sp_plan **out);

/* Checks the plan's internal invariants (every class: component count
 * within SP_MAX_COMPS, excl naming earlier components only, rows first
 * and unexcluded, offsets sorted, distinct and non-empty, positive
 * dilations, steps, segments and periods, a random rule's count positive,
 * no anticausal cut outside a transposed plan, a head map into the
 * classes). Returns NULL when it holds, else a static description of the
 * first violation. Tests run it on every plan; a violation is a compiler
 * bug, never a user error. */
const char *sp_plan_verify(const sp_plan *p);

#endif
