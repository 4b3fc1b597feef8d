#!/usr/bin/env python3
"""The spat package's per-call overhead over the C call, on the CPU, at a
tiny shape where the kernel itself costs little: spat_forward through ctypes
with arguments built once (the floor), the torch.library op called directly,
spat.attention without and with autograd. Median of repeated timings, µs.

    SPAT_LIBRARY=.libs/libspat.so PYTHONPATH=python python3 bench/py_overhead.py
"""
import ctypes as C
import statistics
import time

import torch

import spat
from spat import _lib


def median_us(fn, reps=2000, rounds=7):
    for _ in range(200):
        fn()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append((time.perf_counter() - t) / reps * 1e6)
    return statistics.median(out)


def main():
    torch.set_num_threads(1)  # one thread: no thread start in the C call either
    B, H, N, d = 1, 1, 16, 16
    pat = spat.compile("pattern w { window 4; }", head_dims=[d])
    q, k, v = (torch.randn(B, H, N, d) for _ in range(3))
    o, lse = torch.empty_like(q), torch.empty(B, H, N)
    L = _lib.lib()
    kern = pat.kernel(d)
    a = _lib.ForwardArgs()
    L.spat_forward_args_init(C.byref(a), B, H, H, N, N, d)
    a.q, a.k, a.v, a.o, a.lse, a.threads = q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr(), 1
    ref = C.byref(a)
    fwd = L.spat_forward
    rows = {
        "C call (ctypes, args prebuilt)": median_us(lambda: fwd(kern, ref)),
        "torch.ops.spat.attention_fwd": median_us(
            lambda: torch.ops.spat.attention_fwd(q, k, v, pat.handle, 0.0, "bhsd", None, None, 0, False, "auto")),
        "spat.attention (no grad)": median_us(lambda: spat.attention(q, k, v, pat)),
    }
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    rows["spat.attention (autograd on)"] = median_us(lambda: spat.attention(qg, kg, vg, pat), reps=500)
    base = rows["C call (ctypes, args prebuilt)"]
    print(f"# torch {torch.__version__}, shape B={B} H={H} N={N} d={d}, 1 thread")
    for name, us in rows.items():
        print(f"{name:34s} {us:8.1f} µs   (+{us - base:.1f} over the C call)")


if __name__ == "__main__":
    main()
