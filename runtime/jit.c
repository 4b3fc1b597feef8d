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

/* The kernel's JIT: the forward's module at spat_compile, the backward's
 * added on the first spat_backward (most kernels serve inference only, and
 * the backward's code is the larger part to compile). */
typedef struct jit_owner {
    LLVMOrcLLJITRef jit;
    const spat_kernel *k;
    sp_llvm_target t;
    sp_llvm_unit unit, bunit; /* the forward's and the backward's entries */
} jit_owner;

static void release(void *p)
{
    jit_owner *o = p;
    if (o->jit)
        LLVMOrcDisposeLLJIT(o->jit);
    sp_llvm_unit_free(&o->unit);
    sp_llvm_unit_free(&o->bunit);
    sp_llvm_target_free(&o->t);
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

/* Starts o->jit on the module (consuming it and tsc). */
static int start(jit_owner *o, LLVMModuleRef M, LLVMOrcThreadSafeContextRef tsc)
{
    char err[4096];
    LLVMTargetMachineRef tm = sp_llvm_target_machine(&o->t, err, sizeof err);
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
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(o->jit), gen);
    return SPAT_OK;
}

/* Compiles the entries of dirs of the kernel's plan into o->jit (started
 * by the first module) and looks them up into code[]; on failure leaves u
 * and code[] empty (the backward's is tried again on the next call). */
static int build_module(jit_owner *o, unsigned dirs, sp_llvm_unit *u, sp_cpu_code *code);

static int build(jit_owner *o, unsigned dirs, sp_llvm_unit *u, sp_cpu_code *code)
{
    int rc = build_module(o, dirs, u, code);
    if (rc != SPAT_OK) {
        for (int i = 0; i < SP_MAX_HEAD_DIMS; i++) {
            free(code[i].fn);
            code[i] = (sp_cpu_code){0};
        }
        sp_llvm_unit_free(u);
    }
    return rc;
}

static int build_module(jit_owner *o, unsigned dirs, sp_llvm_unit *u, sp_cpu_code *code)
{
    const spat_kernel *k = o->k;
    char err[4096];
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef C = LLVMOrcThreadSafeContextGetContext(tsc);
    LLVMModuleRef M = NULL;
    int rc = sp_llvm_module_create(C, k->name, &o->t, &M, err, sizeof err);
    if (rc == SPAT_OK)
        rc = sp_llvm_generate(k->plan, dirs & SP_LLVM_FORWARD ? "spat_cpu" : "spat_cpu_bwd", k->head_dims,
                              k->nhd, dirs, &o->t, C, M, u, err, sizeof err);
    if (rc == SPAT_OK)
        rc = sp_llvm_optimize(M, &o->t, err, sizeof err);
    if (rc != SPAT_OK) {
        if (M)
            LLVMDisposeModule(M);
        LLVMOrcDisposeThreadSafeContext(tsc);
        return sp_set_error(rc, "compiling pattern '%s': %s", k->name, err);
    }
    if (!o->jit && (rc = start(o, M, tsc)) != SPAT_OK)
        return rc;
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(M, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);
    LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(o->jit, LLVMOrcLLJITGetMainJITDylib(o->jit), tsm);
    if (e) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        return llvm_error(e, "LLVM's JIT refused the module");
    }
    for (int i = 0; i < u->nhd; i++) {
        const sp_cpu_info *info = u->info[i];
        if (!(code[i].fn = malloc(sizeof(sp_cpu_fn) * (info->nentries ? info->nentries : 1))))
            return sp_set_error(SPAT_ENOMEM, "out of memory");
        for (uint32_t x = 0; x < info->nentries; x++) {
            uint64_t addr = 0;
            if ((e = LLVMOrcLLJITLookup(o->jit, &addr, u->names[i][x])))
                return llvm_error(e, "LLVM's JIT cannot find a generated function");
            code[i].fn[x] = (sp_cpu_fn)(uintptr_t)addr;
        }
        code[i].info = info;
    }
    return SPAT_OK;
}

/* The backward's code, on the first backward call (cpu.c holds the lock). */
static int make_backward(sp_cpu_state *st)
{
    return build(st->owner, SP_LLVM_BACKWARD, &((jit_owner *)st->owner)->bunit, st->bwd);
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
    sp_cpu_state *st = sp_cpu_state_new();
    if (!o || !st) {
        free(o);
        sp_cpu_state_free(st);
        sp_llvm_target_free(&t);
        return sp_set_error(SPAT_ENOMEM, "out of memory");
    }
    o->k = k;
    o->t = t;
    st->owner = o;
    st->release_owner = release;
    st->make_backward = make_backward;
    rc = build(o, SP_LLVM_FORWARD, &o->unit, st->code);
    if (rc != SPAT_OK) {
        sp_cpu_state_free(st);
        return rc;
    }
    sp_cpu_install(k, st);
    return SPAT_OK;
}

#endif /* SPAT_HAVE_LLVM */
