/* The counter-based generator behind `random R blocks seed S` (man/spat.5,
 * "Random blocks"). Every draw is a pure function of (seed, head, query
 * block, counter), so the plan, the reference, each backend and the mask dump
 * agree bit for bit and no table is ever stored. This header is the whole
 * specification in code; the CUDA and LLVM backends emit the same steps. */
#ifndef SPAT_RNG_H
#define SPAT_RNG_H

#include <stdint.h>

/* SplitMix64's output function (Steele, Lea, Flood 2014). */
static inline uint64_t sp_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The stream key of one (seed, head, query block). */
static inline uint64_t sp_rng_key(uint64_t seed, uint64_t head, uint64_t qb)
{
    return sp_mix64(sp_mix64(sp_mix64(seed) ^ head) ^ qb);
}

/* Draw t of a stream, as an integer in [0, k): the top 32 bits of the t-th
 * output scaled by k (k < 2^32). */
static inline uint32_t sp_rng_below(uint64_t key, uint32_t t, uint32_t k)
{
    return (uint32_t)(((sp_mix64(key + t) >> 32) * (uint64_t)k) >> 32);
}

/* Chooses r of the indices 0..c-1 without replacement, by Floyd's algorithm:
 * for m = c-r .. c-1 (draw t = m-(c-r)), x = below(m+1); take x unless it
 * was taken already, then take m. When c <= r every index is taken. Writes
 * the chosen indices to out (room for min(r, c)) in ascending order and
 * returns how many. */
int sp_rng_choose(uint64_t key, int64_t c, int64_t r, int64_t *out);

#endif
