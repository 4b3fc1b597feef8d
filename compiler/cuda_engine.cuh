/* ======================================================================
 * spat CUDA engine: the pattern-independent half of every generated source.
 *
 * spatc --emit=cuda pastes this text after the parameter block and before
 * the pattern's own code (its schedules and ownership tests, with the
 * pattern's constants folded in). The runtime compiles the result with
 * NVRTC for one head dim and dtype at a time: -DSP_D=<d> -DSP_DT=<0 f32,
 * 1 f16, 2 bf16>.
 *
 * Vocabulary (compiler/plan.h): a head's plan is an ordered list of
 * components; a pair belongs to the first component that holds it, and a
 * later component skips the pairs of the earlier ones named in its `excl`
 * mask. The kernels run one online softmax per query row over the pairs of
 * every component the row meets, so each attended pair is counted once.
 *
 * Three passes, each a kernel, run in stream order:
 *   direct  one CTA per (batch, head, 64 contiguous query rows); visits the
 *           key tiles of the components that are dense in position space
 *           (dense, bands, block bands, segments, offsets, gathered
 *           columns, random blocks) and writes O and LSE;
 *   remap   dilated bands and residue classes: rows and keys that share a
 *           residue mod the dilation (stride) D form a dense band, so one
 *           CTA takes 64 rows r, r+D, r+2D, ... of one class and merges its
 *           partial result into O through the LSEs;
 *   rows    `global rows`: each row sees every key, so the rows are split
 *           over key chunks across CTAs, and a small kernel merges the
 *           chunks' partials into O through their LSEs.
 *
 * Every visit is one tile of BN keys. A tile that holds only attended pairs
 * ("full") runs without a mask; the others mask by their component's
 * ownership test.
 *
 * Compute engines: on sm_80 and later, f16 and bf16 go through tensor cores
 * (mma.sync m16n8k16, ldmatrix, cp.async double buffering, FlashAttention-2
 * style online softmax with fp32 accumulation; on sm_90a at head dims 64
 * and 128 the two products are wgmma instead, reading K and V from shared
 * memory, and a producer warp, or warpgroup, issues the copies: SP_WS);
 * f32 (and every dtype before sm_80) through exact fp32 FMA. Masked tiles
 * that are band edges take each row's interval of key slots (band masks);
 * the others evaluate the ownership test per element.
 *
 * The schedule half (structs and helpers marked SP_HD) also compiles as
 * host C++, so that tests can replay a kernel's visits on the CPU.
 * ====================================================================== */

#if defined(__CUDACC__)
#define SP_HD __host__ __device__ __forceinline__
#define SP_DEV __device__ __forceinline__
#else
#define SP_HD inline
#endif

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;

#ifndef SP_D
#error "compile with -DSP_D=<head dim>"
#endif
#ifndef SP_DT
#error "compile with -DSP_DT=<0 f32, 1 f16, 2 bf16>"
#endif

#define SP_DP ((SP_D + 15) / 16 * 16) /* the head dim padded to k steps */

/* Hopper (sm_90a): the two products of a tile are warpgroup MMAs (see the
 * tensor engine) where the head dim pads to 64 or 128, one or two 128-byte
 * swizzle atoms. Measured at d = 128 (BENCHMARKS.md) they beat mma.sync
 * on 6 of the 9 suite patterns (dense, causal and the windows by 10-20 %),
 * once the P V product ran asynchronously; the code handles any multiple
 * of 64 (-DSP_WGMMA=1 forces it, 0 turns it off). */
#ifndef SP_WGMMA
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && SP_DT != 0 && SP_DP % 64 == 0 && SP_DP <= 128
#define SP_WGMMA 1
#else
#define SP_WGMMA 0
#endif
#endif

/* Warp specialisation (the wgmma tiles): a fifth warp, the producer (a
 * warpgroup of which one warp works with more compute warps: SP_PWG),
 * steps the schedule and issues every Q, K and V copy, a tile ahead,
 * handing each tile to the four compute warps through mbarriers; they do
 * nothing but the products and the softmax, with Q read from shared memory
 * (registers are short: 5 warps of 2 CTAs get 168). The CTAs are
 * persistent (sp_persist): the producer runs on into the next query tile
 * while the compute warps finish the last. Measured on an H100
 * (BENCHMARKS.md): at d = 128 +2 to +22 % on every suite pattern but
 * bigbird (-0.5 %), and persistence +1 to +13 % more; at d = 64, where a
 * CTA per query tile lost 2-10 % on five of nine (the fifth warp's
 * registers cost a CTA per SM), persistent +6 to +13 % on six of nine,
 * strided128 -4.5 %. -DSP_WS=1 or 0 overrides. Without it every warp
 * copies, the CTA synchronises twice per tile and a CTA runs one query
 * tile. SP_NC threads compute, SP_NT are launched: the host reads
 * spat_threads and spat_persist. */
#ifndef SP_WS
#define SP_WS SP_WGMMA
#endif
/* SP_RUN, from the generator: every component of the pattern is dense or
 * a band of at least SP_RUN consecutive keys. Runs of more than 1024 keys
 * are SP_WIDE (see SP_WG, SP_BN): causal_window1024 at d = 64 (runs of
 * exactly 1024) gained 3.5, 5.8 and 6.1 % in three runs on one warpgroup
 * of 64-key tiles, 4 CTAs per SM (H100, BENCHMARKS.md). */
#if defined(SP_RUN) && SP_RUN > 1024 && !defined(SP_WIDE)
#define SP_WIDE 1
#endif
/* Compute warpgroups per CTA, 64 rows each, sharing every K/V tile the
 * producer loads: two (128 rows, one CTA per SM) for SP_WIDE patterns,
 * with 128-key tiles: at d = 128 +14 % on dense and causal, +1.5 % on
 * causal_window1024 (H100); narrow patterns lost 5-50 % with them, and
 * 64-key tiles lost 2-3 % on dense and causal; at d = 64 dense +6 %,
 * causal +8 %, causal_window1024 -1.7 % (persistent CTAs, against one
 * warpgroup of 128-key tiles). At d = 128, where K and V are handed over
 * apart (SP_SPLIT), runs of 512 keys take two as well: window256
 * +3.2-4.0 % (H100; -5.5 % before the split), where longformer lost 18 %
 * and dilated4 36 %. Three (192 rows) at d = 64 where every row attends
 * every key (SP_EVERY, from the generator): dense +7.9 % with the
 * producer warpgroup below, where causal gained nothing and
 * causal_window1024 lost 2.8 % (H100; without it window256 lost 25 %,
 * dilated4 36 %). Causal (SP_LOWER, from the generator) takes three as
 * well once its items run longest first (SP_ORDER): at d = 64 +12 % at
 * N = 16384, +19 and +24 % at 4096 and 8192, but -13 % at 2048, 16
 * heads, where 176 items of 192 rows meet 132 CTAs (H100). -DSP_WG=1, 2
 * or 3 overrides. The host sizes its grids from spat_tile_rows. */
#ifndef SP_WG
#if SP_WS && (defined(SP_EVERY) || defined(SP_LOWER)) && SP_DP == 64
#define SP_WG 3
#elif SP_WS && (defined(SP_WIDE) || (defined(SP_RUN) && SP_RUN >= 512 && SP_DP == 128))
#define SP_WG 2
#else
#define SP_WG 1
#endif
#endif
#define SP_BM (64 * SP_WG)
#define SP_NC (128 * SP_WG)
/* The order of a persistent kernel's items (sp_persist): head by head,
 * each head's query tiles from the last rows (the direct pass; under
 * causal those have the most keys) to the first, so that the CTAs running
 * at once share one or two heads' K and V; or the query tile outer and
 * the heads inner: longest first across all heads. That pays where a
 * query tile's keys grow with its rows (SP_GROWS, from the generator:
 * causal with dense or periodic key columns) and the items are few for
 * the CTAs, so that head by head the last head's longest items run alone
 * at the end: causal at d = 64 on three warpgroups, 1,376 items for 132
 * CTAs, ended its SMs between 1,168 and 1,449 us head by head and within
 * 14 us longest first (traces), +12 %. Where items are many it costs the
 * L2 the keys of every head at once: causal at d = 128, 15.5 items a CTA,
 * -1.6 to -2.8 %; where their lengths are alike it costs anyway (dense
 * -3.8 %, bigbird -8.5 %). So for SP_GROWS the host chooses per launch
 * (p.xmajor, runtime/cuda.c); -DSP_XMAJOR=0 or 1 fixes the order for any
 * pattern. SP_ORDER: 0 head by head, 1 query tile outer, 2 the host's. */
#if defined(SP_XMAJOR)
#define SP_ORDER (SP_XMAJOR != 0)
#elif defined(SP_GROWS)
#define SP_ORDER 2
#else
#define SP_ORDER 0
#endif

/* The producer warp fills a tile of keys at a fixed step (consecutive, or
 * a remapped residue class), all valid, through TMA where the host gives
 * descriptors of K and V for that step (p.tma, p.tmad): a few
 * instructions of one lane where its 32 lanes issued 64 to 256 16-byte
 * copies and their addresses. H100, against those copies: dense +3.8 %
 * (d = 64) and +4.2 % (d = 128), causal +4.1 % and +3.2 %, longformer
 * +4.2 % at d = 128, dilated4 +4.0 % and +6.8 % (its residue classes);
 * gathered and partial tiles keep the copies. -DSP_TMA=0 turns it off. */
#ifndef SP_TMA
#define SP_TMA 1
#endif

/* The producer warpgroup (SP_PWG): with more than one compute warpgroup
 * the producer is a whole warpgroup, of which one warp works, so that
 * setmaxnreg can move registers from it to the compute warps. Registers
 * are allotted per SM sub-partition (a quarter of the file, one warp of
 * each warpgroup), so only a producer of four warps frees some on every
 * sub-partition. The kernel starts with the even share, SP_EREG (one CTA
 * per SM in __launch_bounds__ fixes it; without that ptxas ignores
 * setmaxnreg, C7508); the producer drops to SP_PREG, the compute warps
 * rise to SP_CREG: 232 for two warpgroups (from 168; at d = 128 dense
 * +5.6 %, causal +6.8 %, window256 +6.1 %, causal_window1024 +2.9 %,
 * H100), 160 for three (from 128, where three spilled 80 bytes and lost
 * 6.6 % on causal). A producer of 24 registers spills. (Tried
 * before one CTA per SM was declared, ptxas kept 168 registers for every
 * thread and spilled 884 bytes.) -DSP_PWG=0 or 1 overrides. */
#ifndef SP_PWG
#define SP_PWG (SP_WS && SP_WG > 1)
#endif
#if SP_PWG && !SP_WS
#error "SP_PWG needs SP_WS"
#endif
#define SP_NT (SP_NC + (SP_PWG ? 128 : 32 * SP_WS))
#ifndef SP_PREG
#define SP_PREG 32
#endif
/* setmaxnreg.inc waits until the registers it asks for are free, so the
 * compute warps may ask only for what their CTA was given: per
 * sub-partition SP_WG + 1 warps of SP_EREG (in 8s, at most 256). */
#define SP_EREG (65536 / SP_NT / 8 * 8 > 248 ? 248 : 65536 / SP_NT / 8 * 8)
#define SP_CREG_ (((SP_WG + 1) * SP_EREG - SP_PREG) / SP_WG / 8 * 8)
#define SP_CREG (SP_CREG_ > 256 ? 256 : SP_CREG_)
#if SP_WS && !SP_WGMMA
#error "SP_WS needs the wgmma tiles"
#endif
#if defined(__CUDA_ARCH__) && SP_WG != 1 && !SP_WS
#error "more than one compute warpgroup needs SP_WS"
#endif

/* Keys per tile (sp_engine::BN): 64, or 128 on wgmma at head dim 64 for
 * SP_WIDE patterns (every component a band of more than 1024 keys, or
 * dense): there the tile's fixed costs (barriers, schedule step, softmax
 * reductions) halve per key, +7 to +22 % on dense, causal and
 * causal_window1024; patterns of narrower or scattered components lost
 * 13-38 % with it (H200, BENCHMARKS.md). At d = 128 the 128-key buffers
 * leave room for one CTA per SM: there they go with two compute
 * warpgroups (SP_WG). -DSP_BN=64 or 128 overrides the choice. */
#if !defined(SP_BN) && ((defined(SP_WIDE) && SP_WGMMA && SP_DP == 64) || SP_WG > 1)
#define SP_BN 128
#endif

/* CTAs per SM the tile kernels are built for (__launch_bounds__): more
 * caps their registers. Measured on an H200, the SP_WS rows on an H100
 * (BENCHMARKS.md). */
#ifndef SP_MINB
#if SP_WS && (SP_WG > 1 || SP_PWG)
#define SP_MINB 1 /* one CTA of two or three warpgroups; SP_PWG needs it */
#elif SP_WS && (SP_D > 64 || (defined(SP_BN) && SP_BN > 64))
#define SP_MINB 2 /* 160 threads: ptxas gives them 168 registers */
#elif SP_WS && (defined(SP_GATHER) || defined(SP_RUN))
/* 160 threads of up to 96 registers, spilling 44-96 bytes: patterns the
 * generator marks SP_GATHER (column sets, random blocks) cost the producer
 * more per tile (set lookups, draws, per-row key positions of gathered
 * columns), and 4 producers per SM beat the spills there (d = 64: bigbird
 * +14.6 %, fixed128 +11.8 %, longformer +1.6 %; longformer still +2.5 %
 * once its one-span column set was tiled as a range). Bands of consecutive
 * keys (SP_RUN) too: causal_window1024 +6.1 % (above), window256 +5.1 %
 * (+0.1 % in a flag trial); the remapped ones (dilated, strided) lost 1-4 %
 * with them. */
#define SP_MINB 4
#elif SP_WS
#define SP_MINB 3 /* 160 threads of up to 136 registers */
#elif SP_D > 64 && SP_DT != 0 && SP_WGMMA
#define SP_MINB 2 /* ~198 registers: with 168 ptxas serialises the wgmmas */
#elif SP_D > 64 && SP_DT != 0
#define SP_MINB 3 /* 3 CTAs of ~168 registers beat 2 of ~230 (d = 128) */
#elif SP_DT != 0 && SP_WGMMA && defined(SP_BN) && SP_BN > 64
#define SP_MINB 3 /* 168 registers, no spills; 2 CTAs measured 25 % slower */
#elif SP_DT != 0 && SP_WGMMA
#define SP_MINB 4 /* 4 CTAs of 128 registers (a few spills) beat 3 of ~150-170 by 5-17 % */
#elif SP_DT != 0
#define SP_MINB 3 /* ~150-165 registers: 3 CTAs per SM */
#else
#define SP_MINB 1
#endif
#endif
#if SP_PWG && (SP_MINB != 1 || SP_PREG < 24 || SP_PREG % 8 != 0)
#error "SP_PWG: one CTA per SM (SP_MINB=1), and SP_PREG a multiple of 8 from 24"
#endif

/* With the producer and two or three compute warpgroups (tiles of 128
 * keys), a tile's K and V are handed over separately (sp_persist): K is
 * released once every warpgroup's scores are read, V once their P V has
 * completed. Measured on an H100: at d = 128 dense +6.4 %, causal +4.8 %,
 * causal_window1024 +9.6 %; at d = 64, once the producer warpgroup gave
 * the compute warps its registers (SP_PWG), dense +3.5 %, causal +3.0 %,
 * causal_window1024 +2.7 % (with a producer warp: dense -5.5 %, causal
 * -3.4 %); for one warpgroup -1.6 to -8.5 % (BENCHMARKS.md). */
#ifndef SP_SPLIT
#define SP_SPLIT (SP_WS && SP_WG > 1)
#endif

/* FlashAttention 3's order within a warpgroup (sp_persist): S = Q K^T of
 * tile t is issued, then O += P V of tile t - 1, and the softmax of tile t
 * runs while that P V does. Needs K and V handed over apart (SP_SPLIT) and
 * registers for S, O and P at once: at d = 128 with two warpgroups of 232
 * registers (H100): dense +2.8 %, causal +5.1 %, but window256 -7.1 % and
 * causal_window1024 -3.1 % (items of 4-10 tiles, against 16-128; not
 * profiled); with the two warpgroups also taking turns at issuing (FA3's
 * ping-pong) -3.9 and -1.7 %, dense and causal the same. So it
 * is on where every row attends every key or every earlier one (SP_EVERY,
 * SP_LOWER). At d = 64 (three warpgroups of 160 registers) causal lost
 * 5 %. With 168 registers it spilled (BENCHMARKS.md). */
#ifndef SP_OVERLAP
#if SP_SPLIT && SP_DP == 128 && (defined(SP_EVERY) || defined(SP_LOWER))
#define SP_OVERLAP 1
#else
#define SP_OVERLAP 0
#endif
#endif
#if SP_OVERLAP && !SP_SPLIT
#error "SP_OVERLAP needs SP_SPLIT"
#endif

#define SP_NEG_INF (-__int_as_float(0x7f800000))
/* How far (log2 units) a row's maximum may pass the softmax's reference
 * before O is rescaled (the tensor tiles' softmax): weights stay below
 * 2^SP_SLACK. At d = 128, where O is 64 accumulators a thread, measured on
 * an H100: dense +3.1 %, causal +5.8 %, causal_window1024 +3.4 %,
 * longformer +1.5 %, the rest within the runs' noise. At d = 64 (32 a
 * thread) dense, on three warpgroups, gained 4.4 and 2.2 % in two runs;
 * the other patterns moved within the noise (causal -2.4 to +0.2 %,
 * causal_window1024 +0.9 to +1.8 %, window256 -1.9 to +1.4 %), so it is on
 * at d = 64 for three warpgroups alone (BENCHMARKS.md). 0 rescales O for
 * every tile. */
#ifndef SP_SLACK
#define SP_SLACK (SP_DP >= 128 || SP_WG == 3 ? 8.f : 0.f)
#endif

/* A TMA descriptor, as the host's (compiler/cuda_params.h). */
struct alignas(128) sp_tmap {
    unsigned long long w[16];
};

struct sp_params {
    SP_PARAMS_FIELDS
};

/* ------------------------------------------------------------ integers */

SP_HD i64 sp_min(i64 a, i64 b) { return a < b ? a : b; }
SP_HD i64 sp_max(i64 a, i64 b) { return a > b ? a : b; }
SP_HD i64 sp_fdiv(i64 a, i64 b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
SP_HD i64 sp_cdiv(i64 a, i64 b) { return -sp_fdiv(-a, b); }
/* Is there a multiple of m in [lo, hi]? */
SP_HD bool sp_has_multiple(i64 lo, i64 hi, i64 m) { return lo <= hi && sp_fdiv(hi, m) * m >= lo; }
/* Is there a j in [lo, hi] with j mod s in [a, b] (0 <= a <= b < s)? */
SP_HD bool sp_period_meets(i64 lo, i64 hi, i64 a, i64 b, i64 s)
{
    if (lo > hi)
        return false;
    if (hi - lo + 1 >= s)
        return true;
    i64 base = sp_fdiv(lo, s) * s; /* class start at or below lo */
    /* The runs [base+a, base+b] and the next one may meet [lo, hi]. */
    return (base + a <= hi && base + b >= lo) || (base + s + a <= hi && base + s + b >= lo);
}
SP_HD bool sp_period_has(i64 j, i64 a, i64 b, i64 s)
{
    i64 r = j % s;
    return a <= r && r <= b;
}

/* ------------------------------------------------------- visits, tiles */

/* One tile of a component: BN keys, indexed kb .. kb+BN-1 in the
 * component's key index space; an index t maps to position r + D*t (D > 0:
 * contiguous or strided keys) or through the component's gather function
 * (D == 0: gathered columns). */
struct sp_visit {
    int gid, sub;  /* component (numbered over all head classes), sub-run */
    int full;      /* every pair of the tile is attended: no mask */
    int cz;        /* some pair lies above the diagonal (causal must cut) */
    int hc;        /* the component's own test is needed (band edges...) */
    u32 xm;        /* excluded components that may meet the tile (bit per gid
                      of the class's component index) */
    int nvalid;    /* key slots >= nvalid are empty */
    i64 kb, klo, khi; /* first index, and the valid index range */
    i64 j0, j1;       /* positions of the first and last valid key */
    i64 ilo, ihi;     /* rows whose position lies outside are not attended */
    i64 D, r;         /* index -> position map */
};

/* What a CTA works on; positions are absolute (row + q_offset). */
struct sp_tile {
    int cls;          /* head class */
    int rows_full;    /* all SP_BM rows are valid */
    i64 b, h, hk;     /* batch, query head, KV head */
    i64 nq, nk, qoff; /* this batch's rows, keys (L) and position offset */
    i64 ilo, ihi;     /* first and last valid row's position (ihi < ilo: none) */
    i64 jmax;         /* last key position any row may attend (causal, L) */
    i64 D, r, m0, m1; /* remap: rows r + D*m for m in m0..m1 (direct: D = 1) */
    i64 u0, nu;       /* rows pass: set rows u0.. of nu */
};

/* Schedule state: which component of the class, and where in it. */
struct sp_sched {
    int k, ph, sub;
    i64 t, tend, org, a, b;
    i64 x, y, z, w;
};

SP_HD void sp_visit_init(sp_visit &v, const sp_tile &T)
{
    v.gid = -1;
    v.sub = 0;
    v.full = v.cz = v.hc = 0;
    v.xm = 0;
    v.nvalid = 0;
    v.kb = v.klo = v.khi = 0;
    v.j0 = v.j1 = 0;
    v.ilo = T.ilo;
    v.ihi = T.ihi;
    v.D = 1;
    v.r = 0;
}

/* Starts tiling the key index range [a, b] with tiles org + t*BN. */
SP_HD void sp_range(sp_sched &s, i64 a, i64 b, i64 org, int BN)
{
    s.a = a;
    s.b = b;
    s.org = org;
    s.t = a <= b ? sp_fdiv(a - org, BN) : 1;
    s.tend = a <= b ? sp_fdiv(b - org, BN) : 0;
}

/* The next tile of the range, or false. Positions of the box follow from
 * the index map (v.D, v.r) set before the call. */
SP_HD bool sp_tiles(sp_sched &s, sp_visit &v, int BN)
{
    if (s.t > s.tend)
        return false;
    i64 kb = s.org + s.t * BN;
    v.kb = kb;
    v.klo = sp_max(kb, s.a);
    v.khi = sp_min(kb + BN - 1, s.b);
    v.nvalid = (int)(v.khi - kb + 1);
    v.j0 = v.r + v.D * v.klo;
    v.j1 = v.r + v.D * v.khi;
    s.t++;
    return true;
}

/* Sets cz and full once gid, hc and xm are known. */
SP_HD void sp_flags(sp_visit &v, const sp_tile &T, bool causal, int BN)
{
    v.cz = causal && v.j1 > v.ilo;
    v.full = !v.cz && !v.hc && !v.xm && T.rows_full && v.klo == v.kb && v.khi == v.kb + BN - 1 &&
             v.ilo <= T.ilo && v.ihi >= T.ihi;
}

/* ------------------------------------------------------ position sets */

/* A set of `global` positions resolved against the length L: the items in
 * source order (clipped; lo > hi when empty) and, sorted and merged, the
 * disjoint spans that gathers enumerate. */
template <int N> struct sp_pset {
    i64 lo[N], hi[N];   /* items */
    i64 mlo[N], mhi[N]; /* merged */
    int n, mn;
};

/* Resolves an item bound: from_end counts back from L. */
SP_HD i64 sp_resolve(i64 v, bool from_end, i64 L) { return from_end ? L - v : v; }

template <int N> SP_HD void sp_set_merge(sp_pset<N> &s)
{
    int m = 0;
    for (int k = 0; k < s.n; k++) {
        if (s.lo[k] > s.hi[k])
            continue;
        /* insertion by lo */
        int p = m++;
        while (p > 0 && s.mlo[p - 1] > s.lo[k]) {
            s.mlo[p] = s.mlo[p - 1];
            s.mhi[p] = s.mhi[p - 1];
            p--;
        }
        s.mlo[p] = s.lo[k];
        s.mhi[p] = s.hi[k];
    }
    int q = 0;
    for (int k = 0; k < m; k++) {
        if (q > 0 && s.mlo[k] <= s.mhi[q - 1] + 1) {
            s.mhi[q - 1] = sp_max(s.mhi[q - 1], s.mhi[k]);
        } else {
            s.mlo[q] = s.mlo[k];
            s.mhi[q] = s.mhi[k];
            q++;
        }
    }
    s.mn = q;
}

template <int N> SP_HD bool sp_set_has(const sp_pset<N> &s, i64 x)
{
    for (int k = 0; k < s.mn; k++)
        if (s.mlo[k] <= x && x <= s.mhi[k])
            return true;
    return false;
}

template <int N> SP_HD bool sp_set_meets(const sp_pset<N> &s, i64 lo, i64 hi)
{
    for (int k = 0; k < s.mn; k++)
        if (s.mlo[k] <= hi && s.mhi[k] >= lo)
            return true;
    return false;
}

/* Moves lo up past the members at the start of [lo, hi] and hi down past
 * those at its end (merged spans are disjoint and not adjacent, so one
 * step each); lo > hi when the set holds all of it. */
template <int N> SP_HD void sp_set_trim(const sp_pset<N> &s, i64 &lo, i64 &hi)
{
    for (int k = 0; k < s.mn; k++)
        if (s.mlo[k] <= lo && lo <= s.mhi[k]) {
            lo = s.mhi[k] + 1;
            break;
        }
    for (int k = 0; k < s.mn; k++)
        if (s.mlo[k] <= hi && hi <= s.mhi[k]) {
            hi = s.mlo[k] - 1;
            break;
        }
}

/* How many members are <= x (merged spans). */
template <int N> SP_HD i64 sp_set_count(const sp_pset<N> &s, i64 x)
{
    i64 c = 0;
    for (int k = 0; k < s.mn && s.mlo[k] <= x; k++)
        c += sp_min(s.mhi[k], x) - s.mlo[k] + 1;
    return c;
}

/* Members in [lo, hi]. */
template <int N> SP_HD i64 sp_set_count_in(const sp_pset<N> &s, i64 lo, i64 hi)
{
    return lo > hi ? 0 : sp_set_count(s, hi) - sp_set_count(s, lo - 1);
}

/* The t-th member (0-based), or -1. */
template <int N> SP_HD i64 sp_set_elem(const sp_pset<N> &s, i64 t)
{
    for (int k = 0; k < s.mn; k++) {
        i64 len = s.mhi[k] - s.mlo[k] + 1;
        if (t < len)
            return s.mlo[k] + t;
        t -= len;
    }
    return -1;
}

/* Gathered keys j <= x of the period a..b mod s. */
SP_HD i64 sp_period_count(i64 x, i64 a, i64 b, i64 s)
{
    if (x < 0)
        return 0;
    i64 w = b - a + 1, n = x + 1;
    return n / s * w + sp_min(w, sp_max(0, n % s - a));
}
SP_HD i64 sp_period_elem(i64 t, i64 a, i64 b, i64 s)
{
    i64 w = b - a + 1;
    return t / w * s + a + t % w;
}

/* Gather tiles over the first n members of a key set (index space
 * 0..n-1). The caller sets v.D = 0 and computes j0, j1 from the indices. */
SP_HD bool sp_gather_tiles(sp_sched &s, sp_visit &v, int BN)
{
    v.D = 0;
    if (s.t > s.tend)
        return false;
    i64 kb = s.t * BN;
    v.kb = kb;
    v.klo = kb;
    v.khi = sp_min(kb + BN - 1, s.b);
    v.nvalid = (int)(v.khi - kb + 1);
    s.t++;
    return true;
}

/* --------------------------------------------- random blocks (rng.h) */

/* The generator, compiler/rng.h, as the host runs it (cuda_embed.sh pastes
 * its text here). */
#include "rng.h"

/* Scratch of one CTA for the random blocks of one query block: R is the
 * pattern's block count (at most SP_RMAX). */
template <int R> struct sp_rnd {
    i64 kb[R > 0 ? R : 1];   /* the drawn key blocks */
    i64 rank[R > 0 ? R : 1]; /* Floyd's picks among the candidates, sorted */
    i64 n;                   /* how many were drawn */
    i64 count[SP_NT / 32 + 1];
};

#if defined(__CUDA_ARCH__)
/* Every CTA barrier goes through here. __syncthreads is an aligned
 * barrier: the 32 threads of a warp must execute it together, which
 * independent thread scheduling does not promise after a divergent branch
 * (a lane may run ahead to the barrier while its warp is split). The warp
 * barrier first reconverges the warp. */
__device__ __forceinline__ void sp_bar()
{
    __syncwarp();
    __syncthreads();
}

/* A barrier of the compute threads alone (warp specialisation leaves the
 * producer warp out; else the whole CTA). */
__device__ __forceinline__ void sp_bar_nc()
{
    __syncwarp();
    asm volatile("bar.sync 1, %0;\n" ::"n"(SP_NC) : "memory");
}

/* Gives this warpgroup's registers back (the producer) or takes them
 * (the compute warps): SP_PWG. Every warp of the warpgroup runs it. */
template <int N> __device__ __forceinline__ void sp_setmaxnreg_dec()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void sp_setmaxnreg_inc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* The threads that step the schedule (and draw random blocks together):
 * with warp specialisation the producer warp alone, else the whole CTA. */
#if SP_WS
#define SP_GT ((int)threadIdx.x - SP_NC)
#define SP_GN 32
__device__ __forceinline__ void sp_gbar() { __syncwarp(); }
#else
#define SP_GT ((int)threadIdx.x)
#define SP_GN SP_NT
__device__ __forceinline__ void sp_gbar() { sp_bar(); }
#endif
#endif

#if !defined(__CUDA_ARCH__)
/* Host replay: the same draws, one block at a time. */
template <int R, class F>
inline void sp_random_draw(sp_rnd<R> &z, i64 last, u64 key, i64 r, F untouched)
{
    i64 c = 0;
    for (i64 kb = 0; kb <= last; kb++)
        c += untouched(kb);
    z.n = 0;
    if (c <= r) {
        for (i64 kb = 0; kb <= last; kb++)
            if (untouched(kb))
                z.kb[z.n++] = kb;
        return;
    }
    sp_rng_floyd(key, c, r, z.rank);
    i64 rank = 0;
    int next = 0;
    for (i64 kb = 0; kb <= last && next < r; kb++)
        if (untouched(kb)) {
            if (rank == z.rank[next])
                z.kb[next++] = kb;
            rank++;
        }
    z.n = r;
}
#else
/* Device: the schedule's threads (SP_GT of SP_GN) each test a run of m
 * consecutive candidate blocks, keeping the first 64 answers as bits; a
 * prefix count over the threads ranks every candidate, one thread draws
 * the ranks, and the thread whose run holds a drawn rank finds its block
 * in its bits (testing again only past them: more than 64 * SP_GN
 * blocks). The blocks are those of the host replay above. A draw that
 * tested every block twice, with a barrier per SP_GN of them, was ~40 %
 * of the producer's instructions on bigbird at d = 64 (ncu), and the
 * compute warps waited on the producer. Every one of the threads must
 * call it (it synchronises). */
template <int R, class F>
__device__ void sp_random_draw(sp_rnd<R> &z, i64 last, u64 key, i64 r, F untouched)
{
    const int tid = SP_GT, lane = tid & 31, warp = tid >> 5;
    const i64 m = (last + SP_GN) / SP_GN, b0 = tid * m;
    /* Every lane runs the same iterations (a test past the last block is
     * discarded): with a trip count that depended on the lane, ptxas
     * (CUDA 13.0) let the lanes that skipped the loop reach the shuffles
     * and the barrier below before the others (compute-sanitizer synccheck:
     * divergent warp at the barrier), which hung wgmma kernels and dropped
     * keys in mma.sync ones (rnd_crowded at N = 65). */
    u64 bits = 0;
    i64 mine = 0;
    for (i64 t = 0; t < m; t++) {
        const i64 kb = b0 + t;
        const bool u = untouched(kb <= last ? kb : last) && kb <= last;
        mine += u;
        bits |= (u64)(u && t < 64) << (t & 63);
    }
    __syncwarp();
    i64 upto = mine; /* candidates in the runs of lanes 0..lane */
    for (int o = 1; o < 32; o <<= 1) {
        const i64 y = __shfl_up_sync(0xffffffffu, upto, o);
        if (lane >= o)
            upto += y;
    }
    sp_gbar();
    if (lane == 31)
        z.count[warp] = upto;
    sp_gbar();
    i64 before = upto - mine, c = 0;
    for (int w = 0; w < SP_GN / 32; w++) {
        before += w < warp ? z.count[w] : 0;
        c += z.count[w];
    }
    const bool all = c <= r;
    if (!all && tid == 0)
        sp_rng_floyd(key, c, r, z.rank);
    sp_gbar();
    const i64 n = all ? c : r;
    for (i64 k = 0; k < n; k++) {
        i64 want = (all ? k : z.rank[k]) - before;
        if (want < 0 || want >= mine)
            continue;
        u64 b = bits;
        const int pc = __popcll(b);
        i64 t = 64;
        if (want < pc) {
            for (; want > 0; want--)
                b &= b - 1;
            t = __ffsll((long long)b) - 1;
        } else {
            for (want -= pc;; t++)
                if (untouched(b0 + t) && want-- == 0)
                    break;
        }
        z.kb[k] = b0 + t;
    }
    if (tid == 0)
        z.n = n;
    sp_gbar();
}
#endif

/* ------------------------------------------------- where a CTA works */

/* The parts of a CTA's tile every pass shares: batch, heads, lengths. */
template <class P> SP_HD void sp_tile_base(sp_tile &T, const sp_params &p, i64 h, i64 b)
{
    T.h = h;
    T.b = b;
    T.hk = h / (p.heads_q / p.heads_kv);
    T.cls = P::head_class(h);
    if (p.lens) {
        T.nq = p.lens[3 * b];
        T.nk = p.lens[3 * b + 1];
        T.qoff = p.lens[3 * b + 2];
    } else {
        T.nq = p.seq_q;
        T.nk = p.seq_k;
        T.qoff = p.q_offset;
    }
    T.D = 1;
    T.r = 0;
    T.m0 = T.m1 = 0;
    T.u0 = T.nu = 0;
    T.ilo = 0;
    T.ihi = -1;
    T.rows_full = 0;
    T.jmax = -1;
}

template <class P> SP_HD void sp_tile_jmax(sp_tile &T)
{
    T.jmax = P::causal(T.cls) ? sp_min(T.ihi, T.nk - 1) : T.nk - 1;
}

/* Direct pass: query rows r0 .. r0+63 (tensor rows). False: none valid. */
template <class P> SP_HD bool sp_direct_rows(sp_tile &T, i64 r0)
{
    if (r0 >= T.nq)
        return false;
    T.m0 = r0;
    T.ilo = T.qoff + r0;
    T.ihi = T.qoff + sp_min(r0 + SP_BM, T.nq) - 1;
    T.rows_full = r0 + SP_BM <= T.nq;
    sp_tile_jmax<P>(T);
    return true;
}
SP_HD i64 sp_direct_rowpos(const sp_tile &T, int u)
{
    i64 r = T.m0 + u;
    return r < T.nq ? T.qoff + r : -1;
}

/* Remap pass: CTA x of a slot whose component has dilation (stride) D
 * takes class r = x / tpc, rows r + D*m for m from the class's first row
 * in this batch on, 64 at a time. */
SP_HD i64 sp_remap_tpc(i64 seq_q, i64 D) { return ((seq_q + D - 1) / D + SP_BM - 1) / SP_BM; }
template <class P> SP_HD bool sp_remap_rows(sp_tile &T, i64 D, i64 x, i64 seq_q)
{
    const i64 tpc = sp_remap_tpc(seq_q, D), r = x / tpc, t = x % tpc;
    if (r >= D || T.nq <= 0)
        return false;
    const i64 mlo = sp_max(0, sp_cdiv(T.qoff - r, D)), mhi = sp_fdiv(T.qoff + T.nq - 1 - r, D);
    const i64 m0 = mlo + t * SP_BM;
    if (m0 > mhi)
        return false;
    T.D = D;
    T.r = r;
    T.m0 = m0;
    T.m1 = sp_min(m0 + SP_BM - 1, mhi);
    T.rows_full = m0 + SP_BM - 1 <= mhi;
    T.ilo = r + D * T.m0;
    T.ihi = r + D * T.m1;
    sp_tile_jmax<P>(T);
    return true;
}
SP_HD i64 sp_remap_rowpos(const sp_tile &T, int u)
{
    i64 m = T.m0 + u;
    return m <= T.m1 ? T.r + T.D * m : -1;
}

/* Rows pass: rows u0 .. u0+63 of the `global rows` set within this
 * batch's query positions. T.m0 holds the set index of the first query
 * position's row. */
template <class P> SP_HD bool sp_rows_rows(sp_tile &T, const typename P::env &e, i64 u0)
{
    if (T.nq <= 0)
        return false;
    const i64 skip = P::rows_le(e, T.cls, T.qoff - 1);
    const i64 n = P::rows_le(e, T.cls, T.qoff + T.nq - 1) - skip;
    if (u0 >= n)
        return false;
    T.m0 = skip;
    T.u0 = u0;
    T.nu = n;
    T.rows_full = u0 + SP_BM <= n;
    T.ilo = P::rows_elem(e, T.cls, skip + u0);
    T.ihi = P::rows_elem(e, T.cls, skip + sp_min(u0 + SP_BM, n) - 1);
    sp_tile_jmax<P>(T);
    return true;
}
template <class P> SP_HD i64 sp_rows_rowpos(const sp_tile &T, const typename P::env &e, int u)
{
    return T.u0 + u < T.nu ? P::rows_elem(e, T.cls, T.m0 + T.u0 + u) : -1;
}

/* The key chunk ch of a rows-pass CTA: contiguous tiles. */
template <class P>
SP_HD bool sp_rows_next(sp_sched &s, sp_visit &v, const sp_tile &T, const typename P::env &e,
                        int gid, i64 ch, i64 chunk, int BN)
{
    if (!s.ph) {
        s.ph = 1;
        sp_range(s, ch * chunk, sp_min((ch + 1) * chunk - 1, T.jmax), 0, BN);
    }
    sp_visit_init(v, T);
    if (!sp_tiles(s, v, BN))
        return false;
    v.gid = gid;
    v.xm = P::rows_xm(v, T, e);
    sp_flags(v, T, P::causal(T.cls), BN);
    return true;
}

/* The key position of index t of a visit. */
template <class P> SP_HD i64 sp_keypos(const sp_visit &v, i64 t, const typename P::env &e)
{
    return v.D > 0 ? v.r + v.D * t : P::gather(v, t, e);
}

/* ------------------------------------------------------- band masks */

/* Most masked tiles are band edges: the visit's own test (P::band) is
 * lo <= j - i <= hi with j - i a multiple of m, its keys are linear
 * (j = r + D*index) and no excluded component needs a test. Then a row
 * attends one interval of the tile's key slots, found in a few integer
 * operations per row instead of the ownership test per element. */
struct sp_slots {
    int a, b; /* slots a..b (a > b: none) */
};

SP_HD i64 sp_floor_div(i64 a, i64 d) /* d > 0 */
{
    const i64 q = a / d;
    return a % d != 0 && a < 0 ? q - 1 : q;
}

/* log2(d) when d > 0 is a power of two, else -1. */
SP_HD int sp_log2_exact(i64 d)
{
    if (d <= 0 || (d & (d - 1)) != 0)
        return -1;
#if defined(__CUDA_ARCH__)
    return __ffsll(d) - 1;
#else
    return __builtin_ctzll((unsigned long long)d);
#endif
}

/* Does the band mask serve visit v? Its band is then [lo, hi], step m. */
template <class P> SP_HD bool sp_band_mask(const sp_visit &v, i64 &lo, i64 &hi, i64 &m)
{
    return v.D > 0 && !v.xm && P::band(v, lo, hi, m) && v.D % m == 0;
}

/* The key slots (0..bn-1) that row position i attends in visit v, for a
 * band mask [lo, hi] step m: exactly the slots whose key is valid and for
 * which the row is valid and own(v, i, j) holds. */
SP_HD sp_slots sp_band_slots(const sp_visit &v, i64 i, i64 lo, i64 hi, i64 m, int bn)
{
    sp_slots r = {1, 0};
    if (v.cz)
        hi = sp_min(hi, 0);
    const i64 base = v.r + v.D * v.kb - i; /* j - i at slot 0; + D per slot */
    /* Steps that are powers of two (1 for consecutive keys, the common
     * case) mask and shift (arithmetic: a floor) instead of dividing: a
     * 64-bit division is a call in the tile kernels, four per thread and
     * masked tile, and ncu put 4-6 % of causal_window1024's samples at
     * d = 64 in them. */
    const int sd = sp_log2_exact(v.D), sm = sp_log2_exact(m);
    if (i < 0 || i < v.ilo || i > v.ihi || (sm >= 0 ? (base & (m - 1)) != 0 : base % m != 0))
        return r;
    const i64 a = sp_max(sp_max(0, v.klo - v.kb), sd >= 0 ? -((base - lo) >> sd) : -sp_floor_div(base - lo, v.D));
    const i64 b = sp_min(sp_min(bn - 1, v.khi - v.kb), sd >= 0 ? (hi - base) >> sd : sp_floor_div(hi - base, v.D));
    if (a <= b) {
        r.a = (int)a;
        r.b = (int)b;
    }
    return r;
}

/* The band of a test that holds everywhere. */
#define SP_FAR (1LL << 60)

#if defined(__CUDACC__)
/* ======================================================================
 * Device half: loads, the two compute engines, the passes.
 * ====================================================================== */

#define SP_ES (SP_DT == 0 ? 4 : 2)
#if SP_DT != 0 && __CUDA_ARCH__ >= 800
#define SP_TENSOR 1
#else
#define SP_TENSOR 0
#endif

/* Where one CTA reads and writes: tensor bases at (batch, head) in bytes,
 * row strides and element strides in elements. */
struct sp_io {
    const char *q, *k, *v;
    char *o;
    float *lse;
    i64 qr, kr, vr, orow, qe, ke, ve, oe, lr;
    bool qvec, kvec, vvec, ovec; /* rows are 16-byte aligned and dense: vector copies */
};

SP_DEV bool sp_vec_ok(const void *base, i64 row_stride, i64 elem_stride)
{
    return elem_stride == 1 && (row_stride * SP_ES) % 16 == 0 && ((u64)base & 15) == 0;
}

SP_DEV void sp_io_init(sp_io &io, const sp_params &p, const sp_tile &T)
{
    io.q = (const char *)p.q + (T.b * p.qs[0] + T.h * p.qs[1]) * SP_ES;
    io.k = (const char *)p.k + (T.b * p.ks[0] + T.hk * p.ks[1]) * SP_ES;
    io.v = (const char *)p.v + (T.b * p.vs[0] + T.hk * p.vs[1]) * SP_ES;
    io.o = (char *)p.o + (T.b * p.os[0] + T.h * p.os[1]) * SP_ES;
    io.lse = p.lse ? p.lse + T.b * p.ls[0] + T.h * p.ls[1] : nullptr;
    io.qr = p.qs[2];
    io.kr = p.ks[2];
    io.vr = p.vs[2];
    io.orow = p.os[2];
    io.qe = p.qs[3];
    io.ke = p.ks[3];
    io.ve = p.vs[3];
    io.oe = p.os[3];
    io.lr = p.ls[2];
    io.qvec = sp_vec_ok(io.q, io.qr, io.qe);
    io.kvec = sp_vec_ok(io.k, io.kr, io.ke);
    io.vvec = sp_vec_ok(io.v, io.vr, io.ve);
    io.ovec = sp_vec_ok(io.o, io.orow, io.oe);
}

/* --------------------------------------------------------- conversions */

#if SP_DT == 2
#define SP_MMA_TYPE "bf16"
SP_DEV float sp_to_f(u16 x) { return __uint_as_float((u32)x << 16); }
SP_DEV u16 sp_from_f(float x)
{
    u16 r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
}
SP_DEV u32 sp_pack(float lo, float hi)
{
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %2, %1;" : "=r"(r) : "f"(lo), "f"(hi));
    return r;
}
#elif SP_DT == 1
#define SP_MMA_TYPE "f16"
SP_DEV float sp_to_f(u16 x)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x));
    return f;
}
SP_DEV u16 sp_from_f(float x)
{
    u16 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
}
SP_DEV u32 sp_pack(float lo, float hi)
{
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %2, %1;" : "=r"(r) : "f"(lo), "f"(hi));
    return r;
}
#endif

/* One element of storage as float, and back. */
SP_DEV float sp_ld(const char *p)
{
#if SP_DT == 0
    return *(const float *)p;
#else
    return sp_to_f(*(const u16 *)p);
#endif
}
SP_DEV void sp_st(char *p, float x)
{
#if SP_DT == 0
    *(float *)p = x;
#else
    *(u16 *)p = sp_from_f(x);
#endif
}

SP_DEV float sp_ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

#define SP_LN2 0.6931471805599453f

/* Merges a normalised partial (o, lse) of one row into O and LSE, which
 * already hold the row's other components. The row's elements are
 * spread over threads; each passes the old LSE it read. Returns the
 * weights (old, new). */
SP_DEV void sp_merge_weights(float lold, float lnew, float &wo, float &wn, float &lm)
{
    if (lnew == SP_NEG_INF) {
        wo = 1.f;
        wn = 0.f;
        lm = lold;
        return;
    }
    if (lold == SP_NEG_INF) {
        wo = 0.f;
        wn = 1.f;
        lm = lnew;
        return;
    }
    float hi = fmaxf(lold, lnew);
    lm = hi + logf(expf(lold - hi) + expf(lnew - hi));
    wo = expf(lold - lm);
    wn = expf(lnew - lm);
}

/* How a CTA ends its rows: write them, merge into what earlier passes
 * wrote, or store a partial for the rows pass's merge kernel. */
enum { SP_STORE = 0, SP_MERGE = 1, SP_PART = 2 };

#if SP_TENSOR
/* ======================================================================
 * Tensor-core engine: 4 warps x 16 rows, tiles of 64 keys (128 for SP_WIDE
 * patterns on wgmma at d = 64); with SP_WS a fifth warp loads them.
 * ====================================================================== */

template <bool B> struct sp_bool {
    static constexpr bool value = B;
};

SP_DEV u32 sp_smem(const void *p) { return (u32)__cvta_generic_to_shared(p); }
SP_DEV void sp_cp16(u32 dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(ok ? 16 : 0));
}
/* The same, for a copy that is never empty. */
SP_DEV void sp_cp16a(u32 dst, const void *src)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
SP_DEV void sp_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }

#if SP_WS
/* mbarriers (sm_90) for the producer warp's hand-offs. An arrive releases
 * and a completed wait acquires the thread's earlier shared-memory writes;
 * the cp.async form arrives once this thread's copies so far have landed
 * (.noinc: it is one of the expected arrivals). */
SP_DEV void sp_mb_init(u32 a, int n) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(a), "r"(n) : "memory"); }
SP_DEV void sp_mb_arrive(u32 a) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(a) : "memory"); }
SP_DEV void sp_mb_arrive_cp(u32 a) { asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(a) : "memory"); }
SP_DEV void sp_mb_wait(u32 a, u32 parity)
{
    u32 done;
    do
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(a), "r"(parity)
                     : "memory");
    while (!done);
}
/* TMA: the barrier at a expects bytes more before its phase completes (no
 * arrival); a box of the tensor described by map at coordinates (c0, ...,
 * c4) goes to dst and completes that many bytes on bar. */
SP_DEV void sp_mb_expect_tx(u32 a, u32 bytes)
{
    asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(a), "r"(bytes) : "memory");
}
SP_DEV void sp_tma5(u32 dst, const sp_tmap *map, int c0, int c1, int c2, int c3, int c4, u32 bar)
{
    asm volatile("cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(dst),
                 "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4), "r"(bar)
                 : "memory");
}
#endif
template <int N> SP_DEV void sp_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

SP_DEV void sp_ldsm4(u32 &r0, u32 &r1, u32 &r2, u32 &r3, u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
SP_DEV void sp_ldsm4t(u32 &r0, u32 &r1, u32 &r2, u32 &r3, u32 addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
SP_DEV void sp_mma(float *c, const u32 *a, u32 b0, u32 b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." SP_MMA_TYPE "." SP_MMA_TYPE ".f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Hopper (SP_WGMMA): the two products of a tile are warpgroup MMAs. The
 * CTA's 4 warps are one warpgroup of 64 rows; A (Q, then P) stays in
 * registers in the layout of mma.sync's A fragment, B (K, then V) is read
 * from the swizzled tiles in shared memory through a descriptor, and the
 * accumulators have mma.sync's C layout, so the softmax, the masks and
 * finish are the same code for both instructions. Elsewhere the tiles run
 * on mma.sync. */
#if SP_WGMMA
/* A shared-memory matrix descriptor for the 128-byte swizzle: rows of
 * 128 bytes, groups of 8 rows `sbo` bytes apart, 64-column blocks `lbo`
 * bytes apart (used when the matrix is MN-major). Addresses in 16 bytes:
 * the descriptor of addr + x is at(x), x / 16 added to the low word alone
 * (shared memory ends below 256 KB, so the 14-bit field does not carry),
 * where 64-bit adds cost a carry each and kept the tile loop's eight
 * descriptors of S = Q K^T in register pairs. */
struct sp_wdesc {
    u32 lo, hi;
    SP_HD constexpr u64 at(u32 x) const { return (u64)hi << 32 | (lo + (x >> 4)); }
};
SP_HD constexpr sp_wdesc sp_wgmma_desc(u32 addr, u32 lbo, u32 sbo)
{
    return {((addr & 0x3ffff) >> 4) | (lbo >> 4) << 16, (sbo >> 4) | 1u << 30};
}
SP_DEV void sp_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
SP_DEV void sp_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
SP_DEV void sp_wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
/* cp.async wrote the tiles through the generic proxy; wgmma reads them
 * through the async proxy. */
SP_DEV void sp_fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/* The compiler sees the accumulators as written by the wgmma statement
 * itself, not at wait_group: pinning them here, after the wait and before
 * the fence, keeps it from moving their other uses across. */
template <int N> SP_DEV void sp_wgmma_pin(float (*d)[4])
{
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            asm volatile("" : "+f"(d[n][e])::"memory");
}
template <int N> SP_DEV void sp_wgmma_pin(u32 (*a)[4])
{
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            asm volatile("" : "+r"(a[n][e])::"memory");
}

/* The 32 accumulator registers of an m64n64 product, as asm operands. */
#define SP_WGMMA_ACC(d)                                                                            \
    "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),     \
        "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), \
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), \
        "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), \
        "+f"(d[7][2]), "+f"(d[7][3])

/* D[64 x 64] += A[64 x 16] B[16 x 64] (acc = 0: D = A B). A: this
 * thread's 4 registers of its warp's 16 rows; B: descriptor b, MN-major
 * when TB. */
template <int TB> SP_DEV void sp_wgmma_n64(float (*d)[4], const u32 *a, u64 b, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." SP_MMA_TYPE "." SP_MMA_TYPE " "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
                 : SP_WGMMA_ACC(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc), "n"(TB));
}

/* The same with A from shared memory too (descriptor a, K-major). */
SP_DEV void sp_wgmma_n64s(float (*d)[4], u64 a, u64 b, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." SP_MMA_TYPE "." SP_MMA_TYPE " "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "%32, %33, p, 1, 1, 0, 0;\n}\n"
                 : SP_WGMMA_ACC(d)
                 : "l"(a), "l"(b), "r"(acc));
}
#endif

struct sp_engine {
    static constexpr bool ASYNC = true;
    /* Keys per tile: 64, or 128 (SP_BN above). */
#ifdef SP_BN
    static constexpr int BN = SP_BN;
#else
    static constexpr int BN = 64;
#endif
    static constexpr int DP = SP_DP, CPR = DP / 8;
    /* 16-byte chunks of a row are XOR-swizzled by the row, so that the 8
     * rows an ldmatrix reads fall in 8 different bank groups. */
    static constexpr int SWZ = CPR % 8 == 0 ? 7 : CPR % 4 == 0 ? 3 : 1;
    /* Bytes from a row to the next of the same swizzle phase, per row. */
    static constexpr int ROWB = CPR % 8 == 0 ? 128 : CPR * 16;
    /* Rows one pass of the compute threads covers, a thread per chunk
     * column; STEP: RS rows keep the swizzle phase, so a thread's tile
     * offsets step by RS * ROWB. */
    static constexpr int RS = SP_NC / CPR;
    static constexpr bool STEP = SP_NC % CPR == 0 && (RS & SWZ) == 0 && (CPR % 8 != 0 || RS % 8 == 0);
    static constexpr int TILE = BN * DP * 2; /* bytes of one K or V tile */
    /* Buffers of K and V. (A third with SP_WS measured 1.5x slower at
     * d = 128: 2 CTAs per SM no longer fit.) */
    static constexpr int NB = 2;
    /* K0 V0 K1 V1, then (SP_WS) two Q slots, then key positions of both
     * buffers. With SP_WS wgmma reads Q from shared memory for every tile,
     * and the producer loads the next work item's Q into the other slot
     * while the compute warps finish the current one (sp_persist); else Q
     * is staged in K1 and kept in registers. The buffers start 1024-byte
     * aligned (sp_smem_base), for wgmma's swizzle atoms: 1024 bytes of
     * slack. */
    static constexpr int QSLOT = SP_BM * DP * 2; /* bytes of one Q slot */
    static constexpr int OFF_Q = SP_WS ? 2 * NB * TILE : 2 * TILE;
    static constexpr int OFF_KP = 2 * NB * TILE + (SP_WS ? 2 * QSLOT : 0);
    static constexpr int OFF_ZERO = OFF_KP + NB * BN * 8; /* a zero word (see compute) */
    /* With SP_WS, the mbarriers: full[NB] (a tile's copies have landed and
     * its visit and key positions are written; with SP_SPLIT, its K),
     * empty[NB] (the compute warps are done with the buffer; its K),
     * (SP_SPLIT) fullv[NB] and emptyv[NB] (the same for V), qfull[2] (a
     * work item's Q has landed and its record is written), qempty[2] (the
     * compute warps are done with the item). */
    static constexpr int OFF_BAR = OFF_ZERO + 8;
    static constexpr int END_BAR = OFF_BAR + (SP_WS ? ((SP_SPLIT ? 4 : 2) * NB + 4) * 8 : 8);
    /* (SP_OVERLAP) ZA bytes of zeros, the 16 rows of 128 bytes that one
     * product of P V reads: the P V an item's first tile issues, with none
     * pending, reads them (pv_issue). */
    static constexpr int OFF_ZA = (END_BAR + 1023) / 1024 * 1024, ZA = 16 * 128;
    static constexpr int SMEM = (SP_OVERLAP ? OFF_ZA + ZA : END_BAR) + 1024;

#if SP_WS
    int qb; /* byte offset of the current item's Q slot from OFF_Q */
#else
    u32 qf[DP / 16][4];
#endif
    float o[DP / 8][4];
#if SP_WGMMA
    u32 pa[BN / 16][4]; /* P of the last tile, read by its O += P V until drain() */
#endif
    float m[2], l[2];
    i64 ip[2]; /* positions of this thread's rows g and g+8 (-1: none) */
    i64 ur[2]; /* their row index in the tile */

    /* The byte offset of chunk c of a tile's row. When a row is a whole
     * number of 128-byte lines, line c/8 of every row lies in a block of
     * its own (BN rows of 128 bytes): the 128-byte swizzle atoms of
     * wgmma's K-major (K, Q) and MN-major (V) layouts. */
    template <int R> static SP_DEV int offr(int row, int c)
    {
        if (CPR % 8 == 0)
            return (c >> 3) * (R * 128) + row * 128 + (((c & 7) ^ (row & 7)) << 4);
        return (row * CPR + (c ^ (row & SWZ))) * 16;
    }
    /* A K or V tile's; Q's blocks hold SP_BM rows (offr<SP_BM>). */
    static SP_DEV int off(int row, int c) { return offr<BN>(row, c); }

    /* Slots lo..hi of a tile hold keys: all of them, and every column is
     * data (no padding up to DP)? Then its copies need no predicates. */
    static SP_DEV bool whole(int lo, int hi) { return lo == 0 && hi == BN - 1 && SP_D == DP; }

    /* A 16-byte copy of src, or zeros where !ok (base: the address given
     * instead). ALL: ok always holds, so the copy has no predicate and no
     * select of its source, which cost ~7 instructions a copy and kept its
     * offsets out of the instruction. */
    template <bool ALL> static SP_DEV void cp(u32 dst, const char *src, const char *base, bool ok)
    {
        if (ALL)
            sp_cp16a(dst, src);
        else
            sp_cp16(dst, ok ? src : base, ok);
    }

    /* Stages rows of a [*, D] tensor into a swizzled tile, thread tid of
     * NTH: row t comes from position pos(t) (< 0: zeros). */
    template <int ROWS, int NTH, class POS>
    static SP_DEV void stage(char *dst, const char *src, i64 rs, i64 es, bool vec, int tid, POS pos)
    {
        const u32 base = sp_smem(dst);
        for (int idx = tid; idx < ROWS * CPR; idx += NTH) {
            const int row = idx / CPR, c = idx % CPR;
            const i64 j = pos(row);
            const bool ok = j >= 0 && c * 8 < SP_D;
            if (vec) {
                const char *g = ok ? src + (j * rs + c * 8) * 2 : src;
                sp_cp16(base + offr<ROWS>(row, c), g, ok);
            } else {
                u16 e[8];
                for (int x = 0; x < 8; x++)
                    e[x] = ok && c * 8 + x < SP_D ? *(const u16 *)(src + (j * rs + (i64)(c * 8 + x) * es) * 2)
                                                  : (u16)0;
                uint4 w;
                w.x = e[0] | (u32)e[1] << 16;
                w.y = e[2] | (u32)e[3] << 16;
                w.z = e[4] | (u32)e[5] << 16;
                w.w = e[6] | (u32)e[7] << 16;
                *(uint4 *)(dst + offr<ROWS>(row, c)) = w;
            }
        }
    }

    /* A work item's start for the compute threads: their rows' positions
     * (rowpos), the running maxima, sums and O cleared. */
    template <class ROWPOS> SP_DEV void start(ROWPOS rowpos)
    {
        const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
        for (int x = 0; x < 2; x++) {
            ur[x] = w * 16 + (lane >> 2) + 8 * x;
            ip[x] = rowpos(ur[x]);
            m[x] = SP_NEG_INF;
            l[x] = 0.f;
        }
        for (int n = 0; n < DP / 8; n++)
            o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
#if SP_OVERLAP
        /* The P V of no tile multiplies P by zeros: P must not be NaN. */
        for (int kk = 0; kk < BN / 16; kk++)
            pa[kk][0] = pa[kk][1] = pa[kk][2] = pa[kk][3] = 0u;
#endif
    }

#if SP_WS
    /* The producer warp (lane of 32) loads Q of tile T into slot q (rows ->
     * positions by rowpos, tensor row = pos - qoff). step > 0: row u is at
     * rowpos(0) + step * u for a prefix of the rows (the direct and remap
     * passes); when every row holds a query, lane (r0, g) = (lane & 7,
     * lane >> 3) copies rows r0, r0 + 8, ... of chunk columns g, g + 4, ...
     * without predicates, as fill() does. */
    template <class ROWPOS>
    SP_DEV void qfill(char *sm, int q, const sp_io &io, const sp_tile &T, ROWPOS rowpos, i64 step, int lane)
    {
        static_assert(CPR % 8 == 0, "wgmma tiles: rows of whole 128-byte lines");
        char *sq = sm + OFF_Q + q * QSLOT;
        const i64 qoff = T.qoff;
        if (SP_D == DP && step > 0 && io.qvec && rowpos(SP_BM - 1) >= 0) {
            constexpr int NCH = CPR / 4, RB = 8 * 128; /* chunk columns per lane; bytes of 8 rows */
            const int r0 = lane & 7, g = lane >> 3;
            const u32 bq = sp_smem(sq) + offr<SP_BM>(r0, g);
            const char *pq = io.q + ((rowpos(0) - qoff + step * r0) * io.qr + g * 8) * 2;
            const i64 qs = 8 * step * io.qr * 2;
#pragma unroll
            for (int k = 0; k < SP_BM / 8; k++, pq += qs)
#pragma unroll
                for (int i = 0; i < NCH; i++)
                    sp_cp16a(bq + offr<SP_BM>(r0, g + 4 * i) - offr<SP_BM>(r0, g) + k * RB, pq + 64 * i);
            return;
        }
        stage<SP_BM, 32>(sq, io.q, io.qr, io.qe, io.qvec, lane, [&](int t) {
            i64 p = rowpos(t);
            return p < 0 ? (i64)-1 : p - qoff;
        });
    }
#else
    /* Starts loading Q (rows -> positions by rowpos, tensor row = pos -
     * qoff) and start()s. step > 0: row u is at rowpos(0) + step * u for a
     * prefix of the rows (the direct and remap passes). */
    template <class ROWPOS>
    SP_DEV void begin(char *sm, const sp_io &io, const sp_tile &T, ROWPOS rowpos, i64 step)
    {
        start(rowpos);
        if (threadIdx.x == 0)
            *(u32 *)(sm + OFF_ZERO) = 0;
        const i64 qoff = T.qoff;
        if (STEP && SP_BM % RS == 0 && SP_D == DP && step > 0 && io.qvec && rowpos(SP_BM - 1) >= 0) {
            /* Every row holds a query, evenly spaced: a thread's chunk
             * column steps by RS rows in the tensor and in the tile (the
             * swizzle phase repeats), where the general path below worked
             * out each row's position (ncu, window256 at d = 128: ~6 % of
             * the samples, 9 tiles a CTA). */
            const int c = threadIdx.x % CPR, r0 = threadIdx.x / CPR;
            const char *src = io.q + ((rowpos(0) - qoff + step * r0) * io.qr + c * 8) * 2;
            const i64 ss = RS * step * io.qr * 2;
            const u32 dst = sp_smem(sm + OFF_Q) + offr<SP_BM>(r0, c);
#pragma unroll
            for (int k = 0; k < SP_BM / RS; k++, src += ss)
                sp_cp16a(dst + k * RS * ROWB, src);
            sp_cp_commit();
            return;
        }
        stage<SP_BM, SP_NC>(sm + OFF_Q, io.q, io.qr, io.qe, io.qvec, threadIdx.x, [&](int t) {
            i64 p = rowpos(t);
            return p < 0 ? (i64)-1 : p - qoff;
        });
        sp_cp_commit();
    }
#endif

    /* This thread's copies into the tiles have landed: make them visible
     * to wgmma's reads (before the barrier that publishes them). */
    SP_DEV void landed()
    {
#if SP_WGMMA
        sp_fence_async_smem();
#endif
    }

    /* The last tile's O += P V has completed (wgmma runs it asynchronously). */
    SP_DEV void drain()
    {
#if SP_WGMMA
        sp_wgmma_wait();
        sp_wgmma_pin<DP / 8>(o);
        sp_wgmma_pin<BN / 16>(pa);
#endif
    }

#if SP_WS
    /* The compute threads take Q slot q, which has landed (qfull): negated
     * in place for a negative scale sl (compute scales by |sl|), every
     * thread's writes made visible to wgmma before any reads them. */
    SP_DEV void q_take(char *sm, int q, float sl)
    {
        qb = q * QSLOT;
        if (sl < 0.f) {
            for (int i = threadIdx.x; i < SP_BM * DP / 8; i += SP_NC) {
                uint4 *p = (uint4 *)(sm + OFF_Q + qb + offr<SP_BM>(i / CPR, i % CPR));
                uint4 x = *p;
                x.x ^= 0x80008000u; /* the sign bits of two halves */
                x.y ^= 0x80008000u;
                x.z ^= 0x80008000u;
                x.w ^= 0x80008000u;
                *p = x;
            }
            sp_fence_async_smem();
            sp_bar_nc();
        }
    }
#else
    /* Q's copy has landed (this thread's): negated for a negative scale sl
     * (compute scales by |sl|), into registers. */
    SP_DEV void q_regs(char *sm, float sl)
    {
        const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
        const u32 base = sp_smem(sm + OFF_Q);
        const int row = w * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
        const u32 neg = sl < 0.f ? 0x80008000u : 0u; /* the sign bits of two halves */
        for (int kk = 0; kk < DP / 16; kk++) {
            sp_ldsm4(qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3],
                     base + offr<SP_BM>(row, kk * 2 + (lane >> 4)));
            for (int e = 0; e < 4; e++)
                qf[kk][e] ^= neg;
        }
    }
#endif

    template <class KEYPOS>
    SP_DEV void load(char *sm, int buf, const sp_io &io, const sp_visit &v, KEYPOS keypos)
    {
        char *sk = sm + buf * 2 * TILE, *sv = sk + TILE;
        i64 *kp = (i64 *)(sm + OFF_KP) + buf * BN;
        auto pos = [&](int t) {
            i64 x = v.kb + t;
            return x >= v.klo && x <= v.khi ? keypos(v, x) : (i64)-1;
        };
        if (SP_NC % CPR == 0 && BN % RS == 0 && io.kvec && io.vvec) {
            /* Fast path: each thread copies one 16-byte chunk column of K
             * and of V, rows r0, r0 + RS, ...: a row's position is
             * computed once for both, and where RS is a multiple of the
             * swizzle's period (STEP), its offsets step by RS rows. The
             * visit is read into registers once (it lives in shared
             * memory, where every store could alias it). Measured (ncu,
             * dense d = 64): written per row, this path was 31 % of the
             * kernel's instructions. */
            const int c = threadIdx.x % CPR, r0 = threadIdx.x / CPR;
            const u32 bk = sp_smem(sk), bv = sp_smem(sv);
            auto dst = [&](u32 b, int k) {
                return STEP ? b + off(r0, c) + k * RS * ROWB : b + off(r0 + k * RS, c);
            };
            const i64 kb = v.kb, D = v.D;
            /* Valid slots of the tile: lo..hi (32-bit: a tile is small). */
            const int lo = (int)sp_max(0, v.klo - kb), hi = (int)sp_min(BN - 1, v.khi - kb);
            const bool cok = c * 8 < SP_D;
            if (D > 0) {
                /* Positions r + D*(kb + t) are linear in the slot t: the
                 * row addresses are too. Only a masked tile reads kp. */
                const i64 r = v.r;
                if (!v.full)
                    for (int t = threadIdx.x; t < BN; t += SP_NC)
                        kp[t] = t >= lo && t <= hi ? r + D * (kb + t) : -1;
                const i64 j0 = r + D * (kb + r0);
                const char *pk = io.k + (j0 * io.kr + c * 8) * 2, *pv = io.v + (j0 * io.vr + c * 8) * 2;
                const i64 sk_step = RS * D * io.kr * 2, sv_step = RS * D * io.vr * 2;
                auto rows = [&](auto all) {
                    constexpr bool ALL = decltype(all)::value;
#pragma unroll
                    for (int k = 0; k < BN / RS; k++) {
                        const int row = r0 + k * RS;
                        const bool ok = ALL || (cok && row >= lo && row <= hi);
                        cp<ALL>(dst(bk, k), pk, io.k, ok);
                        cp<ALL>(dst(bv, k), pv, io.v, ok);
                        pk += sk_step;
                        pv += sv_step;
                    }
                };
                if (whole(lo, hi))
                    rows(sp_bool<true>());
                else
                    rows(sp_bool<false>());
                return;
            }
#pragma unroll
            for (int k = 0; k < BN / RS; k++) {
                const int row = r0 + k * RS;
                const bool in = row >= lo && row <= hi;
                const i64 j = in ? keypos(v, kb + row) : 0;
                const bool ok = in && cok;
                sp_cp16(dst(bk, k), io.k + (j * io.kr + c * 8) * 2, ok);
                sp_cp16(dst(bv, k), io.v + (j * io.vr + c * 8) * 2, ok);
                if (c == 0)
                    kp[row] = in ? j : -1;
            }
            return;
        }
        for (int t = threadIdx.x; t < BN; t += SP_NC)
            kp[t] = pos(t);
        stage<BN, SP_NC>(sk, io.k, io.kr, io.ke, io.kvec, threadIdx.x, pos);
        stage<BN, SP_NC>(sv, io.v, io.vr, io.ve, io.vvec, threadIdx.x, pos);
    }

#if SP_WS
    /* load() for the producer warp (lane of 32): of a tile's K (and the key
     * positions kp) and V, the halves in M (1: K, 2: V, 3: both). With
     * SP_SPLIT the compute warps release K once its scores are read and V
     * once P V has completed, so the halves land and are handed over apart;
     * V's rows are then K's, for gathered keys (D == 0) and the general
     * path taken from kp, which K's fill wrote (this warp's own writes,
     * published by a __syncwarp): a key's position is worked out once.
     * Lane (r0, g) = (lane & 7, lane >> 3) copies rows r0, r0 + 8, ... of
     * chunk columns g, g + 4, ...: rows 8 apart share a swizzle phase
     * (SWZ = 7 here), so a chunk's destination steps by 8 rows, and with
     * D > 0 its source too. */
    template <int M, class KEYPOS>
    SP_DEV void fill(char *sm, int buf, const sp_io &io, const sp_visit &v, KEYPOS keypos, int lane)
    {
        static_assert(CPR % 8 == 0, "wgmma tiles: rows of whole 128-byte lines");
        char *sk = sm + buf * 2 * TILE, *sv = sk + TILE;
        i64 *kp = (i64 *)(sm + OFF_KP) + buf * BN;
        const i64 kb = v.kb;
        const int lo = (int)sp_max(0, v.klo - kb), hi = (int)sp_min(BN - 1, v.khi - kb);
        if (!(M & 1))
            __syncwarp();
        if (!io.kvec || !io.vvec) {
            if (M & 1) {
                for (int t = lane; t < BN; t += 32)
                    kp[t] = t >= lo && t <= hi ? keypos(v, kb + t) : (i64)-1;
                __syncwarp();
            }
            auto pos = [&](int t) { return kp[t]; };
            if (M & 1)
                stage<BN, 32>(sk, io.k, io.kr, io.ke, false, lane, pos);
            if (M & 2)
                stage<BN, 32>(sv, io.v, io.vr, io.ve, false, lane, pos);
            return;
        }
        /* (ncu, window256 at d = 128: with a predicate and a select per
         * copy the producer issued ~725 instructions per tile.) */
        if (whole(lo, hi))
            fill_rows<true, M>(sk, sv, kp, io, v, keypos, lane, lo, hi);
        else
            fill_rows<false, M>(sk, sv, kp, io, v, keypos, lane, lo, hi);
    }

    /* Is the tile's every slot a key, the keys D apart (positions r +
     * D * index; for D > 1 r a residue)? Then TMA may fill it (tma()) from
     * descriptors of step D. */
    static SP_DEV bool tma_ok(const sp_visit &v, i64 D)
    {
        return v.D == D && (D == 1 || (v.r >= 0 && v.r < D)) &&
               whole((int)sp_max(0, v.klo - v.kb), (int)sp_min(BN - 1, v.khi - v.kb));
    }

    /* fill() of a tma_ok() tile through TMA (p.tma; tk and tv are K's and
     * V's descriptors, in the kernel's parameter space, dims (d, residue,
     * keys / D, KV heads, batch)): boxes of 64 keys by 64 columns, each a
     * block of 128-byte rows in the 128-byte swizzle that off() lays out
     * (the buffers are 1024-byte aligned), issued by lane 0 of the
     * producer warp, which first tells bar how many bytes will land on
     * it. The other lanes write the key positions. (hk, b): the tile's KV
     * head and batch. */
    template <int M>
    SP_DEV void tma(char *sm, int buf, const sp_visit &v, const sp_tmap *tk, const sp_tmap *tv, int hk, int b,
                    int lane, u32 bar)
    {
        char *sk = sm + buf * 2 * TILE, *sv = sk + TILE;
        i64 *kp = (i64 *)(sm + OFF_KP) + buf * BN;
        if ((M & 1) && !v.full)
            for (int t = lane; t < BN; t += 32)
                kp[t] = v.r + v.D * (v.kb + t);
        if (lane != 0)
            return;
        sp_mb_expect_tx(bar, (M == 3 ? 2 : 1) * TILE);
        const u32 bk = sp_smem(sk), bv = sp_smem(sv);
        const int r = v.D == 1 ? 0 : (int)v.r, m0 = (int)(v.D == 1 ? v.r + v.kb : v.kb);
#pragma unroll
        for (int i = 0; i < DP / 64; i++)
#pragma unroll
            for (int h = 0; h < BN / 64; h++) {
                const u32 o = i * (BN * 128) + h * (64 * 128);
                if (M & 1)
                    sp_tma5(bk + o, tk, i * 64, r, m0 + h * 64, hk, b, bar);
                if (M & 2)
                    sp_tma5(bv + o, tv, i * 64, r, m0 + h * 64, hk, b, bar);
            }
    }

    /* fill()'s copies; ALL: every slot of the tile and column is valid. */
    template <bool ALL, int M, class KEYPOS>
    SP_DEV void fill_rows(char *sk, char *sv, i64 *kp, const sp_io &io, const sp_visit &v, KEYPOS keypos, int lane,
                          int lo, int hi)
    {
        constexpr int NCH = CPR / 4, RB = 8 * 128; /* chunk columns per lane; bytes of 8 rows */
        const int r0 = lane & 7, g = lane >> 3;
        const u32 bk = sp_smem(sk) + off(r0, g), bv = sp_smem(sv) + off(r0, g);
        auto doff = [&](int i) { return off(r0, g + 4 * i) - off(r0, g); };
        auto cok = [&](int i) { return (g + 4 * i) * 8 < SP_D; };
        const i64 kb = v.kb, D = v.D;
        if (D > 0) {
            const i64 r = v.r;
            if ((M & 1) && !v.full)
                for (int t = lane; t < BN; t += 32)
                    kp[t] = t >= lo && t <= hi ? r + D * (kb + t) : -1;
            const i64 j0 = r + D * (kb + r0);
            const char *pk = io.k + (j0 * io.kr + g * 8) * 2, *pv = io.v + (j0 * io.vr + g * 8) * 2;
            const i64 ks = 8 * D * io.kr * 2, vs = 8 * D * io.vr * 2;
#pragma unroll
            for (int k = 0; k < BN / 8; k++) {
                const int row = r0 + 8 * k;
                const bool in = ALL || (row >= lo && row <= hi);
#pragma unroll
                for (int i = 0; i < NCH; i++) {
                    const bool ok = in && cok(i);
                    if (M & 1)
                        cp<ALL>(bk + doff(i) + k * RB, pk + 64 * i, io.k, ok);
                    if (M & 2)
                        cp<ALL>(bv + doff(i) + k * RB, pv + 64 * i, io.v, ok);
                }
                pk += ks;
                pv += vs;
            }
            return;
        }
#pragma unroll
        for (int k = 0; k < BN / 8; k++) {
            const int row = r0 + 8 * k;
            const bool in = ALL || (row >= lo && row <= hi);
            const i64 j = !in ? 0 : (M & 1) ? keypos(v, kb + row) : kp[row];
            const char *pk = io.k + (j * io.kr + g * 8) * 2, *pv = io.v + (j * io.vr + g * 8) * 2;
#pragma unroll
            for (int i = 0; i < NCH; i++) {
                const bool ok = in && cok(i);
                if (M & 1)
                    cp<ALL>(bk + doff(i) + k * RB, pk + 64 * i, pk + 64 * i, ok);
                if (M & 2)
                    cp<ALL>(bv + doff(i) + k * RB, pv + 64 * i, pv + 64 * i, ok);
            }
            if ((M & 1) && g == 0)
                kp[row] = in ? j : -1;
        }
    }
#endif

    /* A band edge's mask (see sp_band_slots): the slots each of this
     * thread's two rows attends. */
    struct edge {
        bool on;
        sp_slots r[2];
    };
    /* Worked out before the products, while its 64-bit temporaries cost no
     * registers the products need (at d = 64 on wgmma, working it out while
     * S = Q K^T runs measured 3-10 % slower). */
    template <class BAND> SP_DEV edge edges(const sp_visit &v, BAND band) const
    {
        edge e = {false, {{1, 0}, {1, 0}}};
        i64 lo, hi, m;
        if (!v.full && band(v, lo, hi, m)) {
            e.on = true;
            e.r[0] = sp_band_slots(v, ip[0], lo, hi, m, BN);
            e.r[1] = sp_band_slots(v, ip[1], lo, hi, m, BN);
        }
        return e;
    }

#if SP_WS
    /* S = Q K^T of buffer buf issued and committed, after a fence. Q is
     * read from shared memory (blocks of SP_BM rows; this warpgroup's 64
     * start at row 64 * warpgroup): no registers of its own. (Given in
     * registers as below, ptxas injected waits into the products at 168
     * registers, C7519; without the producer warp, reading Q from shared
     * memory took 1.25x the time on dense at d = 64.) One k16 step per
     * 32-byte column of K's swizzle atoms. */
    SP_DEV void scores_issue(char *sm, int buf, float (*s)[4])
    {
        static_assert(BN % 64 == 0, "m64n64 products per k step");
        const sp_wdesc dk = sp_wgmma_desc(sp_smem(sm + buf * 2 * TILE), 16, 1024);
        const sp_wdesc dq = sp_wgmma_desc(sp_smem(sm + OFF_Q + qb) + (threadIdx.x >> 7) * (64 * 128), 16, 1024);
        sp_wgmma_fence();
#pragma unroll
        for (int b = 0; b < DP / 64; b++)
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
#pragma unroll
                for (int h = 0; h < BN / 64; h++)
                    sp_wgmma_n64s(s + 8 * h, dq.at(b * (SP_BM * 128) + kk * 32),
                                  dk.at(b * (BN * 128) + h * (64 * 128) + kk * 32), b | kk);
        sp_wgmma_commit();
    }
#endif

    /* S = Q K^T of buffer buf, into s. */
    SP_DEV void scores(char *sm, int buf, float (*s)[4])
    {
        const u32 sk = sp_smem(sm + buf * 2 * TILE);
#if SP_WGMMA
#if SP_WS
        scores_issue(sm, buf, s);
        sp_wgmma_wait();
#else
        static_assert(BN % 64 == 0, "m64n64 products per k step");
        const sp_wdesc dk = sp_wgmma_desc(sk, 16, 1024);
        /* Q goes in through values computed here, every tile: given qf
         * itself (defined before the tile loop), ptxas (CUDA 13.0) gave
         * qf's registers to later code of the loop at d = 64, as if a
         * wgmma operand ended its value's life. Plain copies are folded
         * and loop-invariant ones hoisted, so the copy XORs a 0 that is
         * read from shared memory here. The copies must live until their
         * products complete: 64 columns of Q (4 k steps, one swizzle
         * atom) at a time, so that d = 128 does not spill. */
        u32 qz;
        asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(qz) : "r"(sp_smem(sm + OFF_ZERO)));
#pragma unroll
        for (int b = 0; b < DP / 64; b++) {
            u32 qa[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    qa[kk][e] = qf[4 * b + kk][e] ^ qz;
            sp_wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
#pragma unroll
                for (int h = 0; h < BN / 64; h++)
                    sp_wgmma_n64<0>(s + 8 * h, qa[kk],
                                    dk.at(b * (BN * 128) + h * (64 * 128) + kk * 32),
                                    b | kk);
            sp_wgmma_commit();
            sp_wgmma_wait();
        }
#endif
        sp_wgmma_pin<BN / 8>(s);
#else
        const int lane = threadIdx.x & 31;
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
        /* The (k-step, key pair) loop is flattened and its B fragments
         * loaded two steps ahead, so each ldmatrix has two mma pairs to
         * hide behind. */
        constexpr int NS = DP / 16 * (BN / 16);
        u32 f[3][4];
        auto ldk = [&](int i, u32 *r) {
            const int kk = i / (BN / 16), n2 = i % (BN / 16);
            sp_ldsm4(r[0], r[1], r[2], r[3],
                     sk + off(n2 * 16 + (lane & 7) + ((lane >> 4) << 3), kk * 2 + ((lane >> 3) & 1)));
        };
        ldk(0, f[0]);
        ldk(1, f[1]);
#pragma unroll
        for (int i = 0; i < NS; i++) {
            if (i + 2 < NS)
                ldk(i + 2, f[(i + 2) % 3]);
            const int kk = i / (BN / 16), n2 = i % (BN / 16);
            sp_mma(s[2 * n2], qf[kk], f[i % 3][0], f[i % 3][1]);
            sp_mma(s[2 * n2 + 1], qf[kk], f[i % 3][2], f[i % 3][3]);
        }
#endif
    }

    /* Masks S of visit v (key positions kp) and runs the online softmax
     * over it: s becomes the tile's weights, m and l move on, and alpha is
     * the factor O must be scaled by before this tile's P V. Returns
     * whether alpha is not 1 for one of this thread's rows (see below). */
    template <class OWN>
    SP_DEV bool softmax(float (*s)[4], const sp_visit &v, const i64 *kp, const edge &ed, float sl, OWN own,
                        float alpha[2])
    {
        const int lane = threadIdx.x & 31;
        /* The scale goes into the exponent (one FFMA per score instead of
         * a multiply and a subtraction; ncu counted them 12 % of dense's
         * instructions): masks and maxima see raw scores, so the scale
         * must be positive. q_regs negated Q for a negative one; a zero
         * (underflowed) one becomes the least normal float, which gives
         * the same weights. */
        const float sa = fmaxf(fabsf(sl), 1.17549435e-38f);
        if (ed.on) {
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = n * 8 + 2 * (lane & 3) + (e & 1);
                    if (col < ed.r[e >> 1].a || col > ed.r[e >> 1].b)
                        s[n][e] = SP_NEG_INF;
                }
        } else if (!v.full) {
            /* Other masks: the test runs in a rolled loop (one copy of the component's
             * code), its answers kept as bits. */
            u64 bits = 0;
#pragma unroll 1
            for (int q = 0; q < BN / 2; q++) {
                const int col = (q >> 2) * 8 + 2 * (lane & 3) + (q & 1);
                const i64 i = q & 2 ? ip[1] : ip[0], j = kp[col];
                const bool ok = j >= 0 && i >= 0 && i >= v.ilo && i <= v.ihi && own(v, i, j);
                bits |= (u64)ok << q;
            }
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (!(bits >> (n * 4 + e) & 1ull))
                        s[n][e] = SP_NEG_INF;
        }
        /* rows g (x = 0) and g+8 (x = 1) */
        bool moved = false;
#pragma unroll
        for (int x = 0; x < 2; x++) {
            float mx = SP_NEG_INF;
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
                mx = fmaxf(mx, fmaxf(s[n][2 * x], s[n][2 * x + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            /* With SP_SLACK, a row's reference m moves only when its
             * maximum passes it by more than SP_SLACK (log2 units): weights
             * stay below 2^SP_SLACK, O and l share the reference, so O / l
             * and the LSE are the same, and after a row's first tiles O is
             * seldom rescaled (FlashAttention 4's trick). m = -inf moves
             * for any score. */
            const float mt = mx * sa;
            const bool up = mt > m[x] + SP_SLACK;
            const float mn = SP_SLACK > 0 ? (up ? mt : m[x]) : fmaxf(m[x], mt);
            const float base = mn == SP_NEG_INF ? 0.f : mn;
            alpha[x] = SP_SLACK > 0 && !up ? 1.f : sp_ex2(m[x] - base);
            moved |= up;
            m[x] = mn;
            float sum = 0.f;
#pragma unroll
            for (int n = 0; n < BN / 8; n++) {
                s[n][2 * x] = sp_ex2(fmaf(s[n][2 * x], sa, -base));
                s[n][2 * x + 1] = sp_ex2(fmaf(s[n][2 * x + 1], sa, -base));
                sum += s[n][2 * x] + s[n][2 * x + 1];
            }
            l[x] = l[x] * alpha[x] + sum;
        }
        return moved;
    }

    /* O *= alpha; with SP_SLACK skipped where no row of the warp moved
     * its reference (softmax's answer): then every alpha of the warp is 1. */
    SP_DEV void rescale(const float alpha[2], bool moved)
    {
        if (SP_SLACK > 0 && !__any_sync(0xffffffffu, moved))
            return;
#pragma unroll
        for (int n = 0; n < DP / 8; n++) {
            o[n][0] *= alpha[0];
            o[n][1] *= alpha[0];
            o[n][2] *= alpha[1];
            o[n][3] *= alpha[1];
        }
    }

#if SP_WGMMA
    /* P into pa, in the layout of the A operand of O += P V: the
     * accumulator layout of two n8 tiles of S is that of one k16 step. */
    SP_DEV void pack(float (*s)[4])
    {
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            pa[kk][0] = sp_pack(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = sp_pack(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = sp_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = sp_pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        }
    }

    /* O += P V with V of buffer buf, issued and committed: it runs on
     * until drain(). k16 step kk reads keys 16kk.. (2048 bytes on), 64
     * columns of V per product. */
    SP_DEV void pv(char *sm, int buf, bool live = true)
    {
        sp_wgmma_pin<BN / 16>(pa);
        sp_wgmma_pin<DP / 8>(o);
        sp_wgmma_fence();
        pv_issue(sm, buf, live);
    }

    /* The products of pv() (KS k steps), issued and committed. live false
     * (SP_OVERLAP: no P V pending) reads the zeros at OFF_ZA for every
     * product, offsets masked to 0, and adds 0 to O. */
    template <int KS = BN / 16> SP_DEV void pv_issue(char *sm, int buf, bool live)
    {
        const sp_wdesc dv = sp_wgmma_desc(sp_smem(sm + (live ? buf * 2 * TILE + TILE : OFF_ZA)), BN * 128, 1024);
        const u32 keep = live ? ~0u : 0u;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int h = 0; h < DP / 64; h++)
                sp_wgmma_n64<1>(o + 8 * h, pa[kk], dv.at((h * (BN * 128) + kk * 2048) & keep), 1);
        sp_wgmma_commit();
    }

#if SP_OVERLAP
    /* O rescaled by tile t - 1's alpha; S = Q K^T of buffer buf issued;
     * O += P V of buffer pb (tile t - 1) issued; S is waited for, P V left
     * running until drain(). Where none is pending (live false: an item's
     * first tile) one product of zeros stands in: with no product on that
     * path ptxas serialised every wgmma of the kernel (C7514). */
    SP_DEV void scores_pv(char *sm, int buf, int pb, bool live, float (*s)[4], const float alpha[2], bool moved)
    {
        rescale(alpha, moved);
        sp_wgmma_pin<BN / 16>(pa);
        sp_wgmma_pin<DP / 8>(o);
        scores_issue(sm, buf, s);
        /* (A fence on each path, else ptxas adds it, C7519.) */
        if (live) {
            sp_wgmma_fence();
            pv_issue(sm, pb, true);
        } else {
            sp_wgmma_fence();
            pv_issue<1>(sm, pb, false);
        }
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
        sp_wgmma_pin<BN / 8>(s);
    }
#endif
#endif

    /* One tile: S = Q K^T, masks, online softmax, O += P V (on wgmma left
     * running until drain()). */
    template <class OWN, class BAND>
    SP_DEV void compute(char *sm, int buf, const sp_visit &v, float sl, OWN own, BAND band)
    {
        const edge ed = edges(v, band);
        float s[BN / 8][4], alpha[2];
        scores(sm, buf, s);
        const bool moved = softmax(s, v, (const i64 *)(sm + OFF_KP) + buf * BN, ed, sl, own, alpha);
        rescale(alpha, moved);
#if SP_WGMMA
        pack(s);
        pv(sm, buf);
#else
        /* O += P V on mma.sync, V's fragments two steps ahead; P's A
         * fragments are packed from S as pack() does. */
        const int lane = threadIdx.x & 31;
        const u32 sv = sp_smem(sm + buf * 2 * TILE + TILE);
        constexpr int NV = BN / 16 * (DP / 16);
        u32 f[3][4];
        auto ldv = [&](int i, u32 *r) {
            const int kk = i / (DP / 16), n2 = i % (DP / 16);
            sp_ldsm4t(r[0], r[1], r[2], r[3],
                      sv + off(kk * 16 + (lane & 7) + 8 * ((lane >> 3) & 1), n2 * 2 + (lane >> 4)));
        };
        ldv(0, f[0]);
        ldv(1, f[1]);
        u32 a[4];
#pragma unroll
        for (int i = 0; i < NV; i++) {
            if (i + 2 < NV)
                ldv(i + 2, f[(i + 2) % 3]);
            const int kk = i / (DP / 16), n2 = i % (DP / 16);
            if (n2 == 0) {
                a[0] = sp_pack(s[2 * kk][0], s[2 * kk][1]);
                a[1] = sp_pack(s[2 * kk][2], s[2 * kk][3]);
                a[2] = sp_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                a[3] = sp_pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            }
            sp_mma(o[2 * n2], a, f[i % 3][0], f[i % 3][1]);
            sp_mma(o[2 * n2 + 1], a, f[i % 3][2], f[i % 3][3]);
        }
#endif
    }

    /* Row x's sum of exponentials, over its four lanes, and its LSE. */
    SP_DEV float total(int x) const
    {
        float lx = l[x];
        lx += __shfl_xor_sync(0xffffffffu, lx, 1);
        return lx + __shfl_xor_sync(0xffffffffu, lx, 2);
    }
    SP_DEV float lse_of(int x, float lx) const { return lx > 0.f ? (m[x] + __log2f(lx)) * SP_LN2 : SP_NEG_INF; }

#if SP_WS
    /* Normalises and writes O through the item's Q slot, which no product
     * reads any more (the producer refills it only after qempty): each warp
     * puts its 16 rows there, then stores them a 16-byte chunk a lane,
     * whole lines per instruction, where its accumulators' own layout made
     * 4-byte stores that each cover 8 rows (ncu: ~4.5 % of
     * causal_window1024's samples at d = 64). */
    SP_DEV void store(const sp_io &io, const sp_tile &T, char *sm)
    {
        /* rw, the warp's first row, is 16 * warp; spelt as 16 * (warp & 3)
         * + 64 * warpgroup, the form measured (the plain product moved
         * fixed128's registers at d = 128, unmeasured). */
        const int lane = threadIdx.x & 31, rw = 16 * ((threadIdx.x >> 5) & 3) + 64 * (threadIdx.x >> 7);
        const u32 st = sp_smem(sm + OFF_Q + qb);
#pragma unroll
        for (int x = 0; x < 2; x++) {
            const float lx = total(x), inv = lx > 0.f ? 1.f / lx : 0.f;
            if ((lane & 3) == 0 && io.lse && ip[x] >= 0)
                io.lse[(ip[x] - T.qoff) * io.lr] = lse_of(x, lx);
            const int r = rw + (lane >> 2) + 8 * x;
#pragma unroll
            for (int n = 0; n < DP / 8; n++)
                asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(st + offr<SP_BM>(r, n) + 4 * (lane & 3)),
                             "r"(sp_pack(o[n][2 * x] * inv, o[n][2 * x + 1] * inv)));
        }
        __syncwarp();
        /* Chunk lane + 32 i of the warp's 16 rows of DP / 8 chunks: the
         * rows of one i lie in one half (x), at row (lane >> 2) + 8 x of
         * the accumulators. */
        constexpr int CH = DP / 8, RI = 32 / CH;
        static_assert(32 % CH == 0 && 8 % RI == 0, "whole rows per step, one half per step");
#pragma unroll
        for (int i = 0; i < 16 * CH / 32; i++) {
            const int rr = i * RI + lane / CH, c = lane % CH, x = i * RI / 8;
            const i64 pos = __shfl_sync(0xffffffffu, ip[x], (rr & 7) * 4);
            uint4 w;
            asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                         : "=r"(w.x), "=r"(w.y), "=r"(w.z), "=r"(w.w)
                         : "r"(st + offr<SP_BM>(rw + rr, c)));
            if (pos >= 0)
                *(uint4 *)(io.o + ((pos - T.qoff) * io.orow + c * 8) * SP_ES) = w;
        }
    }
#endif

    /* Normalises and writes (SP_STORE), merges (SP_MERGE) or stores the
     * partial (SP_PART, into part + row * (SP_D + 1)). */
    template <int MODE>
    SP_DEV void finish(const sp_io &io, const sp_tile &T, float *part, char *sm)
    {
        if (SP_WS && threadIdx.x >= SP_NC)
            return;
        const int lane = threadIdx.x & 31;
#if SP_WS
        if (MODE == SP_STORE && SP_D == DP && io.ovec) {
            store(io, T, sm);
            return;
        }
#endif
        /* A row's four lanes read its old LSE before lane 0 rewrites it. */
        float lold[2] = {SP_NEG_INF, SP_NEG_INF};
        if (MODE == SP_MERGE)
            for (int x = 0; x < 2; x++)
                if (ip[x] >= 0)
                    lold[x] = io.lse[(ip[x] - T.qoff) * io.lr];
        __syncwarp();
#pragma unroll
        for (int x = 0; x < 2; x++) {
            const float lx = total(x), inv = lx > 0.f ? 1.f / lx : 0.f, lse = lse_of(x, lx);
#ifdef SP_DEBUG
            if (ip[x] == SP_DEBUG && (lane & 3) == 0)
                printf("finish mode %d blk(%d,%d,%d) row %lld: m %g l %g lse %g o0 %g\n", MODE,
                       (int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z, ip[x], m[x], lx, lse, o[0][2 * x] / lx);
#endif
            if (ip[x] < 0)
                continue;
            if (MODE == SP_PART) {
                float *pr = part + ur[x] * (SP_D + 1);
#pragma unroll
                for (int n = 0; n < DP / 8; n++) {
                    const int c = n * 8 + 2 * (lane & 3);
                    if (c < SP_D) {
                        pr[c] = o[n][2 * x] * inv;
                        pr[c + 1] = o[n][2 * x + 1] * inv;
                    }
                }
                if ((lane & 3) == 0)
                    pr[SP_D] = lse;
                continue;
            }
            const i64 row = ip[x] - T.qoff;
            char *orow = io.o + row * io.orow * SP_ES;
            float *lp = io.lse ? io.lse + row * io.lr : nullptr;
            float wo = 0.f, wn = 1.f, lm = lse;
            if (MODE == SP_MERGE)
                sp_merge_weights(lold[x], lse, wo, wn, lm);
            if (MODE == SP_MERGE && wn == 0.f)
                continue;
#pragma unroll
            for (int n = 0; n < DP / 8; n++) {
                const int c = n * 8 + 2 * (lane & 3);
                if (c >= SP_D)
                    continue;
                char *p0 = orow + (i64)c * io.oe * SP_ES, *p1 = orow + (i64)(c + 1) * io.oe * SP_ES;
                float v0 = o[n][2 * x] * inv, v1 = o[n][2 * x + 1] * inv;
                if (MODE == SP_MERGE) {
                    v0 = sp_ld(p0) * wo + v0 * wn;
                    v1 = sp_ld(p1) * wo + v1 * wn;
                }
                if (io.oe == 1 && ((u64)p0 & 3) == 0) {
                    *(u32 *)p0 = sp_pack(v0, v1);
                } else {
                    sp_st(p0, v0);
                    sp_st(p1, v1);
                }
            }
            if ((lane & 3) == 0 && io.lse)
                *lp = lm;
        }
    }
};

#else
/* ======================================================================
 * FMA engine (f32, and any dtype before sm_80): exact fp32 arithmetic,
 * written for correctness and a small compile, not speed. Each warp owns
 * 16 rows and walks them one at a time; a lane owns one key of a 32-key
 * tile for the scores and dims lane, lane+32, ... of the output. The
 * running output, maxima and sums stay in shared memory.
 * ====================================================================== */

struct sp_engine {
    static constexpr bool ASYNC = false;
    static constexpr int BN = 32, DW = (SP_D + 31) / 32, DQ = DW * 32;
    /* Q [64][DQ], O [64][DQ], K [BN][DQ+1] (odd pitch: lanes read
     * different rows), V [BN][DQ], m and l [64], key and row positions. */
    static constexpr int QB = SP_BM * DQ * 4, KB = BN * (DQ + 1) * 4, VB = BN * DQ * 4;
    static constexpr int OFF_O = QB, OFF_K = 2 * QB, OFF_V = OFF_K + KB, OFF_ML = OFF_V + VB,
                         OFF_KP = OFF_ML + 2 * SP_BM * 4, OFF_IP = OFF_KP + BN * 8;
    static constexpr int SMEM = OFF_IP + SP_BM * 8;

    SP_DEV void drain() {} /* nothing runs asynchronously */

    template <class ROWPOS>
    SP_DEV void begin(char *sm, const sp_io &io, const sp_tile &T, ROWPOS rowpos, i64)
    {
        float *sq = (float *)sm, *so = (float *)(sm + OFF_O), *ml = (float *)(sm + OFF_ML);
        i64 *ipos = (i64 *)(sm + OFF_IP);
        for (int u = threadIdx.x; u < SP_BM; u += SP_NT) {
            ipos[u] = rowpos(u);
            ml[u] = SP_NEG_INF;
            ml[SP_BM + u] = 0.f;
        }
        sp_bar();
        for (int idx = threadIdx.x; idx < SP_BM * DQ; idx += SP_NT) {
            const int u = idx / DQ, c = idx % DQ;
            const i64 p = ipos[u];
            sq[idx] = p >= 0 && c < SP_D ? sp_ld(io.q + ((p - T.qoff) * io.qr + (i64)c * io.qe) * SP_ES) : 0.f;
            so[idx] = 0.f;
        }
    }
    SP_DEV void q_regs(char *, float) {}

    template <class KEYPOS>
    SP_DEV void load(char *sm, int, const sp_io &io, const sp_visit &v, KEYPOS keypos)
    {
        float *sk = (float *)(sm + OFF_K), *sv = (float *)(sm + OFF_V);
        i64 *kp = (i64 *)(sm + OFF_KP);
        for (int t = threadIdx.x; t < BN; t += SP_NT) {
            i64 x = v.kb + t;
            kp[t] = x >= v.klo && x <= v.khi ? keypos(v, x) : (i64)-1;
        }
        sp_bar();
        for (int idx = threadIdx.x; idx < BN * DQ; idx += SP_NT) {
            const int t = idx / DQ, c = idx % DQ;
            const i64 j = kp[t];
            const bool ok = j >= 0 && c < SP_D;
            sk[t * (DQ + 1) + c] = ok ? sp_ld(io.k + (j * io.kr + (i64)c * io.ke) * SP_ES) : 0.f;
            sv[t * DQ + c] = ok ? sp_ld(io.v + (j * io.vr + (i64)c * io.ve) * SP_ES) : 0.f;
        }
    }

    template <class OWN, class BAND>
    SP_DEV void compute(char *sm, int, const sp_visit &v, float sl, OWN own, BAND)
    {
        const float *sq = (const float *)sm, *sk = (const float *)(sm + OFF_K),
                    *sv = (const float *)(sm + OFF_V);
        float *so = (float *)(sm + OFF_O), *ml = (float *)(sm + OFF_ML);
        const i64 *kp = (const i64 *)(sm + OFF_KP), *ipos = (const i64 *)(sm + OFF_IP);
        const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
        const i64 j = kp[lane];
#pragma unroll 1
        for (int r = 0; r < 16; r++) {
            const int u = w * 16 + r;
            const i64 i = ipos[u];
            float s = 0.f;
            if (lane < v.nvalid) {
                const float *qr = sq + u * DQ, *kr = sk + lane * (DQ + 1);
                for (int c = 0; c < SP_D; c++)
                    s = fmaf(qr[c], kr[c], s);
            }
            s *= sl;
            if (!v.full && !(j >= 0 && i >= 0 && i >= v.ilo && i <= v.ihi && own(v, i, j)))
                s = SP_NEG_INF;
            float mx = s;
            for (int x = 16; x; x >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, x));
            const float mo = ml[u], mn = fmaxf(mo, mx);
            const float base = mn == SP_NEG_INF ? 0.f : mn;
            const float alpha = exp2f(mo - base);
            const float p = exp2f(s - base);
            float ps = p;
            for (int x = 16; x; x >>= 1)
                ps += __shfl_xor_sync(0xffffffffu, ps, x);
            const float lo = ml[SP_BM + u];
            __syncwarp(); /* every lane has read m and l */
            if (lane == 0) {
                ml[u] = mn;
                ml[SP_BM + u] = lo * alpha + ps;
            }
            for (int x = 0; x < DW; x++) {
                float *op = so + u * DQ + x * 32 + lane;
                float acc = *op * alpha;
                for (int t = 0; t < BN; t++)
                    acc = fmaf(__shfl_sync(0xffffffffu, p, t), sv[t * DQ + x * 32 + lane], acc);
                *op = acc;
            }
            __syncwarp();
        }
    }

    template <int MODE>
    SP_DEV void finish(const sp_io &io, const sp_tile &T, float *part, char *sm)
    {
        const float *so = (const float *)(sm + OFF_O), *ml = (const float *)(sm + OFF_ML);
        const i64 *ipos = (const i64 *)(sm + OFF_IP);
        const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
        __syncwarp();
#pragma unroll 1
        for (int r = 0; r < 16; r++) {
            const int u = w * 16 + r;
            const float lx = ml[SP_BM + u];
            const float inv = lx > 0.f ? 1.f / lx : 0.f;
            const float lse = lx > 0.f ? (ml[u] + log2f(lx)) * SP_LN2 : SP_NEG_INF;
            const i64 pos = ipos[u];
            if (pos < 0)
                continue;
            if (MODE == SP_PART) {
                float *pr = part + (i64)u * (SP_D + 1);
                for (int c = lane; c < SP_D; c += 32)
                    pr[c] = so[u * DQ + c] * inv;
                if (lane == 0)
                    pr[SP_D] = lse;
                continue;
            }
            const i64 row = pos - T.qoff;
            char *orow = io.o + row * io.orow * SP_ES;
            float *lp = io.lse ? io.lse + row * io.lr : nullptr;
            float wo = 0.f, wn = 1.f, lm = lse;
            if (MODE == SP_MERGE)
                sp_merge_weights(*lp, lse, wo, wn, lm);
            __syncwarp(); /* every lane has read the old LSE */
            if (MODE == SP_MERGE && wn == 0.f)
                continue;
            for (int c = lane; c < SP_D; c += 32) {
                char *pc = orow + (i64)c * io.oe * SP_ES;
                float val = so[u * DQ + c] * inv;
                if (MODE == SP_MERGE)
                    val = sp_ld(pc) * wo + val * wn;
                sp_st(pc, val);
            }
            __syncwarp();
            if (lane == 0 && lp)
                *lp = lm;
        }
    }
};
#endif

/* ------------------------------------------------------------ pipeline */

#ifdef SP_DEBUG
/* -DSP_DEBUG=<position>: the visits of every CTA whose rows include that
 * position, and its final statistics, are printed (a debugging aid). */
SP_DEV void sp_debug_visit(const char *pass, const sp_visit &v, i64 ilo, i64 ihi)
{
    if (threadIdx.x == 0 && ilo <= SP_DEBUG && SP_DEBUG <= ihi)
        printf("%s blk(%d,%d,%d) rows %lld..%lld: gid %d sub %d full %d cz %d hc %d xm %u nvalid %d kb %lld "
               "k %lld..%lld j %lld..%lld i %lld..%lld D %lld r %lld\n",
               pass, (int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z, ilo, ihi, v.gid, v.sub, v.full,
               v.cz, v.hc, v.xm, v.nvalid, v.kb, v.klo, v.khi, v.j0, v.j1, v.ilo, v.ihi, v.D, v.r);
}
#endif

/* A work item of a pass (query tile x of head h, batch b) as the
 * threads that run it see it in shared memory. */
template <class P> struct sp_item {
    sp_tile T;
    typename P::env e;
    i64 x;
    int live; /* 0: the producer has no more items (sp_persist) */
};

#if !SP_WS
/* Runs the visits that next(state, visit) yields through the engine:
 * while one tile is computed the next one's K and V are on their way
 * (tensor engine). The schedule state and the visits are uniform over the
 * CTA: every thread steps a copy
 * of the state (the random draws need the whole CTA, and a single stepping
 * warp would leave the others waiting at each tile), and thread 0
 * publishes its result in shared memory: ss[2] (state), vs[3] (visits),
 * hv[2] (is there one). Every thread then works from thread 0's visit, so
 * all of them load and mask the same tile. Two barriers per tile: B0
 * publishes the next visit and says every warp is done with the previous
 * tile's buffer; B1 says the current tile's copies have landed. */
template <class P, class NEXT>
SP_DEV void sp_pipeline(sp_engine &E, char *sm, const sp_io &io, float sl, sp_sched *ss,
                        sp_visit *vs, int *hv, const typename P::env &env, NEXT next)
{
    /* What a tile's loads and masks ask of the pattern; only the schedule
     * (next) differs between the passes. */
    auto keypos = [&](const sp_visit &v, i64 t) { return sp_keypos<P>(v, t, env); };
    auto own = [&](const sp_visit &v, i64 i, i64 j) { return P::own(v, i, j, env); };
    auto band = [&](const sp_visit &v, i64 &lo, i64 &hi, i64 &m) { return sp_band_mask<P>(v, lo, hi, m); };
    /* Steps the schedule to tile t: the visit goes to vs[t % 3], whether
     * there is one to hv[t & 1], the state to ss[(t + 1) & 1]. */
    auto step = [&](int t) {
        sp_sched s2 = ss[t & 1];
        sp_visit v2;
        const bool h = next(s2, v2);
        if (threadIdx.x == 0) {
            ss[(t + 1) & 1] = s2;
            vs[t % 3] = v2;
            hv[t & 1] = h;
        }
#ifdef SP_DEBUG
        if (h)
            sp_debug_visit("visit", v2, v2.ilo, v2.ihi);
#endif
    };
    /* The first visit, from a fresh state. (Stepping it through step(),
     * rather than from a local state, measured 4-10 % faster on dense,
     * causal and the windows: one copy of the schedule fewer.) */
    if (threadIdx.x == 0)
        ss[0] = sp_sched();
    sp_bar();
    step(0);
    sp_bar();
    bool have = hv[0];
    int it = 1;
#if SP_TENSOR
    /* Q's copy is group 0; the first tile is group 1. */
    if (have)
        E.load(sm, 0, io, vs[0], keypos);
    sp_cp_commit();
    if (have)
        step(1);
    sp_cp_wait<1>();
    sp_bar();
    E.q_regs(sm, sl);
    int buf = 0;
    while (have) {
        sp_bar(); /* B0 (the first time: also every warp has Q, staged in buffer 1) */
        const bool hn = hv[it & 1];
        /* The current tile's copies (issued a tile ago) land before the
         * next tile's are issued, so that wgmma's proxy fence does not
         * wait for those too. */
        sp_cp_wait<0>();
        E.landed();
        if (hn)
            E.load(sm, buf ^ 1, io, vs[it % 3], keypos);
        sp_cp_commit();
        sp_bar(); /* B1 */
        E.compute(sm, buf, vs[(it - 1) % 3], sl, own, band);
        /* The schedule steps while the tile's last product runs; it
         * completes before B0, after which its buffer is loaded again.
         * (The wait stays in the loop's body: ptxas serialises every
         * wgmma when accumulators defined elsewhere reach a wait.) */
        if (hn)
            step(it + 1);
        E.drain();
        have = hn;
        buf ^= 1;
        it++;
    }
#else
    while (have) {
        E.load(sm, 0, io, vs[(it - 1) % 3], keypos);
        sp_bar();
        E.compute(sm, 0, vs[(it - 1) % 3], sl, own, band);
        step(it);
        sp_bar();
        have = hv[it & 1];
        it++;
    }
#endif
    sp_bar(); /* finish may read what other threads' begin wrote */
}
#endif

/* Lengths of batch b: from the per-batch table when there is one. */
SP_DEV void sp_lengths(const sp_params &p, i64 b, i64 &nq, i64 &nk, i64 &qoff)
{
    if (p.lens) {
        nq = p.lens[3 * b];
        nk = p.lens[3 * b + 1];
        qoff = p.lens[3 * b + 2];
    } else {
        nq = p.seq_q;
        nk = p.seq_k;
        qoff = p.q_offset;
    }
}

/* Writes O = 0 and LSE = -inf for rows [r0, r1) of (b, h): thread tid of nt. */
SP_DEV void sp_zero_rows(const sp_io &io, i64 r0, i64 r1, int tid, int nt)
{
    for (i64 r = r0; r < r1; r++) {
        for (int c = tid; c < SP_D; c += nt)
            sp_st(io.o + (r * io.orow + (i64)c * io.oe) * SP_ES, 0.f);
        if (tid == 0 && io.lse)
            io.lse[r * io.lr] = SP_NEG_INF;
    }
}

extern __shared__ __align__(128) char sp_dyn_smem[];

/* The tile buffers: 1024-byte aligned for the tensor engine (its SMEM has
 * the slack), as dynamic shared memory is only promised less. */
SP_DEV char *sp_smem_base()
{
#if SP_TENSOR
    return sp_dyn_smem + ((1024 - (sp_smem(sp_dyn_smem) & 1023)) & 1023);
#else
    return sp_dyn_smem;
#endif
}

/* ---------------------------------------------------------------- passes */

/* A pass is four functions of its work items, which the drivers below run:
 *   item(x, h, b, t, e, tid, nt, bar): the tile t of item x of head h,
 *     batch b (false: the item computes nothing), run by threads tid of nt
 *     alike; thread 0 writes the item's environment e, which the drivers
 *     publish (bar) once item returns true (the rows pass reads it before:
 *     it calls bar itself);
 *   rowpos(I, u), step(I): row u's position and the rows' spacing (see
 *     begin and qfill);
 *   next(s, v, I): the schedule (sp_pipeline);
 *   fin(E, io, I): the engine's finish.
 * Without SP_WS a CTA runs item (blockIdx.x, .y, .z); with it, a
 * persistent CTA runs items one after another (sp_persist). */

#if SP_WS && defined(SP_TRACE)
/* -DSP_TRACE=<device address> (through SPAT_CUDA_FLAGS; bench/gpu/trace.py):
 * each item the compute warps finish appends a record of four words to
 * the buffer there, which starts with two: the count of items (counting
 * on past the room) and the room, in records, that the host wrote. A
 * record: the SM, the pass (0 direct, 1 remap, 2 rows) and the CTA; the
 * item's x, head and tiles; %globaltimer (ns) once its Q had landed and
 * once its rows were stored.
 * Tail effects show as items far longer than the rest: the first query
 * tiles of longformer and bigbird took 4-7x the others and, as each head's
 * last items, ended the kernel (BENCHMARKS.md, the twelfth session).
 * Persistent kernels (SP_WS) only. */
SP_DEV void sp_trace(const sp_tile &T, i64 x, int tiles, u64 t0)
{
    if (threadIdx.x != 0)
        return;
    u64 t1;
    u32 smid;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    const u64 pass = T.nu > 0 ? 2 : T.D > 1 ? 1 : 0;
    u64 *tb = (u64 *)(SP_TRACE);
    const u64 n = atomicAdd(tb, 1ull);
    if (n >= tb[1])
        return;
    const u64 k = 2 + 4 * n;
    tb[k] = (u64)smid << 48 | pass << 40 | blockIdx.x;
    tb[k + 1] = (u64)x << 32 | (u64)(T.h & 0xffff) << 16 | (u64)sp_min(tiles, 0xffff);
    tb[k + 2] = t0;
    tb[k + 3] = t1;
}
#endif

#if SP_WS
/* Warp specialisation, persistent: gridDim.x CTAs share the p.gx x heads
 * x batch items, numbered as the grid of a CTA per item would be (x
 * fastest: the CTAs that run at once share a head's keys in L2), or
 * heads fastest (longest first, SP_ORDER). CTA c
 * takes item c first, then the next ticket of the launch's counter
 * (*p.tick, zero at the start) plus gridDim.x, as the hardware hands out
 * the CTAs of a grid: in order, to whichever is free. (Dealt out
 * statically, in rounds, either the heads of one x ran side by side and
 * dense at d = 128 lost 4.6 % to L2 misses, or causal's costs, falling
 * with x, piled up on some CTAs: -33 %.)
 *
 * The producer warp (threads SP_NC..SP_NC+31; with SP_PWG the other
 * three warps of its warpgroup give their registers back and leave)
 * takes the items: for each it waits until the compute warps are done
 * with the item two before (qempty of slot k & 1), writes the item's
 * record and loads its Q into that slot (qfull), then steps the item's
 * schedule, filling buffer b = t % NB with tile t (a count over all
 * items) once the compute warps have released it (empty), the visit in
 * vs[b] and hv[b] = 1; full[b] completes when those writes are published
 * and the copies have landed. With SP_SPLIT (more than one compute
 * warpgroup) those are K's copies, and V follows once the compute warps
 * have released the buffer's V (emptyv; fullv[b]): they release K once
 * all warpgroups' scores are read, so the next K lands while the last
 * P V runs (with SP_OVERLAP V once the next tile's softmax, which its
 * P V runs through, is done). An item ends with hv[b] = 0 and no copies; the
 * producer's last word is a record with live = 0. So while the compute
 * warps finish one item (the last products, the softmax's sums, O's
 * stores) the next item's Q and first tiles land: a CTA per item paid
 * that start and end on every item (ncu, window256 at d = 128: ~10 % of
 * the stall samples on nine tiles a CTA). */
template <class P, class ITEM, class ROWPOS, class STEP, class NEXT, class FIN>
SP_DEV void sp_persist(const sp_params &p, char *sm, sp_visit *vs, int *hv, sp_item<P> *rec, ITEM item,
                       ROWPOS rowpos, STEP step, NEXT next, FIN fin)
{
    constexpr int NB = sp_engine::NB;
    static_assert(NB <= 2, "one visit per buffer in vs[3], hv[2]");
    const u32 full = sp_smem(sm + sp_engine::OFF_BAR), empty = full + 8 * NB, qfull = empty + 8 * NB,
              qempty = qfull + 16, fullv = qempty + 16, emptyv = fullv + 8 * NB;
    if (threadIdx.x == 0) {
        for (int b = 0; b < NB; b++) {
            sp_mb_init(full + 8 * b, 64); /* 32 lanes' copies + 32 lanes' writes */
            sp_mb_init(empty + 8 * b, SP_NC);
            if (SP_SPLIT) {
                sp_mb_init(fullv + 8 * b, 32); /* 32 lanes' copies */
                sp_mb_init(emptyv + 8 * b, SP_NC);
            }
        }
        for (int q = 0; q < 2; q++) {
            sp_mb_init(qfull + 8 * q, 64);
            sp_mb_init(qempty + 8 * q, SP_NC);
        }
    }
    if (SP_OVERLAP && threadIdx.x < sp_engine::ZA / 16) {
        ((uint4 *)(sm + sp_engine::OFF_ZA))[threadIdx.x] = make_uint4(0, 0, 0, 0);
        sp_fence_async_smem();
    }
    sp_bar();
    sp_engine E;
    const i64 n = p.gx * p.heads_q * p.batch, G = gridDim.x;
    const bool xmajor = SP_ORDER == 2 ? p.xmajor != 0 : SP_ORDER == 1;
    if (threadIdx.x >= SP_NC) {
#if SP_PWG
        sp_setmaxnreg_dec<SP_PREG>();
        if (threadIdx.x >= SP_NC + 32)
            return;
#endif
        const int lane = threadIdx.x & 31;
        int t = 0, k = 0;   /* tiles and items handed over */
        bool held = false;  /* slot k & 1 is free for item k */
        auto hold = [&]() {
            if (!held && k >= 2)
                sp_mb_wait(qempty + 8 * (k & 1), ((k >> 1) - 1) & 1);
            held = true;
        };
        for (i64 w = blockIdx.x; w < n;) {
            hold();
            sp_item<P> &I = rec[k & 1];
            sp_tile tt;
            /* Ticket w: head by head, or x by x (SP_ORDER). */
            const i64 hb = p.heads_q * p.batch, x = xmajor ? w / hb : w % p.gx, y = xmajor ? w % hb : w / p.gx;
            const bool any = item(x, y % p.heads_q, y / p.heads_q, tt, I.e, lane, 32, [] { __syncwarp(); });
            if (any) {
                if (lane == 0) {
                    I.T = tt;
                    I.x = x;
                    I.live = 1;
                }
                __syncwarp();
                sp_io io;
                sp_io_init(io, p, tt);
                E.qfill(sm, k & 1, io, tt, [&](int u) { return rowpos(I, u); }, step(I), lane);
                sp_mb_arrive_cp(qfull + 8 * (k & 1));
                sp_mb_arrive(qfull + 8 * (k & 1));
                auto keypos = [&](const sp_visit &v, i64 j) { return sp_keypos<P>(v, j, I.e); };
                sp_sched s = sp_sched();
                for (;; t++) {
                    sp_visit v;
                    const bool h = next(s, v, I);
#ifdef SP_DEBUG
                    if (h && lane == 0)
                        sp_debug_visit("visit", v, v.ilo, v.ihi);
#endif
                    /* Use u > 0 of buffer b waits for the release of tile t - NB. */
                    const int b = t % NB, u = t / NB;
                    if (u > 0)
                        sp_mb_wait(empty + 8 * b, (u - 1) & 1);
                    if (lane == 0) {
                        vs[b] = v;
                        hv[b] = h;
                    }
                    /* TMA where the host made descriptors and the keys allow. */
                    const bool tma = SP_TMA && h && p.tma && E.tma_ok(v, p.tmad);
                    if (tma)
                        E.template tma<SP_SPLIT ? 1 : 3>(sm, b, v, &p.tk, &p.tv, (int)I.T.hk, (int)I.T.b, lane,
                                                         full + 8 * b);
                    else if (h)
                        E.template fill<SP_SPLIT ? 1 : 3>(sm, b, io, v, keypos, lane);
                    sp_mb_arrive_cp(full + 8 * b);
                    sp_mb_arrive(full + 8 * b);
                    if (SP_SPLIT) {
                        if (u > 0)
                            sp_mb_wait(emptyv + 8 * b, (u - 1) & 1);
                        if (tma)
                            E.template tma<2>(sm, b, v, &p.tk, &p.tv, (int)I.T.hk, (int)I.T.b, lane, fullv + 8 * b);
                        else if (h)
                            E.template fill<2>(sm, b, io, v, keypos, lane);
                        sp_mb_arrive_cp(fullv + 8 * b);
                    }
                    if (!h)
                        break;
                }
                t++;
                held = false;
                k++;
            }
            /* The next ticket once this item's last tile is issued, a
             * tile or two before the compute warps finish it. (Asked for
             * when the item started, it bound a CTA to its next item a
             * whole item early: causal at d = 128 ran 4.6 % slower than a
             * CTA per item.) */
            u64 tk = 0;
            if (lane == 0)
                tk = atomicAdd(p.tick, 1ull);
            w = G + (i64)__shfl_sync(0xffffffffu, tk, 0);
        }
        hold();
        if (lane == 0)
            rec[k & 1].live = 0;
        sp_mb_arrive_cp(qfull + 8 * (k & 1));
        sp_mb_arrive(qfull + 8 * (k & 1));
        return;
    }
#if SP_PWG
    sp_setmaxnreg_inc<SP_CREG>();
#endif
    const float sl = (float)p.scale_log2;
    for (int k = 0, t = 0;; k++) {
        const int q = k & 1;
        sp_mb_wait(qfull + 8 * q, (k >> 1) & 1);
        const sp_item<P> &I = rec[q];
        if (!I.live)
            break;
        E.landed();
#ifdef SP_TRACE
        u64 tr0;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tr0));
        const int trt = t;
#endif
        sp_io io;
        sp_io_init(io, p, I.T);
        E.start([&](int u) { return rowpos(I, u); });
        E.q_take(sm, q, sl);
        auto own = [&](const sp_visit &v, i64 i, i64 j) { return P::own(v, i, j, I.e); };
        auto band = [&](const sp_visit &v, i64 &lo, i64 &hi, i64 &m) { return sp_band_mask<P>(v, lo, hi, m); };
#if SP_OVERLAP
        /* Whether a P V is pending: tile t - 1's, of buffer pb, with the
         * rescale of O that goes before it. */
        bool live = false, moved = false;
        float alpha[2] = {1.f, 1.f};
#endif
        for (;; t++) {
            const int b = t % NB;
            sp_mb_wait(full + 8 * b, (t / NB) & 1);
#if SP_OVERLAP
            const int pb = (t + NB - 1) % NB;
            if (live)
                sp_mb_wait(fullv + 8 * pb, ((t - 1) / NB) & 1);
#endif
            /* cp.async writes through the generic proxy; wgmma reads
             * through the async one. */
            E.landed();
            if (!hv[b]) {
#if SP_OVERLAP
                E.rescale(alpha, moved);
                E.pv(sm, pb, live);
                E.drain();
                if (live)
                    sp_mb_arrive(emptyv + 8 * pb);
#endif
                sp_mb_arrive(empty + 8 * b);
                if (SP_SPLIT) {
                    sp_mb_wait(fullv + 8 * b, (t / NB) & 1);
                    sp_mb_arrive(emptyv + 8 * b);
                }
                break;
            }
            const sp_visit &v = vs[b];
            const auto ed = E.edges(v, band);
#if SP_OVERLAP
            float s[sp_engine::BN / 8][4];
            /* The P V of tile t - 1 runs through this tile's softmax, which
             * still reads the buffer's visit and key positions (so K is
             * released after it); O takes this tile's rescale before the
             * next P V. */
            E.scores_pv(sm, b, pb, live, s, alpha, moved);
            moved = E.softmax(s, v, (const i64 *)(sm + sp_engine::OFF_KP) + b * sp_engine::BN, ed, sl, own, alpha);
            sp_mb_arrive(empty + 8 * b);
            E.drain();
            if (live)
                sp_mb_arrive(emptyv + 8 * pb);
            live = true;
            E.pack(s);
#else
            float s[sp_engine::BN / 8][4], alpha[2];
            E.scores(sm, b, s);
            const bool moved =
                E.softmax(s, v, (const i64 *)(sm + sp_engine::OFF_KP) + b * sp_engine::BN, ed, sl, own, alpha);
            if (SP_SPLIT) {
                sp_mb_arrive(empty + 8 * b);
                sp_mb_wait(fullv + 8 * b, (t / NB) & 1);
                E.landed();
            }
            E.rescale(alpha, moved);
            E.pack(s);
            /* (Releasing the buffer only once the next tile's S is in, so
             * that this P V runs on meanwhile, measured 2-15 % slower; so
             * did FlashAttention 3's order with 168 registers, this P V
             * issued after the next S and waited for after its softmax,
             * BENCHMARKS.md; SP_OVERLAP.) */
            E.pv(sm, b);
            E.drain();
            sp_mb_arrive((SP_SPLIT ? emptyv : empty) + 8 * b);
#endif
        }
        t++;
        fin(E, io, I);
#ifdef SP_TRACE
        sp_trace(I.T, I.x, t - trt, tr0);
#endif
        sp_mb_arrive(qempty + 8 * q);
    }
}
#else
/* One CTA, one item: (blockIdx.x, .y, .z). */
template <class P, class ITEM, class ROWPOS, class STEP, class NEXT, class FIN>
SP_DEV void sp_single(const sp_params &p, char *sm, sp_sched *ss, sp_visit *vs, int *hv, sp_item<P> &I,
                      ITEM item, ROWPOS rowpos, STEP step, NEXT next, FIN fin)
{
    sp_tile t;
    if (!item((i64)blockIdx.x, (i64)blockIdx.y, (i64)blockIdx.z, t, I.e, (int)threadIdx.x, SP_NT,
              [] { sp_bar(); }))
        return;
    if (threadIdx.x == 0) {
        I.T = t;
        I.x = blockIdx.x;
    }
    sp_bar();
    sp_io io;
    sp_io_init(io, p, I.T);
    sp_engine E;
    E.begin(sm, io, I.T, [&](int u) { return rowpos(I, u); }, step(I));
    sp_pipeline<P>(E, sm, io, (float)p.scale_log2, ss, vs, hv, I.e,
                   [&](sp_sched &s, sp_visit &v) { return next(s, v, I); });
    fin(E, io, I);
}
#endif

/* Runs a pass's items with the driver of this build. */
template <class P, class ITEM, class ROWPOS, class STEP, class NEXT, class FIN>
SP_DEV void sp_run(const sp_params &p, ITEM item, ROWPOS rowpos, STEP step, NEXT next, FIN fin)
{
    char *sm = sp_smem_base();
    __shared__ sp_visit vs[3];
    __shared__ int hv[2];
#if SP_WS
    __shared__ sp_item<P> rec[2];
    sp_persist<P>(p, sm, vs, hv, rec, item, rowpos, step, next, fin);
#else
    __shared__ sp_item<P> rec[1];
    __shared__ sp_sched ss[2];
    sp_single<P>(p, sm, ss, vs, hv, rec[0], item, rowpos, step, next, fin);
#endif
}

/* Direct pass: items (query tiles, heads, batch); the last rows first, as
 * under causal they have the most keys. */
template <class P> __device__ void sp_direct(const sp_params &p)
{
    __shared__ sp_rnd<P::NRND> rnd;
    sp_run<P>(
        p,
        [&](i64 x, i64 h, i64 b, sp_tile &t, typename P::env &e, int tid, int nt, auto) {
            sp_tile_base<P>(t, p, h, b);
            const i64 ntiles = (p.seq_q + SP_BM - 1) / SP_BM, r0 = (ntiles - 1 - x) * SP_BM,
                      r1 = sp_min(r0 + SP_BM, p.seq_q);
            if (r1 > t.nq) { /* padding rows */
                sp_io io;
                sp_io_init(io, p, t);
                sp_zero_rows(io, sp_max(r0, t.nq), r1, tid, nt);
            }
            if (!P::direct_writes(t.cls) || !sp_direct_rows<P>(t, r0))
                return false;
            if (tid == 0)
                P::env_init(e, t.cls, t.nk);
            return true;
        },
        [&](const sp_item<P> &I, int u) { return sp_direct_rowpos(I.T, u); },
        [&](const sp_item<P> &) { return (i64)1; },
        [&](sp_sched &s, sp_visit &v, const sp_item<P> &I) {
            return P::template dnext<sp_engine::BN>(s, v, I.T, I.e, rnd);
        },
        [&](sp_engine &E, const sp_io &io, const sp_item<P> &I) {
            E.template finish<SP_STORE>(io, I.T, nullptr, sp_smem_base());
        });
}

/* Remap pass for slot p.slot: items (D x tiles per class, heads, batch). */
template <class P> __device__ void sp_remap(const sp_params &p)
{
    const int slot = (int)p.slot;
    sp_run<P>(
        p,
        [&](i64 x, i64 h, i64 b, sp_tile &t, typename P::env &e, int tid, int, auto) {
            sp_tile_base<P>(t, p, h, b);
            i64 D = 0;
            if (P::remap_gid(t.cls, slot, D) < 0 || !sp_remap_rows<P>(t, D, x, p.seq_q))
                return false;
            if (tid == 0)
                P::env_init(e, t.cls, t.nk);
            return true;
        },
        [&](const sp_item<P> &I, int u) { return sp_remap_rowpos(I.T, u); },
        [&](const sp_item<P> &I) { return I.T.D; },
        [&](sp_sched &s, sp_visit &v, const sp_item<P> &I) {
            return P::template rnext<sp_engine::BN>(s, v, I.T, I.e, slot);
        },
        [&](sp_engine &E, const sp_io &io, const sp_item<P> &I) {
            if (P::remap_stores(I.T.cls, slot))
                E.template finish<SP_STORE>(io, I.T, nullptr, sp_smem_base());
            else
                E.template finish<SP_MERGE>(io, I.T, nullptr, sp_smem_base());
        });
}

/* Rows pass: items (row tiles x key chunks, heads, batch); partials go to
 * p.part as [batch][head][chunk][set row][D + 1] (O normalised, then LSE). */
template <class P> __device__ void sp_rows(const sp_params &p)
{
    sp_run<P>(
        p,
        [&](i64 x, i64 h, i64 b, sp_tile &t, typename P::env &e, int tid, int, auto bar) {
            sp_tile_base<P>(t, p, h, b);
            if (P::rows_gid(t.cls) < 0)
                return false;
            if (SP_WS) /* e may still be read for an item that computed nothing */
                bar();
            if (tid == 0)
                P::env_init(e, t.cls, t.nk);
            bar();
            return sp_rows_rows<P>(t, e, x / p.nch * SP_BM);
        },
        [&](const sp_item<P> &I, int u) { return sp_rows_rowpos<P>(I.T, I.e, u); },
        [&](const sp_item<P> &) { return (i64)0; },
        [&](sp_sched &s, sp_visit &v, const sp_item<P> &I) {
            return sp_rows_next<P>(s, v, I.T, I.e, P::rows_gid(I.T.cls), I.x % p.nch, p.chunk, sp_engine::BN);
        },
        [&](sp_engine &E, const sp_io &io, const sp_item<P> &I) {
            const sp_tile &T = I.T;
            float *part = p.part + (((T.b * p.heads_q + T.h) * p.nch + I.x % p.nch) * p.nu + T.u0) * (SP_D + 1);
            E.template finish<SP_PART>(io, T, part, sp_smem_base());
        });
}

/* Merges the rows pass's chunks into O and LSE: one warp per set row,
 * grid (set rows / 4, heads, batch). */
template <class P> __device__ void sp_rows_merge(const sp_params &p)
{
    __shared__ typename P::env env;
    sp_tile T;
    sp_tile_base<P>(T, p, blockIdx.y, blockIdx.z);
    if (P::rows_gid(T.cls) < 0)
        return;
    if (threadIdx.x == 0)
        P::env_init(env, T.cls, T.nk);
    sp_bar();
    const int lane = threadIdx.x & 31;
    const i64 u = (i64)blockIdx.x * (SP_NT / 32) + (threadIdx.x >> 5);
    if (!sp_rows_rows<P>(T, env, 0) || u >= T.nu)
        return;
    sp_io io;
    sp_io_init(io, p, T);
    const i64 pos = P::rows_elem(env, T.cls, T.m0 + u), row = pos - T.qoff;
    const float *base = p.part + ((T.b * p.heads_q + T.h) * p.nch * p.nu + u) * (SP_D + 1);
    const i64 cstride = p.nu * (SP_D + 1);
    /* The chunks' LSEs, a lane each, 32 at a time. (One after another, a
     * load's latency each, the merge took 23 of bigbird's 390 us at d = 64
     * under ncu.) */
    float mx = SP_NEG_INF;
    for (i64 c = lane; c < p.nch; c += 32)
        mx = fmaxf(mx, base[c * cstride + SP_D]);
    for (int k = 16; k > 0; k >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, k));
    float lse = SP_NEG_INF;
    if (mx != SP_NEG_INF) {
        float sum = 0.f;
        for (i64 c = lane; c < p.nch; c += 32)
            sum += expf(base[c * cstride + SP_D] - mx);
        for (int k = 16; k > 0; k >>= 1)
            sum += __shfl_xor_sync(0xffffffffu, sum, k);
        lse = mx + logf(sum);
    }
    float *lp = io.lse + row * io.lr;
    float wo, wn, lm;
    sp_merge_weights(*lp, lse, wo, wn, lm);
#ifdef SP_DEBUG
    if (lane == 0)
        printf("rows merge blk(%d,%d,%d) u %lld pos %lld row %lld: lse %g old %g wo %g wn %g\n", (int)blockIdx.x,
               (int)blockIdx.y, (int)blockIdx.z, u, pos, row, lse, *lp, wo, wn);
#endif
    __syncwarp();
    if (wn != 0.f) {
        /* Chunk c's weight from lane c % 32; the partials' loads do not
         * wait for one another. */
        constexpr int NQ = (SP_D + 31) / 32;
        float acc[NQ];
#pragma unroll
        for (int q = 0; q < NQ; q++)
            acc[q] = 0.f;
        for (i64 c0 = 0; c0 < p.nch; c0 += 32) {
            const float lc = c0 + lane < p.nch ? base[(c0 + lane) * cstride + SP_D] : SP_NEG_INF;
            const float w = lc != SP_NEG_INF ? expf(lc - lse) : 0.f;
            const int nj = (int)sp_min(32, p.nch - c0);
#pragma unroll 4
            for (int j = 0; j < nj; j++) {
                const float wj = __shfl_sync(0xffffffffu, w, j);
                const float *src = base + (c0 + j) * cstride;
                if (wj != 0.f)
#pragma unroll
                    for (int q = 0; q < NQ; q++)
                        if (lane + 32 * q < SP_D)
                            acc[q] += wj * src[lane + 32 * q];
            }
        }
        char *orow = io.o + row * io.orow * SP_ES;
#pragma unroll
        for (int q = 0; q < NQ; q++)
            if (lane + 32 * q < SP_D) {
                char *pc = orow + (i64)(lane + 32 * q) * io.oe * SP_ES;
                sp_st(pc, sp_ld(pc) * wo + acc[q] * wn);
            }
    }
    __syncwarp();
    if (lane == 0 && wn != 0.f)
        *lp = lm;
}

#endif /* __CUDACC__ */
