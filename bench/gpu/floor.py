"""How fast could any kernel run the rows of a bench.json? The floors of each row on this GPU.

  python3 bench/gpu/floor.py bench/gpu/h100-2026-11-27c.json

A forward pass must read Q, K and V and write O and the LSE once: at the best copy bandwidth this GPU
reaches (torch's device copy, read + write), that is the memory floor. It must also do the useful
FLOPs (4 * d * pairs * H, bench.py's count): at the best bf16 rate this GPU reaches (torch.matmul, a
cuBLAS GEMM of 8192^3) that is the compute floor. Neither counts what attention adds (softmax, masks,
partial tiles), so a row's floor is a lower bound, the larger of the two; no kernel goes below it.

For each row: the floors (ms), spat's time over the floor, and Flex's time / 5 over the floor, the
time a 5x speedup over Flex needs: below 1, the 5x target is below the floor and out of reach for any
kernel on this GPU.
"""
import json, sys

import torch
from triton.testing import do_bench


def copy_bandwidth():
    """Bytes per second of a device-to-device copy of 2 GiB (read + write)."""
    n = 1 << 30
    x = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=50, rep=500)
    return 2 * 2 * n / (ms * 1e-3)


def gemm_flops():
    """FLOP/s of a bf16 GEMM of 8192^3."""
    n = 8192
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    ms = do_bench(lambda: a @ b, warmup=50, rep=500)
    return 2 * n ** 3 / (ms * 1e-3)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = json.load(open(sys.argv[1]))
    bw, fl = copy_bandwidth(), gemm_flops()
    print("%s: copy %.0f GB/s, bf16 GEMM %.0f TFLOP/s" % (torch.cuda.get_device_name(), bw / 1e9, fl / 1e12))
    print("%-18s %4s %9s %9s %9s %11s %15s" % ("pattern", "d", "mem ms", "flop ms", "spat ms", "spat/floor",
                                              "flex/5 / floor"))
    for r in rows:
        H, N, d = r["H"], r["N"], r["d"]
        nbytes = 4 * H * N * d * 2 + H * N * 4  # Q, K, V, O in bf16; the LSE in f32
        mem = nbytes / bw * 1e3
        flop = 4 * d * r["pairs"] * H / fl * 1e3
        floor = max(mem, flop)
        flex = r.get("flex_ms")
        print("%-18s %4d %9.4f %9.4f %9.4f %11.2f %15s" % (
            r["pattern"], d, mem, flop, r["spat_ms"], r["spat_ms"] / floor,
            "%.2f" % (flex / 5 / floor) if flex else "-"))


if __name__ == "__main__":
    main()
