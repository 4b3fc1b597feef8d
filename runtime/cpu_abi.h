/* The contract between the LLVM-generated CPU code and the runtime that
 * drives it (runtime/cpu.c), whether the code sits in a kernel.so or was
 * JIT-compiled in-process.
 *
 * Generated code does the work of one query tile: it packs the tile's
 * queries, then for each component of the pass computes the tile's key
 * ranges from its coordinates (the pattern's constants folded in), builds
 * key tiles, classifies each (full, or needs a per-pair mask), and runs the
 * QK^T micro-kernel, the online softmax and the PV micro-kernel. It leaves
 * the tile's softmax state (m, l, unnormalised O) in the scratch area; the
 * runtime finalises it (O = acc / l, LSE) or merges it into O and LSE.
 *
 * The generator reads the field offsets below with offsetof, so the two
 * sides agree by construction; SP_CPU_ABI stamps kernel.so files, and a
 * loader refuses any other value. */
#ifndef SPAT_CPU_ABI_H
#define SPAT_CPU_ABI_H

#include <stdint.h>

#define SP_CPU_ABI 1u

/* The passes a generated entry point implements (sp_cpu_entry.kind): the
 * forward's, then the backward's, whose kinds are the forward's plus
 * SP_CPU_DQ (dQ, over the plan's query tiles) or SP_CPU_KVQ (dK and dV over
 * key tiles of the transposed plan, comp.h, and on request the dQ of the
 * listed rows too). SP_CPU_KV entries (dK and dV alone, every listed row)
 * are what spatc wrote before SP_CPU_KVQ; the runtime still runs them, in
 * its two walks. */
enum {
    SP_CPU_DIRECT = 1, /* P1: a contiguous query tile, every direct component of a class */
    SP_CPU_REMAP = 2,  /* P2: a residue class of rows (dilated band, stride), one component */
    SP_CPU_ROWS = 3,   /* P3: global rows (a contiguous run), one chunk of keys */
    SP_CPU_DQ = 3,     /* + SP_CPU_DIRECT ..: the dQ passes */
    SP_CPU_KV = 6,     /* + SP_CPU_DIRECT ..: the dK, dV passes (cls, comp of the transposed plan) */
    SP_CPU_KVQ = 9,    /* + SP_CPU_DIRECT ..: as SP_CPU_KV, plus dQ (g3) and listed rows in [k0, k1] */
    /* The largest entry kind this libspat runs; spat_load refuses code with
     * an entry of a larger kind (a newer ABI's, or a corrupt one). */
    SP_CPU_KIND_MAX = SP_CPU_KVQ + SP_CPU_ROWS,
};

/* What an entry point does with the tile's softmax state at its end
 * (sp_cpu_tile.mode). */
enum {
    SP_CPU_KEEP = 0,  /* leave m, l, O in the scratch area */
    SP_CPU_WRITE = 1, /* O = acc / l and LSE of each lane's row (0 and -inf when l = 0) */
    SP_CPU_MERGE = 2, /* merge into the row's O and LSE through the LSEs */
};

/* Vector feature level of the code (sp_module_section.arch of a CPU section). */
enum { SP_CPU_SSE = 1, SP_CPU_AVX2 = 2, SP_CPU_AVX512 = 3 };

/* Floats per vector at a level (0: no such level). */
static inline uint32_t sp_cpu_vec_of(uint32_t level)
{
    return level == SP_CPU_AVX512 ? 16 : level == SP_CPU_AVX2 ? 8 : level == SP_CPU_SSE ? 4 : 0;
}

/* The tile shapes and the scratch layout of code with vectors of vec
 * floats and head dim d, written once for the generator (compiler/
 * backend_llvm.c) and for spat_load's check of a kernel.so's sp_cpu_info.
 * Shapes were chosen by measurement (BENCHMARKS.md): QK^T holds kr x qv
 * score vectors. Scratch (bytes, each part 64-byte aligned): Qt[d][tq],
 * St[tk][tq], O[tq][d], m[tq], l[tq], alpha[tq], js[tk + kr]; then the
 * backward's Dt[d][tq], dP[tk + kr][tq], A2[tq][d]. */
typedef struct sp_cpu_layout {
    uint32_t qv, tq, kr, tk;                    /* tq = qv * vec query lanes, tk keys */
    uint32_t o_qt, o_st, o_o, o_m, o_l, o_a, o_js;
    uint32_t fwd_bytes;                         /* the forward's scratch (code without a backward) */
    uint32_t o_dt, o_dp, o_a2, o_kr, bytes;     /* the backward's; bytes: the whole scratch */
} sp_cpu_layout;

static inline uint32_t sp_cpu_align64(uint32_t x) { return (x + 63u) & ~63u; }

static inline sp_cpu_layout sp_cpu_layout_of(uint32_t vec, uint32_t d)
{
    sp_cpu_layout l = {.qv = 2, .kr = 4, .tk = vec >= 8 ? 64 : 32};
    if (vec == 16)
        l.kr = 8;
    l.tq = l.qv * vec;
    uint32_t o = 0;
    l.o_qt = o, o = sp_cpu_align64(o + 4u * d * l.tq);
    l.o_st = o, o = sp_cpu_align64(o + 4u * l.tk * l.tq);
    l.o_o = o, o = sp_cpu_align64(o + 4u * l.tq * d);
    l.o_m = o, o = sp_cpu_align64(o + 4u * l.tq);
    l.o_l = o, o = sp_cpu_align64(o + 4u * l.tq);
    l.o_a = o, o = sp_cpu_align64(o + 4u * l.tq);
    l.o_js = o, o = sp_cpu_align64(o + 4u * (l.tk + l.kr));
    l.fwd_bytes = o;
    l.o_dt = o, o = sp_cpu_align64(o + 4u * d * l.tq);
    l.o_dp = o, o = sp_cpu_align64(o + 4u * (l.tk + l.kr) * l.tq);
    l.o_a2 = o, o = sp_cpu_align64(o + 4u * l.tq * d);
    l.o_kr = o, o = sp_cpu_align64(o + 4u * l.tq * d); /* SP_CPU_KVQ: the lanes' K rows */
    l.bytes = o;
    return l;
}

/* CPU features code may rely on; the loader checks each with CPUID. */
enum {
    SP_CPU_F_SSE3 = 1u << 0, SP_CPU_F_SSSE3 = 1u << 1, SP_CPU_F_SSE41 = 1u << 2,
    SP_CPU_F_SSE42 = 1u << 3, SP_CPU_F_POPCNT = 1u << 4, SP_CPU_F_AVX = 1u << 5,
    SP_CPU_F_AVX2 = 1u << 6, SP_CPU_F_FMA = 1u << 7, SP_CPU_F_F16C = 1u << 8,
    SP_CPU_F_BMI = 1u << 9, SP_CPU_F_BMI2 = 1u << 10, SP_CPU_F_LZCNT = 1u << 11,
    SP_CPU_F_AVX512F = 1u << 12, SP_CPU_F_AVX512DQ = 1u << 13, SP_CPU_F_AVX512CD = 1u << 14,
    SP_CPU_F_AVX512BW = 1u << 15, SP_CPU_F_AVX512VL = 1u << 16, SP_CPU_F_AVX512VNNI = 1u << 17,
    SP_CPU_F_AVX512BF16 = 1u << 18, SP_CPU_F_AVX512FP16 = 1u << 19, SP_CPU_F_AVX512VBMI = 1u << 20,
    SP_CPU_F_AVX512VBMI2 = 1u << 21, SP_CPU_F_AVX512IFMA = 1u << 22, SP_CPU_F_AVX512BITALG = 1u << 23,
    SP_CPU_F_AVX512VPOPCNTDQ = 1u << 24, SP_CPU_F_AVX512VP2INTERSECT = 1u << 25,
    SP_CPU_F_GFNI = 1u << 26, SP_CPU_F_VAES = 1u << 27, SP_CPU_F_VPCLMULQDQ = 1u << 28,
    SP_CPU_F_AVXVNNI = 1u << 29, SP_CPU_F_MOVBE = 1u << 30,
};

/* A span of positions, inclusive (the layout of sp_span in plan.h). */
typedef struct sp_cpu_span {
    int64_t lo, hi;
} sp_cpu_span;

/* One call of an entry point: one query tile of one (batch, head). */
typedef struct sp_cpu_tile {
    const float *q, *k, *v; /* row r of (b, h): q + r * qs; keys j: k + j * ks, v + j * vs */
    int64_t qs, ks, vs;     /* row strides in elements (element stride is 1) */
    int64_t L;              /* keys 0..L-1 */
    int64_t off;            /* query row r is position r + off */
    int64_t i0, istep, n;   /* lane x (x < n) is position i0 + istep * x */
    int64_t k0, k1;         /* SP_CPU_ROWS: the key chunk [k0, k1]; SP_CPU_KVQ: the listed rows' */
    uint64_t rowex;         /* bit x: lane x is a global row (owned by the rows component) */
    const uint8_t *kx;      /* [L], non-zero: key is a global column; NULL when none */
    const sp_cpu_span *cols; /* the columns component's keys, sorted, disjoint, < L */
    int64_t ncols;
    const int64_t *rnd;     /* random key blocks of query block qb: rnd[(qb - rqb0) * rcap + k] */
    const int32_t *rcnt;    /* how many, per query block from rqb0 */
    int64_t rqb0, rcap;
    float qscale;           /* scale * log2(e): scores are kept in base 2 */
    uint32_t mode;          /* SP_CPU_KEEP, SP_CPU_WRITE, SP_CPU_MERGE */
    float *o;               /* row r of (b, h): o + r * os (element stride 1) */
    int64_t os;
    float *lse;             /* LSE of row r: lse[r * ls] */
    int64_t ls;
    void *scratch;          /* sp_cpu_info.scratch_bytes, 64-byte aligned, per thread */
    /* The backward's (entries SP_CPU_DQ + k, SP_CPU_KV + k); older code
     * never reads past `scratch`. In a dQ entry the lanes are query rows as
     * above. In a dK/dV entry the lanes are keys: q and v give the lanes' K
     * and V rows (qs, vs; off = 0), and the listed "keys" are query
     * positions i, whose rows are at k (Q), dout, lse and dvec at index
     * i - roff; L bounds them (i < L), and so does roff (i >= roff). */
    const float *dout;      /* dO: a dQ lane's row r at dout + r * dos */
    int64_t dos;
    const float *dvec;      /* D = rowsum(dO o O): row r's at dvec[r] */
    int64_t roff;
    float *g1, *g2;         /* the lanes' gradients are added to: lane x's row */
    int64_t g1s, g2s, goff; /* i0 + istep * x - goff at g1 + row * g1s (dQ or dV), g2 (dK) */
    float gscale1, gscale2; /* times these */
    /* SP_CPU_KVQ entries only: when g3 is not NULL, the dQ of each listed
     * row i, times gscale3, is added at g3 + (i - roff) * g3s. */
    float *g3;
    int64_t g3s;
    float gscale3;
} sp_cpu_tile;

/* What an entry point does (one per section entry, in the same order). */
typedef struct sp_cpu_entry {
    uint32_t kind;  /* SP_CPU_DIRECT, SP_CPU_REMAP, SP_CPU_ROWS, plus SP_CPU_DQ, SP_CPU_KV or SP_CPU_KVQ */
    uint32_t cls;   /* head class */
    uint32_t comp;  /* SP_CPU_REMAP: the component; else 0 */
    uint32_t step;  /* SP_CPU_REMAP: the row step (dilation or stride); else 1 */
} sp_cpu_entry;

/* The data of a CPU section (one pattern, one head dim). After a tile in
 * SP_CPU_KEEP mode, the scratch area holds the state of lane x: m[x]
 * (running max, base 2), l[x] (sum of weights) and O[x * head_dim + t]
 * (unnormalised output). */
typedef struct sp_cpu_info {
    uint32_t size;        /* sizeof(sp_cpu_info) of the writer */
    uint32_t abi;         /* SP_CPU_ABI */
    uint32_t level;       /* SP_CPU_SSE .. SP_CPU_AVX512 */
    uint32_t vec;         /* floats per vector */
    uint64_t features;    /* SP_CPU_F_* the code may use */
    uint32_t head_dim;
    uint32_t tq;          /* query lanes per tile (<= 64) */
    uint32_t tk;          /* keys per key tile */
    uint32_t nentries;
    uint64_t scratch_bytes;
    uint64_t plan_hash;   /* sp_plan_hash of the plan the code was built from */
    uint32_t off_m, off_l, off_o; /* byte offsets of the state in scratch */
    uint32_t rnd_cap;     /* largest random block count of any class (table stride) */
    sp_cpu_entry entry[]; /* nentries */
} sp_cpu_info;

/* Bytes of an sp_cpu_info with n entries. */
#define SP_CPU_INFO_BYTES(n) (sizeof(sp_cpu_info) + (size_t)(n) * sizeof(sp_cpu_entry))

typedef void (*sp_cpu_fn)(const sp_cpu_tile *t);

#endif
