/* The counter-based generator behind `random R blocks seed S` (man/spat.5,
 * "Random blocks"). Every draw is a pure function of (seed, head, query
 * block, counter), so the plan, the reference, each backend and the mask dump
 * agree bit for bit and no table is ever stored. This header is the whole
 * specification in code, and its only copy: host C includes it, and the CUDA
 * engine (cuda_engine.cuh) says `#include "rng.h"`, where cuda_embed.sh
 * pastes this text, so that the kernels run these very functions. */
#ifndef SPAT_RNG_H
#define SPAT_RNG_H

#ifdef SP_HD
/* In the engine: SP_HD (host and device, cuda_engine.cuh) and the engine's
 * integer types, since NVRTC has no <stdint.h>. */
typedef i64 sp_rng_i64;
typedef u64 sp_rng_u64;
typedef u32 sp_rng_u32;
#else
/* In C: static inline functions over <stdint.h>'s types. */
#include <stdint.h>
#define SP_HD static inline
typedef int64_t sp_rng_i64;
typedef uint64_t sp_rng_u64;
typedef uint32_t sp_rng_u32;

/* Chooses r of the indices 0..c-1 without replacement (sp_rng_floyd), all
 * of them when c <= r, none when c or r is below 1. Writes the chosen
 * indices to out (room for min(r, c)) in ascending order and returns how
 * many. */
int sp_rng_choose(uint64_t key, int64_t c, int64_t r, int64_t *out);
#endif

/* SplitMix64's output function (Steele, Lea, Flood 2014). */
SP_HD sp_rng_u64 sp_mix64(sp_rng_u64 x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The stream key of one (seed, head, query block). */
SP_HD sp_rng_u64 sp_rng_key(sp_rng_u64 seed, sp_rng_u64 head, sp_rng_u64 qb)
{
    return sp_mix64(sp_mix64(sp_mix64(seed) ^ head) ^ qb);
}

/* Draw t of a stream, as an integer in [0, k): the top 32 bits of the t-th
 * output scaled by k (k < 2^32). */
SP_HD sp_rng_u32 sp_rng_below(sp_rng_u64 key, sp_rng_u32 t, sp_rng_u32 k)
{
    return (sp_rng_u32)(((sp_mix64(key + t) >> 32) * (sp_rng_u64)k) >> 32);
}

/* Chooses r of the indices 0..c-1 (c > r > 0) without replacement, by
 * Floyd's algorithm: for m = c-r .. c-1 (draw t = m-(c-r)), x = below(m+1);
 * take x unless it was taken already, then take m. Writes the r chosen
 * indices to out in ascending order. r is small (a handful of blocks), so
 * a linear membership test beats any set structure, and an insertion sort
 * sorts them. */
SP_HD void sp_rng_floyd(sp_rng_u64 key, sp_rng_i64 c, sp_rng_i64 r, sp_rng_i64 *out)
{
    int n = 0;
    for (sp_rng_i64 m = c - r; m < c; m++) {
        sp_rng_i64 x = sp_rng_below(key, (sp_rng_u32)(m - (c - r)), (sp_rng_u32)(m + 1));
        for (int k = 0; k < n; k++)
            if (out[k] == x) {
                x = m;
                break;
            }
        out[n++] = x;
    }
    for (int k = 1; k < n; k++)
        for (int p = k; p > 0 && out[p - 1] > out[p]; p--) {
            sp_rng_i64 t = out[p];
            out[p] = out[p - 1];
            out[p - 1] = t;
        }
}

#endif
