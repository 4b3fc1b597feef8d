/* kernel.so's CPU sections: for each pattern and head dim, the sp_cpu_info
 * of the LLVM backend's code (cpu_abi.h) as the section's data, and the
 * entry points as the section's entries, which name functions of the
 * object files (one per head dim) that spatc links into kernel.so beside
 * the descriptor. The
 * section's arch is the code's vector level; spat_load refuses the file on
 * a CPU that lacks the features the info lists (runtime/cpu.c). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_llvm.h"
#include "internal.h"
#include "module.h"

void sp_module_cpu_sections_free(sp_wsection *s, int n)
{
    for (int i = 0; i < n; i++) {
        for (uint32_t e = 0; s[i].entries && e < s[i].nentries; e++)
            free(s[i].entries[e]);
        free(s[i].entries);
        free(s[i].data);
    }
    free(s);
}

#ifndef SPAT_HAVE_LLVM

int sp_module_cpu_sections(const struct sp_plan *const *plans, int nplans, const int *hd, int nhd,
                           const char *cpu, const char *features, sp_wsection **out, int *nout,
                           char **obj, size_t *objlen, int *nobj)
{
    (void)obj, (void)objlen;
    *out = NULL, *nout = 0, *nobj = 0;
    if (cpu || features)
        return sp_set_error(SPAT_EBACKEND, "this spat was built without LLVM: it makes no CPU code "
                            "(-mcpu, --target-features)");
    return SPAT_OK;
}

#else

int sp_module_cpu_sections(const struct sp_plan *const *plans, int nplans, const int *hd, int nhd,
                           const char *cpu, const char *features, sp_wsection **out, int *nout,
                           char **obj, size_t *objlen, int *nobj)
{
    *out = NULL, *nout = 0, *nobj = 0;
    char err[4096];
    sp_llvm_target t;
    int rc = sp_llvm_target_resolve(cpu, features, &t, err, sizeof err);
    if (rc == SPAT_EBACKEND && !cpu && !features)
        return SPAT_OK; /* not an x86-64 host, and no target asked for: no CPU code */
    if (rc != SPAT_OK)
        return sp_set_error(rc, "%s", err);
    sp_llvm_unit *units = calloc((size_t)(nplans ? nplans : 1), sizeof *units);
    sp_wsection *s = calloc((size_t)(nplans * nhd + 1), sizeof *s);
    if (!units || !s) {
        free(units);
        free(s);
        sp_llvm_target_free(&t);
        return sp_set_error(SPAT_ENOMEM, "out of memory");
    }
    sp_llvm_objs objs;
    rc = sp_llvm_compile_objects(plans, nplans, hd, nhd, &t, &objs, units, err, sizeof err);
    if (rc != SPAT_OK) {
        free(units);
        free(s);
        sp_llvm_target_free(&t);
        return sp_set_error(rc, "%s", err);
    }
    int n = 0;
    for (int p = 0; p < nplans; p++)
        for (int h = 0; h < units[p].nhd; h++) {
            sp_cpu_info *info = units[p].info[h];
            s[n++] = (sp_wsection){.kind = SP_SECTION_CPU_FORWARD, .pattern = (uint32_t)p,
                                   .head_dim = units[p].head_dims[h], .arch = (uint32_t)t.level,
                                   .data = info, .len = SP_CPU_INFO_BYTES(info->nentries),
                                   .entries = units[p].names[h], .nentries = info->nentries};
            /* The section owns them now. */
            units[p].info[h] = NULL;
            units[p].names[h] = NULL;
        }
    for (int p = 0; p < nplans; p++)
        sp_llvm_unit_free(&units[p]);
    free(units);
    sp_llvm_target_free(&t);
    for (int x = 0; x < objs.n; x++)
        obj[x] = objs.data[x], objlen[x] = objs.len[x];
    *nobj = objs.n;
    *out = s;
    *nout = n;
    return SPAT_OK;
}

#endif
