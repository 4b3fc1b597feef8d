/* Pattern IR: what sema makes of a .spat file. Every length is in tokens
 * (sema has multiplied `blocks` units by the block size) except the block
 * window, which compares block indices. Meaning of each rule: DESIGN.md §2
 * and man/spat.5; the plan (plan.h) is built from this and nothing else. */
#ifndef SPAT_IR_H
#define SPAT_IR_H

#include <stdbool.h>
#include <stdint.h>

#include "diag.h"

/* One item of a position set: the inclusive range lo..hi, where an end marked
 * `from_end` counts back from the sequence length L (value = L - v), so that
 * `last 16` is {lo = 16, lo_end, hi = 1, hi_end} = L-16 .. L-1. Resolution
 * against L clips to 0..L-1. */
typedef struct sp_setitem {
    int64_t lo, hi;
    bool lo_end, hi_end;
} sp_setitem;

typedef struct sp_set {
    sp_setitem *items;
    int n;
} sp_set;

typedef enum sp_rule_kind {
    SP_R_WINDOW,       /* lo <= j-i <= hi and (j-i) mod dil = 0 */
    SP_R_WINDOW_EXP,   /* j-i in {0} U {+-2^k : 2^k <= w} */
    SP_R_BLOCK_WINDOW, /* lo <= j/B - i/B <= hi (block indices) */
    SP_R_STRIDE,       /* (i-j) mod s = 0 */
    SP_R_SEGMENT,      /* i/s = j/s */
    SP_R_COLUMNS,      /* (j mod s) in [a, b] */
    SP_R_GLOBAL,       /* i in set or j in set */
    SP_R_GLOBAL_ROWS,  /* i in set */
    SP_R_GLOBAL_COLS,  /* j in set */
    SP_R_RANDOM,       /* r key blocks per query block, drawn from seed */
    SP_R_DENSE,        /* every pair */
} sp_rule_kind;

typedef struct sp_rule {
    sp_rule_kind kind;
    sp_loc loc;
    union {
        struct { int64_t lo, hi, dil; } window;
        struct { int64_t w; } wexp;
        struct { int64_t lo, hi; } bwindow;
        struct { int64_t s; } stride;
        struct { int64_t s; } segment;
        struct { int64_t a, b, s; } columns;
        sp_set set; /* GLOBAL, GLOBAL_ROWS, GLOBAL_COLS */
        struct { int64_t r; uint64_t seed; } random;
    } u;
} sp_rule;

/* `heads h0..h1 { ... }`: extra rules (and possibly `causal`) for those heads. */
typedef struct sp_group {
    int64_t h0, h1;
    sp_loc loc;
    bool causal;
    sp_rule *rules;
    int nrules;
} sp_group;

typedef struct sp_pattern {
    const char *name;
    sp_loc loc;
    int64_t block; /* B, default 64 */
    bool causal;   /* pattern-wide `causal;` */
    sp_rule *rules; /* rules outside any group: every head */
    int nrules;
    sp_group *groups; /* disjoint, sorted by h0 */
    int ngroups;
    /* 0 when the pattern has no groups (any head count); otherwise the number
     * of heads the pattern describes, highest head named + 1. Heads in no
     * group get only the pattern-wide rules. */
    int64_t nheads;
} sp_pattern;

typedef struct sp_program {
    sp_pattern *patterns;
    int npatterns;
} sp_program;

/* Largest value any length, position, seed-free count or head may take, so
 * that sums and products of two of them stay far inside int64. */
#define SP_MAX_VALUE ((int64_t)1 << 40)

#endif
