"""Dense masked attention in float64: what every spat call is checked against.

The mask comes from Pattern.mask (libspat's plan); test_spat checks that
mask against spatc's own statistics and the C tests check it against a
brute-force evaluation of the rules.
"""
from typing import Optional, Sequence

import torch


def masks(pattern, heads: int, n_q: int, n_k: int, q_offset: int = 0) -> torch.Tensor:
    """[heads, n_q, n_k] bool: the pairs row r (position r + q_offset) attends at length n_k."""
    out = []
    for h in range(heads):  # random blocks differ by head even without head groups
        out.append(pattern.mask(n_k, head=h)[q_offset:q_offset + n_q])
    return torch.stack(out)


def attention(q, k, v, pattern, scale: Optional[float] = None, layout: str = "bhsd",
              seqlens_q: Optional[Sequence[int]] = None, seqlens_k: Optional[Sequence[int]] = None,
              q_offset: int = 0):
    """O (in q's layout) and LSE [B, Hq, Nq], float64, differentiable."""
    if layout == "bshd":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    q, k, v = (t.double() for t in (q, k, v))
    B, Hq, Nq, d = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    g = Hq // Hkv
    k = k.repeat_interleave(g, dim=1)
    v = v.repeat_interleave(g, dim=1)
    scale = scale if scale is not None else d ** -0.5
    os, lses = [], []
    for b in range(B):
        nk = seqlens_k[b] if seqlens_k is not None else Nk
        nq = seqlens_q[b] if seqlens_q is not None else Nq
        m = torch.zeros(Hq, Nq, Nk, dtype=torch.bool)
        if nk > 0 and nq > 0:
            m[:, :nq, :nk] = masks(pattern, Hq, nq, nk, q_offset)
        s = scale * q[b] @ k[b].transpose(-1, -2)
        s = s.masked_fill(~m, float("-inf"))
        mx = s.amax(-1, keepdim=True).detach()
        mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
        e = torch.exp(s - mx)
        den = e.sum(-1, keepdim=True)
        p = e / torch.where(den > 0, den, torch.ones_like(den))
        os.append(p @ v[b])
        lses.append(torch.log(den.squeeze(-1)) + mx.squeeze(-1))
    o, lse = torch.stack(os), torch.stack(lses)
    if layout == "bshd":
        o = o.transpose(1, 2)
    return o, lse
