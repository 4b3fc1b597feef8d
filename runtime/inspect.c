/* What a kernel's pattern looks like, for bindings and notebooks: the
 * `spatc --emit=stats` JSON, the attended pairs as a byte matrix, and the
 * `spatc --emit=mask` PNG. Each reuses the compiler's own code (stats.c,
 * mask.c, the plan's views) through its top-level function, so spatc and
 * libspat never disagree. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mask.h"
#include "stats.h"

void spat_free(void *p) { free(p); }

/* The checks the three share: a kernel, a length in 1..2^40 (and at most
 * max_len), a head of the pattern. */
static int check_kernel_len_head(const spat_kernel *k, int64_t seq_len, int64_t max_len, int64_t head)
{
    if (!k)
        return sp_set_error(SPAT_EINVAL, "k is NULL");
    if (seq_len <= 0 || seq_len > max_len)
        return sp_set_error(SPAT_EINVAL, "seq_len = %lld: lengths are 1..%lld here", (long long)seq_len,
                            (long long)max_len);
    if (head < 0)
        return sp_set_error(SPAT_EINVAL, "head %lld: heads are numbered from 0", (long long)head);
    int64_t nheads = k->plan->nheads;
    if (nheads > 0 && head >= nheads)
        return sp_set_error(SPAT_EINVAL, "head %lld: pattern '%s' has heads 0..%lld", (long long)head,
                            k->name, (long long)(nheads - 1));
    return SPAT_OK;
}

int spat_kernel_stats(const spat_kernel *k, int64_t seq_len, int64_t heads, int64_t head_dim,
                      unsigned flags, char **json)
{
    if (json)
        *json = NULL;
    if (!json)
        return sp_set_error(SPAT_EINVAL, "json is NULL");
    int rc = check_kernel_len_head(k, seq_len, SP_MAX_VALUE, 0);
    if (rc != SPAT_OK)
        return rc;
    if (flags & ~(unsigned)SPAT_STATS_NO_LAYERS)
        return sp_set_error(SPAT_EINVAL, "flags = %#x: only SPAT_STATS_NO_LAYERS is defined", flags);
    int64_t nheads = k->plan->nheads;
    if (heads < 0 || heads > SP_MAX_VALUE)
        return sp_set_error(SPAT_EINVAL, "heads = %lld: 0 (the pattern's) or 1..2^40", (long long)heads);
    if (heads == 0)
        heads = nheads > 0 ? nheads : 1;
    if (nheads > 0 && heads != nheads)
        return sp_set_error(SPAT_EINVAL, "pattern '%s' describes %lld heads; heads = %lld does not match",
                            k->name, (long long)nheads, (long long)heads);
    if (head_dim == 0)
        head_dim = k->head_dims[0];
    if (head_dim < SP_HEAD_DIM_MIN || head_dim > SP_HEAD_DIM_MAX || head_dim % SP_HEAD_DIM_STEP)
        return sp_set_error(SPAT_EINVAL, "head_dim = %lld: 0 (the kernel's smallest) or a multiple of %d in %d..%d",
                            (long long)head_dim, SP_HEAD_DIM_STEP, SP_HEAD_DIM_MIN, SP_HEAD_DIM_MAX);
    sp_stats st;
    if (sp_stats_compute(k->plan, seq_len, heads, head_dim, !(flags & SPAT_STATS_NO_LAYERS), &st))
        return sp_set_error(SPAT_ENOMEM, "out of memory computing the stats of '%s'", k->name);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f) {
        sp_stats_json(&st, k->name, f);
        if (fclose(f) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    sp_stats_free(&st);
    if (!buf)
        return sp_set_error(SPAT_ENOMEM, "out of memory writing the stats of '%s'", k->name);
    *json = buf;
    return SPAT_OK;
}

typedef struct mask_fill {
    unsigned char *mask;
    int64_t n;
} mask_fill;

static void mark_pair(void *arg, int comp, int64_t i, int64_t j)
{
    mask_fill *m = arg;
    (void)comp;
    m->mask[(size_t)i * (size_t)m->n + (size_t)j] = 1;
}

/* n^2 bytes must fit a size_t (and be allocatable): 2^31 is far beyond. */
#define MASK_MAX_LEN ((int64_t)1 << 31)

int spat_kernel_mask(const spat_kernel *k, int64_t seq_len, int64_t head, unsigned char *mask)
{
    int rc = check_kernel_len_head(k, seq_len, MASK_MAX_LEN, head);
    if (rc != SPAT_OK)
        return rc;
    if (!mask)
        return sp_set_error(SPAT_EINVAL, "mask is NULL");
    sp_view v;
    if (sp_view_init(&v, k->plan, head, seq_len))
        return sp_set_error(SPAT_ENOMEM, "out of memory making the mask");
    memset(mask, 0, (size_t)seq_len * (size_t)seq_len);
    mask_fill m = {mask, seq_len};
    int64_t got = 0;
    for (int64_t i = 0; i < seq_len && got >= 0; i++)
        got = sp_view_row(&v, i, mark_pair, &m);
    sp_view_free(&v);
    if (got < 0)
        return sp_set_error(SPAT_ENOMEM, "out of memory making the mask");
    return SPAT_OK;
}

int spat_kernel_mask_png(const spat_kernel *k, int64_t seq_len, int64_t head, int size,
                         unsigned char **png, size_t *len)
{
    if (png)
        *png = NULL;
    if (len)
        *len = 0;
    if (!png || !len)
        return sp_set_error(SPAT_EINVAL, "%s is NULL", png ? "len" : "png");
    int rc = check_kernel_len_head(k, seq_len, SP_MAX_VALUE, head);
    if (rc != SPAT_OK)
        return rc;
    if (size < 0 || size > 16384)
        return sp_set_error(SPAT_EINVAL, "size = %d: 0 (min(seq_len, 1024)) or 1..16384 pixels", size);
    /* spatc's defaults and clamp (compiler/spatc.c, emit_mask). */
    if (size == 0)
        size = (int)(seq_len < 1024 ? seq_len : 1024);
    if (size > seq_len)
        size = (int)seq_len;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return sp_set_error(SPAT_ENOMEM, "out of memory drawing the mask");
    int drawn = sp_mask_png(k->plan, head, seq_len, size, f);
    if (fclose(f) != 0 || drawn != 0 || !buf) {
        free(buf);
        return sp_set_error(SPAT_ENOMEM, "out of memory drawing the mask");
    }
    *png = (unsigned char *)buf;
    *len = n;
    return SPAT_OK;
}
