/* The CPU backend's runtime: orchestration around the LLVM-generated tile
 * code (cpu_abi.h says what the code does).
 *
 * One forward call runs as phases on a per-call thread team (pool.h):
 *   random   the random key blocks of every (batch, head, query block),
 *            drawn exactly as the reference draws them (candidates are the
 *            blocks no other component touches; the generator of rng.h);
 *   tiles    P1: contiguous query tiles of every (batch, head), all direct
 *            components into one softmax state, then O and LSE written
 *            (every row: empty ones get O = 0, LSE = -inf); also the key
 *            chunks of the global rows (P3), into partial buffers;
 *   remap k  P2: the k-th remapped component of each class (dilated band,
 *            stride) over strided query tiles of one residue class, merged
 *            into O and LSE through the LSEs; one phase per component, so
 *            two components of a head never update a row at once;
 *   rows     the global rows' chunks merged, then into O and LSE.
 * Positions, sets and tables that depend on the sequence length are
 * resolved here per call: the column spans and byte maps of the global
 * rows and columns (they depend on L through `last n`), and the random
 * tables. */
#include "config.h"

#include <assert.h>
#include <cpuid.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comp.h"
#include "cpu.h"
#include "module.h"
#include "plan.h"
#include "pool.h"
#include "rng.h"

/* ============================================================== features */

static const struct {
    uint64_t bit;
    const char *name;
} feature_names[] = {
    {SP_CPU_F_SSE3, "sse3"}, {SP_CPU_F_SSSE3, "ssse3"}, {SP_CPU_F_SSE41, "sse4.1"},
    {SP_CPU_F_SSE42, "sse4.2"}, {SP_CPU_F_POPCNT, "popcnt"}, {SP_CPU_F_AVX, "avx"},
    {SP_CPU_F_AVX2, "avx2"}, {SP_CPU_F_FMA, "fma"}, {SP_CPU_F_F16C, "f16c"},
    {SP_CPU_F_BMI, "bmi"}, {SP_CPU_F_BMI2, "bmi2"}, {SP_CPU_F_LZCNT, "lzcnt"},
    {SP_CPU_F_AVX512F, "avx512f"}, {SP_CPU_F_AVX512DQ, "avx512dq"}, {SP_CPU_F_AVX512CD, "avx512cd"},
    {SP_CPU_F_AVX512BW, "avx512bw"}, {SP_CPU_F_AVX512VL, "avx512vl"},
    {SP_CPU_F_AVX512VNNI, "avx512vnni"}, {SP_CPU_F_AVX512BF16, "avx512bf16"},
    {SP_CPU_F_AVX512FP16, "avx512fp16"}, {SP_CPU_F_AVX512VBMI, "avx512vbmi"},
    {SP_CPU_F_AVX512VBMI2, "avx512vbmi2"}, {SP_CPU_F_AVX512IFMA, "avx512ifma"},
    {SP_CPU_F_AVX512BITALG, "avx512bitalg"}, {SP_CPU_F_AVX512VPOPCNTDQ, "avx512vpopcntdq"},
    {SP_CPU_F_AVX512VP2INTERSECT, "avx512vp2intersect"}, {SP_CPU_F_GFNI, "gfni"},
    {SP_CPU_F_VAES, "vaes"}, {SP_CPU_F_VPCLMULQDQ, "vpclmulqdq"}, {SP_CPU_F_AVXVNNI, "avxvnni"},
    {SP_CPU_F_MOVBE, "movbe"},
};

void sp_cpu_feature_names(uint64_t mask, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof feature_names / sizeof *feature_names; i++)
        if (mask & feature_names[i].bit && len < cap) {
            int n = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", feature_names[i].name);
            len += n > 0 ? (size_t)n : 0;
        }
}

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

uint64_t sp_cpu_host_features(void)
{
    unsigned a, b, c, d, max = __get_cpuid_max(0, NULL);
    uint64_t f = 0;
    if (max < 1 || !__get_cpuid(1, &a, &b, &c, &d))
        return 0;
#define SET(cond, bit) \
    if (cond)          \
        f |= (bit);
    SET(c & 1u << 0, SP_CPU_F_SSE3);
    SET(c & 1u << 9, SP_CPU_F_SSSE3);
    SET(c & 1u << 12, SP_CPU_F_FMA);
    SET(c & 1u << 19, SP_CPU_F_SSE41);
    SET(c & 1u << 20, SP_CPU_F_SSE42);
    SET(c & 1u << 22, SP_CPU_F_MOVBE);
    SET(c & 1u << 23, SP_CPU_F_POPCNT);
    SET(c & 1u << 28, SP_CPU_F_AVX);
    SET(c & 1u << 29, SP_CPU_F_F16C);
    bool osxsave = c & 1u << 27;
    if (max >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        SET(b & 1u << 3, SP_CPU_F_BMI);
        SET(b & 1u << 5, SP_CPU_F_AVX2);
        SET(b & 1u << 8, SP_CPU_F_BMI2);
        SET(b & 1u << 16, SP_CPU_F_AVX512F);
        SET(b & 1u << 17, SP_CPU_F_AVX512DQ);
        SET(b & 1u << 21, SP_CPU_F_AVX512IFMA);
        SET(b & 1u << 28, SP_CPU_F_AVX512CD);
        SET(b & 1u << 30, SP_CPU_F_AVX512BW);
        SET(b & 1u << 31, SP_CPU_F_AVX512VL);
        SET(c & 1u << 1, SP_CPU_F_AVX512VBMI);
        SET(c & 1u << 6, SP_CPU_F_AVX512VBMI2);
        SET(c & 1u << 8, SP_CPU_F_GFNI);
        SET(c & 1u << 9, SP_CPU_F_VAES);
        SET(c & 1u << 10, SP_CPU_F_VPCLMULQDQ);
        SET(c & 1u << 11, SP_CPU_F_AVX512VNNI);
        SET(c & 1u << 12, SP_CPU_F_AVX512BITALG);
        SET(c & 1u << 14, SP_CPU_F_AVX512VPOPCNTDQ);
        SET(d & 1u << 8, SP_CPU_F_AVX512VP2INTERSECT);
        SET(d & 1u << 23, SP_CPU_F_AVX512FP16);
        unsigned sub = a;
        if (sub >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            SET(a & 1u << 4, SP_CPU_F_AVXVNNI);
            SET(a & 1u << 5, SP_CPU_F_AVX512BF16);
        }
    }
    if (__get_cpuid(0x80000001u, &a, &b, &c, &d))
        SET(c & 1u << 5, SP_CPU_F_LZCNT);
#undef SET
    /* The OS must save the vector registers: YMM state for AVX, and the
     * opmask and ZMM states for AVX-512. */
    const uint64_t avx_bits = SP_CPU_F_AVX | SP_CPU_F_AVX2 | SP_CPU_F_FMA | SP_CPU_F_F16C |
                              SP_CPU_F_VAES | SP_CPU_F_VPCLMULQDQ | SP_CPU_F_AVXVNNI;
    uint64_t avx512_bits = 0;
    for (size_t i = 0; i < sizeof feature_names / sizeof *feature_names; i++)
        if (!strncmp(feature_names[i].name, "avx512", 6))
            avx512_bits |= feature_names[i].bit;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    if ((xcr0 & 6) != 6)
        f &= ~(avx_bits | avx512_bits);
    if ((xcr0 & 0xe6) != 0xe6)
        f &= ~avx512_bits;
    return f;
}

/* ========================================================== code checks */

static int class_of(const sp_plan *p, int64_t h) { return p->nheads > 0 ? p->head_class[h] : 0; }

static bool is_remap(const sp_comp *c) { return sp_comp_pass(c) == SP_PASS_REMAP; }

static bool any_remap(const sp_headplan *hp)
{
    for (int k = 0; k < hp->ncomps; k++)
        if (is_remap(&hp->comps[k]))
            return true;
    return false;
}

/* The entry of (kind, class, comp), or -1. */
static int find_entry(const sp_cpu_info *info, uint32_t kind, int cls, int comp)
{
    for (uint32_t e = 0; e < info->nentries; e++)
        if (info->entry[e].kind == kind && info->entry[e].cls == (uint32_t)cls &&
            (kind == SP_CPU_DIRECT || info->entry[e].comp == (uint32_t)comp))
            return (int)e;
    return -1;
}

/* Has the code an entry for every pass of the lowered table? An entry's
 * kind is base (0, SP_CPU_DQ, SP_CPU_KV or SP_CPU_KVQ) plus the pass's. */
_Static_assert(SP_CPU_DIRECT == 1 + SP_PASS_DIRECT && SP_CPU_REMAP == 1 + SP_PASS_REMAP &&
                   SP_CPU_ROWS == 1 + SP_PASS_ROWS,
               "entry kinds follow the passes");
static bool covers(const sp_cpu_info *info, const sp_lowered *l, int base)
{
    for (int x = 0; x < l->npasses; x++) {
        const sp_passdef *pd = &l->pass[x];
        if (find_entry(info, (uint32_t)(base + 1 + (int)pd->kind), pd->cls, pd->comp < 0 ? 0 : pd->comp) < 0)
            return false;
    }
    return true;
}

/* The lowered table an entry of kind `kind` must be a pass of: the
 * forward's, dQ's, or (dK and dV, and any later kind, which walk keys)
 * the transposed plan's. */
static const sp_lowered *table_of(uint32_t kind, sp_lowered *const tab[3])
{
    return tab[kind <= SP_CPU_ROWS ? 0 : kind <= SP_CPU_DQ + SP_CPU_ROWS ? 1 : 2];
}

/* Is entry e one of the passes of its table, with the pass's step? */
static bool entry_is_pass(const sp_cpu_entry *e, sp_lowered *const tab[3])
{
    const sp_lowered *l = table_of(e->kind, tab);
    const int pass = (int)((e->kind - 1) % 3);
    for (int x = 0; x < l->npasses; x++) {
        const sp_passdef *pd = &l->pass[x];
        if ((int)pd->kind == pass && e->cls == (uint32_t)pd->cls &&
            e->comp == (uint32_t)(pd->comp < 0 ? 0 : pd->comp) && e->step == (uint64_t)pd->step)
            return true;
    }
    return false;
}

/* The entries: kinds this libspat runs, each a pass of the plan (class,
 * component and step), and every forward pass present. */
static int check_entries(const spat_kernel *k, const sp_cpu_info *info, const char *what)
{
    for (uint32_t e = 0; e < info->nentries; e++)
        if (info->entry[e].kind < 1 || info->entry[e].kind > SP_CPU_KIND_MAX)
            return sp_set_error(SPAT_ELOAD, "%s: its CPU entry %u has kind %u; this libspat runs "
                                "1..%d (entry kind)", what, e, info->entry[e].kind, SP_CPU_KIND_MAX);
    sp_arena a;
    sp_arena_init(&a);
    sp_plan *tp;
    sp_lowered *tab[3];
    if (sp_plan_lower(k->plan, SP_DIR_FORWARD, &a, &tab[0]) || sp_plan_lower(k->plan, SP_DIR_DQ, &a, &tab[1]) ||
        sp_plan_transpose(k->plan, &a, &tp) || sp_plan_lower(tp, SP_DIR_DKDV, &a, &tab[2])) {
        sp_arena_free(&a);
        return sp_set_error(SPAT_ENOMEM, "out of memory");
    }
    int rc = SPAT_OK;
    for (uint32_t e = 0; e < info->nentries && rc == SPAT_OK; e++) {
        const sp_cpu_entry *x = &info->entry[e];
        if (!entry_is_pass(x, tab))
            rc = sp_set_error(SPAT_ELOAD, "%s: its CPU entry %u (kind %u, cls %u, comp %u, step %u) "
                              "is no pass of the plan of '%s' (entry kind, cls, comp, step)", what,
                              e, x->kind, x->cls, x->comp, x->step, k->name);
        for (uint32_t f = 0; f < e && rc == SPAT_OK; f++)
            if (info->entry[f].kind == x->kind && info->entry[f].cls == x->cls &&
                info->entry[f].comp == x->comp)
                rc = sp_set_error(SPAT_ELOAD, "%s: its CPU entries %u and %u are the same pass "
                                  "(entry kind, cls, comp)", what, f, e);
    }
    if (rc == SPAT_OK && !covers(info, tab[0], 0))
        rc = sp_set_error(SPAT_ELOAD, "%s: its CPU code lacks entry points the plan of '%s' needs",
                          what, k->name);
    /* The backward's entries: none, or every pass of dQ and of dK/dV, the
     * latter all of one kind (SP_CPU_KVQ, or an older spatc's SP_CPU_KV). */
    bool any = false, kv = false, kvq = false;
    for (uint32_t e = 0; e < info->nentries; e++) {
        any |= info->entry[e].kind > SP_CPU_ROWS;
        kv |= info->entry[e].kind > SP_CPU_KV && info->entry[e].kind <= SP_CPU_KV + SP_CPU_ROWS;
        kvq |= info->entry[e].kind > SP_CPU_KVQ;
    }
    if (rc == SPAT_OK && any &&
        ((kv && kvq) || !covers(info, tab[1], SP_CPU_DQ) || !covers(info, tab[2], kvq ? SP_CPU_KVQ : SP_CPU_KV)))
        rc = sp_set_error(SPAT_ELOAD, "%s: its CPU code's backward entries are incomplete or of two "
                          "kinds for the plan of '%s' (entry kind)", what, k->name);
    sp_arena_free(&a);
    return rc;
}

/* The shapes and the scratch layout: what the runtime allocates and where
 * it reads the state must be what the code was built for (cpu_abi.h). */
static int check_layout(const spat_kernel *k, const sp_cpu_info *info, const char *what)
{
    const uint32_t vec = sp_cpu_vec_of(info->level);
    if (!vec || info->vec != vec)
        return sp_set_error(SPAT_ELOAD, "%s: its CPU info is corrupt: level %u with %u floats per "
                            "vector (level, vec)", what, info->level, info->vec);
    if (info->head_dim == 0 || info->head_dim > SP_HEAD_DIM_MAX)
        return sp_set_error(SPAT_ELOAD, "%s: its CPU info is corrupt: head_dim %u", what,
                            info->head_dim);
    const sp_cpu_layout l = sp_cpu_layout_of(vec, info->head_dim);
    if (info->tq != l.tq || info->tk != l.tk)
        return sp_set_error(SPAT_ELOAD, "%s: its CPU info is corrupt: tiles of %u queries and %u "
                            "keys (tq, tk), but code of this level runs %u and %u", what, info->tq,
                            info->tk, l.tq, l.tk);
    if (info->off_m != l.o_m || info->off_l != l.o_l || info->off_o != l.o_o)
        return sp_set_error(SPAT_ELOAD, "%s: its CPU info is corrupt: the state at %u, %u, %u "
                            "(off_m, off_l, off_o), but the code keeps it at %u, %u, %u", what,
                            info->off_m, info->off_l, info->off_o, l.o_m, l.o_l, l.o_o);
    bool bwd = false;
    for (uint32_t e = 0; e < info->nentries; e++)
        bwd |= info->entry[e].kind > SP_CPU_ROWS;
    const uint32_t need = bwd ? l.bytes : l.fwd_bytes;
    if (info->scratch_bytes < need || info->scratch_bytes > l.bytes)
        return sp_set_error(SPAT_ELOAD, "%s: its CPU info is corrupt: scratch_bytes %llu, but the "
                            "code needs %u (and at most %u)", what,
                            (unsigned long long)info->scratch_bytes, need, l.bytes);
    const int64_t r = sp_plan_max_random(k->plan);
    if ((int64_t)info->rnd_cap != r)
        return sp_set_error(SPAT_ELOAD, "%s: its CPU info is corrupt: rnd_cap %u, but the plan of "
                            "'%s' draws at most %lld random blocks", what, info->rnd_cap, k->name,
                            (long long)r);
    return SPAT_OK;
}

int sp_cpu_check_code(const spat_kernel *k, const sp_cpu_info *info, size_t bytes, const char *what)
{
    if (bytes < sizeof *info || info->size < sizeof *info || info->abi != SP_CPU_ABI)
        return sp_set_error(SPAT_ELOAD, "%s: CPU code of another ABI (%u; this libspat runs %u): "
                            "rebuild it with this version's spatc", what,
                            bytes >= 8 ? info->abi : 0, SP_CPU_ABI);
    if (info->size > bytes || info->nentries > 4096 || bytes < SP_CPU_INFO_BYTES(info->nentries))
        return sp_set_error(SPAT_ELOAD, "%s: its CPU info is corrupt: %u entries of a %zu-byte "
                            "section (nentries, size)", what, info->nentries, bytes);
    if (info->plan_hash != sp_plan_hash(k->plan))
        return sp_set_error(SPAT_ELOAD, "%s: its CPU code was built for another plan of pattern '%s'",
                            what, k->name);
    int rc = check_layout(k, info, what);
    if (rc == SPAT_OK)
        rc = check_entries(k, info, what);
    if (rc != SPAT_OK)
        return rc;
    uint64_t missing = info->features & ~sp_cpu_host_features();
    if (missing) {
        char names[512];
        sp_cpu_feature_names(missing, names, sizeof names);
        return sp_set_error(SPAT_ELOAD, "%s: its CPU code needs %s, which this CPU lacks: rebuild "
                            "it for this machine (spatc -mcpu=... --target-features=...)", what,
                            names);
    }
    return SPAT_OK;
}

sp_cpu_state *sp_cpu_state_new(void)
{
    sp_cpu_state *st = calloc(1, sizeof *st);
    if (st && pthread_mutex_init(&st->lock, NULL) != 0) {
        free(st);
        return NULL;
    }
    return st;
}

void sp_cpu_state_free(sp_cpu_state *st)
{
    if (!st)
        return;
    if (st->release_owner)
        st->release_owner(st->owner);
    for (int i = 0; i < SP_MAX_HEAD_DIMS; i++) {
        free(st->code[i].fn);
        free(st->bwd[i].fn);
    }
    free(st->mem);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

static void release_state(void *p) { sp_cpu_state_free(p); }

/* Does the code hold every backward entry the kernel's plan needs? Its
 * dK/dV entries are of kind SP_CPU_KVQ, or SP_CPU_KV in a kernel.so of an
 * older spatc. */
static bool has_backward(const spat_kernel *k, const sp_cpu_info *info)
{
    sp_arena a;
    sp_arena_init(&a);
    sp_plan *tp;
    sp_lowered *dq, *kv;
    bool ok = !sp_plan_transpose(k->plan, &a, &tp) && !sp_plan_lower(k->plan, SP_DIR_DQ, &a, &dq) &&
              !sp_plan_lower(tp, SP_DIR_DKDV, &a, &kv) && covers(info, dq, SP_CPU_DQ) &&
              (covers(info, kv, SP_CPU_KVQ) || covers(info, kv, SP_CPU_KV));
    sp_arena_free(&a);
    return ok;
}

void sp_cpu_install(spat_kernel *k, sp_cpu_state *st)
{
    sp_backend_slot *s = &k->backends[SPAT_BACKEND_CPU];
    if (s->release)
        s->release(s->state);
    s->available = true;
    s->device = SPAT_DEVICE_CPU;
    s->dtypes = 1u << SPAT_F32;
    s->no_backward = NULL;
    for (int i = 0; i < SP_MAX_HEAD_DIMS; i++) {
        const sp_cpu_info *info = i < k->nhd ? st->code[i].info : NULL;
        s->forward[i] = info ? sp_cpu_forward : NULL;
        s->backward[i] = info && (st->make_backward || has_backward(k, info)) ? sp_cpu_backward : NULL;
        if (info && !s->backward[i])
            s->no_backward = "its CPU code has no backward (a kernel.so written by a spatc before "
                             "the backward): rebuild it with this spatc";
    }
    s->state = st;
    s->release = release_state;
}

int sp_cpu_attach_module(spat_kernel *k, const sp_module_desc *m, uint32_t pi, const char *path)
{
    const sp_module_section *found[SP_MAX_HEAD_DIMS] = {0};
    int nfound = 0;
    for (uint32_t i = 0; i < m->nsections; i++) {
        const sp_module_section *s =
            (const sp_module_section *)((const char *)m->sections + (size_t)i * m->section_size);
        if (s->kind != SP_SECTION_CPU_FORWARD || s->pattern != pi)
            continue;
        int idx = sp_kernel_head_dim_index(k, s->head_dim);
        if (idx < 0 || found[idx])
            return sp_set_error(SPAT_ELOAD, "%s: a CPU section for head dim %d that the pattern "
                                "does not list, or twice", path, s->head_dim);
        found[idx] = s;
        nfound++;
    }
    if (!nfound)
        return SPAT_OK;
    if (nfound != k->nhd) /* spatc writes code for every head dim or for none */
        return sp_set_error(SPAT_ELOAD, "%s: CPU code for %d of the pattern's %d head dims "
                            "(sections)", path, nfound, k->nhd);
    sp_cpu_state *st = sp_cpu_state_new();
    if (!st)
        return sp_set_error(SPAT_ENOMEM, "out of memory");
    for (int i = 0; i < k->nhd; i++) {
        const sp_module_section *s = found[i];
        if (!s)
            continue;
        const sp_cpu_info *info = s->data;
        char what[4200];
        snprintf(what, sizeof what, "%s (head dim %d)", path, k->head_dims[i]);
        int rc = s->data ? sp_cpu_check_code(k, info, s->bytes, what)
                         : sp_set_error(SPAT_ELOAD, "%s: an empty CPU section", what);
        if (rc == SPAT_OK && (info->head_dim != (uint32_t)k->head_dims[i] ||
                              s->nentries != info->nentries || !s->entries))
            rc = sp_set_error(SPAT_ELOAD, "%s: its CPU section is corrupt", what);
        if (rc == SPAT_OK && !(st->code[i].fn = malloc(sizeof(sp_cpu_fn) * info->nentries)))
            rc = sp_set_error(SPAT_ENOMEM, "out of memory");
        if (rc != SPAT_OK) {
            release_state(st);
            return rc;
        }
        for (uint32_t e = 0; e < info->nentries; e++) {
            if (!s->entries[e]) {
                release_state(st);
                return sp_set_error(SPAT_ELOAD, "%s: its CPU section has a null entry", what);
            }
            st->code[i].fn[e] = (sp_cpu_fn)s->entries[e];
        }
        st->code[i].info = info;
    }
    sp_cpu_install(k, st);
    return SPAT_OK;
}

/* ============================================================= forward */

enum { IT_RANDOM, IT_TILE, IT_PAD, IT_CHUNK, IT_REMAP, IT_REMAP_FIRST, IT_MERGE };

/* One work item; what the fields mean depends on kind. */
typedef struct item {
    int32_t kind, b, h, e;
    int64_t i0, istep, n, k0, k1, aux;
    int64_t q0, q1; /* IT_KV: the listed query rows' positions, [q0, q1] */
} item;

/* What one (batch, class) resolves to at its length. */
typedef struct bclass {
    int64_t L, off, nq;
    bool live;            /* rows to compute */
    sp_view view;         /* spans of the global rows and columns */
    const sp_cpu_span *cols;
    int64_t ncols;
    uint8_t *kx, *rx;     /* [L]: global columns, global rows */
    int64_t *runs;        /* global-row runs in the batch's rows: (start, length) pairs */
    int nruns;
} bclass;

typedef struct tstate {
    void *scratch;
    sp_view view;
    int64_t vb, vc;       /* the view's (batch, class), -1 none */
    int64_t *cand, *draw;
} tstate;

typedef struct call {
    const spat_kernel *k;
    const sp_plan *plan;
    const sp_cpu_code *code;
    const sp_cpu_info *info;
    int64_t B, Hq, group, d, TQ, nq_max;
    const float *q, *kk, *v;
    float *o, *lse;
    int64_t qst[4], kst[4], vst[4], ost[4], lst[3];
    float qscale;
    int nclasses;
    bclass *bc;           /* [B * nclasses] */
    int *e_direct, *e_rows, *rnd_comp;
    int64_t rcap;
    int64_t **rnd;        /* [B * Hq]: nblocks * rcap each */
    int32_t **rcnt;
    float *part;          /* global-row partials: slot s at part + s * (TQ * (2 + d)) */
    item *items[SP_POOL_MAX_PHASES];
    int nthreads;
    tstate *ts;
} call;

static const double LN2 = 0.69314718055994530942;

static bclass *bc_of(call *c, int64_t b, int cls) { return &c->bc[b * c->nclasses + cls]; }

static float *out_row(call *c, int64_t b, int64_t h, int64_t r)
{
    return c->o + b * c->ost[0] + h * c->ost[1] + r * c->ost[2];
}

static float *lse_at(call *c, int64_t b, int64_t h, int64_t r)
{
    return c->lse + b * c->lst[0] + h * c->lst[1] + r * c->lst[2];
}

static void *scratch_of(call *c, tstate *t)
{
    if (!t->scratch) {
        size_t n = (c->info->scratch_bytes + 63) & ~(size_t)63;
        t->scratch = aligned_alloc(64, n);
    }
    return t->scratch;
}

/* The tile of an item, everything but lanes and keys filled. */
static void tile_base(call *c, const item *it, tstate *t, sp_cpu_tile *tl)
{
    int cls = class_of(c->plan, it->h);
    bclass *bc = bc_of(c, it->b, cls);
    int64_t hk = it->h / c->group;
    memset(tl, 0, sizeof *tl);
    tl->q = c->q + it->b * c->qst[0] + it->h * c->qst[1];
    tl->k = c->kk + it->b * c->kst[0] + hk * c->kst[1];
    tl->v = c->v + it->b * c->vst[0] + hk * c->vst[1];
    tl->qs = c->qst[2];
    tl->ks = c->kst[2];
    tl->vs = c->vst[2];
    tl->L = bc->L;
    tl->off = bc->off;
    tl->i0 = it->i0;
    tl->istep = it->istep;
    tl->n = it->n;
    tl->kx = bc->kx;
    tl->cols = bc->cols;
    tl->ncols = bc->ncols;
    if (c->rnd_comp[cls] >= 0) {
        tl->rnd = c->rnd[it->b * c->Hq + it->h];
        tl->rcnt = c->rcnt[it->b * c->Hq + it->h];
        tl->rcap = c->rcap;
    }
    if (bc->rx)
        for (int64_t x = 0; x < it->n; x++)
            if (bc->rx[it->i0 + it->istep * x])
                tl->rowex |= 1ull << x;
    tl->qscale = c->qscale;
    tl->o = c->o + it->b * c->ost[0] + it->h * c->ost[1];
    tl->os = c->ost[2];
    tl->lse = c->lse + it->b * c->lst[0] + it->h * c->lst[1];
    tl->ls = c->lst[2];
    tl->scratch = t->scratch;
}

/* Merges a partial softmax (m in base 2, l, unnormalised acc) of row r
 * into O and LSE. */
static void merge_row(call *c, int64_t b, int64_t h, int64_t r, float m, float l, const float *acc)
{
    if (!(l > 0))
        return;
    float *restrict o = out_row(c, b, h, r), *ls = lse_at(c, b, h, r);
    float lp = (m + log2f(l)) * (float)LN2, lo = *ls;
    if (lo == -INFINITY) {
        float inv = 1.0f / l;
        for (int64_t t = 0; t < c->d; t++)
            o[t] = acc[t] * inv;
        *ls = lp;
        return;
    }
    float mx = lo > lp ? lo : lp, w1 = expf(lo - mx), w2 = expf(lp - mx), s = w1 + w2;
    float a1 = w1 / s, a2 = w2 / (s * l);
    for (int64_t t = 0; t < c->d; t++)
        o[t] = o[t] * a1 + acc[t] * a2;
    *ls = mx + logf(s);
}

static int run_random(call *c, tstate *t, const item *it)
{
    int cls = (int)it->e;
    const sp_headplan *hp = &c->plan->classes[cls];
    const sp_comp *rc = &hp->comps[c->rnd_comp[cls]];
    bclass *bc = bc_of(c, it->b, cls);
    if (t->vb != it->b || t->vc != cls) {
        if (t->vb >= 0)
            sp_view_free(&t->view);
        t->vb = -1;
        int64_t head = 0;
        while (class_of(c->plan, head) != cls)
            head++;
        if (sp_view_init(&t->view, c->plan, head, bc->L) != 0)
            return sp_set_error(SPAT_ENOMEM, "out of memory in the CPU backend");
        t->vb = it->b;
        t->vc = cls;
    }
    int64_t qb = it->i0, nblocks = t->view.nblocks;
    int64_t last = hp->causal ? (qb < nblocks - 1 ? qb : nblocks - 1) : nblocks - 1;
    int64_t ncand = 0;
    for (int64_t kb = 0; kb <= last; kb++) {
        bool touched = false;
        for (int o = 0; o < hp->ncomps && !touched; o++)
            touched = o != c->rnd_comp[cls] && sp_view_touches_block(&t->view, o, qb, kb);
        if (!touched)
            t->cand[ncand++] = kb;
    }
    for (int64_t h = 0; h < c->Hq; h++) {
        if (class_of(c->plan, h) != cls)
            continue;
        uint64_t key = sp_rng_key(rc->u.random.seed, (uint64_t)h, (uint64_t)qb);
        int n = sp_rng_choose(key, ncand, rc->u.random.r, t->draw);
        int64_t *dst = c->rnd[it->b * c->Hq + h] + qb * c->rcap;
        for (int x = 0; x < n; x++)
            dst[x] = t->cand[t->draw[x]];
        c->rcnt[it->b * c->Hq + h][qb] = n;
    }
    return SPAT_OK;
}

static int run_item(void *arg, int tid, int phase, int64_t idx)
{
    call *c = arg;
    tstate *t = &c->ts[tid];
    const item *it = &c->items[phase][idx];
    if (it->kind == IT_RANDOM)
        return run_random(c, t, it);
    int cls = class_of(c->plan, it->h);
    bclass *bc = bc_of(c, it->b, cls);
    if (it->kind == IT_PAD) {
        for (int64_t r = it->i0; r < it->i0 + it->n; r++) {
            memset(out_row(c, it->b, it->h, r), 0, sizeof(float) * (size_t)c->d);
            *lse_at(c, it->b, it->h, r) = -INFINITY;
        }
        return SPAT_OK;
    }
    const size_t slot = (size_t)c->TQ * (size_t)(2 + c->d);
    if (it->kind == IT_MERGE) {
        /* The chunks of a run of global rows, combined in base 2, then
         * merged into the row. */
        float *acc = c->part + (size_t)it->aux * slot; /* reused for the sum */
        for (int64_t x = 0; x < it->n; x++) {
            float M = -INFINITY;
            for (int64_t ch = 0; ch < it->k0; ch++) {
                const float *p = c->part + (size_t)(it->aux + ch) * slot;
                if (p[c->TQ + x] > 0 && p[x] > M)
                    M = p[x];
            }
            if (M == -INFINITY)
                continue;
            double l = 0;
            float *sum = acc + 2 * c->TQ + x * c->d;
            float w0 = acc[c->TQ + x] > 0 ? exp2f(acc[x] - M) : 0;
            l += (double)acc[c->TQ + x] * w0;
            for (int64_t tt = 0; tt < c->d; tt++)
                sum[tt] *= w0;
            for (int64_t ch = 1; ch < it->k0; ch++) {
                const float *p = c->part + (size_t)(it->aux + ch) * slot;
                if (!(p[c->TQ + x] > 0))
                    continue;
                float w = exp2f(p[x] - M);
                l += (double)p[c->TQ + x] * w;
                const float *pa = p + 2 * c->TQ + x * c->d;
                for (int64_t tt = 0; tt < c->d; tt++)
                    sum[tt] += pa[tt] * w;
            }
            merge_row(c, it->b, it->h, it->i0 + x - bc->off, M, (float)l, sum);
        }
        return SPAT_OK;
    }
    if (it->kind == IT_TILE && it->e < 0) {
        /* A class without direct components: its rows start empty. */
        for (int64_t x = 0; x <= it->k1 - it->i0; x++) {
            int64_t r = it->i0 + x - bc->off;
            memset(out_row(c, it->b, it->h, r), 0, sizeof(float) * (size_t)c->d);
            *lse_at(c, it->b, it->h, r) = -INFINITY;
        }
        return SPAT_OK;
    }
    if (!scratch_of(c, t))
        return sp_set_error(SPAT_ENOMEM, "out of memory for the CPU backend's scratch");
    if (it->kind == IT_TILE || it->kind == IT_REMAP || it->kind == IT_REMAP_FIRST) {
        /* A run of tiles: positions first..last, or residue class k0 of
         * step istep from index aux to k1. */
        bool remap = it->kind != IT_TILE;
        int64_t a = remap ? it->aux : it->i0, end = it->k1;
        while (a <= end) {
            int64_t tend = (a / c->TQ) * c->TQ + c->TQ - 1 < end ? (a / c->TQ) * c->TQ + c->TQ - 1 : end;
            item one = *it;
            one.i0 = remap ? it->k0 + it->istep * a : a;
            one.n = tend - a + 1;
            sp_cpu_tile tl;
            tile_base(c, &one, t, &tl);
            tl.mode = it->kind == IT_REMAP ? SP_CPU_MERGE : SP_CPU_WRITE;
            c->code->fn[it->e](&tl);
            a = tend + 1;
        }
        return SPAT_OK;
    }
    sp_cpu_tile tl;
    tile_base(c, it, t, &tl);
    tl.k0 = it->k0;
    tl.k1 = it->k1;
    /* A chunk of a global row leaves its partial state for the merge; the
     * other tiles' code writes O and LSE itself, or merges into them. */
    tl.mode = SP_CPU_KEEP;
    c->code->fn[it->e](&tl);
    {
        const char *s = t->scratch;
        const float *m = (const float *)(s + c->info->off_m), *l = (const float *)(s + c->info->off_l),
                    *acc = (const float *)(s + c->info->off_o);
        float *p = c->part + (size_t)it->aux * slot;
        memcpy(p, m, sizeof(float) * (size_t)c->TQ);
        memcpy(p + c->TQ, l, sizeof(float) * (size_t)c->TQ);
        memcpy(p + 2 * c->TQ, acc, sizeof(float) * (size_t)(c->TQ * c->d));
    }
    return SPAT_OK;
}

/* ------------------------------------------------------------ setup */

typedef struct ivec {
    item *v;
    int64_t n, cap;
} ivec;

static int push(ivec *a, item it)
{
    if (a->n == a->cap) {
        int64_t cap = a->cap ? 2 * a->cap : 256;
        item *g = realloc(a->v, sizeof *g * (size_t)cap);
        if (!g)
            return -1;
        a->v = g;
        a->cap = cap;
    }
    a->v[a->n++] = it;
    return 0;
}

/* Marks the spans in a byte map of length L. */
static uint8_t *span_map(const sp_span *s, int n, int64_t L)
{
    uint8_t *m = calloc((size_t)L, 1);
    if (m)
        for (int k = 0; k < n; k++)
            memset(m + s[k].lo, 1, (size_t)(s[k].hi - s[k].lo + 1));
    return m;
}

static int comp_index(const sp_headplan *hp, sp_comp_kind kind)
{
    for (int k = 0; k < hp->ncomps; k++)
        if (hp->comps[k].kind == kind)
            return k;
    return -1;
}

/* Resolves one (batch, class) at key length L: a view of a head of the
 * class in `plan` (the plan, or its transpose), the spans and byte map of
 * its gathered set (cols) and the byte map of its whole rows (rows), with
 * those rows in runs of at most TQ within lo..hi. */
static int setup_bclass(call *c, const sp_plan *plan, bclass *bc, int cls, int64_t lo, int64_t hi)
{
    int64_t head = 0;
    if (plan->nheads > 0) {
        while (head < c->Hq && class_of(plan, head) != cls)
            head++;
        if (head == c->Hq) {
            bc->live = false;
            return 0;
        }
    }
    if (sp_view_init(&bc->view, plan, head, bc->L) != 0)
        return -1;
    const sp_headplan *hp = &plan->classes[cls];
    int kc = comp_index(hp, SP_C_COLS), kr = comp_index(hp, SP_C_ROWS);
    if (kc >= 0) {
        bc->cols = (const sp_cpu_span *)bc->view.c[kc].spans;
        bc->ncols = bc->view.c[kc].nspans;
        if (!(bc->kx = span_map(bc->view.c[kc].spans, bc->view.c[kc].nspans, bc->L)))
            return -1;
    }
    if (kr >= 0) {
        const sp_cview *cv = &bc->view.c[kr];
        if (!(bc->rx = span_map(cv->spans, cv->nspans, bc->L)))
            return -1;
        int64_t nr = 0;
        for (int s = 0; s < cv->nspans; s++) {
            int64_t a = cv->spans[s].lo > lo ? cv->spans[s].lo : lo;
            int64_t z = cv->spans[s].hi < hi ? cv->spans[s].hi : hi;
            if (a <= z)
                nr += (z - a) / c->TQ + 1;
        }
        bc->runs = malloc(sizeof(int64_t) * 2 * (size_t)(nr ? nr : 1));
        if (!bc->runs)
            return -1;
        for (int s = 0; s < cv->nspans; s++) {
            int64_t a = cv->spans[s].lo > lo ? cv->spans[s].lo : lo;
            int64_t z = cv->spans[s].hi < hi ? cv->spans[s].hi : hi;
            for (; a <= z; a += c->TQ) {
                bc->runs[2 * bc->nruns] = a;
                bc->runs[2 * bc->nruns + 1] = z - a + 1 < c->TQ ? z - a + 1 : c->TQ;
                bc->nruns++;
            }
        }
    }
    return 0;
}

static int setup_classes(call *c, const sp_fwd *f)
{
    for (int64_t b = 0; b < c->B; b++)
        for (int cls = 0; cls < c->nclasses; cls++) {
            bclass *bc = bc_of(c, b, cls);
            bc->L = sp_fwd_nk(f, b);
            bc->off = sp_fwd_qoff(f, b);
            bc->nq = sp_fwd_nq(f, b);
            bc->live = bc->nq > 0;
            if (bc->live && setup_bclass(c, c->plan, bc, cls, bc->off, bc->off + bc->nq - 1))
                return -1;
        }
    return 0;
}

/* Query tiles per work item: consecutive tiles run on one thread, so that
 * each tile's rows follow the last one's (the prefetchers, and the
 * generated prologue's prefetch of the next tile, then hide the memory
 * latency of rows that no tile has touched yet). */
#define RUN 4

/* Keys per chunk of a global row: enough work per item to pay for its
 * merge, small enough that a few rows still feed every thread. */
#define ROW_CHUNK 2048

/* Under causal the last tiles cost the most: a phase starts with them. */
static void last_first(const sp_plan *p, ivec *v)
{
    bool causal = false;
    for (int cls = 0; cls < p->nclasses; cls++)
        causal |= p->classes[cls].causal;
    for (int64_t x = 0, y = v->n - 1; causal && x < y; x++, y--) {
        item t = v->v[x];
        v->v[x] = v->v[y];
        v->v[y] = t;
    }
}

/* Items over positions cc + D a for a in alo..ahi (a residue class of
 * rows or keys; D = 1, cc = 0: a contiguous run), `run` tiles of TQ
 * (aligned in a) each: `it` with k0 = cc, istep = D, and a from aux to k1. */
static int push_class(ivec *v, item it, int64_t cc, int64_t D, int64_t alo, int64_t ahi, int64_t TQ,
                      int64_t run)
{
    it.k0 = cc, it.istep = D;
    for (int64_t tt = alo / TQ; tt <= ahi / TQ; tt += run) {
        it.aux = tt * TQ > alo ? tt * TQ : alo;
        it.k1 = (tt + run) * TQ - 1 < ahi ? (tt + run) * TQ - 1 : ahi;
        if (push(v, it))
            return -1;
    }
    return 0;
}

/* Items over the residue classes mod D of positions first..last. */
static int push_classes(ivec *v, item it, int64_t D, int64_t first, int64_t last, int64_t TQ)
{
    for (int64_t cc = 0; cc < D && cc <= last; cc++)
        if (push_class(v, it, cc, D, first <= cc ? 0 : (first - cc + D - 1) / D, (last - cc) / D, TQ,
                       RUN))
            return -1;
    return 0;
}

/* The random draws of batch b: an item per (class, query block). */
static int push_random(call *c, int64_t b, ivec *v)
{
    const int64_t Bk = c->plan->block;
    for (int cls = 0; cls < c->nclasses; cls++) {
        bclass *bc = bc_of(c, b, cls);
        if (c->rnd_comp[cls] < 0 || !bc->live)
            continue;
        for (int64_t qb = bc->off / Bk; qb <= (bc->off + bc->nq - 1) / Bk; qb++)
            if (push(v, (item){.kind = IT_RANDOM, .b = (int32_t)b, .e = cls, .i0 = qb}))
                return -1;
    }
    return 0;
}

static int build_items(call *c, ivec *ph, int *nph, int *max_remap)
{
    const sp_plan *p = c->plan;
    const sp_cpu_info *info = c->info;
    int np = 0;
    bool any_random = false, any_rows = false;
    *max_remap = 0;
    for (int cls = 0; cls < c->nclasses; cls++) {
        any_random |= c->rnd_comp[cls] >= 0;
        any_rows |= c->e_rows[cls] >= 0;
        int nr = 0;
        for (int k = 0; k < p->classes[cls].ncomps; k++)
            nr += is_remap(&p->classes[cls].comps[k]);
        if (nr > *max_remap)
            *max_remap = nr;
    }
    int ph_random = any_random ? np++ : -1;
    int ph_tiles = np++;
    int ph_remap = np;
    np += *max_remap;
    int ph_merge = any_rows ? np++ : -1;
    if (np > SP_POOL_MAX_PHASES)
        return -2;
    *nph = np;
    int64_t slots = 0;
    for (int64_t b = 0; b < c->B; b++) {
        if (any_random && push_random(c, b, &ph[ph_random]))
            return -1;
        for (int64_t h = 0; h < c->Hq; h++) {
            int cls = class_of(p, h);
            bclass *bc = bc_of(c, b, cls);
            const sp_headplan *hp = &p->classes[cls];
            item base = {.b = (int32_t)b, .h = (int32_t)h, .istep = 1};
            if (bc->nq < c->nq_max) {
                item it = base;
                it.kind = IT_PAD, it.i0 = bc->nq, it.n = c->nq_max - bc->nq;
                if (push(&ph[ph_tiles], it))
                    return -1;
            }
            if (!bc->live)
                continue;
            int64_t first = bc->off, last = bc->off + bc->nq - 1;
            /* A class without direct components: its first remapped
             * component writes every row (its residue classes cover them). */
            bool remap_writes = c->e_direct[cls] < 0 && any_remap(hp);
            for (int64_t tt = first / c->TQ; !remap_writes && tt <= last / c->TQ; tt += RUN) {
                item it = base;
                it.kind = IT_TILE, it.e = c->e_direct[cls];
                it.i0 = tt * c->TQ > first ? tt * c->TQ : first;
                int64_t end = (tt + RUN) * c->TQ - 1 < last ? (tt + RUN) * c->TQ - 1 : last;
                it.k1 = end;
                if (push(&ph[ph_tiles], it))
                    return -1;
            }
            for (int r = 0; c->e_rows[cls] >= 0 && r < bc->nruns; r++) {
                int64_t i0 = bc->runs[2 * r], n = bc->runs[2 * r + 1];
                int64_t jmax = hp->causal ? (i0 + n - 1 < bc->L - 1 ? i0 + n - 1 : bc->L - 1) : bc->L - 1;
                int64_t nch = jmax / ROW_CHUNK + 1;
                for (int64_t ch = 0; ch < nch; ch++) {
                    item it = base;
                    it.kind = IT_CHUNK, it.e = c->e_rows[cls], it.i0 = i0, it.n = n;
                    it.k0 = ch * ROW_CHUNK, it.k1 = ch * ROW_CHUNK + ROW_CHUNK - 1, it.aux = slots + ch;
                    if (push(&ph[ph_tiles], it))
                        return -1;
                }
                item mg = base;
                mg.kind = IT_MERGE, mg.i0 = i0, mg.n = n, mg.k0 = nch, mg.aux = slots;
                if (push(&ph[ph_merge], mg))
                    return -1;
                slots += nch;
            }
            int slot = 0;
            for (int k = 0; k < hp->ncomps; k++) {
                if (!is_remap(&hp->comps[k]))
                    continue;
                item it = base;
                it.kind = remap_writes && slot == 0 ? IT_REMAP_FIRST : IT_REMAP;
                it.e = find_entry(info, SP_CPU_REMAP, cls, k);
                if (push_classes(&ph[ph_remap + slot], it, info->entry[it.e].step, first, last, c->TQ))
                    return -1;
                slot++;
            }
        }
    }
    last_first(p, &ph[ph_tiles]);
    if (slots) {
        c->part = malloc(sizeof(float) * (size_t)slots * (size_t)c->TQ * (size_t)(2 + c->d));
        if (!c->part)
            return -1;
    }
    return 0;
}

static int setup_random(call *c)
{
    int64_t Bk = c->plan->block;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hq; h++) {
            int cls = class_of(c->plan, h);
            bclass *bc = bc_of(c, b, cls);
            if (c->rnd_comp[cls] < 0 || !bc->live)
                continue;
            int64_t nb = (bc->L + Bk - 1) / Bk;
            c->rnd[b * c->Hq + h] = malloc(sizeof(int64_t) * (size_t)(nb * c->rcap + 1));
            c->rcnt[b * c->Hq + h] = calloc((size_t)nb + 1, sizeof(int32_t));
            if (!c->rnd[b * c->Hq + h] || !c->rcnt[b * c->Hq + h])
                return -1;
        }
    return 0;
}

/* A contiguous copy of a strided tensor [n0][n1][n2][n3], when its
 * innermost stride is not 1 (the generated code loads rows as vectors). */
static float *contiguous(const float *src, const int64_t *s, const int64_t *n, int64_t *ns)
{
    float *dst = malloc(sizeof(float) * (size_t)(n[0] * n[1] * n[2] * n[3]));
    if (!dst)
        return NULL;
    ns[3] = 1, ns[2] = n[3], ns[1] = n[2] * n[3], ns[0] = n[1] * n[2] * n[3];
    for (int64_t a = 0; a < n[0]; a++)
        for (int64_t b = 0; b < n[1]; b++)
            for (int64_t r = 0; r < n[2]; r++)
                for (int64_t t = 0; t < n[3]; t++)
                    dst[a * ns[0] + b * ns[1] + r * ns[2] + t] =
                        src[(n[0] > 1 ? a * s[0] : 0) + (n[1] > 1 ? b * s[1] : 0) +
                            (n[2] > 1 ? r * s[2] : 0) + t * s[3]];
    return dst;
}

static void free_bclasses(bclass *bc, int64_t n)
{
    for (int64_t x = 0; bc && x < n; x++) {
        if (bc[x].live)
            sp_view_free(&bc[x].view);
        free(bc[x].kx);
        free(bc[x].rx);
        free(bc[x].runs);
    }
    free(bc);
}

static void free_call(call *c)
{
    free_bclasses(c->bc, c->B * c->nclasses);
    if (c->rnd)
        for (int64_t x = 0; x < c->B * c->Hq; x++) {
            free(c->rnd[x]);
            free(c->rcnt[x]);
        }
    free(c->rnd);
    free(c->rcnt);
    free(c->e_direct);
    free(c->part);
    if (c->ts)
        for (int t = 0; t < c->nthreads; t++) {
            free(c->ts[t].scratch);
            if (c->ts[t].vb >= 0)
                sp_view_free(&c->ts[t].view);
            free(c->ts[t].cand);
        }
    free(c->ts);
}

int sp_cpu_forward(const spat_kernel *k, const sp_fwd *f)
{
    const spat_forward_args *a = f->a;
    const sp_cpu_state *st = k->backends[SPAT_BACKEND_CPU].state;
    /* The generated code holds positions in 32-bit lanes. */
    if (a->seq_k >= ((int64_t)1 << 31) - 64 || a->seq_q >= ((int64_t)1 << 31) - 64)
        return sp_reference_forward(k, f);
    call c = {.k = k, .plan = k->plan, .code = &st->code[f->hd_index]};
    c.info = c.code->info;
    c.B = a->batch, c.Hq = a->heads_q, c.group = a->heads_q / a->heads_kv, c.d = a->head_dim;
    c.TQ = c.info->tq, c.nq_max = a->seq_q;
    c.qscale = (float)(f->scale * 1.4426950408889634);
    c.nclasses = k->plan->nclasses;
    float *tmp_q = NULL, *tmp_k = NULL, *tmp_v = NULL, *tmp_o = NULL, *tmp_lse = NULL;
    int nph = 0, rc = SPAT_OK, max_remap = 0;
    ivec ph[SP_POOL_MAX_PHASES];
    memset(ph, 0, sizeof ph);
    int64_t nq4[4] = {a->batch, a->heads_q, a->seq_q, a->head_dim};
    int64_t nk4[4] = {a->batch, a->heads_kv, a->seq_k, a->head_dim};
    c.q = a->q, c.kk = a->k, c.v = a->v, c.o = a->o;
    memcpy(c.qst, a->q_stride, sizeof c.qst);
    memcpy(c.kst, a->k_stride, sizeof c.kst);
    memcpy(c.vst, a->v_stride, sizeof c.vst);
    memcpy(c.ost, a->o_stride, sizeof c.ost);
    if ((a->q_stride[3] != 1 && !(c.q = tmp_q = contiguous(a->q, a->q_stride, nq4, c.qst))) ||
        (a->k_stride[3] != 1 && !(c.kk = tmp_k = contiguous(a->k, a->k_stride, nk4, c.kst))) ||
        (a->v_stride[3] != 1 && !(c.v = tmp_v = contiguous(a->v, a->v_stride, nk4, c.vst))))
        goto oom;
    if (a->o_stride[3] != 1) {
        if (!(c.o = tmp_o = malloc(sizeof(float) * (size_t)(nq4[0] * nq4[1] * nq4[2] * nq4[3]))))
            goto oom;
        c.ost[3] = 1, c.ost[2] = c.d, c.ost[1] = c.d * a->seq_q, c.ost[0] = c.d * a->seq_q * a->heads_q;
    }
    if (a->lse) {
        c.lse = a->lse;
        memcpy(c.lst, a->lse_stride, sizeof c.lst);
    } else {
        if (!(c.lse = tmp_lse = malloc(sizeof(float) * (size_t)(c.B * c.Hq * a->seq_q + 1))))
            goto oom;
        c.lst[2] = 1, c.lst[1] = a->seq_q, c.lst[0] = a->seq_q * c.Hq;
    }
    c.bc = calloc((size_t)(c.B * c.nclasses), sizeof *c.bc);
    c.e_direct = malloc(sizeof(int) * 3 * (size_t)c.nclasses);
    c.rnd = calloc((size_t)(c.B * c.Hq), sizeof *c.rnd);
    c.rcnt = calloc((size_t)(c.B * c.Hq), sizeof *c.rcnt);
    if (!c.bc || !c.e_direct || !c.rnd || !c.rcnt)
        goto oom;
    c.e_rows = c.e_direct + c.nclasses;
    c.rnd_comp = c.e_rows + c.nclasses;
    c.rcap = c.info->rnd_cap;
    for (int cls = 0; cls < c.nclasses; cls++) {
        const sp_headplan *hp = &k->plan->classes[cls];
        c.e_direct[cls] = find_entry(c.info, SP_CPU_DIRECT, cls, 0);
        c.e_rows[cls] = find_entry(c.info, SP_CPU_ROWS, cls, 0);
        c.rnd_comp[cls] = comp_index(hp, SP_C_RANDOM);
        if (c.rnd_comp[cls] >= 0 && hp->comps[c.rnd_comp[cls]].u.random.r > c.rcap)
            goto oom; /* cannot happen: rnd_cap is the largest R */
    }
    if (setup_classes(&c, f) || setup_random(&c))
        goto oom;
    int b_rc = build_items(&c, ph, &nph, &max_remap);
    if (b_rc == -2) {
        rc = sp_set_error(SPAT_EINVAL, "pattern '%s' has too many remapped components for the CPU "
                          "backend", k->name);
        goto done;
    }
    if (b_rc)
        goto oom;
    sp_pool_job job = {.nphases = nph, .run = run_item, .arg = &c};
    int64_t most = 1;
    for (int p = 0; p < nph; p++) {
        job.nitems[p] = ph[p].n;
        c.items[p] = ph[p].v;
        most = ph[p].n > most ? ph[p].n : most;
    }
    c.nthreads = f->threads < most ? f->threads : (int)most;
    c.ts = calloc((size_t)c.nthreads, sizeof *c.ts);
    if (!c.ts)
        goto oom;
    int64_t maxnb = 1;
    for (int64_t x = 0; x < c.B * c.nclasses; x++)
        if (c.bc[x].live && c.bc[x].view.nblocks + 1 > maxnb)
            maxnb = c.bc[x].view.nblocks + 1;
    for (int t = 0; t < c.nthreads; t++) {
        c.ts[t].vb = c.ts[t].vc = -1;
        c.ts[t].cand = malloc(sizeof(int64_t) * (size_t)(maxnb + c.rcap + 1));
        if (!c.ts[t].cand)
            goto oom;
        c.ts[t].draw = c.ts[t].cand + maxnb;
    }
    rc = sp_pool_run(&job, c.nthreads);
    if (rc == SPAT_OK && tmp_o)
        for (int64_t b = 0; b < c.B; b++)
            for (int64_t h = 0; h < c.Hq; h++)
                for (int64_t r = 0; r < a->seq_q; r++)
                    for (int64_t t = 0; t < c.d; t++)
                        ((float *)a->o)[(c.B > 1 ? b * a->o_stride[0] : 0) + (c.Hq > 1 ? h * a->o_stride[1] : 0) +
                                        (a->seq_q > 1 ? r * a->o_stride[2] : 0) + t * a->o_stride[3]] =
                            tmp_o[b * c.ost[0] + h * c.ost[1] + r * c.ost[2] + t];
    goto done;
oom:
    rc = sp_set_error(SPAT_ENOMEM, "out of memory in the CPU backend");
done:
    free_call(&c);
    for (int p = 0; p < SP_POOL_MAX_PHASES; p++)
        free(ph[p].v);
    free(tmp_q);
    free(tmp_k);
    free(tmp_v);
    free(tmp_o);
    free(tmp_lse);
    return rc;
}

/* ============================================================= backward
 *
 * One backward call runs as phases on the thread team, every gradient
 * summed in a fixed order (so the result is the same for any thread count):
 *   prep     D = rowsum(dO o O) of every row; dQ, dK and dV zeroed; the
 *            random draws (as the forward's);
 *   invert   for the transposed plan, per (batch, head) and key block, the
 *            query blocks that drew it;
 *   direct   dQ over the plan's query tiles (per query head) and dK, dV over
 *            the transposed plan's key tiles (per KV head, its query heads
 *            one after the other): every direct component of a class;
 *   remap r  the r-th remapped component of each class, both directions;
 *   rows m   global rows (dQ) and global columns (dK, dV), whole rows each.
 * Entries add their tile's gradients into the outputs; two items of a phase
 * never add into the same rows.
 *
 * With SP_CPU_KVQ code and work enough (FUSE_MIN_ITEMS), the walk of the
 * transposed plan adds dQ too, and the walk of the plan is not run: five
 * products a pair instead of seven. Positions are then cut into C chunks,
 * and phase p (p < C) gives the item (batch, KV head, key chunk kc) the
 * query rows of chunk (kc + p) mod C alone: in a phase no two items share
 * key rows or query rows, and every row sums its parts in phase order. C
 * and the choice of walks depend on the shape alone, never on the threads,
 * so the bytes do not either. */

enum { IT_BPREP_Q = IT_MERGE + 1, IT_BPREP_KV, IT_INV, IT_DQ, IT_KV, IT_FUSED };

#define FUSE_CHUNK 1024  /* positions of a chunk, at least */
#define FUSE_CHUNKS 8    /* chunks, at most */
#define FUSE_MIN_ITEMS 4 /* fewer (KV heads x chunks): two walks, whose items are finer */

typedef struct bcall {
    call c;                 /* the plan's side: Q, K, V, LSE, o = dQ, views, random draws */
    const sp_plan *tplan;   /* the transposed plan */
    bclass *tbc;            /* [B * nclasses]: its views at each batch's key length */
    const float *dout, *ob; /* dO (contiguous rows), O (any strides) */
    int64_t dost[4], obst[4];
    float *dk, *dv;
    int64_t dkst[4], dvst[4];
    float *D;               /* [B][Hq][seq_q] */
    int64_t Hkv, nk_max;
    float scale;
    int *e_kvdir;           /* [nclasses]: the dK/dV direct entry of each class, or -1 */
    int64_t **inv;          /* [B * Hq]: query blocks drawing key block kb: inv[kb * icap + x] */
    int32_t **icnt;
    int64_t *icap;
    bool fused;             /* one walk: the dK/dV entries add dQ */
    int64_t chunk;          /* fused: positions per chunk */
    int nchunks;
    item *uitems;           /* fused: the IT_KV items of each (batch, KV head), in phase order */
} bcall;

static float *row4(float *base, const int64_t *st, int64_t b, int64_t h, int64_t r)
{
    return base + b * st[0] + h * st[1] + r * st[2];
}

/* D of every row of (b, h), and its dQ rows zeroed. */
static void prep_q(bcall *w, int64_t b, int64_t h)
{
    call *c = &w->c;
    int64_t nq = c->bc[b * c->nclasses + class_of(c->plan, h)].nq;
    float *D = w->D + (b * c->Hq + h) * c->nq_max;
    for (int64_t r = 0; r < c->nq_max; r++) {
        memset(row4(c->o, c->ost, b, h, r), 0, sizeof(float) * (size_t)c->d);
        double s = 0;
        const float *o = w->ob + b * w->obst[0] + h * w->obst[1] + r * w->obst[2];
        const float *g = w->dout + b * w->dost[0] + h * w->dost[1] + r * w->dost[2];
        for (int64_t t = 0; r < nq && t < c->d; t++)
            s += (double)o[t * w->obst[3]] * g[t];
        D[r] = (float)s;
    }
}

/* Inverts the random draws of (b, h): per key block, the query blocks. */
static int invert_draws(bcall *w, int64_t b, int64_t h)
{
    call *c = &w->c;
    bclass *bc = bc_of(c, b, class_of(c->plan, h));
    int64_t Bk = c->plan->block, nb = (bc->L + Bk - 1) / Bk, x = b * c->Hq + h;
    int32_t *cnt = calloc((size_t)nb + 1, sizeof *cnt);
    if (!cnt)
        return sp_set_error(SPAT_ENOMEM, "out of memory in the CPU backend");
    int64_t cap = 1;
    for (int64_t qb = 0; qb < nb; qb++)
        for (int32_t y = 0; y < c->rcnt[x][qb]; y++) {
            int64_t kb = c->rnd[x][qb * c->rcap + y];
            if (++cnt[kb] > cap)
                cap = cnt[kb];
        }
    w->inv[x] = malloc(sizeof(int64_t) * (size_t)(nb * cap + 1));
    if (!w->inv[x]) {
        free(cnt);
        return sp_set_error(SPAT_ENOMEM, "out of memory in the CPU backend");
    }
    memset(cnt, 0, sizeof *cnt * (size_t)(nb + 1));
    for (int64_t qb = 0; qb < nb; qb++) /* ascending qb: each list ascends */
        for (int32_t y = 0; y < c->rcnt[x][qb]; y++) {
            int64_t kb = c->rnd[x][qb * c->rcap + y];
            w->inv[x][kb * cap + cnt[kb]++] = qb;
        }
    w->icnt[x] = cnt;
    w->icap[x] = cap;
    return SPAT_OK;
}

/* Lane positions k0 + istep * a for a in aux..k1, in tiles of at most TQ
 * lanes aligned in a; fn runs each tile. */
static void tiles_of(const item *it, int64_t TQ, void (*fn)(bcall *, tstate *, const item *), bcall *w,
                     tstate *t)
{
    for (int64_t a = it->aux; a <= it->k1;) {
        int64_t end = (a / TQ) * TQ + TQ - 1 < it->k1 ? (a / TQ) * TQ + TQ - 1 : it->k1;
        item one = *it;
        one.i0 = it->k0 + it->istep * a;
        one.n = end - a + 1;
        fn(w, t, &one);
        a = end + 1;
    }
}

static void dq_tile(bcall *w, tstate *t, const item *it)
{
    call *c = &w->c;
    sp_cpu_tile tl;
    tile_base(c, it, t, &tl);
    bclass *bc = bc_of(c, it->b, class_of(c->plan, it->h));
    tl.k0 = 0, tl.k1 = bc->L - 1; /* a rows entry: every key */
    tl.dout = w->dout + it->b * w->dost[0] + it->h * w->dost[1];
    tl.dos = w->dost[2];
    tl.dvec = w->D + (it->b * c->Hq + it->h) * c->nq_max;
    tl.g1 = row4(c->o, c->ost, it->b, it->h, 0);
    tl.g1s = c->ost[2];
    tl.goff = bc->off;
    tl.gscale1 = w->scale;
    c->code->fn[it->e](&tl);
}

/* Does the position set, resolved at length L, hold a position in [lo, hi]? */
static bool posset_meets(const sp_posset *ps, int64_t L, int64_t lo, int64_t hi)
{
    for (int k = 0; k < ps->spans.n; k++) {
        const sp_setitem *x = &ps->spans.items[k];
        if ((x->lo_end ? L - x->lo : x->lo) <= hi && (x->hi_end ? L - x->hi : x->hi) >= lo)
            return true;
    }
    for (int k = 0; k < ps->nper; k++) {
        const sp_period *pr = &ps->per[k];
        if (hi - lo + 1 >= pr->s)
            return true;
        int64_t a = lo % pr->s, b = hi % pr->s; /* lo..hi as residues: a..b, or wrapping past s */
        if (a <= b ? a <= pr->b && b >= pr->a : b >= pr->a || a <= pr->b)
            return true;
    }
    return false;
}

/* May the class hold a pair of rows [i0, i1] and keys [j0, j1]? False is
 * exact; true may be wrong (random blocks: always), which costs only work. */
static bool box_may_meet(const sp_headplan *hp, int64_t B, int64_t L, int64_t i0, int64_t i1, int64_t j0,
                         int64_t j1)
{
    if (i0 > i1 || j0 > j1 || (hp->causal && j0 > i1))
        return false;
    for (int k = 0; k < hp->ncomps; k++) {
        const sp_comp *c = &hp->comps[k];
        sp_dform f;
        if (sp_comp_dform(c, B, &f)) {
            int64_t tlo, thi;
            sp_dform_box(&f, i0, i1, j0, j1, &tlo, &thi);
            if (sp_dform_meets(&f, tlo, thi))
                return true;
        } else if (c->kind == SP_C_ROWS ? posset_meets(&c->u.rows, L, i0, i1)
                   : c->kind == SP_C_COLS ? posset_meets(&c->u.cols, L, j0, j1)
                                          : true) {
            return true;
        }
    }
    return false;
}

/* One key tile of (b, kvh) for each query head of the group that the item
 * covers, one after the other. */
static void kv_tile(bcall *w, tstate *t, const item *it)
{
    call *c = &w->c;
    const sp_cpu_info *info = c->info;
    for (int64_t h = it->h * c->group; h < (it->h + 1) * c->group; h++) {
        int cls = class_of(c->plan, h);
        int e = it->e >= 0 ? it->e : w->e_kvdir[cls];
        if (e < 0 || (it->e >= 0 && (int)info->entry[e].cls != cls))
            continue;
        bclass *bc = bc_of(c, it->b, cls), *tb = &w->tbc[it->b * c->nclasses + cls];
        if (!bc->live)
            continue;
        /* One walk: a tile whose keys hold no pair with the chunk's rows is
         * left out (most of a band's tiles in most phases). */
        if (w->fused && !box_may_meet(&c->plan->classes[cls], c->plan->block, bc->L,
                                      it->q0 > bc->off ? it->q0 : bc->off,
                                      it->q1 < bc->off + bc->nq - 1 ? it->q1 : bc->off + bc->nq - 1,
                                      it->i0, it->i0 + it->istep * (it->n - 1)))
            continue;
        sp_cpu_tile tl;
        memset(&tl, 0, sizeof tl);
        tl.q = c->kk + it->b * c->kst[0] + it->h * c->kst[1]; /* the lanes: K, V of the keys */
        tl.qs = c->kst[2];
        tl.v = c->v + it->b * c->vst[0] + it->h * c->vst[1];
        tl.vs = c->vst[2];
        tl.k = c->q + it->b * c->qst[0] + h * c->qst[1]; /* the listed query rows */
        tl.ks = c->qst[2];
        tl.L = bc->off + bc->nq;
        tl.roff = bc->off;
        tl.i0 = it->i0, tl.istep = it->istep, tl.n = it->n;
        tl.k0 = it->q0, tl.k1 = it->q1 < tl.L - 1 ? it->q1 : tl.L - 1;
        tl.kx = tb->kx;
        tl.cols = tb->cols;
        tl.ncols = tb->ncols;
        if (c->rnd_comp[cls] >= 0) {
            tl.rnd = w->inv[it->b * c->Hq + h];
            tl.rcnt = w->icnt[it->b * c->Hq + h];
            tl.rcap = w->icap[it->b * c->Hq + h];
        }
        if (tb->rx)
            for (int64_t x = 0; x < it->n; x++)
                if (tb->rx[it->i0 + it->istep * x])
                    tl.rowex |= 1ull << x;
        tl.qscale = c->qscale;
        tl.lse = c->lse + it->b * c->lst[0] + h * c->lst[1];
        tl.ls = c->lst[2];
        tl.dout = w->dout + it->b * w->dost[0] + h * w->dost[1];
        tl.dos = w->dost[2];
        tl.dvec = w->D + (it->b * c->Hq + h) * c->nq_max;
        tl.g1 = row4(w->dv, w->dvst, it->b, it->h, 0);
        tl.g1s = w->dvst[2];
        tl.g2 = row4(w->dk, w->dkst, it->b, it->h, 0);
        tl.g2s = w->dkst[2];
        tl.gscale1 = 1.0f;
        tl.gscale2 = w->scale;
        if (w->fused) {
            tl.g3 = row4(c->o, c->ost, it->b, h, 0);
            tl.g3s = c->ost[2];
            tl.gscale3 = w->scale;
        }
        tl.scratch = t->scratch;
        c->code->fn[e](&tl);
    }
}

/* A fused item: every key tile of its KV head's items whose keys lie in
 * chunk kc (it->i0), listing the query rows of chunk it->n alone. */
static void run_fused(bcall *w, tstate *t, const item *it)
{
    const int64_t P0 = it->i0 * w->chunk, P1 = P0 + w->chunk - 1;
    for (int64_t x = it->aux; x < it->aux + it->k1; x++) {
        item one = w->uitems[x]; /* lanes k0 + istep a, a in aux..k1 */
        if (P1 < one.k0)
            continue;
        int64_t alo = P0 <= one.k0 ? 0 : (P0 - one.k0 + one.istep - 1) / one.istep;
        int64_t ahi = (P1 - one.k0) / one.istep;
        one.aux = one.aux > alo ? one.aux : alo;
        one.k1 = one.k1 < ahi ? one.k1 : ahi;
        if (one.aux > one.k1)
            continue;
        one.q0 = it->n * w->chunk, one.q1 = one.q0 + w->chunk - 1;
        tiles_of(&one, w->c.TQ, kv_tile, w, t);
    }
}

static int run_bwd_item(void *arg, int tid, int phase, int64_t idx)
{
    bcall *w = arg;
    call *c = &w->c;
    tstate *t = &c->ts[tid];
    const item *it = &c->items[phase][idx];
    switch (it->kind) {
    case IT_RANDOM:
        return run_random(c, t, it);
    case IT_BPREP_Q:
        prep_q(w, it->b, it->h);
        return SPAT_OK;
    case IT_BPREP_KV:
        for (int64_t r = 0; r < w->nk_max; r++) {
            memset(row4(w->dk, w->dkst, it->b, it->h, r), 0, sizeof(float) * (size_t)c->d);
            memset(row4(w->dv, w->dvst, it->b, it->h, r), 0, sizeof(float) * (size_t)c->d);
        }
        return SPAT_OK;
    case IT_INV:
        return invert_draws(w, it->b, it->h);
    default:
        break;
    }
    if (!scratch_of(c, t))
        return sp_set_error(SPAT_ENOMEM, "out of memory for the CPU backend's scratch");
    if (it->kind == IT_FUSED)
        run_fused(w, t, it);
    else
        tiles_of(it, c->TQ, it->kind == IT_DQ ? dq_tile : kv_tile, w, t);
    return SPAT_OK;
}

/* The dK/dV entry of (pass kind, class, comp): SP_CPU_KVQ, or SP_CPU_KV in
 * a kernel.so of an older spatc; -1 when none. */
static int kv_entry(const sp_cpu_info *info, uint32_t kind, int cls, int comp)
{
    int e = find_entry(info, SP_CPU_KVQ + kind, cls, comp);
    return e >= 0 ? e : find_entry(info, SP_CPU_KV + kind, cls, comp);
}

/* One walk: the IT_KV items of phases first.. regrouped by (batch, KV
 * head), in phase order, and in their place the C phases of fused items.
 * Returns 0 or -1 (out of memory). */
static int fuse_phases(bcall *w, ivec *ph, int *nph, int first)
{
    call *c = &w->c;
    const int64_t U = c->B * w->Hkv;
    int64_t *start = calloc((size_t)U + 1, sizeof *start), *fill = malloc(sizeof *fill * (size_t)(U + 1));
    int64_t total = 0;
    for (int p = first; start && p < *nph; p++)
        for (int64_t x = 0; x < ph[p].n; x++) {
            assert(ph[p].v[x].kind == IT_KV);
            start[ph[p].v[x].b * w->Hkv + ph[p].v[x].h + 1]++;
            total++;
        }
    if (!start || !fill || !(w->uitems = malloc(sizeof(item) * (size_t)(total + 1)))) {
        free(start);
        free(fill);
        return -1;
    }
    for (int64_t u = 0; u < U; u++)
        start[u + 1] += start[u];
    memcpy(fill, start, sizeof *fill * (size_t)(U + 1));
    for (int p = first; p < *nph; p++) {
        for (int64_t x = 0; x < ph[p].n; x++) {
            const item *it = &ph[p].v[x];
            w->uitems[fill[it->b * w->Hkv + it->h]++] = *it;
        }
        ph[p].n = 0;
    }
    free(fill);
    int rc = 0;
    *nph = first + w->nchunks;
    for (int p = 0; p < w->nchunks && !rc; p++)
        for (int64_t u = 0; u < U && !rc; u++)
            for (int kc = 0; kc < w->nchunks && start[u + 1] > start[u] && !rc; kc++) {
                item it = {.kind = IT_FUSED, .b = (int32_t)(u / w->Hkv), .h = (int32_t)(u % w->Hkv),
                           .e = -1, .i0 = kc, .n = (kc + p) % w->nchunks, .aux = start[u],
                           .k1 = start[u + 1] - start[u]};
                rc = push(&ph[first + p], it);
            }
    free(start);
    return rc;
}

/* The items of every phase. Returns 0, -1 (out of memory) or -2 (more
 * phases than the pool runs). */
static int build_bwd_items(bcall *w, ivec *ph, int *nph)
{
    call *c = &w->c;
    const sp_plan *p = c->plan;
    const sp_cpu_info *info = c->info;
    /* Remap and rows phases of dK and dV: one per slot when each KV head
     * serves one query head; with GQA, one per (class, slot), since the
     * heads of a group may be of different classes, whose lanes differ. */
    int nremap_q = 0, nremap_kv = 0, nrows_kv = 0;
    bool any_random = false;
    for (int cls = 0; cls < c->nclasses; cls++) {
        int nr = 0;
        for (int k = 0; k < p->classes[cls].ncomps; k++)
            nr += is_remap(&p->classes[cls].comps[k]);
        nremap_q = nr > nremap_q ? nr : nremap_q;
        nremap_kv = c->group > 1 ? nremap_kv + nr : (nr > nremap_kv ? nr : nremap_kv);
        bool rows = comp_index(&w->tplan->classes[cls], SP_C_ROWS) >= 0;
        nrows_kv = c->group > 1 ? nrows_kv + rows : (nrows_kv || rows);
        any_random |= c->rnd_comp[cls] >= 0;
    }
    int np = 0;
    const int ph_prep = np++, ph_inv = any_random ? np++ : -1, ph_direct = np++, ph_remap = np;
    np += nremap_q > nremap_kv ? nremap_q : nremap_kv;
    const int ph_rows = np;
    np += nrows_kv > 1 ? nrows_kv : 1;
    if (np > SP_POOL_MAX_PHASES)
        return -2;
    *nph = np;
    const int64_t TQ = c->TQ;
    for (int64_t b = 0; b < c->B; b++) {
        if (any_random && push_random(c, b, &ph[ph_prep]))
            return -1;
        for (int64_t h = 0; h < c->Hq; h++) {
            int cls = class_of(p, h);
            bclass *bc = bc_of(c, b, cls);
            item base = {.b = (int32_t)b, .h = (int32_t)h, .istep = 1};
            item it = base;
            it.kind = IT_BPREP_Q;
            if (push(&ph[ph_prep], it))
                return -1;
            if (!bc->live)
                continue;
            if (c->rnd_comp[cls] >= 0) {
                it.kind = IT_INV;
                if (push(&ph[ph_inv], it))
                    return -1;
            }
            if (w->fused)
                continue;
            int64_t first = bc->off, last = bc->off + bc->nq - 1;
            it = base;
            it.kind = IT_DQ;
            it.e = find_entry(info, SP_CPU_DQ + SP_CPU_DIRECT, cls, 0);
            if (it.e >= 0 && push_class(&ph[ph_direct], it, 0, 1, first, last, TQ, RUN))
                return -1;
            int slot = 0;
            for (int k = 0; k < p->classes[cls].ncomps; k++) {
                if (!is_remap(&p->classes[cls].comps[k]))
                    continue;
                it = base;
                it.kind = IT_DQ;
                it.e = find_entry(info, SP_CPU_DQ + SP_CPU_REMAP, cls, k);
                if (push_classes(&ph[ph_remap + slot], it, info->entry[it.e].step, first, last, TQ))
                    return -1;
                slot++;
            }
            int e = find_entry(info, SP_CPU_DQ + SP_CPU_ROWS, cls, 0);
            for (int r = 0; e >= 0 && r < bc->nruns; r++) {
                it = base;
                it.kind = IT_DQ, it.e = e, it.k0 = 0, it.aux = bc->runs[2 * r];
                it.k1 = bc->runs[2 * r] + bc->runs[2 * r + 1] - 1;
                if (push(&ph[ph_rows], it))
                    return -1;
            }
        }
        /* dK, dV: per KV head, key tiles of every key. */
        for (int64_t kh = 0; kh < w->Hkv; kh++) {
            item base = {.b = (int32_t)b, .h = (int32_t)kh, .istep = 1, .e = -1, .q1 = INT64_MAX};
            item it = base;
            it.kind = IT_BPREP_KV;
            if (push(&ph[ph_prep], it))
                return -1;
            int64_t L = 0;
            for (int cls = 0; cls < c->nclasses; cls++)
                L = bc_of(c, b, cls)->live && bc_of(c, b, cls)->L > L ? bc_of(c, b, cls)->L : L;
            it = base;
            it.kind = IT_KV;
            if (L > 0 && push_class(&ph[ph_direct], it, 0, 1, 0, L - 1, TQ, RUN))
                return -1;
            int gq_remap = 0, gq_rows = 0; /* the next GQA phase of each kind */
            for (int cls = 0; cls < c->nclasses; cls++) {
                bclass *tb = &w->tbc[b * c->nclasses + cls];
                const sp_headplan *th = &w->tplan->classes[cls];
                if (!bc_of(c, b, cls)->live)
                    continue;
                int slot = 0;
                for (int k = 0; k < th->ncomps; k++) {
                    if (!is_remap(&th->comps[k]))
                        continue;
                    it = base;
                    it.kind = IT_KV;
                    it.e = kv_entry(info, SP_CPU_REMAP, cls, k);
                    int phase = ph_remap + (c->group > 1 ? gq_remap++ : slot++);
                    if (push_classes(&ph[phase], it, info->entry[it.e].step, 0, tb->L - 1, TQ))
                        return -1;
                }
                int kr = comp_index(th, SP_C_ROWS);
                if (kr < 0)
                    continue;
                int e = kv_entry(info, SP_CPU_ROWS, cls, kr);
                int phase = ph_rows + (c->group > 1 ? gq_rows++ : 0);
                const sp_posset *ps = &th->comps[kr].u.rows;
                if (ps->spans.n == 0 && ps->nper == 1 && ps->per[0].b - ps->per[0].a + 1 < TQ) {
                    /* Keys whose position mod s is in a..b (the transpose of
                     * columns a..b mod s): runs of them would fill few lanes of
                     * a tile, so a tile takes TQ keys of one class, s apart. */
                    const sp_period *pr = &ps->per[0];
                    it = base;
                    it.kind = IT_KV, it.e = e;
                    for (int64_t cc = pr->a; cc <= pr->b && cc < tb->L; cc++)
                        if (push_class(&ph[phase], it, cc, pr->s, 0, (tb->L - 1 - cc) / pr->s, TQ, 1))
                            return -1;
                    continue;
                }
                for (int r = 0; r < tb->nruns; r++) {
                    it = base;
                    it.kind = IT_KV, it.e = e, it.k0 = 0, it.aux = tb->runs[2 * r];
                    it.k1 = tb->runs[2 * r] + tb->runs[2 * r + 1] - 1;
                    if (push(&ph[phase], it))
                        return -1;
                }
            }
        }
    }
    if (w->fused)
        return fuse_phases(w, ph, nph, ph_direct);
    last_first(p, &ph[ph_direct]);
    return 0;
}

/* One walk or two (see the top of the backward), from the shape and the
 * code alone. */
static void choose_walks(bcall *w, const sp_bwd *bw)
{
    call *c = &w->c;
    bool kvq = false;
    for (uint32_t e = 0; e < c->info->nentries; e++)
        kvq |= c->info->entry[e].kind > SP_CPU_KVQ && c->info->entry[e].kind <= SP_CPU_KIND_MAX;
    int64_t S = 1; /* positions: past every key and query row */
    for (int64_t b = 0; b < c->B; b++) {
        int64_t e = sp_bwd_qoff(bw, b) + sp_bwd_nq(bw, b), L = sp_bwd_nk(bw, b);
        S = e > S ? e : S;
        S = L > S ? L : S;
    }
    /* A chunk holds whole tiles of every residue class its items step
     * through (remapped bands and strides, periodic key sets): TQ lanes
     * `step` apart. */
    int64_t step = 1;
    for (int cls = 0; cls < w->tplan->nclasses; cls++)
        for (int k = 0; k < w->tplan->classes[cls].ncomps; k++) {
            const sp_comp *cp = &w->tplan->classes[cls].comps[k];
            int64_t s = sp_comp_step(cp);
            for (int x = 0; cp->kind == SP_C_ROWS && x < cp->u.rows.nper; x++)
                s = cp->u.rows.per[x].s > s ? cp->u.rows.per[x].s : s;
            step = s > step && s <= S ? s : step;
        }
    const int64_t unit = c->TQ * step, least = (FUSE_CHUNK + unit - 1) / unit * unit;
    int64_t C = (S + least - 1) / least;
    C = C < FUSE_CHUNKS ? C : FUSE_CHUNKS;
    w->nchunks = (int)C;
    w->chunk = ((S + C - 1) / C + unit - 1) / unit * unit;
    w->fused = kvq && c->B * w->Hkv * C >= FUSE_MIN_ITEMS;
}

/* Threads' states: scratch on first use, and the random draws' buffers. */
static int thread_states(call *c, int64_t most, int threads)
{
    c->nthreads = threads < most ? threads : (int)most;
    c->ts = calloc((size_t)c->nthreads, sizeof *c->ts);
    if (!c->ts)
        return -1;
    int64_t maxnb = 1;
    for (int64_t x = 0; x < c->B * c->nclasses; x++)
        if (c->bc[x].live && c->bc[x].view.nblocks + 1 > maxnb)
            maxnb = c->bc[x].view.nblocks + 1;
    for (int t = 0; t < c->nthreads; t++) {
        c->ts[t].vb = c->ts[t].vc = -1;
        c->ts[t].cand = malloc(sizeof(int64_t) * (size_t)(maxnb + c->rcap + 1));
        if (!c->ts[t].cand)
            return -1;
        c->ts[t].draw = c->ts[t].cand + maxnb;
    }
    return 0;
}

/* A contiguous output buffer in place of one whose innermost stride is not 1. */
static float *out_buffer(float *dst, const int64_t *st, const int64_t *n, int64_t *ns, float **tmp)
{
    memcpy(ns, st, sizeof(int64_t) * 4);
    if (st[3] == 1)
        return dst;
    ns[3] = 1, ns[2] = n[3], ns[1] = n[2] * n[3], ns[0] = n[1] * n[2] * n[3];
    return *tmp = malloc(sizeof(float) * (size_t)(n[0] * n[1] * n[2] * n[3]));
}

static void copy_out(float *dst, const int64_t *st, const float *src, const int64_t *ss, const int64_t *n)
{
    for (int64_t a = 0; a < n[0]; a++)
        for (int64_t b = 0; b < n[1]; b++)
            for (int64_t r = 0; r < n[2]; r++)
                for (int64_t t = 0; t < n[3]; t++)
                    dst[(n[0] > 1 ? a * st[0] : 0) + (n[1] > 1 ? b * st[1] : 0) + (n[2] > 1 ? r * st[2] : 0) +
                        t * st[3]] = src[a * ss[0] + b * ss[1] + r * ss[2] + t];
}

/* The code that holds the backward's entries: the kernel.so's, or the
 * JIT's, compiled now if this is the kernel's first backward. The state is
 * the kernel's cache: filled once, under its lock, whatever the threads. */
static int backward_code(const spat_kernel *k, int hd, const sp_cpu_code **out)
{
    sp_cpu_state *st = k->backends[SPAT_BACKEND_CPU].state;
    *out = &st->code[hd];
    if (!st->make_backward)
        return SPAT_OK;
    int rc = SPAT_OK;
    pthread_mutex_lock(&st->lock);
    if (!st->bwd_ready && (rc = st->make_backward(st)) == SPAT_OK)
        st->bwd_ready = true;
    pthread_mutex_unlock(&st->lock);
    *out = &st->bwd[hd];
    return rc;
}

int sp_cpu_backward(const spat_kernel *k, const sp_bwd *bw)
{
    const spat_backward_args *a = bw->a;
    /* The generated code holds positions in 32-bit lanes. */
    if (a->seq_k >= ((int64_t)1 << 31) - 64 || a->seq_q >= ((int64_t)1 << 31) - 64)
        return sp_reference_backward(k, bw);
    bcall w;
    memset(&w, 0, sizeof w);
    call *c = &w.c;
    int rc = backward_code(k, bw->hd_index, &c->code);
    if (rc != SPAT_OK)
        return rc;
    c->k = k, c->plan = k->plan, c->info = c->code->info;
    c->B = a->batch, c->Hq = a->heads_q, c->group = a->heads_q / a->heads_kv, c->d = a->head_dim;
    c->TQ = c->info->tq, c->nq_max = a->seq_q, c->nclasses = k->plan->nclasses;
    c->qscale = (float)(bw->scale * 1.4426950408889634);
    c->rcap = c->info->rnd_cap;
    w.Hkv = a->heads_kv, w.nk_max = a->seq_k, w.scale = (float)bw->scale;
    sp_arena ar;
    sp_arena_init(&ar);
    float *tmp[7] = {0}; /* copies of q, k, v, dout; buffers of dq, dk, dv */
    int nph = 0;
    ivec ph[SP_POOL_MAX_PHASES];
    memset(ph, 0, sizeof ph);
    const int64_t nq4[4] = {a->batch, a->heads_q, a->seq_q, a->head_dim};
    const int64_t nk4[4] = {a->batch, a->heads_kv, a->seq_k, a->head_dim};
    c->q = a->q, c->kk = a->k, c->v = a->v, w.dout = a->dout, w.ob = a->o;
    memcpy(c->qst, a->q_stride, sizeof c->qst);
    memcpy(c->kst, a->k_stride, sizeof c->kst);
    memcpy(c->vst, a->v_stride, sizeof c->vst);
    memcpy(w.dost, a->dout_stride, sizeof w.dost);
    memcpy(w.obst, a->o_stride, sizeof w.obst);
    if ((a->q_stride[3] != 1 && !(c->q = tmp[0] = contiguous(a->q, a->q_stride, nq4, c->qst))) ||
        (a->k_stride[3] != 1 && !(c->kk = tmp[1] = contiguous(a->k, a->k_stride, nk4, c->kst))) ||
        (a->v_stride[3] != 1 && !(c->v = tmp[2] = contiguous(a->v, a->v_stride, nk4, c->vst))) ||
        (a->dout_stride[3] != 1 && !(w.dout = tmp[3] = contiguous(a->dout, a->dout_stride, nq4, w.dost))) ||
        !(c->o = out_buffer(a->dq, a->dq_stride, nq4, c->ost, &tmp[4])) ||
        !(w.dk = out_buffer(a->dk, a->dk_stride, nk4, w.dkst, &tmp[5])) ||
        !(w.dv = out_buffer(a->dv, a->dv_stride, nk4, w.dvst, &tmp[6])))
        goto oom;
    c->lse = (float *)a->lse; /* read, never written, by the backward's code */
    memcpy(c->lst, a->lse_stride, sizeof c->lst);
    w.D = malloc(sizeof(float) * (size_t)(c->B * c->Hq * a->seq_q));
    c->bc = calloc((size_t)(c->B * c->nclasses), sizeof *c->bc);
    w.tbc = calloc((size_t)(c->B * c->nclasses), sizeof *w.tbc);
    c->e_direct = malloc(sizeof(int) * 4 * (size_t)c->nclasses);
    c->rnd = calloc((size_t)(c->B * c->Hq), sizeof *c->rnd);
    c->rcnt = calloc((size_t)(c->B * c->Hq), sizeof *c->rcnt);
    w.inv = calloc((size_t)(c->B * c->Hq), sizeof *w.inv);
    w.icnt = calloc((size_t)(c->B * c->Hq), sizeof *w.icnt);
    w.icap = calloc((size_t)(c->B * c->Hq), sizeof *w.icap);
    sp_plan *tp;
    if (!w.D || !c->bc || !w.tbc || !c->e_direct || !c->rnd || !c->rcnt || !w.inv || !w.icnt || !w.icap ||
        sp_plan_transpose(k->plan, &ar, &tp))
        goto oom;
    w.tplan = tp;
    c->e_rows = c->e_direct + c->nclasses;
    c->rnd_comp = c->e_rows + c->nclasses;
    w.e_kvdir = c->rnd_comp + c->nclasses;
    for (int cls = 0; cls < c->nclasses; cls++) {
        c->rnd_comp[cls] = comp_index(&k->plan->classes[cls], SP_C_RANDOM);
        w.e_kvdir[cls] = kv_entry(c->info, SP_CPU_DIRECT, cls, 0);
    }
    for (int64_t b = 0; b < c->B; b++)
        for (int cls = 0; cls < c->nclasses; cls++) {
            bclass *bc = bc_of(c, b, cls), *tb = &w.tbc[b * c->nclasses + cls];
            bc->L = tb->L = sp_bwd_nk(bw, b);
            bc->off = tb->off = sp_bwd_qoff(bw, b);
            bc->nq = tb->nq = sp_bwd_nq(bw, b);
            bc->live = tb->live = bc->nq > 0;
            if (bc->live && (setup_bclass(c, c->plan, bc, cls, bc->off, bc->off + bc->nq - 1) ||
                             setup_bclass(c, tp, tb, cls, 0, tb->L - 1)))
                goto oom;
        }
    if (setup_random(c))
        goto oom;
    choose_walks(&w, bw);
    int b_rc = build_bwd_items(&w, ph, &nph);
    if (b_rc == -2) {
        rc = sp_set_error(SPAT_EINVAL, "pattern '%s' has too many remapped components or classes of "
                          "heads for the CPU backward with GQA (more than %d phases): pass backend = "
                          "SPAT_BACKEND_REFERENCE", k->name, SP_POOL_MAX_PHASES);
        goto done;
    }
    if (b_rc)
        goto oom;
    sp_pool_job job = {.nphases = nph, .run = run_bwd_item, .arg = &w};
    int64_t most = 1;
    for (int p = 0; p < nph; p++) {
        job.nitems[p] = ph[p].n;
        c->items[p] = ph[p].v;
        most = ph[p].n > most ? ph[p].n : most;
    }
    if (thread_states(c, most, bw->threads))
        goto oom;
    rc = sp_pool_run(&job, c->nthreads);
    if (rc == SPAT_OK && tmp[4])
        copy_out(a->dq, a->dq_stride, c->o, c->ost, nq4);
    if (rc == SPAT_OK && tmp[5])
        copy_out(a->dk, a->dk_stride, w.dk, w.dkst, nk4);
    if (rc == SPAT_OK && tmp[6])
        copy_out(a->dv, a->dv_stride, w.dv, w.dvst, nk4);
    goto done;
oom:
    rc = sp_set_error(SPAT_ENOMEM, "out of memory in the CPU backend; dQ, dK and dV may be partly "
                      "written");
done:
    free_bclasses(w.tbc, c->B * c->nclasses);
    if (w.inv)
        for (int64_t x = 0; x < c->B * c->Hq; x++) {
            free(w.inv[x]);
            free(w.icnt[x]);
        }
    free(w.inv);
    free(w.icnt);
    free(w.icap);
    free(w.uitems);
    free(w.D);
    free_call(c);
    for (int p = 0; p < SP_POOL_MAX_PHASES; p++)
        free(ph[p].v);
    for (int x = 0; x < 7; x++)
        free(tmp[x]);
    sp_arena_free(&ar);
    return rc;
}
