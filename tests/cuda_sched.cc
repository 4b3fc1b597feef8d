// Host replay of the generated CUDA kernels' schedules (tests/test_cuda_sched.sh).
//
// The schedule half of a generated source (compiler/cuda_engine.cuh: the
// visits, the ownership tests, the gathers, the random draws) compiles as
// host C++. This program includes the source of one pattern (-DGEN="file")
// and replays every pass the runtime launches, CTA by CTA and tile by tile,
// for the engines' tile widths (128 and 64 keys: tensor, 32: FMA), CTAs
// of SP_BM query rows (64; 128 with -DSP_WG=2), and many lengths, offsets
// and heads: for each visit it evaluates exactly what a
// kernel evaluates per element (the key slot's position, the row's
// position, the visit's flags and the ownership test) and counts the pairs
// a kernel would attend. Every pair of the reference enumeration
// (sp_view_row) must be counted exactly once and no other pair at all; a
// tile flagged full must hold only attended pairs.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
extern "C" {
#include "backend_cuda.h"
#include "diag.h"
#include "frontend.h"
#include "plan.h"
}
#define SP_D 64
#define SP_DT 2
#include GEN

static int fails = 0;
#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c) && fails++ < 10) {                                                                \
            printf("FAIL line %d: ", __LINE__);                                                    \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

typedef i64 (*rowpos_fn)(const sp_tile &, const sp_pat::env &, int);
static i64 rp_direct(const sp_tile &T, const sp_pat::env &, int u) { return sp_direct_rowpos(T, u); }
static i64 rp_remap(const sp_tile &T, const sp_pat::env &, int u) { return sp_remap_rowpos(T, u); }
static i64 rp_rows(const sp_tile &T, const sp_pat::env &e, int u) { return sp_rows_rowpos<sp_pat>(T, e, u); }

struct Replay {
    int BN;
    i64 nq, nk, qoff;
    std::vector<int> cnt; // [nq][nk]
    sp_pat::env e;
    long nband = 0; // masked visits the band mask served
    const sp_plan *plan = nullptr;
    sp_view *view = nullptr; // the head's components, for membership

    /* A visit's rows are trimmed off the global rows its component skips
     * (cg_xm): its first and last rows are not theirs, so that only a hole
     * in the middle is left to the test per element. */
    void trimmed(const sp_tile &T, const sp_visit &v)
    {
        if (v.gid < 0 || v.ilo > v.ihi)
            return;
        int c = v.gid;
        for (int k = 0; k < T.cls; k++)
            c -= plan->classes[k].ncomps;
        const sp_headplan *hp = &plan->classes[T.cls];
        for (int x = 0; x < hp->ncomps; x++)
            if ((hp->comps[c].excl >> x & 1) && hp->comps[x].kind == SP_C_ROWS)
                for (i64 i : {v.ilo, v.ihi})
                    CHECK(i < 0 || i >= nk || !sp_view_has(view, x, i, 0),
                          "visit of component %d keeps row %lld of the rows of #%d it skips (rows %lld..%lld)",
                          c, i, x, v.ilo, v.ihi);
    }

    void tile(const sp_tile &T, const sp_visit &v, rowpos_fn rowpos)
    {
        trimmed(T, v);
        i64 blo, bhi, bm;
        const bool band = !v.full && sp_band_mask<sp_pat>(v, blo, bhi, bm);
        nband += band;
        for (int u = 0; u < SP_BM; u++) {
            const i64 i = rowpos(T, e, u);
            const sp_slots r = band ? sp_band_slots(v, i, blo, bhi, bm, BN) : sp_slots{1, 0};
            for (int t = 0; t < BN; t++) {
                const i64 x = v.kb + t;
                const i64 j = x >= v.klo && x <= v.khi ? sp_keypos<sp_pat>(v, x, e) : -1;
                if (t >= v.nvalid)
                    CHECK(j < 0, "slot %d beyond nvalid %d holds key %lld", t, v.nvalid, j);
                CHECK(j < nk, "key %lld beyond the %lld keys", j, nk);
                bool ok;
                if (v.full) {
                    CHECK(j >= 0 && i >= 0, "full tile (component %d) with an empty slot", v.gid);
                    ok = true;
                } else {
                    ok = j >= 0 && i >= 0 && i >= v.ilo && i <= v.ihi && sp_pat::own(v, i, j, e);
                    if (band) { /* the tensor engine's mask for band edges */
                        const bool in = t >= r.a && t <= r.b;
                        CHECK(in == ok, "band mask (component %d, band %lld..%lld step %lld) says %d for row %lld, key %lld",
                              v.gid, blo, bhi, bm, in, i, j);
                        ok = in;
                    }
                }
                if (ok) {
                    CHECK(i >= qoff && i < qoff + nq, "row %lld outside the query rows", i);
                    if (j >= 0 && i >= qoff && i < qoff + nq)
                        cnt[(i - qoff) * nk + j]++;
                }
            }
        }
    }
};

template <int BN> static void replay(Replay &R, const sp_plan *plan, const sp_params &p, i64 h)
{
    sp_rnd<sp_pat::NRND> rnd;
    sp_tile T0;
    sp_tile_base<sp_pat>(T0, p, h, 0);
    sp_cuda_class cc;
    sp_cuda_classify(&plan->classes[T0.cls], &cc);
    for (i64 r0 = 0; r0 < p.seq_q; r0 += SP_BM) { // direct
        sp_tile T;
        sp_tile_base<sp_pat>(T, p, h, 0);
        if (!sp_pat::direct_writes(T.cls) || !sp_direct_rows<sp_pat>(T, r0))
            continue;
        sp_pat::env_init(R.e, T.cls, T.nk);
        sp_sched s = sp_sched();
        sp_visit v;
        for (long n = 0; sp_pat::dnext<BN>(s, v, T, R.e, rnd); n++) {
            CHECK(n < 1000000, "the direct schedule does not end");
            if (n >= 1000000)
                break;
            R.tile(T, v, rp_direct);
        }
    }
    for (int slot = 0; slot < cc.nremap; slot++) { // remap
        i64 D = 0;
        CHECK(sp_pat::remap_gid(T0.cls, slot, D) >= 0 && D == cc.remap_d[slot], "remap slot %d", slot);
        for (i64 x = 0; x < D * sp_remap_tpc(p.seq_q, D); x++) {
            sp_tile T;
            sp_tile_base<sp_pat>(T, p, h, 0);
            if (!sp_remap_rows<sp_pat>(T, D, x, p.seq_q))
                continue;
            sp_pat::env_init(R.e, T.cls, T.nk);
            sp_sched s = sp_sched();
            sp_visit v;
            while (sp_pat::rnext<BN>(s, v, T, R.e, slot))
                R.tile(T, v, rp_remap);
        }
    }
    if (cc.rows >= 0) { // global rows, in small chunks to exercise the split
        const i64 chunk = 4 * BN, nch = (p.seq_k + chunk - 1) / chunk;
        for (i64 ut = 0; ut * SP_BM < p.seq_q; ut++)
            for (i64 ch = 0; ch < nch; ch++) {
                sp_tile T;
                sp_tile_base<sp_pat>(T, p, h, 0);
                sp_pat::env_init(R.e, T.cls, T.nk);
                if (!sp_rows_rows<sp_pat>(T, R.e, ut * SP_BM))
                    continue;
                sp_sched s = sp_sched();
                sp_visit v;
                while (sp_rows_next<sp_pat>(s, v, T, R.e, sp_pat::rows_gid(T.cls), ch, chunk, BN))
                    R.tile(T, v, rp_rows);
            }
    }
}

struct refctx {
    std::vector<int> *r;
    i64 qoff, nk;
};
static void count_pair(void *arg, int, int64_t i, int64_t j)
{
    refctx *c = (refctx *)arg;
    (*c->r)[(i - c->qoff) * c->nk + j]++;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE.spat (the pattern the program was built with)\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    static char src[1 << 20];
    size_t n = fread(src, 1, sizeof src - 1, f);
    fclose(f);
    src[n] = 0;
    sp_arena a;
    sp_arena_init(&a);
    sp_diag d;
    sp_diag_init(&d, argv[1], src, n);
    sp_program *prog = NULL;
    sp_plan *plan = NULL;
    if (sp_frontend(src, n, &a, &d, &prog) || !prog || prog->npatterns != 1 ||
        sp_plan_build(&prog->patterns[0], &a, &d, &plan)) {
        fprintf(stderr, "%s: not one valid pattern\n%s", argv[1], sp_diag_text(&d));
        return 2;
    }
    const i64 nheads = plan->nheads ? plan->nheads : 3;
    struct { i64 nq, nk, qoff; } lens[] = {{1, 1, 0},      {7, 7, 0},       {63, 63, 0},      {64, 64, 0},
                                           {65, 65, 0},    {200, 200, 0},   {130, 300, 170}, {1, 1000, 999},
                                           {129, 1000, 500}, {1000, 1000, 0}, {333, 777, 100}};
    long long pairs = 0, band_visits = 0;
    for (int bn : {128, 64, 32})
        for (auto ln : lens)
            for (i64 h = 0; h < nheads; h++) {
                Replay R;
                R.BN = bn;
                R.nq = ln.nq;
                R.nk = ln.nk;
                R.qoff = ln.qoff;
                R.cnt.assign((size_t)(ln.nq * ln.nk), 0);
                sp_view view;
                sp_view_init(&view, plan, h, ln.nk);
                R.plan = plan;
                R.view = &view;
                sp_params p;
                memset(&p, 0, sizeof p);
                i64 lensarr[3] = {ln.nq, ln.nk, ln.qoff};
                p.lens = lensarr; /* as the runtime passes per-batch lengths */
                p.batch = 1;
                p.heads_q = nheads;
                p.heads_kv = 1;
                p.seq_q = ln.nq + 5; /* padding rows */
                p.seq_k = ln.nk;
                if (bn == 128)
                    replay<128>(R, plan, p, h);
                else if (bn == 64)
                    replay<64>(R, plan, p, h);
                else
                    replay<32>(R, plan, p, h);
                band_visits += R.nband;
                std::vector<int> ref((size_t)(ln.nq * ln.nk), 0);
                refctx c = {&ref, ln.qoff, ln.nk};
                for (i64 r = 0; r < ln.nq; r++)
                    sp_view_row(&view, r + ln.qoff, count_pair, &c);
                sp_view_free(&view);
                for (i64 r = 0; r < ln.nq; r++)
                    for (i64 j = 0; j < ln.nk; j++) {
                        const int got = R.cnt[r * ln.nk + j], want = ref[r * ln.nk + j];
                        pairs += want;
                        CHECK(got == want,
                              "tile width %d, rows %lld, keys %lld, offset %lld, head %lld: pair (%lld, %lld) "
                              "counted %d times, the reference %d",
                              bn, ln.nq, ln.nk, ln.qoff, h, r + ln.qoff, j, got, want);
                    }
            }
    printf("%s %s, %d rows per CTA: %s (%lld attended pairs; %lld masked tiles through the band mask)\n",
           argv[1], prog->patterns[0].name, SP_BM, fails ? "FAIL" : "ok", pairs, band_visits);
    return fails != 0;
}
