"""spat's CUDA kernels against PyTorch FlexAttention (and SDPA) on the suite of DESIGN.md section 5.

  python3 bench/gpu/bench.py --lib .libs/libspat.so --patterns patterns --ns 16384 --ds 64,128 --json out.json

One process, one GPU, the same bf16 tensors [1, H, N, d] for every implementation. spat runs through ctypes
on libspat.so (spat_compile of patterns/NAME.spat, spat_forward on torch's current stream); Flex through
torch.compile(flex_attention) with the mask_mod of each pattern (bench/flex_masks.py: the definitions of
../shared/peers/flex_suite.py); SDPA on the dense rows. Times are medians of triton's do_bench
(CUDA events). Useful TFLOP/s = 4 * d * pairs * H / time, with pairs counted by spat_kernel_pairs (for Flex's
bigbird, whose random blocks come from its own table, the same count is used: compare time per useful FLOP).

Also measured, per pattern: the first spat_forward with an empty NVRTC cache (compile + load + run) and the
first one of a fresh kernel with the cache warm (the first launch compiles the pattern under a name of its
own, so that its CUDA source is new to every cache, spat's and any below it: on the device machine a source
compiled before in another process came back in 40-120 ms with SPAT_CACHE_DIR empty), and the relative
difference between spat's O and Flex's
(not for bigbird: other random blocks).
"""
import argparse, ctypes as C, json, math, os, shutil, sys, tempfile, time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention, create_block_mask
import torch._dynamo
from triton.testing import do_bench

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from flex_masks import FAMILIES, PER_HEAD, SUITE, masks as flex_masks  # bench/flex_masks.py

torch._dynamo.config.recompile_limit = 10000
torch._dynamo.config.accumulated_recompile_limit = 100000

class Args(C.Structure):
    """spat_forward_args of include/spat.h."""
    _fields_ = [("batch", C.c_int64), ("heads_q", C.c_int64), ("heads_kv", C.c_int64),
                ("seq_q", C.c_int64), ("seq_k", C.c_int64), ("head_dim", C.c_int64),
                ("dtype", C.c_int), ("device", C.c_int), ("backend", C.c_int),
                ("q", C.c_void_p), ("k", C.c_void_p), ("v", C.c_void_p), ("o", C.c_void_p),
                ("lse", C.c_void_p),
                ("q_stride", C.c_int64 * 4), ("k_stride", C.c_int64 * 4), ("v_stride", C.c_int64 * 4),
                ("o_stride", C.c_int64 * 4), ("lse_stride", C.c_int64 * 3),
                ("seqlens_q", C.c_void_p), ("seqlens_k", C.c_void_p),
                ("q_offset", C.c_int64), ("q_offsets", C.c_void_p),
                ("scale", C.c_float), ("threads", C.c_int), ("stream", C.c_void_p)]


class CompileOpts(C.Structure):
    _fields_ = [("head_dims", C.POINTER(C.c_int)), ("n_head_dims", C.c_int), ("cpu", C.c_char_p),
                ("cpu_features", C.c_char_p), ("filename", C.c_char_p)]


class Spat:
    def __init__(self, path):
        self.lib = C.CDLL(path)
        L = self.lib
        L.spat_compile.argtypes = [C.c_char_p, C.c_char_p, C.POINTER(CompileOpts), C.POINTER(C.c_void_p)]
        L.spat_forward.argtypes = [C.c_void_p, C.POINTER(Args)]
        L.spat_forward_args_init.argtypes = [C.POINTER(Args)] + [C.c_int64] * 6
        L.spat_last_error.restype = C.c_char_p
        L.spat_kernel_free.argtypes = [C.c_void_p]
        L.spat_kernel_pairs.argtypes = [C.c_void_p, C.c_int64, C.c_int64, C.POINTER(C.c_int64)]

    def check(self, rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: status {rc}: {self.lib.spat_last_error().decode()}")

    def compile(self, src, d):
        dims = (C.c_int * 1)(d)
        o = CompileOpts(dims, 1, None, None, b"bench")
        k = C.c_void_p()
        self.check(self.lib.spat_compile(src.encode(), None, C.byref(o), C.byref(k)), "spat_compile")
        return k

    def args(self, q, k, v, o, lse):
        B, H, N, d = q.shape
        a = Args()
        self.lib.spat_forward_args_init(C.byref(a), B, H, k.shape[1], N, k.shape[2], d)
        a.dtype = 2 if q.dtype == torch.bfloat16 else 1 if q.dtype == torch.float16 else 0
        a.device, a.backend = 1, 3  # SPAT_DEVICE_CUDA, SPAT_BACKEND_CUDA
        a.q, a.k, a.v, a.o = q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr()
        a.lse = lse.data_ptr() if lse is not None else None
        for name, t in (("q_stride", q), ("k_stride", k), ("v_stride", v), ("o_stride", o)):
            getattr(a, name)[:] = list(t.stride())
        if lse is not None:
            a.lse_stride[:] = list(lse.stride())
        a.stream = torch.cuda.current_stream().cuda_stream
        return a

    def forward(self, kern, a):
        self.check(self.lib.spat_forward(kern, C.byref(a)), "spat_forward")

    def pairs(self, kern, N):
        p = C.c_int64()
        self.check(self.lib.spat_kernel_pairs(kern, N, 0, C.byref(p)), "spat_kernel_pairs")
        return p.value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=".libs/libspat.so")
    ap.add_argument("--patterns", default="patterns")
    ap.add_argument("--ns", default="16384")
    ap.add_argument("--ds", default="64,128")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--pats", default="", help="comma list; default: the suite and the other families")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    os.environ.setdefault("SPAT_CUDA_VERBOSE", "1")
    dev = "cuda"
    sp = Spat(a.lib)
    pats = a.pats.split(",") if a.pats else SUITE + [f for f in FAMILIES if f not in PER_HEAD or a.heads % 16 == 0]
    flex = torch.compile(flex_attention, dynamic=False)
    bench = lambda fn: do_bench(fn, warmup=25, rep=100, return_mode="median")
    rows = []
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    for d in [int(x) for x in a.ds.split(",")]:
        for N in [int(x) for x in a.ns.split(",")]:
            H = a.heads
            torch.manual_seed(d * 1000 + N)
            q, k, v = (torch.randn(1, H, N, d, device=dev, dtype=torch.bfloat16) for _ in range(3))
            o = torch.empty_like(q)
            lse = torch.empty(1, H, N, device=dev, dtype=torch.float32)
            masks = flex_masks(N, dev)
            for name in pats:
                src = open(os.path.join(a.patterns, name + ".spat")).read()
                row = dict(pattern=name, N=N, d=d, H=H)
                # First launch: empty cache (NVRTC compile), then a fresh kernel with the cache warm.
                cache = tempfile.mkdtemp(prefix="spat-cache-")
                os.environ["SPAT_CACHE_DIR"] = cache
                fresh = src.replace("pattern " + name, "pattern %s_%x" % (name, time.time_ns()), 1)
                assert fresh != src, "patterns/%s.spat does not define pattern %s" % (name, name)
                for what in ("first_s", "warm_s"):
                    kern = sp.compile(fresh, d)
                    args = sp.args(q, k, v, o, lse)
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    sp.forward(kern, args)
                    torch.cuda.synchronize()
                    row[what] = round(time.perf_counter() - t0, 4)
                    if what == "first_s":
                        sp.lib.spat_kernel_free(kern)
                shutil.rmtree(cache, ignore_errors=True)
                pairs = sp.pairs(kern, N)
                flops = 4.0 * d * pairs * H
                row["pairs"] = pairs
                row["spat_ms"] = round(bench(lambda: sp.forward(kern, args)), 4)
                row["spat_tflops"] = round(flops / row["spat_ms"] / 1e9, 1)
                # What the first calls cost beyond the kernel run itself.
                row["first_overhead_s"] = round(row["first_s"] - row["spat_ms"] / 1e3, 4)
                row["warm_overhead_ms"] = round(row["warm_s"] * 1e3 - row["spat_ms"], 2)
                if not a.no_flex:
                    t0 = time.time()
                    bm = create_block_mask(masks[name], None, H if name in PER_HEAD else None, N, N,
                                           device=dev)
                    of = flex(q, k, v, block_mask=bm)
                    torch.cuda.synchronize()
                    row["flex_setup_s"] = round(time.time() - t0, 1)
                    with torch.no_grad():
                        row["flex_ms"] = round(bench(lambda: flex(q, k, v, block_mask=bm)), 4)
                    row["flex_tflops"] = round(flops / row["flex_ms"] / 1e9, 1)
                    row["speedup"] = round(row["flex_ms"] / row["spat_ms"], 2)
                    if name != "bigbird":
                        sp.forward(kern, args)
                        torch.cuda.synchronize()
                        row["diff_vs_flex"] = float(f"{((o.float() - of.float()).norm() / of.float().norm()).item():.2e}")
                    if name in ("dense", "causal"):
                        with torch.no_grad():
                            row["sdpa_ms"] = round(bench(lambda: F.scaled_dot_product_attention(
                                q, k, v, is_causal=(name == "causal"))), 4)
                        row["sdpa_tflops"] = round(flops / row["sdpa_ms"] / 1e9, 1)
                    del bm, of
                sp.lib.spat_kernel_free(kern)
                rows.append(row)
                print(json.dumps(row), flush=True)
            del q, k, v, o, lse
            torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    # The table.
    print()
    print(f"{'pattern':18} {'d':>4} {'spat ms':>9} {'flex ms':>9} {'sdpa ms':>9} {'spat TF/s':>9} "
          f"{'flex TF/s':>9} {'flex/spat':>9} {'1st s':>6} {'warm ms':>8} {'diff':>8}")
    print("  (1st s: first call with an empty cache, NVRTC included, less the kernel time; warm ms: first call of a\n"
          "   fresh kernel with the cache warm, less the kernel time; diff: |O_spat - O_flex| / |O_flex|)")
    for r in rows:
        print(f"{r['pattern']:18} {r['d']:4} {r['spat_ms']:9.3f} {r.get('flex_ms', float('nan')):9.3f} "
              f"{r.get('sdpa_ms', float('nan')):9.3f} {r['spat_tflops']:9.1f} {r.get('flex_tflops', float('nan')):9.1f} "
              f"{r.get('speedup', float('nan')):9.2f} {r['first_overhead_s']:6.2f} {r['warm_overhead_ms']:8.1f} "
              f"{r.get('diff_vs_flex', float('nan')):8.1e}")


if __name__ == "__main__":
    main()
