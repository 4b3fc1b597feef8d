/* Kernel handles: pattern text -> IR -> plan, plus the table of backends
 * that can run it. spat_compile and spat_load (module.c) both end here. */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "diag.h"
#include "frontend.h"
#include "internal.h"
#include "stats.h"
#ifdef SPAT_HAVE_CUDA
#include "cuda_run.h"
#endif

static const int default_head_dims[] = {64, 128};

static int cmp_int(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

int sp_head_dims_normalise(const int *dims, int n, const char *what, int *out, int *nout)
{
    if (!dims) {
        if (n != 0)
            return sp_set_error(SPAT_EINVAL, "%s is NULL but n_%s = %d", what, what, n);
        dims = default_head_dims;
        n = (int)(sizeof default_head_dims / sizeof *default_head_dims);
    }
    if (n <= 0)
        return sp_set_error(SPAT_EINVAL, "n_%s = %d: at least one head dimension is needed", what, n);
    int tmp[SP_MAX_HEAD_DIMS], m = 0;
    for (int i = 0; i < n; i++) {
        int d = dims[i];
        if (d < SP_HEAD_DIM_MIN || d > SP_HEAD_DIM_MAX || d % SP_HEAD_DIM_STEP != 0)
            return sp_set_error(SPAT_EINVAL,
                                "%s[%d] = %d: head dimensions are multiples of %d in %d..%d", what,
                                i, d, SP_HEAD_DIM_STEP, SP_HEAD_DIM_MIN, SP_HEAD_DIM_MAX);
        bool seen = false;
        for (int j = 0; j < m; j++)
            seen |= tmp[j] == d;
        /* Distinct valid values number at most SP_MAX_HEAD_DIMS, so tmp
         * cannot overflow however long the list is. */
        if (!seen)
            tmp[m++] = d;
    }
    qsort(tmp, (size_t)m, sizeof *tmp, cmp_int);
    memcpy(out, tmp, sizeof(int) * (size_t)m);
    *nout = m;
    return SPAT_OK;
}

int sp_kernel_head_dim_index(const spat_kernel *k, int64_t d)
{
    for (int i = 0; i < k->nhd; i++)
        if (k->head_dims[i] == d)
            return i;
    return -1;
}

/* "a, b, c" of the program's pattern names, for messages. */
static void list_names(const sp_program *prog, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < prog->npatterns && len < cap; i++) {
        int n = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", prog->patterns[i].name);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

static int pick_pattern(spat_kernel *k, const char *name)
{
    const sp_program *prog = k->prog;
    char names[1024];
    list_names(prog, names, sizeof names);
    if (prog->npatterns == 0)
        return sp_set_error(SPAT_ENOPATTERN, "%s holds no pattern", k->filename);
    if (!name) {
        if (prog->npatterns > 1)
            return sp_set_error(SPAT_ENOPATTERN,
                                "%s holds %d patterns (%s): name the one to compile", k->filename,
                                prog->npatterns, names);
        k->pat = &prog->patterns[0];
        return SPAT_OK;
    }
    k->pat = sp_program_find(prog, name);
    if (!k->pat)
        return sp_set_error(SPAT_ENOPATTERN, "no pattern '%s' in %s; it has: %s", name,
                            k->filename, names);
    return SPAT_OK;
}

/* The reference runs every head dim and dtype on host memory. */
static void init_backends(spat_kernel *k)
{
    static const char *const names[SP_NBACKENDS] = {"auto", "reference", "cpu", "cuda"};
    for (int b = 0; b < SP_NBACKENDS; b++)
        k->backends[b].name = names[b];
    sp_backend_slot *ref = &k->backends[SPAT_BACKEND_REFERENCE];
    ref->available = true;
    ref->device = SPAT_DEVICE_CPU;
    ref->dtypes = 1u << SPAT_F32 | 1u << SPAT_F16 | 1u << SPAT_BF16;
    for (int i = 0; i < k->nhd; i++) {
        ref->forward[i] = sp_reference_forward;
        ref->backward[i] = sp_reference_backward;
    }
    k->backends[SPAT_BACKEND_CPU].device = SPAT_DEVICE_CPU;
    k->backends[SPAT_BACKEND_CUDA].device = SPAT_DEVICE_CUDA;
#ifdef SPAT_HAVE_CUDA
    /* Nothing is loaded here: the driver and NVRTC open on first use. */
    sp_cuda_init_slot(k);
#endif
}

/* Parses the kernel's source and builds the plan of the chosen pattern. */
static int build(spat_kernel *k, const char *name)
{
    sp_diag d;
    sp_diag_init(&d, k->filename, k->source, k->source_len);
    int rc = SPAT_OK;
    if (sp_frontend(k->source, k->source_len, &k->arena, &d, &k->prog) != 0 || !k->prog) {
        rc = d.nerrors ? sp_set_error(SPAT_ESYNTAX, "%s", sp_diag_text(&d))
                       : sp_set_error(SPAT_ENOMEM, "out of memory compiling %s", k->filename);
    } else if ((rc = pick_pattern(k, name)) == SPAT_OK &&
               (sp_plan_build(k->pat, &k->arena, &d, &k->plan) != 0 || !k->plan)) {
        /* The plan refuses only patterns it cannot express (too many
         * components): a fault of the pattern text, reported with its
         * location like any other. */
        rc = d.nerrors ? sp_set_error(SPAT_ESYNTAX, "%s", sp_diag_text(&d))
                       : sp_set_error(SPAT_ENOMEM, "out of memory planning pattern '%s'",
                                      k->pat->name);
    }
    sp_diag_free(&d);
    return rc;
}

int sp_kernel_create(const char *source, size_t len, const char *filename, const char *name,
                     const int *head_dims, int nhd, spat_kernel **out)
{
    *out = NULL;
    spat_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return sp_set_error(SPAT_ENOMEM, "out of memory allocating a kernel");
    sp_arena_init(&k->arena);
    int rc = sp_head_dims_normalise(head_dims, nhd, "head_dims", k->head_dims, &k->nhd);
    if (rc != SPAT_OK)
        goto fail;
    k->source = sp_arena_strndup(&k->arena, source, len);
    k->filename = sp_arena_strdup(&k->arena, filename ? filename : "<string>");
    if (!k->source || !k->filename) {
        rc = sp_set_error(SPAT_ENOMEM, "out of memory copying the pattern source");
        goto fail;
    }
    k->source_len = len;
    if ((rc = build(k, name)) != SPAT_OK)
        goto fail;
    k->name = k->pat->name;
    init_backends(k);
    *out = k;
    return SPAT_OK;
fail:
    spat_kernel_free(k);
    return rc;
}

int spat_compile(const char *source, const char *name, const spat_compile_options *opts,
                 spat_kernel **out)
{
    if (!out)
        return sp_set_error(SPAT_EINVAL, "out is NULL: nowhere to store the kernel");
    *out = NULL;
    if (!source)
        return sp_set_error(SPAT_EINVAL, "source is NULL");
    const int *hd = opts ? opts->head_dims : NULL;
    int nhd = opts ? opts->n_head_dims : 0;
    const char *file = opts && opts->filename ? opts->filename : "<string>";
    spat_kernel *k;
    int rc = sp_kernel_create(source, strlen(source), file, name, hd, nhd, &k);
    if (rc != SPAT_OK)
        return rc;
    if (opts && opts->cpu)
        k->cpu = sp_arena_strdup(&k->arena, opts->cpu);
    if (opts && opts->cpu_features)
        k->cpu_features = sp_arena_strdup(&k->arena, opts->cpu_features);
    if ((opts && opts->cpu && !k->cpu) || (opts && opts->cpu_features && !k->cpu_features)) {
        spat_kernel_free(k);
        return sp_set_error(SPAT_ENOMEM, "out of memory copying the compile options");
    }
#ifdef SPAT_HAVE_LLVM
    /* The CPU backend: the plan JIT-compiled in-process (runtime/jit.c). */
    if ((rc = sp_jit_attach(k)) != SPAT_OK) {
        spat_kernel_free(k);
        return rc;
    }
#endif
    *out = k;
    return SPAT_OK;
}

void spat_kernel_free(spat_kernel *k)
{
    if (!k)
        return;
    for (int b = 0; b < SP_NBACKENDS; b++)
        if (k->backends[b].release)
            k->backends[b].release(k->backends[b].state);
    sp_arena_free(&k->arena);
    /* Last: backend state may point into the module's code or data. */
    if (k->dl)
        dlclose(k->dl);
    free(k);
}

const char *spat_kernel_name(const spat_kernel *k) { return k ? k->name : NULL; }

int64_t spat_kernel_heads(const spat_kernel *k) { return k ? k->plan->nheads : 0; }

int spat_kernel_head_dims(const spat_kernel *k, const int **dims)
{
    if (dims)
        *dims = k ? k->head_dims : NULL;
    return k ? k->nhd : 0;
}

int spat_kernel_pairs(const spat_kernel *k, int64_t seq_len, int64_t head, int64_t *pairs)
{
    if (!k || !pairs)
        return sp_set_error(SPAT_EINVAL, "%s is NULL", k ? "pairs" : "k");
    if (seq_len <= 0 || seq_len > SP_MAX_VALUE)
        return sp_set_error(SPAT_EINVAL, "seq_len = %lld: lengths are 1..2^40", (long long)seq_len);
    int64_t nheads = k->plan->nheads;
    if (head < 0)
        return sp_set_error(SPAT_EINVAL, "head %lld: heads are numbered from 0", (long long)head);
    if (nheads > 0 && head >= nheads)
        return sp_set_error(SPAT_EINVAL, "head %lld: pattern '%s' has heads 0..%lld", (long long)head,
                            k->name, (long long)(nheads - 1));
    sp_view v;
    if (sp_view_init(&v, k->plan, head, seq_len))
        return sp_set_error(SPAT_ENOMEM, "out of memory counting pairs");
    int64_t blocks, n = sp_count_pairs(&v, &blocks);
    sp_view_free(&v);
    if (n < 0)
        return sp_set_error(SPAT_ENOMEM, "out of memory counting pairs");
    *pairs = n;
    return SPAT_OK;
}
