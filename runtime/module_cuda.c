/* kernel.so's CUDA sections. The writer adds, for every pattern, its
 * generated CUDA source (SP_SECTION_CUDA_SOURCE) and, when spatc is given
 * --cuda-arch, code compiled by NVRTC at spatc time for each head dim and
 * dtype: CUBIN for "sm_XY[a]" (SP_SECTION_CUBIN), PTX for "compute_XY[a]"
 * (SP_SECTION_PTX). A code section records the dtype in the low byte of
 * flags, SP_CUDA_ARCH_SPECIFIC for an "a" target, and the architecture
 * as XY.
 *
 * The runtime uses a code section only when the file's source section is
 * byte for byte the source this libspat generates for the pattern: the
 * code is then exactly what NVRTC would build now. Otherwise it compiles. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda.h"
#include "cuda_run.h"
#include "internal.h"
#include "module.h"

#define SP_CUDA_ARCH_SPECIFIC 0x100u

void sp_module_sections_free(sp_wsection *s, int n)
{
    for (int i = 0; i < n; i++)
        free(s[i].data);
    free(s);
}

/* Parses "sm_90a" / "compute_80" into XY, specific and ptx. */
static int parse_arch(const char *a, unsigned *xy, bool *specific, bool *ptx)
{
    const char *p;
    if (!strncmp(a, "sm_", 3))
        p = a + 3, *ptx = false;
    else if (!strncmp(a, "compute_", 8))
        p = a + 8, *ptx = true;
    else
        return -1;
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (end == p || v < 70 || v > 1000)
        return -1;
    *specific = *end == 'a';
    if (*specific)
        end++;
    if (*end)
        return -1;
    *xy = (unsigned)v;
    return 0;
}

static int push(sp_wsection **s, int *n, int *cap, sp_wsection x)
{
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 8;
        sp_wsection *g = realloc(*s, sizeof *g * (size_t)c);
        if (!g) {
            free(x.data);
            return sp_set_error(SPAT_ENOMEM, "out of memory for kernel.so sections");
        }
        *s = g;
        *cap = c;
    }
    (*s)[(*n)++] = x;
    return SPAT_OK;
}

int sp_module_cuda_sections(const sp_plan *const *plans, int nplans, const int *hd, int nhd,
                            const char *archs, sp_wsection **out, int *nout)
{
    *out = NULL;
    *nout = 0;
    int n = 0, cap = 0, rc = SPAT_OK;
    sp_wsection *s = NULL;
    char list[512];
    if (archs && snprintf(list, sizeof list, "%s", archs) >= (int)sizeof list)
        return sp_set_error(SPAT_EINVAL, "--cuda-arch list too long");
#ifndef SPAT_HAVE_CUDA
    if (archs && *archs)
        return sp_set_error(SPAT_EBACKEND, "this spat was built without CUDA support (configure "
                            "--with-cuda): cannot compile for %s", archs);
#endif
    for (int p = 0; p < nplans && rc == SPAT_OK; p++) {
        char msg[512], *src = NULL;
        size_t len = 0;
        if (!sp_cuda_supported(plans[p], msg, sizeof msg))
            continue; /* the runtime refuses such a pattern on CUDA with this message */
        if (sp_cuda_source(plans[p], &src, &len, msg, sizeof msg) != 0) {
            rc = sp_set_error(SPAT_ENOMEM, "%s", msg);
            break;
        }
        sp_wsection x = {.kind = SP_SECTION_CUDA_SOURCE, .pattern = (uint32_t)p, .data = src,
                         .len = len};
        if ((rc = push(&s, &n, &cap, x)) != SPAT_OK)
            break;
        if (!archs || !*archs)
            continue;
#ifdef SPAT_HAVE_CUDA
        char tmp[512], *save = NULL;
        snprintf(tmp, sizeof tmp, "%s", list);
        for (char *a = strtok_r(tmp, ",", &save); a && rc == SPAT_OK; a = strtok_r(NULL, ",", &save)) {
            unsigned xy;
            bool specific, ptx;
            if (parse_arch(a, &xy, &specific, &ptx) != 0) {
                rc = sp_set_error(SPAT_EINVAL, "--cuda-arch: '%s' is not sm_XY[a] or compute_XY[a] "
                                  "(XY >= 70)", a);
                break;
            }
            const sp_nvrtc *nv = sp_nvrtc_get();
            if (!nv) {
                rc = SPAT_ENVRTC;
                break;
            }
            for (int d = 0; d < nhd && rc == SPAT_OK; d++)
                for (int t = SPAT_F32; t <= SPAT_BF16 && rc == SPAT_OK; t++) {
                    char buf[SP_CUDA_MAX_OPTS][64], name[300];
                    const char *opts[SP_CUDA_MAX_OPTS];
                    int nopts = sp_cuda_options(hd[d], t, a, SP_CUDA_PART_ALL, buf, opts);
                    snprintf(name, sizeof name, "%s.cu", plans[p]->name);
                    void *img = NULL;
                    size_t ilen = 0;
                    char *log = NULL;
                    rc = sp_nvrtc_compile(nv, src, name, opts, nopts, ptx, &img, &ilen, &log);
                    free(log);
                    if (rc != SPAT_OK)
                        break;
                    sp_wsection c = {.kind = ptx ? SP_SECTION_PTX : SP_SECTION_CUBIN,
                                     .pattern = (uint32_t)p, .head_dim = hd[d], .arch = xy,
                                     .flags = (uint32_t)t | (specific ? SP_CUDA_ARCH_SPECIFIC : 0u),
                                     .data = img, .len = ilen};
                    rc = push(&s, &n, &cap, c);
                }
        }
#endif
    }
    if (rc != SPAT_OK) {
        sp_module_sections_free(s, n);
        return rc;
    }
    *out = s;
    *nout = n;
    return SPAT_OK;
}

/* ------------------------------------------------------------- reader */

static const sp_module_section *section_at(const sp_module_desc *m, uint32_t i)
{
    return (const sp_module_section *)((const char *)m->sections + (size_t)i * m->section_size);
}

const void *sp_cuda_prebuilt(const spat_kernel *k, const char *src, size_t len, int d, int dtype,
                             int major, int minor)
{
    const sp_module_desc *m = k->mod;
    if (!m || !m->nsections || !m->sections)
        return NULL;
    int pat = -1;
    for (uint32_t i = 0; i < m->npatterns && pat < 0; i++) {
        const sp_module_pattern *p =
            (const sp_module_pattern *)((const char *)m->patterns + (size_t)i * m->pattern_size);
        if (p->name && !strcmp(p->name, k->name))
            pat = (int)i;
    }
    if (pat < 0)
        return NULL;
    bool same_source = false;
    for (uint32_t i = 0; i < m->nsections && !same_source; i++) {
        const sp_module_section *s = section_at(m, i);
        same_source = s->kind == SP_SECTION_CUDA_SOURCE && s->pattern == (uint32_t)pat &&
                      s->data && s->bytes == len && !memcmp(s->data, src, len);
    }
    if (!same_source)
        return NULL;
    const unsigned dev = (unsigned)(major * 10 + minor);
    const void *best = NULL;
    int best_rank = 0;
    for (uint32_t i = 0; i < m->nsections; i++) {
        const sp_module_section *s = section_at(m, i);
        if ((s->kind != SP_SECTION_CUBIN && s->kind != SP_SECTION_PTX) || s->pattern != (uint32_t)pat ||
            s->head_dim != d || (int)(s->flags & 0xffu) != dtype || !s->data || !s->bytes)
            continue;
        const bool specific = s->flags & SP_CUDA_ARCH_SPECIFIC;
        int rank = 0;
        if (s->kind == SP_SECTION_CUBIN) {
            /* SASS runs on its own major version, at the same or a later
             * minor; an arch-specific build only on exactly its GPU. */
            if (s->arch == dev)
                rank = 4;
            else if (!specific && s->arch / 10 == dev / 10 && s->arch < dev)
                rank = 3;
        } else if (s->kind == SP_SECTION_PTX && (specific ? s->arch == dev : s->arch <= dev) &&
                   ((const char *)s->data)[s->bytes - 1] == '\0') {
            rank = 2; /* the driver JIT-compiles PTX for newer GPUs */
        }
        if (rank > best_rank) {
            best_rank = rank;
            best = s->data;
        }
    }
    return best;
}
