/* The LLVM backend's driver: shapes and scratch layout per target, the
 * module's functions per head dim, LLVM's optimisation pipeline, and the
 * machine code (object or assembly). */
#include "config.h"

#ifdef SPAT_HAVE_LLVM

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "llvm_gen.h"
#include "spat.h"

/* Tile shapes by vector width: the layout (cpu_abi.h) fixes QV, KR, TK
 * and the scratch; the PV micro-kernel holds PR x PC output vectors within
 * the 32 (AVX-512) or 16 (AVX2, SSE) vector registers, chosen by
 * measurement (BENCHMARKS.md). */
static void shapes(sp_gen *g, int d)
{
    g->V = g->t->vec;
    g->d = d;
    g->U = 4;
    g->PR = 4, g->PC = g->V == 16 ? 4 : 2;
    const sp_cpu_layout l = sp_cpu_layout_of((uint32_t)g->V, (uint32_t)d);
    g->QV = (int)l.qv, g->KR = (int)l.kr, g->TK = (int)l.tk, g->TQ = (int)l.tq;
    g->o_qt = l.o_qt, g->o_st = l.o_st, g->o_o = l.o_o, g->o_m = l.o_m, g->o_l = l.o_l;
    g->o_a = l.o_a, g->o_js = l.o_js;
    g->o_dt = l.o_dt, g->o_dp = l.o_dp, g->o_a2 = l.o_a2, g->o_kr = l.o_kr;
    g->scratch = l.bytes;
}

static void types(sp_gen *g)
{
    LLVMContextRef C = g->C;
    g->tv = LLVMVoidTypeInContext(C);
    g->ti1 = LLVMInt1TypeInContext(C);
    g->ti8 = LLVMInt8TypeInContext(C);
    g->ti32 = LLVMInt32TypeInContext(C);
    g->ti64 = LLVMInt64TypeInContext(C);
    g->tf = LLVMFloatTypeInContext(C);
    g->tvf = LLVMVectorType(g->tf, (unsigned)g->V);
    g->tvi = LLVMVectorType(g->ti32, (unsigned)g->V);
    g->tvf8 = LLVMVectorType(g->tf, 8);
    g->tptr_f = LLVMPointerType(g->tf, 0);
    g->tptr_i8 = LLVMPointerType(g->ti8, 0);
    g->tptr_i32 = LLVMPointerType(g->ti32, 0);
    g->tptr_i64 = LLVMPointerType(g->ti64, 0);
    LLVMTypeRef p[6] = {g->tptr_i8, g->tptr_i8, g->ti32, g->ti32, g->ti32, g->ti64};
    g->kt_type = LLVMFunctionType(g->tv, p, 6, 0);
    LLVMTypeRef q[6] = {g->tptr_i8, g->tptr_i8, g->ti32, g->ti64, g->ti64, g->ti64};
    g->smpv_type = LLVMFunctionType(g->tv, q, 6, 0);
}

void sp_llvm_unit_free(sp_llvm_unit *u)
{
    for (int i = 0; i < u->nhd; i++) {
        if (u->names[i])
            for (uint32_t e = 0; u->info[i] && e < u->info[i]->nentries; e++)
                free(u->names[i][e]);
        free(u->names[i]);
        free(u->info[i]);
    }
    memset(u, 0, sizeof *u);
}

/* Entries of the three directions: at most a pass per component and the
 * direct pass, per class. */
static int max_entries(const sp_plan *p)
{
    int n = 0;
    for (int c = 0; c < p->nclasses; c++)
        n += 3 * (1 + p->classes[c].ncomps);
    return n;
}

/* The backward's entries of one head dim, after the scores' kernel of g:
 * dQ on the plan (its scores and masks are the forward's), dK and dV on the
 * transposed plan tplan, whose kernels are its own. */
static int backward_entries(sp_gen *g, const sp_plan *tplan, const char *prefix, int d,
                            sp_cpu_info *info, char ***names)
{
    g->dir = SP_DIR_DQ;
    int rc = sp_gen_kt_bwd(g);
    if (rc == SPAT_OK)
        rc = sp_gen_entries(g, info, names);
    sp_gen tg = *g;
    tg.plan = tplan, tg.dir = SP_DIR_DKDV;
    tg.kt_full = tg.kt_smpv = tg.kt_bwd = tg.bwd_prologue = tg.bwd_epilogue = NULL;
    snprintf(tg.prefix, sizeof tg.prefix, "%s_d%d_t", prefix, d);
    if (rc == SPAT_OK && (rc = sp_gen_kt_full(&tg)) == SPAT_OK && (rc = sp_gen_kt_bwd(&tg)) == SPAT_OK)
        rc = sp_gen_entries(&tg, info, names);
    return rc;
}

int sp_llvm_generate(const sp_plan *plan, const char *prefix, const int *head_dims, int nhd,
                     unsigned dirs, const sp_llvm_target *t, LLVMContextRef C, LLVMModuleRef M,
                     sp_llvm_unit *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (nhd > 32)
        nhd = 32;
    int64_t rcap = sp_plan_max_random(plan);
    sp_arena a;
    sp_arena_init(&a);
    sp_plan *tplan;
    if (sp_plan_transpose(plan, &a, &tplan)) {
        snprintf(err, errlen, "out of memory");
        return SPAT_ENOMEM;
    }
    for (int h = 0; h < nhd; h++) {
        sp_gen g = {.C = C, .M = M, .plan = plan, .t = t, .err = err, .errlen = errlen};
        shapes(&g, head_dims[h]);
        types(&g);
        g.b = LLVMCreateBuilderInContext(C);
        snprintf(g.prefix, sizeof g.prefix, "%s_d%d", prefix, head_dims[h]);
        out->head_dims[h] = head_dims[h];
        out->nhd = h + 1;
        sp_cpu_info *info = calloc(1, SP_CPU_INFO_BYTES(max_entries(plan)));
        out->info[h] = info;
        if (!info) {
            LLVMDisposeBuilder(g.b);
            sp_llvm_unit_free(out);
            sp_arena_free(&a);
            return sp_gen_fail(&g, SPAT_ENOMEM, "out of memory");
        }
        *info = (sp_cpu_info){
            .size = sizeof(sp_cpu_info), .abi = SP_CPU_ABI, .level = (uint32_t)t->level,
            .vec = (uint32_t)g.V, .features = t->required, .head_dim = (uint32_t)head_dims[h],
            .tq = (uint32_t)g.TQ, .tk = (uint32_t)g.TK, .scratch_bytes = g.scratch,
            .plan_hash = sp_plan_hash(plan), .off_m = g.o_m, .off_l = g.o_l, .off_o = g.o_o,
            .rnd_cap = (uint32_t)rcap};
        g.dir = dirs & SP_LLVM_FORWARD ? SP_DIR_FORWARD : SP_DIR_DQ;
        int rc = sp_gen_kt_full(&g);
        if (rc == SPAT_OK && (dirs & SP_LLVM_FORWARD))
            rc = sp_gen_entries(&g, info, &out->names[h]);
        if (rc == SPAT_OK && (dirs & SP_LLVM_BACKWARD))
            rc = backward_entries(&g, tplan, prefix, head_dims[h], info, &out->names[h]);
        LLVMDisposeBuilder(g.b);
        if (rc != SPAT_OK) {
            sp_llvm_unit_free(out);
            sp_arena_free(&a);
            return rc;
        }
    }
    sp_arena_free(&a);
    return SPAT_OK;
}

int sp_llvm_module_create(LLVMContextRef C, const char *name, const sp_llvm_target *t,
                          LLVMModuleRef *out, char *err, size_t errlen)
{
    LLVMTargetMachineRef tm = sp_llvm_target_machine(t, err, errlen);
    if (!tm)
        return SPAT_EBACKEND;
    LLVMModuleRef M = LLVMModuleCreateWithNameInContext(name, C);
    LLVMSetTarget(M, t->triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    char *dl = LLVMCopyStringRepOfTargetData(td);
    LLVMSetDataLayout(M, dl);
    LLVMDisposeMessage(dl);
    LLVMDisposeTargetData(td);
    LLVMDisposeTargetMachine(tm);
    *out = M;
    return SPAT_OK;
}

int sp_llvm_optimize(LLVMModuleRef M, const sp_llvm_target *t, char *err, size_t errlen)
{
    char *msg = NULL;
    if (LLVMVerifyModule(M, LLVMReturnStatusAction, &msg)) {
        snprintf(err, errlen, "internal error: the generated LLVM IR does not verify:\n%s", msg);
        LLVMDisposeMessage(msg);
        return SPAT_EBACKEND;
    }
    LLVMDisposeMessage(msg);
    LLVMTargetMachineRef tm = sp_llvm_target_machine(t, err, errlen);
    if (!tm)
        return SPAT_EBACKEND;
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    /* The IR is built the way the code should run (explicit vectors,
     * register-blocked loops, accumulators in phis), so it needs clean-up
     * and loop-invariant motion, not O3's unrolling and vectorisers, which
     * cost three times the compile time for the same speed (BENCHMARKS.md).
     * SPAT_LLVM_PASSES overrides it, for experiments. */
    const char *pipe = getenv("SPAT_LLVM_PASSES");
    if (!pipe || !*pipe)
        pipe = "function(sroa,early-cse,instcombine,simplifycfg,loop-mssa(licm),instcombine,"
               "simplifycfg)";
    LLVMErrorRef e = LLVMRunPasses(M, pipe, tm, po);
    LLVMDisposePassBuilderOptions(po);
    LLVMDisposeTargetMachine(tm);
    if (e) {
        char *m = LLVMGetErrorMessage(e);
        snprintf(err, errlen, "LLVM's optimiser failed: %s", m);
        LLVMDisposeErrorMessage(m);
        return SPAT_EBACKEND;
    }
    return SPAT_OK;
}

int sp_llvm_emit(LLVMModuleRef M, const sp_llvm_target *t, int asm_text, char **data, size_t *len,
                 char *err, size_t errlen)
{
    LLVMTargetMachineRef tm = sp_llvm_target_machine(t, err, errlen);
    if (!tm)
        return SPAT_EBACKEND;
    LLVMMemoryBufferRef buf = NULL;
    char *msg = NULL;
    int rc = SPAT_OK;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, M, asm_text ? LLVMAssemblyFile : LLVMObjectFile, &msg,
                                            &buf)) {
        snprintf(err, errlen, "LLVM cannot emit machine code: %s", msg ? msg : "?");
        rc = SPAT_EBACKEND;
    } else {
        *len = LLVMGetBufferSize(buf);
        *data = malloc(*len + 1);
        if (!*data) {
            rc = SPAT_ENOMEM;
            snprintf(err, errlen, "out of memory");
        } else {
            memcpy(*data, LLVMGetBufferStart(buf), *len);
            (*data)[*len] = '\0';
        }
        LLVMDisposeMemoryBuffer(buf);
    }
    LLVMDisposeMessage(msg);
    LLVMDisposeTargetMachine(tm);
    return rc;
}

static int text(LLVMModuleRef M, char **data, size_t *len, char *err, size_t errlen)
{
    char *s = LLVMPrintModuleToString(M);
    *len = strlen(s);
    *data = malloc(*len + 1);
    if (*data)
        memcpy(*data, s, *len + 1);
    LLVMDisposeMessage(s);
    if (!*data) {
        snprintf(err, errlen, "out of memory");
        return SPAT_ENOMEM;
    }
    return SPAT_OK;
}

int sp_llvm_compile(const sp_plan *const *plans, int nplans, const int *head_dims, int nhd,
                    const sp_llvm_target *t, int kind, char **data, size_t *len, sp_llvm_unit *units,
                    char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    LLVMContextRef C = LLVMContextCreate();
    LLVMModuleRef M = NULL;
    int rc = sp_llvm_module_create(C, "spat", t, &M, err, errlen);
    int done = 0;
    for (int i = 0; rc == SPAT_OK && i < nplans; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "spat_cpu_p%d", i);
        sp_llvm_unit u;
        rc = sp_llvm_generate(plans[i], prefix, head_dims, nhd, SP_LLVM_FORWARD | SP_LLVM_BACKWARD, t,
                              C, M, &u, err, errlen);
        if (rc == SPAT_OK && units)
            units[done++] = u;
        else if (rc == SPAT_OK)
            sp_llvm_unit_free(&u);
    }
    if (rc == SPAT_OK && kind == SP_LLVM_IR_RAW)
        rc = text(M, data, len, err, errlen);
    else if (rc == SPAT_OK && (rc = sp_llvm_optimize(M, t, err, errlen)) == SPAT_OK)
        rc = kind == SP_LLVM_IR ? text(M, data, len, err, errlen)
                                : sp_llvm_emit(M, t, kind == SP_LLVM_ASM, data, len, err, errlen);
    if (rc != SPAT_OK && units)
        for (int i = 0; i < done; i++)
            sp_llvm_unit_free(&units[i]);
    if (M)
        LLVMDisposeModule(M);
    LLVMContextDispose(C);
    return rc;
}

void sp_llvm_objs_free(sp_llvm_objs *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->data[i]);
    memset(o, 0, sizeof *o);
}

/* One head dim's share of sp_llvm_compile_objects, on a thread of its own:
 * its own context and module, every plan's entries at that head dim. */
typedef struct part {
    const sp_plan *const *plans;
    int nplans, hd;
    const sp_llvm_target *t;
    sp_llvm_unit *units; /* [nplans]: this head dim's entries */
    int ndone;           /* units filled */
    char *data;
    size_t len;
    int rc;
    char err[2048];
} part;

static void *run_part(void *arg)
{
    part *p = arg;
    LLVMContextRef C = LLVMContextCreate();
    LLVMModuleRef M = NULL;
    char name[32];
    snprintf(name, sizeof name, "spat_d%d", p->hd);
    p->rc = sp_llvm_module_create(C, name, p->t, &M, p->err, sizeof p->err);
    for (int i = 0; p->rc == SPAT_OK && i < p->nplans; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "spat_cpu_p%d", i);
        p->rc = sp_llvm_generate(p->plans[i], prefix, &p->hd, 1, SP_LLVM_FORWARD | SP_LLVM_BACKWARD,
                                 p->t, C, M, &p->units[i], p->err, sizeof p->err);
        p->ndone += p->rc == SPAT_OK;
    }
    if (p->rc == SPAT_OK && (p->rc = sp_llvm_optimize(M, p->t, p->err, sizeof p->err)) == SPAT_OK)
        p->rc = sp_llvm_emit(M, p->t, 0, &p->data, &p->len, p->err, sizeof p->err);
    if (M)
        LLVMDisposeModule(M);
    LLVMContextDispose(C);
    return NULL;
}

int sp_llvm_compile_objects(const sp_plan *const *plans, int nplans, const int *head_dims, int nhd,
                            const sp_llvm_target *t, sp_llvm_objs *objs, sp_llvm_unit *units,
                            char *err, size_t errlen)
{
    memset(objs, 0, sizeof *objs);
    if (nhd > 32)
        nhd = 32;
    part *parts = calloc((size_t)(nhd ? nhd : 1), sizeof *parts);
    sp_llvm_unit *pu = calloc((size_t)(nhd * nplans + 1), sizeof *pu);
    if (!parts || !pu) {
        free(parts);
        free(pu);
        snprintf(err, errlen, "out of memory");
        return SPAT_ENOMEM;
    }
    pthread_t th[32];
    bool started[32];
    for (int h = 0; h < nhd; h++) {
        parts[h] = (part){.plans = plans, .nplans = nplans, .hd = head_dims[h], .t = t,
                          .units = pu + (size_t)h * (size_t)nplans};
        /* A thread that cannot start only means this share runs here. */
        started[h] = h > 0 && pthread_create(&th[h], NULL, run_part, &parts[h]) == 0;
    }
    for (int h = 0; h < nhd; h++)
        if (!started[h])
            run_part(&parts[h]);
    for (int h = 0; h < nhd; h++)
        if (started[h])
            pthread_join(th[h], NULL);
    int rc = SPAT_OK;
    for (int h = 0; h < nhd && rc == SPAT_OK; h++)
        if ((rc = parts[h].rc) != SPAT_OK)
            snprintf(err, errlen, "%s", parts[h].err);
    /* Each plan's unit: its head dims' entries, in order. */
    for (int i = 0; rc == SPAT_OK && units && i < nplans; i++) {
        memset(&units[i], 0, sizeof units[i]);
        units[i].nhd = nhd;
        for (int h = 0; h < nhd; h++) {
            sp_llvm_unit *u = &parts[h].units[i];
            units[i].head_dims[h] = u->head_dims[0];
            units[i].info[h] = u->info[0];
            units[i].names[h] = u->names[0];
            memset(u, 0, sizeof *u);
        }
    }
    for (int h = 0; h < nhd; h++) {
        for (int i = 0; i < parts[h].ndone; i++)
            sp_llvm_unit_free(&parts[h].units[i]);
        if (rc == SPAT_OK) {
            objs->data[h] = parts[h].data;
            objs->len[h] = parts[h].len;
        } else {
            free(parts[h].data);
        }
    }
    objs->n = rc == SPAT_OK ? nhd : 0;
    free(parts);
    free(pu);
    return rc;
}

#endif /* SPAT_HAVE_LLVM */
