"""The suite of DESIGN.md section 5 as FlexAttention mask_mod functions: the definitions of
../shared/peers/flex_suite.py, the same pairs as patterns/*.spat except bigbird's random blocks, which
come from a torch table (compare bigbird per useful FLOP). Used by bench/flex_cpu.py (the CPU peer
column) and bench/gpu/bench.py (the GPU benchmark).
"""
import torch

SUITE = ["dense", "causal", "window256", "causal_window1024", "longformer", "bigbird", "dilated4",
         "strided128", "fixed128"]
# The other pattern families of patterns/ (same pairs as their .spat files), benchmarked beside the
# suite so that a family that falls behind shows up; PER_HEAD ones give each head its own rule
# (16 heads: run them with H a multiple of 16, the mask taking h mod 16).
FAMILIES = ["logsparse", "longformer_dilated", "longnet"]
PER_HEAD = {"longformer_dilated", "longnet"}


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
        "logsparse": logsparse,
        "longformer_dilated": longformer_dilated,
        "longnet": longnet,
    }


def logsparse(b, h, q, k):
    """causal; window 65536 dilation exp (offsets 0 and powers of two); window -7..+0."""
    t = q - k
    return (k <= q) & ((t < 8) | ((t & (t - 1)) == 0) & (t <= 65536))


def longformer_dilated(b, h, q, k):
    """global 0..15; heads 4g..4g+3 { window 256 * 2^g dilation 2^g }."""
    dil = 1 << ((h % 16) // 4)
    t = (q - k).abs()
    return (q < 16) | (k < 16) | ((t <= 256 * dil) & (t % dil == 0))


def longnet(b, h, q, k):
    """causal; heads 0..3 segment 512; 4..7 segment 2048 | window -2047..0 dilation 4;
    8..11 segment 512 | window -8191..0 dilation 16; 12..15 segment 512 | window -32767..0 dilation 64."""
    g = (h % 16) // 4
    seg = torch.where(g == 1, 2048, 512) if torch.is_tensor(g) else (2048 if g == 1 else 512)
    dil = 1 << (2 * g) if not torch.is_tensor(g) else torch.bitwise_left_shift(torch.ones_like(g), 2 * g)
    span = 2048 * dil // 4
    t = q - k
    win = (g > 0) & (t < span) & (t % dil == 0)
    return (k <= q) & (((q // seg) == (k // seg)) | win)
