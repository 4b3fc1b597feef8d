#include "rng.h"

int sp_rng_choose(uint64_t key, int64_t c, int64_t r, int64_t *out)
{
    if (c <= 0 || r <= 0)
        return 0;
    if (c <= r) {
        for (int64_t x = 0; x < c; x++)
            out[x] = x;
        return (int)c;
    }
    sp_rng_floyd(key, c, r, out);
    return (int)r;
}
