/* What a pattern costs and what it connects at one length (`spatc
 * --emit=stats`): pairs per head, densities, forward FLOPs, and how many
 * stacked layers until every position can reach every other. */
#ifndef SPAT_STATS_H
#define SPAT_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "plan.h"

typedef struct sp_stats {
    int64_t n, heads, head_dim, block;
    int64_t *head_pairs; /* [heads], malloc'd */
    int64_t pairs;       /* over all heads */
    int64_t blocks;      /* B x B blocks holding a pair, over all heads */
    double density;       /* pairs / (heads n^2) */
    double block_density; /* blocks / (heads ceil(n/B)^2) */
    double flops;         /* forward: 4 d pairs */
    /* Layers until every allowed pair (i, j) -- j <= i for causal heads only
     * -- is joined by a path, reading a layer as the union of its heads and
     * keeping each position's own state (the residual stream); -1: never;
     * -2: not asked for; -4: not computed, n above SP_LAYERS_EXHAUSTIVE_MAX
     * for a pattern that needs exhaustive propagation (reach.c); -5: not
     * computed, over SP_LAYERS_MAX_WORK. */
    int64_t layers;
} sp_stats;

/* Counts pairs (exactly, without visiting every pair of wide components)
 * and, when want_layers, the layers. Returns 0, or -1 when out of memory. */
int sp_stats_compute(const sp_plan *p, int64_t n, int64_t heads, int64_t head_dim, bool want_layers,
                     sp_stats *st);
void sp_stats_free(sp_stats *st);
/* One JSON object (no trailing newline). */
void sp_stats_json(const sp_stats *st, const char *name, FILE *f);

/* Pairs of one view (one head at one length), counted per row from the
 * component ranges; *blocks gets the number of B x B blocks holding a pair.
 * Returns -1 when out of memory. */
int64_t sp_count_pairs(sp_view *v, int64_t *blocks);

/* Patterns whose layers the plan's structure does not give (reach.c) are
 * propagated exhaustively, only up to this length and this many words of
 * work (about a second). */
#define SP_LAYERS_EXHAUSTIVE_MAX 4096
#define SP_LAYERS_MAX_WORK 5e8

/* Layers to connect (see sp_stats.layers) for heads 0..heads-1 at length n;
 * -3 when out of memory. */
int64_t sp_layers_to_connect(const sp_plan *p, int64_t n, int64_t heads);
/* The same by exhaustive propagation from every source, without a limit:
 * the check of sp_layers_to_connect in the tests. */
int64_t sp_layers_exhaustive(const sp_plan *p, int64_t n, int64_t heads);

#endif
