"""The suite of DESIGN.md section 5 as FlexAttention mask_mod functions: the definitions of
../shared/peers/flex_suite.py, the same pairs as patterns/*.spat except bigbird's random blocks, which
come from a torch table (compare bigbird per useful FLOP). Used by bench/flex_cpu.py (the CPU peer
column) and bench/gpu/bench.py (the GPU benchmark).
"""
import torch

SUITE = ["dense", "causal", "window256", "causal_window1024", "longformer", "bigbird", "dilated4",
         "strided128", "fixed128"]


def masks(N, device="cpu", seed=1234):
    """{pattern name: mask_mod(b, h, q, k)} at sequence length N; bigbird's table lives on device."""
    g = torch.Generator().manual_seed(seed)
    nqb = (N + 63) // 64
    R = torch.randint(0, nqb, (nqb, 3), generator=g).to(device)

    def bigbird(b, h, q, k):
        qb, kb = q // 64, k // 64
        r = (kb == R[qb, 0]) | (kb == R[qb, 1]) | (kb == R[qb, 2])
        return ((qb - kb).abs() <= 1) | (qb < 2) | (kb < 2) | r

    return {
        "dense": lambda b, h, q, k: (q >= 0) & (k >= 0),
        "causal": lambda b, h, q, k: k <= q,
        "window256": lambda b, h, q, k: (q - k).abs() <= 256,
        "causal_window1024": lambda b, h, q, k: (k <= q) & (q - k < 1024),
        "longformer": lambda b, h, q, k: ((q - k).abs() <= 256) | (q < 16) | (k < 16),
        "bigbird": bigbird,
        "dilated4": lambda b, h, q, k: ((q - k).abs() <= 256) & ((q - k) % 4 == 0),
        "strided128": lambda b, h, q, k: (k <= q) & (((q - k) < 128) | ((q - k) % 128 == 0)),
        "fixed128": lambda b, h, q, k: (k <= q) & (((q // 128) == (k // 128)) | ((k % 128) >= 112)),
    }
