#!/usr/bin/env python3
"""A small character-level language model trained on the CPU with
spat.nn.SparseAttention (a causal window plus global tokens) in place of
F.scaled_dot_product_attention. It reads this source tree's own README and
man pages as its text, trains a few hundred steps (about a minute on two
cores) and prints the loss falling; it exits 1 if the loss did not fall.

    make && SPAT_LIBRARY=.libs/libspat.so PYTHONPATH=python python3 examples/lm.py
"""
import argparse
import glob
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import spat

PATTERN = """
pattern lm {            # what each token of the model sees
    causal;
    window -31..+0;     # the last 32 tokens
    global 0..3;        # and the first four, which see everything before them
}
"""


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, pattern: spat.Pattern):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.attn = spat.nn.SparseAttention(pattern)  # was: F.scaled_dot_product_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = self.attn(q, k, v)
        x = x + self.proj(y.transpose(1, 2).reshape(B, N, C))
        return x + self.mlp(self.ln2(x))


class LM(nn.Module):
    def __init__(self, vocab: int, dim: int, heads: int, layers: int, n: int, pattern: spat.Pattern):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(n, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, pattern) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


def corpus() -> str:
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = [os.path.join(top, "README.md")] + sorted(glob.glob(os.path.join(top, "man", "*.[0-9]")))
    return "\n".join(open(f, encoding="utf-8", errors="replace").read() for f in files if os.path.exists(f))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile(fullgraph=True) the model")
    a = ap.parse_args()
    torch.manual_seed(0)

    text = corpus()
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    pattern = spat.compile(PATTERN, head_dims=[a.dim // a.heads])
    print(f"{len(text)} characters, vocabulary {len(chars)}; pattern '{pattern.name}': "
          f"{pattern.stats(a.seq_len)['density']:.1%} of the pairs at n = {a.seq_len} "
          f"(libspat: {spat.library_path()})")

    model = LM(len(chars), a.dim, a.heads, a.layers, a.seq_len, pattern)
    step_fn = torch.compile(model, fullgraph=True) if a.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)

    def batch(src: torch.Tensor):
        i = torch.randint(0, len(src) - a.seq_len - 1, (a.batch,), generator=g)
        x = torch.stack([src[j:j + a.seq_len] for j in i])
        y = torch.stack([src[j + 1:j + a.seq_len + 1] for j in i])
        return x, y

    @torch.no_grad()
    def val_loss() -> float:
        model.eval()
        losses = [F.cross_entropy(step_fn(x).flatten(0, 1), y.flatten()).item() for x, y in (batch(val) for _ in range(4))]
        model.train()
        return sum(losses) / len(losses)

    first = val_loss()
    print(f"step    0  val loss {first:.3f}  (uniform guess: {math.log(len(chars)):.3f})")
    t0 = time.time()
    for step in range(1, a.steps + 1):
        x, y = batch(train)
        loss = F.cross_entropy(step_fn(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == a.steps:
            print(f"step {step:4d}  train loss {loss.item():.3f}  val loss {val_loss():.3f}  "
                  f"({time.time() - t0:.1f} s)", flush=True)
    last = val_loss()
    ok = last < 0.75 * first
    print(f"val loss {first:.3f} -> {last:.3f}: {'fell' if ok else 'DID NOT FALL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
