/* spat_compile's in-process JIT: the LLVM backend's code generator, then
 * ORC's LLJIT, so a host application needs no spatc and no temporary file.
 * Each compilation has its own LLVM context and JIT instance; the kernel's
 * CPU slot owns the JIT and disposes of it with the kernel. */
#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

#include "backend_llvm.h"
#include "cpu.h"

typedef struct jit_owner {
    LLVMOrcLLJITRef jit;
    sp_llvm_unit unit;
} jit_owner;

static void release(void *p)
{
    jit_owner *o = p;
    if (o->jit)
        LLVMOrcDisposeLLJIT(o->jit);
    sp_llvm_unit_free(&o->unit);
    free(o);
}

/* Turns an LLVM error into a spat error (consuming it). */
static int llvm_error(LLVMErrorRef e, const char *what)
{
    char *m = LLVMGetErrorMessage(e);
    int rc = sp_set_error(SPAT_EBACKEND, "%s: %s", what, m);
    LLVMDisposeErrorMessage(m);
    return rc;
}

/* Compiles the kernel's plan into o->jit (the module is consumed). */
static int build(spat_kernel *k, const sp_llvm_target *t, jit_owner *o)
{
    char err[4096];
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef C = LLVMOrcThreadSafeContextGetContext(tsc);
    LLVMModuleRef M = NULL;
    int rc = sp_llvm_module_create(C, k->name, t, &M, err, sizeof err);
    if (rc == SPAT_OK)
        rc = sp_llvm_generate(k->plan, "spat_cpu", k->head_dims, k->nhd, t, C, M, &o->unit, err,
                              sizeof err);
    if (rc == SPAT_OK)
        rc = sp_llvm_optimize(M, t, err, sizeof err);
    if (rc != SPAT_OK) {
        if (M)
            LLVMDisposeModule(M);
        LLVMOrcDisposeThreadSafeContext(tsc);
        return sp_set_error(rc, "compiling pattern '%s': %s", k->name, err);
    }
    LLVMTargetMachineRef tm = sp_llvm_target_machine(t, err, sizeof err);
    if (!tm) {
        LLVMDisposeModule(M);
        LLVMOrcDisposeThreadSafeContext(tsc);
        return sp_set_error(SPAT_EBACKEND, "%s", err);
    }
    LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&o->jit, jb);
    if (e) {
        o->jit = NULL;
        LLVMDisposeModule(M);
        LLVMOrcDisposeThreadSafeContext(tsc);
        return llvm_error(e, "LLVM's JIT cannot start");
    }
    /* LLVM may turn loops into memset or memcpy calls: the process has them. */
    LLVMOrcDefinitionGeneratorRef gen;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(o->jit),
                                                             NULL, NULL);
    if (e) {
        LLVMDisposeModule(M);
        LLVMOrcDisposeThreadSafeContext(tsc);
        return llvm_error(e, "LLVM's JIT cannot see the process's symbols");
    }
    LLVMOrcJITDylibRef dylib = LLVMOrcLLJITGetMainJITDylib(o->jit);
    LLVMOrcJITDylibAddGenerator(dylib, gen);
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(M, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);
    if ((e = LLVMOrcLLJITAddLLVMIRModule(o->jit, dylib, tsm))) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        return llvm_error(e, "LLVM's JIT refused the module");
    }
    return SPAT_OK;
}

int sp_jit_attach(spat_kernel *k)
{
    char err[4096];
    sp_llvm_target t;
    int rc = sp_llvm_target_resolve(k->cpu, k->cpu_features, &t, err, sizeof err);
    if (rc == SPAT_EBACKEND && !k->cpu && !k->cpu_features)
        return SPAT_OK; /* not an x86-64 host: the reference backend stays */
    if (rc != SPAT_OK)
        return sp_set_error(rc, "%s", err);
    uint64_t missing = t.required & ~sp_cpu_host_features();
    if (missing) {
        char names[512];
        sp_cpu_feature_names(missing, names, sizeof names);
        sp_llvm_target_free(&t);
        return sp_set_error(SPAT_EINVAL, "cpu '%s' with features '%s' needs %s, which this CPU "
                            "lacks: JIT-compiled code must run here", k->cpu ? k->cpu : "(host)",
                            k->cpu_features ? k->cpu_features : "", names);
    }
    jit_owner *o = calloc(1, sizeof *o);
    sp_cpu_state *st = calloc(1, sizeof *st);
    if (!o || !st) {
        free(o);
        free(st);
        sp_llvm_target_free(&t);
        return sp_set_error(SPAT_ENOMEM, "out of memory");
    }
    rc = build(k, &t, o);
    sp_llvm_target_free(&t);
    for (int i = 0; rc == SPAT_OK && i < o->unit.nhd; i++) {
        const sp_cpu_info *info = o->unit.info[i];
        if (!(st->code[i].fn = malloc(sizeof(sp_cpu_fn) * (info->nentries ? info->nentries : 1)))) {
            rc = sp_set_error(SPAT_ENOMEM, "out of memory");
            break;
        }
        for (uint32_t e = 0; e < info->nentries; e++) {
            uint64_t addr = 0;
            LLVMErrorRef le = LLVMOrcLLJITLookup(o->jit, &addr, o->unit.names[i][e]);
            if (le) {
                rc = llvm_error(le, "LLVM's JIT cannot find a generated function");
                break;
            }
            st->code[i].fn[e] = (sp_cpu_fn)(uintptr_t)addr;
        }
        st->code[i].info = info;
    }
    st->owner = o;
    st->release_owner = release;
    if (rc != SPAT_OK) {
        for (int i = 0; i < SP_MAX_HEAD_DIMS; i++)
            free(st->code[i].fn);
        free(st);
        release(o);
        return rc;
    }
    sp_cpu_install(k, st);
    return SPAT_OK;
}

#endif /* SPAT_HAVE_LLVM */
