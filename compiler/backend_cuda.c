/* The CUDA generator's frame: which pass runs each component, and the
 * parts of the source that span components: the environment of resolved
 * position sets, the dispatch functions the engine calls (schedules,
 * ownership, gathers), and the kernel entry points. What each component
 * kind contributes is in cuda_comp.c; the engine is cuda_engine.cuh. */
#include "config.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "comp.h"
#include "cuda_gen.h"
#include "cuda_params.h"

#define P(...) fprintf(g->f, __VA_ARGS__)

void sp_cuda_classify(const sp_headplan *hp, sp_cuda_class *out)
{
    assert(!hp->anticausal); /* the CUDA backend runs plans, not their transposes (yet) */
    memset(out, 0, sizeof *out);
    out->rows = -1;
    for (int c = 0; c < hp->ncomps; c++) {
        const sp_comp *k = &hp->comps[c];
        if (sp_comp_pass(k) == SP_PASS_ROWS) {
            out->pass[c] = SP_CUDA_PASS_ROWS;
            out->rows = c;
        } else if (sp_comp_pass(k) == SP_PASS_REMAP) {
            out->pass[c] = SP_CUDA_PASS_REMAP;
            out->remap_comp[out->nremap] = c;
            out->remap_d[out->nremap] = sp_comp_step(k);
            out->nremap++;
        } else {
            out->pass[c] = SP_CUDA_PASS_DIRECT;
            out->ndirect++;
            /* Bands, segments, offsets and spans reach a bounded number of keys. */
            out->grows |= hp->causal && (k->kind == SP_C_DENSE || (k->kind == SP_C_COLS && k->u.cols.nper > 0));
        }
    }
    /* With no direct component and a remap one, the first remap slot
     * writes the rows; the direct pass only clears padding rows. */
    out->direct_writes = out->ndirect > 0 || out->nremap == 0;
}

bool sp_cuda_supported(const sp_plan *p, char *msg, size_t cap)
{
    for (int cls = 0; cls < p->nclasses; cls++)
        for (int c = 0; c < p->classes[cls].ncomps; c++) {
            const sp_comp *k = &p->classes[cls].comps[c];
            if (k->kind == SP_C_RANDOM && k->u.random.r > SP_CUDA_RMAX) {
                snprintf(msg, cap,
                         "pattern '%s': the CUDA kernels draw at most %d random blocks per query "
                         "block, the pattern asks for %" PRId64,
                         p->name, SP_CUDA_RMAX, k->u.random.r);
                return false;
            }
        }
    return true;
}

/* ------------------------------------------------------------- frame */

/* The narrowest run of consecutive keys a component gives a row, when
 * every component of every class is dense (a run as long as the sequence:
 * INT32_MAX here) or a band of dilation 1; else 0. Long runs mean long runs
 * of full tiles, where wider tiles and more rows per CTA pay (SP_WIDE and
 * SP_WG in cuda_engine.cuh); narrower or scattered components waste their
 * masked part. */
static int64_t run(const sp_plan *p)
{
    int64_t w = INT32_MAX;
    for (int cls = 0; cls < p->nclasses; cls++)
        for (int c = 0; c < p->classes[cls].ncomps; c++) {
            const sp_comp *k = &p->classes[cls].comps[c];
            if (k->kind == SP_C_DENSE)
                continue;
            if (k->kind != SP_C_BAND || k->u.band.dil != 1)
                return 0;
            if (k->u.band.hi - k->u.band.lo + 1 < w)
                w = k->u.band.hi - k->u.band.lo + 1;
        }
    return w;
}

/* Does some component take its keys from a set of columns or draw them
 * (random blocks)? Their steps cost the producer warp more (set lookups,
 * draws, and for a set of more than one span a key position per row):
 * SP_GATHER in cuda_engine.cuh. A set of one span is tiled as a range
 * (cuda_comp.c), yet longformer's, the suite's only such pattern without
 * draws, lost 2.5 % at d = 64 without SP_GATHER (H100). */
static bool gathers(const sp_plan *p)
{
    for (int cls = 0; cls < p->nclasses; cls++)
        for (int c = 0; c < p->classes[cls].ncomps; c++)
            if (p->classes[cls].comps[c].kind == SP_C_COLS || p->classes[cls].comps[c].kind == SP_C_RANDOM)
                return true;
    return false;
}

/* Has every class a dense component? Then *causal tells whether one of
 * them is causal. */
static bool all_dense(const sp_plan *p, bool *causal)
{
    *causal = false;
    for (int cls = 0; cls < p->nclasses; cls++) {
        const sp_headplan *c = &p->classes[cls];
        bool dense = false;
        for (int k = 0; k < c->ncomps; k++)
            dense |= c->comps[k].kind == SP_C_DENSE;
        if (!dense)
            return false;
        *causal |= c->causal;
    }
    return p->nclasses > 0;
}

/* Does every row attend every key: every class has a dense component and
 * none is causal? Then a CTA's rows all run the same full tiles, and
 * more of them may share each tile (SP_EVERY: SP_WG in cuda_engine.cuh). */
static bool every_pair(const sp_plan *p)
{
    bool causal;
    return all_dense(p, &causal) && !causal;
}

/* Does every row attend at least every key up to itself: every class has
 * a dense component, and some class is causal? Then a query tile's work
 * grows with its rows, and more rows may share each tile once the longest
 * run first (SP_LOWER: SP_WG in cuda_engine.cuh). */
static bool lower(const sp_plan *p)
{
    bool causal;
    return all_dense(p, &causal) && causal;
}

/* Does some class's direct pass have items whose keys grow with their
 * rows (sp_cuda_class.grows)? Then the host may run the longest first
 * (SP_GROWS: SP_ORDER in cuda_engine.cuh). */
static bool grows(const cuda_gen *g)
{
    for (int cls = 0; cls < g->ncls; cls++)
        if (g->cc[cls].grows)
            return true;
    return false;
}

static void header(cuda_gen *g)
{
    P("/* CUDA kernels for spat pattern '%s', generated by %s.\n", g->p->name, PACKAGE_STRING);
    P(" * Compile with NVRTC: -DSP_D=<head dim> -DSP_DT=<0 f32, 1 f16, 2 bf16>,\n");
    P(" * and -DSP_KERNEL=<part> for one part's kernels only (see the end).\n *\n");
    P(" * The plan (spatc --emit=ir):\n");
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (m) {
        sp_plan_print(g->p, m);
        fclose(m);
    }
    for (char *line = text, *nl; line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl)
            nl = line + strlen(line) - 1;
        P(" *   %.*s\n", (int)(nl - line), line);
        if (!nl[1])
            break;
    }
    free(text);
    P(" *\n * Passes: 'direct' runs the components in position space (and\n");
    P(" * gathered columns, random blocks) over 64 contiguous query rows;\n");
    P(" * 'remap' runs a dilated band or a residue class on the dense band its\n");
    P(" * residue class forms; 'rows' splits global rows over key chunks. */\n\n");
    P("#define SP_PARAMS_FIELDS %s\n\n", SP_PARAMS_TEXT);
    const int64_t w = run(g->p);
    if (w > 0)
        P("/* Every component is dense or a band of at least this many consecutive\n"
          " * keys (see SP_WIDE, SP_WG). */\n#define SP_RUN %" PRId64 "\n\n", w);
    if (every_pair(g->p))
        P("/* Every row attends every key (see SP_WG). */\n#define SP_EVERY 1\n\n");
    if (lower(g->p))
        P("/* Every row attends every key up to itself, under causal (see SP_WG). */\n"
          "#define SP_LOWER 1\n\n");
    if (grows(g))
        P("/* A query tile's keys grow with its rows: the host may run the longest\n"
          " * first (see SP_ORDER). */\n#define SP_GROWS 1\n\n");
    if (gathers(g->p))
        P("/* Gathered or drawn keys: more producer warps per SM where they fit (see SP_MINB). */\n"
          "#define SP_GATHER 1\n\n");
}

static int max_random(const cuda_gen *g)
{
    int64_t r = 0;
    for (int cls = 0; cls < g->ncls; cls++)
        for (int c = 0; c < g->p->classes[cls].ncomps; c++) {
            const sp_comp *k = cg_comp(g, cls, c);
            if (k->kind == SP_C_RANDOM && k->u.random.r > r)
                r = k->u.random.r;
        }
    return (int)r;
}

static void env(cuda_gen *g)
{
    P("    /* Position sets of `global` rules, resolved against the key length\n");
    P("     * L when a CTA starts (`last n` depends on it). */\n    struct env {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        for (int c = 0; c < g->p->classes[cls].ncomps; c++) {
            const sp_comp *k = cg_comp(g, cls, c);
            if (!cg_has_set(k))
                continue;
            const sp_set *set = k->kind == SP_C_ROWS ? &k->u.rows.spans : &k->u.cols.spans;
            P("        sp_pset<%d> s%d; /* class %d #%d %s */\n", set->n, cg_gid(g, cls, c), cls, c,
              sp_comp_kind_name(k->kind));
        }
    P("        int none;\n    };\n\n");
    P("    SP_HD static void env_init(env &e, int cls, i64 L)\n    {\n        (void)e;\n        (void)L;\n");
    P("        switch (cls) {\n");
    for (int cls = 0; cls < g->ncls; cls++) {
        P("        case %d:\n", cls);
        for (int c = 0; c < g->p->classes[cls].ncomps; c++) {
            const sp_comp *k = cg_comp(g, cls, c);
            if (!cg_has_set(k))
                continue;
            const sp_set *set = k->kind == SP_C_ROWS ? &k->u.rows.spans : &k->u.cols.spans;
            const int gid = cg_gid(g, cls, c);
            P("            e.s%d.n = %d;\n", gid, set->n);
            for (int x = 0; x < set->n; x++) {
                const sp_setitem *it = &set->items[x];
                P("            e.s%d.lo[%d] = sp_max(0, sp_resolve(", gid, x);
                cg_i64(g, it->lo);
                P(", %s, L));\n", it->lo_end ? "true" : "false");
                P("            e.s%d.hi[%d] = sp_min(L - 1, sp_resolve(", gid, x);
                cg_i64(g, it->hi);
                P(", %s, L));\n", it->hi_end ? "true" : "false");
            }
            P("            sp_set_merge(e.s%d);\n", gid);
        }
        P("            break;\n");
    }
    P("        }\n    }\n\n");
}

static void classes(cuda_gen *g)
{
    const sp_plan *p = g->p;
    P("    SP_HD static int head_class(i64 h)\n    {\n        (void)h;\n");
    if (p->nheads > 0) {
        for (int64_t h = 0; h < p->nheads;) {
            int64_t e = h;
            while (e + 1 < p->nheads && p->head_class[e + 1] == p->head_class[h])
                e++;
            P("        if (h <= %" PRId64 ")\n            return %d;\n", e, p->head_class[h]);
            h = e + 1;
        }
    }
    P("        return 0;\n    }\n");
    P("    SP_HD static bool causal(int cls)\n    {\n        switch (cls) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        P("        case %d:\n            return %s;\n", cls, p->classes[cls].causal ? "true" : "false");
    P("        }\n        return false;\n    }\n");
    P("    SP_HD static bool direct_writes(int cls)\n    {\n        switch (cls) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        P("        case %d:\n            return %s;\n", cls, g->cc[cls].direct_writes ? "true" : "false");
    P("        }\n        return true;\n    }\n");
    P("\n");
}

static void dispatch(cuda_gen *g)
{
    /* dnext: the direct components of the CTA's class, in plan order. */
    P("    /* The direct pass's visits: component after component. */\n");
    P("    template <int BN>\n    SP_HD static bool dnext(sp_sched &s, sp_visit &v, const sp_tile &T, "
      "const env &e, sp_rnd<NRND> &rnd)\n    {\n");
    P("        for (;;) {\n            sp_visit_init(v, T);\n            switch (T.cls * 32 + s.k) {\n");
    for (int cls = 0; cls < g->ncls; cls++) {
        int step = 0;
        for (int c = 0; c < g->p->classes[cls].ncomps; c++) {
            if (g->cc[cls].pass[c] != SP_CUDA_PASS_DIRECT)
                continue;
            P("            case %d:\n                if (d%d<BN>(s, v, T, e, rnd))\n                    return true;\n"
              "                break;\n",
              cls * 32 + step, cg_gid(g, cls, c));
            step++;
        }
    }
    P("            default:\n                (void)e;\n                (void)rnd;\n                return false;\n");
    P("            }\n            const int k = s.k + 1;\n            s = sp_sched();\n            s.k = k;\n");
    P("        }\n    }\n\n");

    /* remap */
    P("    /* Remap slots: the class's dilated bands and residues, in plan order. */\n");
    P("    SP_HD static int remap_gid(int cls, int slot, i64 &D)\n    {\n        (void)D;\n");
    P("        switch (cls * 32 + slot) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        for (int s = 0; s < g->cc[cls].nremap; s++)
            P("        case %d:\n            D = %" PRId64 "LL;\n            return %d;\n", cls * 32 + s,
              g->cc[cls].remap_d[s], cg_gid(g, cls, g->cc[cls].remap_comp[s]));
    P("        }\n        return -1;\n    }\n");
    P("    SP_HD static bool remap_stores(int cls, int slot) { return slot == 0 && !direct_writes(cls); }\n");
    P("    template <int BN>\n    SP_HD static bool rnext(sp_sched &s, sp_visit &v, const sp_tile &T, "
      "const env &e, int slot)\n    {\n        sp_visit_init(v, T);\n        switch (T.cls * 32 + slot) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        for (int s = 0; s < g->cc[cls].nremap; s++)
            P("        case %d:\n            return r%d<BN>(s, v, T, e);\n", cls * 32 + s,
              cg_gid(g, cls, g->cc[cls].remap_comp[s]));
    P("        }\n        (void)e;\n        return false;\n    }\n\n");

    /* rows */
    P("    /* Global rows: the rows pass's component and its set. */\n");
    P("    SP_HD static int rows_gid(int cls)\n    {\n        switch (cls) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        if (g->cc[cls].rows >= 0)
            P("        case %d:\n            return %d;\n", cls, cg_gid(g, cls, g->cc[cls].rows));
    P("        }\n        return -1;\n    }\n");
    P("    SP_HD static i64 rows_le(const env &e, int cls, i64 x)\n    {\n        (void)e;\n        (void)x;\n"
      "        switch (cls) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        if (g->cc[cls].rows >= 0)
            P("        case %d:\n            return sp_set_count(e.s%d, x);\n", cls,
              cg_gid(g, cls, g->cc[cls].rows));
    P("        }\n        return 0;\n    }\n");
    P("    SP_HD static i64 rows_elem(const env &e, int cls, i64 t)\n    {\n        (void)e;\n        (void)t;\n"
      "        switch (cls) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        if (g->cc[cls].rows >= 0)
            P("        case %d:\n            return sp_set_elem(e.s%d, t);\n", cls,
              cg_gid(g, cls, g->cc[cls].rows));
    P("        }\n        return -1;\n    }\n");
    P("    SP_HD static u32 rows_xm(sp_visit &v, const sp_tile &T, const env &e)\n    {\n");
    P("        (void)v;\n        (void)T;\n        (void)e;\n        v.xm = 0;\n        switch (T.cls) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        if (g->cc[cls].rows >= 0) {
            P("        case %d:\n", cls);
            cg_xm(g, cls, g->cc[cls].rows, "            ", false);
            P("            break;\n");
        }
    P("        }\n        return v.xm;\n    }\n\n");

    /* gather */
    P("    /* Gathered columns: the t-th key of a visit's sub-run. */\n");
    P("    SP_HD static i64 gather(const sp_visit &v, i64 t, const env &e)\n    {\n        (void)e;\n"
      "        (void)t;\n        switch (v.gid) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        for (int c = 0; c < g->p->classes[cls].ncomps; c++)
            cg_gather_cases(g, cls, c);
    P("        }\n        return -1;\n    }\n\n");

    /* own */
    P("    /* Is (i, j) a pair of the visit's component (rows and keys already\n");
    P("     * valid)? Only the tests the visit's flags leave open run. */\n");
    P("    SP_HD static bool own(const sp_visit &v, i64 i, i64 j, const env &e)\n    {\n        (void)e;\n");
    P("        if (v.cz && j > i)\n            return false;\n        switch (v.gid) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        for (int c = 0; c < g->p->classes[cls].ncomps; c++)
            cg_own_body(g, cls, c);
    P("        }\n        return true;\n    }\n\n");

    /* band */
    P("    /* own's test of the visit's component as a band of j - i, when it\n");
    P("     * is one: lo <= j - i <= hi, j - i a multiple of m (sp_band_mask). */\n");
    P("    SP_HD static bool band(const sp_visit &v, i64 &lo, i64 &hi, i64 &m)\n    {\n");
    P("        lo = -SP_FAR;\n        hi = SP_FAR;\n        m = 1;\n        switch (v.gid) {\n");
    for (int cls = 0; cls < g->ncls; cls++)
        for (int c = 0; c < g->p->classes[cls].ncomps; c++)
            cg_band_case(g, cls, c);
    P("        }\n        return false;\n    }\n");
}

/* Opens the guard of a part's kernels: compiled when SP_KERNEL selects
 * the part, or when it is not defined (the whole program). */
static void part_begin(cuda_gen *g, int part) { P("#if !defined(SP_KERNEL) || SP_KERNEL == %d\n", part); }

static void kernels(cuda_gen *g)
{
    bool remap = false, rows = false;
    for (int cls = 0; cls < g->ncls; cls++) {
        remap |= g->cc[cls].nremap > 0;
        rows |= g->cc[cls].rows >= 0;
    }
    P("\n#if defined(__CUDACC__)\n");
    P("/* -DSP_KERNEL=<part> keeps the kernels of one pass (%d direct, %d remap, %d rows and its\n"
      " * merge), so that the passes compile as separate programs, in parallel. */\n",
      SP_CUDA_PART_DIRECT, SP_CUDA_PART_REMAP, SP_CUDA_PART_ROWS);
    P("#if defined(SP_KERNEL) && (SP_KERNEL < 0 || SP_KERNEL >= %d)\n#error \"SP_KERNEL: no such part\"\n"
      "#endif\n", SP_CUDA_NPARTS);
    part_begin(g, SP_CUDA_PART_DIRECT);
    P("extern \"C\" __global__ void __launch_bounds__(SP_NT, SP_MINB) " SP_CUDA_K_DIRECT
      "(const __grid_constant__ sp_params p) { sp_direct<sp_pat>(p); }\n#endif\n");
    if (remap) {
        part_begin(g, SP_CUDA_PART_REMAP);
        P("extern \"C\" __global__ void __launch_bounds__(SP_NT, SP_MINB) " SP_CUDA_K_REMAP
          "(const __grid_constant__ sp_params p) { sp_remap<sp_pat>(p); }\n#endif\n");
    }
    if (rows) {
        part_begin(g, SP_CUDA_PART_ROWS);
        P("extern \"C\" __global__ void __launch_bounds__(SP_NT, SP_MINB) " SP_CUDA_K_ROWS
          "(const __grid_constant__ sp_params p) { sp_rows<sp_pat>(p); }\n");
        P("extern \"C\" __global__ void __launch_bounds__(SP_NT) " SP_CUDA_K_MERGE
          "(const __grid_constant__ sp_params p) { sp_rows_merge<sp_pat>(p); }\n#endif\n");
    }
    P("/* Dynamic shared memory of the tile kernels, threads and query rows per CTA, for the\n"
      " * launcher (in every part). */\n");
    P("extern \"C\" __device__ int spat_smem = sp_engine::SMEM;\n");
    P("extern \"C\" __device__ int spat_threads = SP_NT;\n");
    P("extern \"C\" __device__ int spat_tile_rows = SP_BM;\n");
    P("/* 1: the tile kernels are persistent (sp_persist): launch as many CTAs as fit on the GPU at once\n"
      " * and pass the grid's x in p.gx. */\n");
    P("extern \"C\" __device__ int spat_persist = SP_WS;\n");
    P("#endif\n");
}

int sp_cuda_emit(const sp_plan *p, FILE *f, char *msg, size_t cap)
{
    if (!sp_cuda_supported(p, msg, cap))
        return -1;
    cuda_gen gen = {.f = f, .p = p, .ncls = p->nclasses};
    cuda_gen *g = &gen;
    g->base = calloc((size_t)p->nclasses, sizeof *g->base);
    g->cc = calloc((size_t)p->nclasses, sizeof *g->cc);
    if (!g->base || !g->cc) {
        free(g->base);
        free(g->cc);
        snprintf(msg, cap, "out of memory generating CUDA source");
        return -1;
    }
    for (int cls = 0, n = 0; cls < p->nclasses; cls++) {
        g->base[cls] = n;
        n += p->classes[cls].ncomps;
        sp_cuda_classify(&p->classes[cls], &g->cc[cls]);
    }
    header(g);
    fputs(sp_cuda_engine_text, f);
    P("\n/* ====================================================================\n");
    P(" * Pattern '%s'\n", p->name);
    P(" * ==================================================================== */\n\n");
    P("struct sp_pat {\n    static constexpr int NRND = %d;\n\n", max_random(g));
    env(g);
    classes(g);
    for (int cls = 0; cls < g->ncls; cls++)
        for (int c = 0; c < p->classes[cls].ncomps; c++)
            cg_helpers(g, cls, c);
    P("\n");
    for (int cls = 0; cls < g->ncls; cls++)
        for (int c = 0; c < p->classes[cls].ncomps; c++) {
            if (g->cc[cls].pass[c] == SP_CUDA_PASS_DIRECT)
                cg_direct_step(g, cls, c);
            else if (g->cc[cls].pass[c] == SP_CUDA_PASS_REMAP)
                cg_remap_step(g, cls, c);
        }
    P("\n");
    dispatch(g);
    P("};\n");
    kernels(g);
    free(g->base);
    free(g->cc);
    if (ferror(f)) {
        snprintf(msg, cap, "cannot write the CUDA source");
        return -1;
    }
    return 0;
}

int sp_cuda_source(const sp_plan *p, char **src, size_t *len, char *msg, size_t cap)
{
    *src = NULL;
    *len = 0;
    FILE *f = open_memstream(src, len);
    if (!f) {
        snprintf(msg, cap, "out of memory generating CUDA source");
        return -1;
    }
    int rc = sp_cuda_emit(p, f, msg, cap);
    if (fclose(f) != 0 && rc == 0) {
        snprintf(msg, cap, "out of memory generating CUDA source");
        rc = -1;
    }
    if (rc != 0) {
        free(*src);
        *src = NULL;
        *len = 0;
    }
    return rc;
}

int sp_cuda_options(int d, int dtype, const char *arch, int part, char buf[SP_CUDA_MAX_OPTS][64],
                    const char *opts[SP_CUDA_MAX_OPTS])
{
    int n = 0;
    snprintf(buf[n++], 64, "--gpu-architecture=%s", arch);
    snprintf(buf[n++], 64, "-DSP_D=%d", d);
    snprintf(buf[n++], 64, "-DSP_DT=%d", dtype);
    if (part != SP_CUDA_PART_ALL)
        snprintf(buf[n++], 64, "-DSP_KERNEL=%d", part);
    snprintf(buf[n++], 64, "-std=c++17");
    snprintf(buf[n++], 64, "-default-device");
    /* Tuning experiments: up to three more options, blank-separated
     * (e.g. "-DSP_MINB=2"). They are part of the cache key like the rest. */
    const char *extra = getenv("SPAT_CUDA_FLAGS");
    if (extra) {
        char tmp[256], *save = NULL;
        snprintf(tmp, sizeof tmp, "%s", extra);
        for (char *t = strtok_r(tmp, " \t", &save); t && n < SP_CUDA_MAX_OPTS; t = strtok_r(NULL, " \t", &save))
            snprintf(buf[n++], 64, "%s", t);
    }
    for (int i = 0; i < n; i++)
        opts[i] = buf[i];
    return n;
}
