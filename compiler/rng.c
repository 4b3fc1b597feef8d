#include "rng.h"

#include <stdlib.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int sp_rng_choose(uint64_t key, int64_t c, int64_t r, int64_t *out)
{
    if (c <= 0 || r <= 0)
        return 0;
    if (c <= r) {
        for (int64_t x = 0; x < c; x++)
            out[x] = x;
        return (int)c;
    }
    /* r is small (a handful of blocks), so a linear membership test beats
     * any set structure. */
    int n = 0;
    for (int64_t m = c - r; m < c; m++) {
        int64_t x = sp_rng_below(key, (uint32_t)(m - (c - r)), (uint32_t)(m + 1));
        for (int k = 0; k < n; k++)
            if (out[k] == x) {
                x = m;
                break;
            }
        out[n++] = x;
    }
    qsort(out, (size_t)n, sizeof *out, cmp_i64);
    return n;
}
