"""spat.nn.SparseAttention: F.scaled_dot_product_attention's place in a block."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ._attention import attention
from ._pattern import Pattern, PathLike, compile


class SparseAttention(torch.nn.Module):
    """Sparse attention over a spat pattern, called like
    ``F.scaled_dot_product_attention(q, k, v)``:

        self.attn = spat.nn.SparseAttention("pattern lm { causal; window -127..+0; global 0..3; }")
        ...
        y = self.attn(q, k, v)          # q, k, v: [B, H, N, d] (layout="bhsd")

    pattern: a :class:`spat.Pattern`, .spat text or a path. layout "bhsd" or
    "bshd"; scale default 1/sqrt(d). The module has no parameters: the
    pattern is the whole of its state. Keyword arguments of the call
    (seqlens_q, seqlens_k, q_offset, scale) go to :func:`spat.attention`.
    """

    def __init__(self, pattern: Union[Pattern, PathLike], *, layout: str = "bhsd", scale: Optional[float] = None,
                 head_dims: Optional[Sequence[int]] = None, deterministic: bool = False, backend: str = "auto"):
        super().__init__()
        self.pattern = pattern if isinstance(pattern, Pattern) else compile(pattern, head_dims)
        self.layout = layout
        self.scale = scale
        self.deterministic = deterministic
        self.backend = backend

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *,
                scale: Optional[float] = None, seqlens_q=None, seqlens_k=None, q_offset: int = 0) -> torch.Tensor:
        out = attention(query, key, value, self.pattern, scale=scale if scale is not None else self.scale,
                        layout=self.layout, seqlens_q=seqlens_q, seqlens_k=seqlens_k, q_offset=q_offset,
                        deterministic=self.deterministic, backend=self.backend)
        assert isinstance(out, torch.Tensor)
        return out

    def extra_repr(self) -> str:
        return f"pattern={self.pattern.name!r}, layout={self.layout!r}"
