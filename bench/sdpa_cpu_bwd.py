"""PyTorch SDPA's backward on the CPU, on spat's benchmark suite (DESIGN.md section 5): the peer of
`spat-bench --backward` (FlexAttention has no backward on the CPU). fp32, batch 1, H heads, N tokens,
head dim d, the same threads as spat (torch.set_num_threads). Patterns come from bench/flex_masks.py:
causal runs with is_causal=True, dense plain, every other pattern with a boolean [N, N] attn_mask built
from its mask function (bigbird's random blocks are flex_masks' torch table, not spat's seed, so compare
bigbird per useful FLOP).

  python3 bench/sdpa_cpu_bwd.py --n 4096 --d 64 --heads 4 --threads 2 [--pats a,b] [--reps 3]

Each pattern runs in a fresh subprocess, so that its memory high-water mark is its own. There the forward
runs once with autograd on, and torch.autograd.grad(O, (Q, K, V), dO) with a fixed random dO (the graph
retained) is the backward: the first two calls are measured for memory, then a warm-up of at least a
quarter of a second, then the median of --reps calls. Prints one JSON row per pattern: ms, pairs (attended pairs
per head, counted from the mask), useful GFLOP/s (10 * d * pairs * H / time: the forward's 4 d pairs
times 2.5), peak_mib (the peak resident memory the backward call adds, below, at the second call;
peak_first_mib: at the first, with torch's one-time set-up), grads_mib (dQ, dK and dV,
which torch allocates inside the call and so are part of peak_mib; spat's caller passes them in), the
SDPA kernel torch chose. Exits 3 when torch is not installed, 1 when a pattern failed.

Peak memory, of the second call (the first also pays torch's one-time set-up: its thread pool, code
paged in): malloc_trim(0) returns the heap's free pages first, "5" written to /proc/self/clear_refs
resets the resident high-water mark (VmHWM) to the resident size, and VmHWM after the call minus VmRSS
before it is what the call added at its peak. Where clear_refs cannot be written, the same is taken
from getrusage's ru_maxrss before and after, which only sees a peak above the process's earlier ones
(then peak_method says "ru_maxrss" and a peak hidden under an earlier one reads 0).
"""
import argparse, ctypes, gc, json, os, resource, subprocess, sys, time, warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch without numpy: harmless
try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # torch is optional: the suite runs without this column
    print(f"sdpa_cpu_bwd.py: PyTorch is not installed ({e}); pip install torch", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flex_masks import SUITE, masks  # bench/, this script's directory


def status_kb(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def malloc_trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measured(call):
    """Runs call() once: (kB of resident memory it added at its peak, how that was measured)."""
    gc.collect()
    malloc_trim()
    ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = reset_hwm()
    base = status_kb("VmRSS")
    g = call()
    hwm = status_kb("VmHWM")
    ru1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del g
    if reset and base >= 0 and hwm >= 0:
        return max(0, hwm - base), "clear_refs"
    return max(0, ru1 - ru0), "ru_maxrss"


def build_mask(fn, N):
    """The pattern's [N, N] boolean mask (True: attended), 1024 query rows at a time."""
    m = torch.empty(N, N, dtype=torch.bool)
    k = torch.arange(N)[None, :]
    for s in range(0, N, 1024):
        q = torch.arange(s, min(N, s + 1024))[:, None]
        m[s:s + q.shape[0]] = fn(0, 0, q, k).expand(q.shape[0], N)
    return m


def median(ts):
    ts, n = sorted(ts), len(ts)
    return ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])


BACKENDS = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}


def one(a, name):
    """One pattern, in this process: prints its JSON row."""
    if a.threads:
        torch.set_num_threads(a.threads)
    N, d, H = a.n, a.d, a.heads
    mask = build_mask(masks(N)[name], N)
    pairs = int(mask.sum())
    kw = {}
    if name == "causal":
        kw["is_causal"] = True
    elif name != "dense":
        kw["attn_mask"] = mask
    if name in ("causal", "dense"):
        del mask
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, H, N, d, dtype=torch.float32, requires_grad=True) for _ in range(3))
    dout = torch.randn(1, H, N, d, dtype=torch.float32)
    try:
        kernel = BACKENDS.get(int(torch._fused_sdp_choice(q, k, v, **kw)), "?")
    except Exception:  # a private function: only informative
        kernel = "?"
    out = F.scaled_dot_product_attention(q, k, v, **kw)

    def bwd():
        return torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

    # The first call pays torch's one-time set-up (its thread pool, code paged in: about 40 MiB here);
    # the second is the backward's own working memory (torch's CPU allocator keeps nothing between
    # calls), and is peak_mib.
    t0 = time.perf_counter()
    peak_first, method = measured(bwd)
    peak, _ = measured(bwd)
    while time.perf_counter() - t0 < 0.25:
        bwd()
    ts = []
    for _ in range(a.reps):
        t = time.perf_counter()
        bwd()
        ts.append(time.perf_counter() - t)
    ms = median(ts) * 1e3
    row = dict(impl="sdpa_bwd", pattern=name, N=N, d=d, H=H, threads=torch.get_num_threads(),
               ms=round(ms, 3), pairs=pairs, useful_gflops=round(10.0 * d * pairs * H / ms / 1e6, 2),
               peak_mib=round(peak / 1024, 1), peak_first_mib=round(peak_first / 1024, 1), grads_mib=round(3 * H * N * d * 4 / 2**20, 1),
               peak_method=method, mask="is_causal" if name == "causal" else "none" if name == "dense"
               else "bool", kernel=kernel, torch=torch.__version__)
    print(json.dumps(row), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--pats", default="", help="comma list; default all")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # the child's pattern
    a = ap.parse_args()
    if a.one:
        one(a, a.one)
        return 0
    pats = a.pats.split(",") if a.pats else SUITE
    bad = [p for p in pats if p not in SUITE]
    if bad:
        print(f"sdpa_cpu_bwd.py: unknown pattern(s) {', '.join(bad)}; the suite: {', '.join(SUITE)}",
              file=sys.stderr)
        return 2
    rc = 0
    for p in pats:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", p, "--n", str(a.n), "--d", str(a.d),
               "--heads", str(a.heads), "--threads", str(a.threads), "--reps", str(a.reps)]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        rows = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if r.returncode or not rows:
            print(f"sdpa_cpu_bwd.py: {p} failed (exit {r.returncode})", file=sys.stderr)
            rc = 1
        for l in rows:
            print(l, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
