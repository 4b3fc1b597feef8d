"""PyTorch FlexAttention on the CPU, on spat's benchmark suite (DESIGN.md section 5): the peer column of
bench/suite.sh. The mask_mod functions are the suite's definitions (the same pairs as patterns/*.spat;
bigbird's random blocks come from a torch table, so compare time per useful FLOP, not pair for pair).

  python3 bench/flex_cpu.py --n 16384 --d 64 --heads 16 --threads 2 [--pats a,b] [--reps 3]

Prints one JSON row per pattern: median ms, pairs attended, useful GFLOP/s (4*d*pairs*H / time), block
density of Flex's BlockMask, compile seconds. Exits 3 when torch (with FlexAttention) is not installed.
"""
import argparse, json, sys, time

try:
    import torch
    from torch.nn.attention.flex_attention import flex_attention, create_block_mask
    import torch._dynamo
except ImportError as e:  # torch is optional: the suite runs without this column
    print(f"flex_cpu.py: PyTorch with FlexAttention is not installed ({e})", file=sys.stderr)
    sys.exit(3)

from flex_masks import PER_HEAD, masks  # bench/, this script's directory

torch._dynamo.config.recompile_limit = 10000
torch._dynamo.config.accumulated_recompile_limit = 100000


def count_pairs(fn, N, heads=1):
    """Pairs per head (the mean over heads 0..heads-1)."""
    tot, k = 0, torch.arange(N)[None, :]
    for h in range(heads):
        for s in range(0, N, 1024):
            q = torch.arange(s, min(N, s + 1024))[:, None]
            tot += int(fn(0, h, q, k).sum())
    return tot // heads


def median_ms(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--pats", default="", help="comma list; default all")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    N, d, H = a.n, a.d, a.heads
    flex = torch.compile(flex_attention, dynamic=False)
    q, k, v = (torch.randn(1, H, N, d, dtype=torch.float32) for _ in range(3))
    for name, fn in masks(N).items():
        if a.pats and name not in a.pats.split(","):
            continue
        per_head = name in PER_HEAD
        if per_head and H % 16:
            continue  # a rule per head of 16: spat runs it at H a multiple of 16 alone
        bm = create_block_mask(fn, None, H if per_head else None, N, N, device="cpu")
        pairs = count_pairs(fn, N, H if per_head else 1)
        t0 = time.time()
        with torch.no_grad():
            flex(q, k, v, block_mask=bm)
            t_comp = time.time() - t0
            ms = median_ms(lambda: flex(q, k, v, block_mask=bm), a.reps)
        row = dict(impl="flex", pattern=name, N=N, d=d, H=H, threads=torch.get_num_threads(), ms=round(ms, 3),
                   pairs=pairs, useful_gflops=round(4.0 * H * pairs * d / ms / 1e6, 2),
                   block_density=round(1 - bm.sparsity() / 100, 5), compile_s=round(t_comp, 1),
                   torch=torch.__version__)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
