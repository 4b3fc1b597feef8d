"""spat: sparse attention compiled from .spat patterns, for PyTorch.

    import spat
    pat = spat.compile("pattern lf { window 256; global 0..15; }")
    o = spat.attention(q, k, v, pat)           # q, k, v: [B, H, N, d]
    pat.stats(4096); pat.mask(64); pat.show(512)

A pure-Python package over libspat (ctypes). libspat is found as
$SPAT_LIBRARY, then in the libdir recorded when it was configured, then by
the system loader. The ops are torch.ops.spat.attention_fwd and
attention_bwd (torch.library custom ops, traceable by torch.compile).
"""
from ._lib import SpatError, library_path
from ._pattern import MaskImage, Pattern, compile
from ._attention import attention
from . import nn

__all__ = ["SpatError", "Pattern", "MaskImage", "attention", "compile", "library_path", "nn"]
__version__ = "0.1.0"
