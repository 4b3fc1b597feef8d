"""A trace per item of spat's persistent CUDA kernels: where a forward's time goes, item by item.

  python3 bench/gpu/trace.py --lib .libs/libspat.so --patterns patterns longformer:64 bigbird:128

For each PATTERN:D it compiles the pattern with -DSP_TRACE=<a buffer of this process> (through
SPAT_CUDA_FLAGS, after any flags already there, so the traced kernels have their own cache entries), runs a few forwards on random bf16
tensors [1, H, N, D], traces the last one and prints: per pass (direct, remap, rows) the items' times,
when the SMs finished their last items, the longest items and the last to end. Each record (see sp_trace
in compiler/cuda_engine.cuh) is an item the compute warps finished: SM, pass, CTA, the item's x (query tile
or chunk), head and tiles, and the GPU's clock once its Q had landed and once its rows were stored.
--csv FILE writes every record. Only the wgmma builds (sm_90a) have persistent kernels to trace.
"""
import argparse, csv, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Spat  # bench/gpu/bench.py

PASSES = ("direct", "remap", "rows")


def pct(v, f):
    return v[int(f * (len(v) - 1))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="+", help="PATTERN:D, e.g. longformer:64")
    ap.add_argument("--lib", default=".libs/libspat.so")
    ap.add_argument("--patterns", default="patterns")
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--records", type=int, default=1 << 20, help="room in the buffer")
    ap.add_argument("--top", type=int, default=8, help="longest and last items to print")
    ap.add_argument("--csv", default="")
    a = ap.parse_args()
    sp = Spat(a.lib)
    buf = torch.zeros(2 + 4 * a.records, dtype=torch.int64, device="cuda")  # count, room, records
    out = csv.writer(open(a.csv, "w", newline="")) if a.csv else None
    if out:
        out.writerow(["pattern", "d", "sm", "pass", "cta", "x", "head", "tiles", "start_ns", "end_ns"])
    # Flags already in SPAT_CUDA_FLAGS stay: a variant's kernels can be traced too.
    os.environ["SPAT_CUDA_FLAGS"] = ("%s -DSP_TRACE=0x%xULL" % (os.environ.get("SPAT_CUDA_FLAGS", ""), buf.data_ptr())).strip()
    for case in a.cases:
        pat, d = case.split(":")
        d = int(d)
        kern = sp.compile(open(os.path.join(a.patterns, pat + ".spat")).read(), d)
        torch.manual_seed(0)
        q, k, v = (torch.randn(1, a.heads, a.n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        o = torch.empty_like(q)
        lse = torch.empty(1, a.heads, a.n, device="cuda", dtype=torch.float32)
        args = sp.args(q, k, v, o, lse)
        for _ in range(3):
            sp.forward(kern, args)
        torch.cuda.synchronize()
        buf.zero_()
        buf[1] = a.records
        sp.forward(kern, args)
        torch.cuda.synchronize()
        b = buf.cpu().tolist()
        n = b[0]
        if n == 0:
            print("== %s d=%d: no records (not a persistent build: sm_90a, bf16 or f16)" % (pat, d))
            continue
        if n > a.records:
            sys.exit("%s: %d items, room for %d (--records)" % (case, n, a.records))
        recs = []
        for i in range(n):
            w0, w1, t0, t1 = b[2 + 4 * i: 6 + 4 * i]
            recs.append(dict(sm=w0 >> 48, ps=(w0 >> 40) & 0xff, cta=w0 & 0xffffffffff, x=w1 >> 32,
                             h=(w1 >> 16) & 0xffff, tiles=w1 & 0xffff, t0=t0, t1=t1))
        T0 = min(r["t0"] for r in recs)
        us = lambda t: (t - T0) / 1e3
        print("== %s d=%d: %d items, %.1f us from the first start to the last end" %
              (pat, d, n, us(max(r["t1"] for r in recs))))
        for ps in range(3):
            dur = sorted((r["t1"] - r["t0"]) / 1e3 for r in recs if r["ps"] == ps)
            if dur:
                print("  %-6s %5d items, us: p10 %.1f  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f" %
                      ((PASSES[ps], len(dur)) + tuple(pct(dur, f) for f in (0.1, 0.5, 0.9, 0.99, 1.0))))
        ends = {}
        for r in recs:
            ends[r["sm"]] = max(ends.get(r["sm"], 0), r["t1"])
        e = sorted(us(t) for t in ends.values())
        print("  SMs' last ends, us: min %.1f  p10 %.1f  p50 %.1f  p90 %.1f  max %.1f (%d SMs)" %
              (e[0], pct(e, 0.1), pct(e, 0.5), pct(e, 0.9), e[-1], len(e)))
        show = lambda what, r: print("  %s %-6s sm %3d cta %4d x %5d head %3d tiles %4d: %.1f .. %.1f us (%.1f)" % (
            what, PASSES[r["ps"]], r["sm"], r["cta"], r["x"], r["h"], r["tiles"], us(r["t0"]), us(r["t1"]),
            (r["t1"] - r["t0"]) / 1e3))
        for r in sorted(recs, key=lambda r: r["t0"] - r["t1"])[:a.top]:
            show("longest", r)
        for r in sorted(recs, key=lambda r: -r["t1"])[:a.top]:
            show("last   ", r)
        if out:
            for r in recs:
                out.writerow([pat, d, r["sm"], PASSES[r["ps"]], r["cta"], r["x"], r["h"], r["tiles"],
                              r["t0"] - T0, r["t1"] - T0])


if __name__ == "__main__":
    main()
