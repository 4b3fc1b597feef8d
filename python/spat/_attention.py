"""spat.attention: the torch.library ops over spat_forward / spat_backward.

Two custom ops, ``spat::attention_fwd`` and ``spat::attention_bwd``, with
fake (meta) kernels giving the exact output strides and the forward's
autograd wired to the backward op, so torch.compile(fullgraph=True) traces
them and loss.backward() runs spat_backward.

Tensors go to C as they are: their data pointers and element strides,
BHSD or BSHD by permuting the strides, never a hidden .contiguous() copy.
The outputs are new contiguous tensors in the caller's layout: O and dQ
like Q's shape, dK and dV like K's, LSE [B, Hq, Nq] float32. CUDA tensors
run on the current stream of their device (libspat queues the kernels and
returns; torch's caching allocator keeps every tensor's memory for work
queued on that stream); per-batch lengths are copied to host memory as
the C API requires.
"""
from __future__ import annotations

import ctypes as C
from typing import Optional, Sequence, Tuple, Union

import torch

from . import _lib
from ._pattern import Pattern, compile as _compile, lookup

_DTYPES = {torch.float32: _lib.F32, torch.float16: _lib.F16, torch.bfloat16: _lib.BF16}
_LAYOUTS = ("bhsd", "bshd")


def _bhsd(t: torch.Tensor, layout: str) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Shape and element strides in [batch, head, seq, dim] order."""
    s, st = t.shape, t.stride()
    if layout == "bshd":
        return (s[0], s[2], s[1], s[3]), (st[0], st[2], st[1], st[3])
    return tuple(s), tuple(st)


def _lengths(t: Optional[torch.Tensor]) -> Tuple[Optional[torch.Tensor], Optional[int]]:
    """A host int32 copy of per-batch lengths (the C API reads host memory),
    kept alive by the caller for the call; and its address."""
    if t is None:
        return None, None
    h = t.to(device="cpu", dtype=torch.int32).contiguous()
    return h, h.data_ptr()


def _device(t: torch.Tensor) -> Tuple[int, Optional[int]]:
    if t.device.type == "cuda":
        return _lib.DEVICE_CUDA, torch.cuda.current_stream(t.device).cuda_stream
    return _lib.DEVICE_CPU, None


def _threads(device: int) -> int:
    return torch.get_num_threads() if device == _lib.DEVICE_CPU else 0


def _fwd_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: int, scale: float, layout: str,
              seqlens_q: Optional[torch.Tensor], seqlens_k: Optional[torch.Tensor], q_offset: int,
              deterministic: bool, backend: str) -> Tuple[torch.Tensor, torch.Tensor]:
    (B, Hq, Nq, d), qs = _bhsd(q, layout)
    (_, Hkv, Nk, _), ks = _bhsd(k, layout)
    _, vs = _bhsd(v, layout)
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((B, Hq, Nq), dtype=torch.float32, device=q.device)
    _, os_ = _bhsd(o, layout)
    sq, sq_p = _lengths(seqlens_q)
    sk, sk_p = _lengths(seqlens_k)
    dev, stream = _device(q)
    L = _lib.lib()
    kern = lookup(pattern).kernel(d)
    a = _lib.ForwardArgs()
    L.spat_forward_args_init(C.byref(a), B, Hq, Hkv, Nq, Nk, d)
    a.dtype, a.device, a.backend = _DTYPES[q.dtype], dev, _lib.BACKENDS[backend]
    a.q, a.k, a.v, a.o, a.lse = q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr()
    a.q_stride[:], a.k_stride[:], a.v_stride[:], a.o_stride[:] = qs, ks, vs, os_
    a.lse_stride[:] = lse.stride()
    a.seqlens_q, a.seqlens_k = sq_p, sk_p
    a.q_offset, a.scale, a.threads, a.stream = q_offset, scale, _threads(dev), stream
    _lib.check(L.spat_forward(kern, C.byref(a)), "spat_forward")
    del sq, sk  # the host copies lived through the call (libspat copies what the GPU needs)
    return o, lse


@torch.library.custom_op("spat::attention_fwd", mutates_args=())
def _fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: int, scale: float, layout: str,
         seqlens_q: Optional[torch.Tensor], seqlens_k: Optional[torch.Tensor], q_offset: int,
         deterministic: bool, backend: str) -> Tuple[torch.Tensor, torch.Tensor]:
    return _fwd_impl(q, k, v, pattern, scale, layout, seqlens_q, seqlens_k, q_offset, deterministic, backend)


@_fwd.register_fake
def _fwd_fake(q, k, v, pattern, scale, layout, seqlens_q, seqlens_k, q_offset, deterministic, backend):
    (B, Hq, Nq, _), _ = _bhsd(q, layout)
    return (q.new_empty(q.shape), q.new_empty((B, Hq, Nq), dtype=torch.float32))


@torch.library.custom_op("spat::attention_bwd", mutates_args=())
def _bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
         lse: torch.Tensor, pattern: int, scale: float, layout: str, seqlens_q: Optional[torch.Tensor],
         seqlens_k: Optional[torch.Tensor], q_offset: int, deterministic: bool,
         backend: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    (B, Hq, Nq, d), qs = _bhsd(q, layout)
    (_, Hkv, Nk, _), ks = _bhsd(k, layout)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    sq, sq_p = _lengths(seqlens_q)
    sk, sk_p = _lengths(seqlens_k)
    dev, stream = _device(q)
    L = _lib.lib()
    kern = lookup(pattern).kernel(d)
    a = _lib.BackwardArgs()
    L.spat_backward_args_init(C.byref(a), B, Hq, Hkv, Nq, Nk, d)
    a.dtype, a.device, a.backend = _DTYPES[q.dtype], dev, _lib.BACKENDS[backend]
    a.q, a.k, a.v, a.o, a.dout = q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), dout.data_ptr()
    a.lse, a.dq, a.dk, a.dv = lse.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr()
    a.q_stride[:], a.k_stride[:] = qs, ks
    a.v_stride[:] = _bhsd(v, layout)[1]
    a.o_stride[:] = _bhsd(o, layout)[1]
    a.dout_stride[:] = _bhsd(dout, layout)[1]
    a.dq_stride[:] = _bhsd(dq, layout)[1]
    a.dk_stride[:] = _bhsd(dk, layout)[1]
    a.dv_stride[:] = _bhsd(dv, layout)[1]
    a.lse_stride[:] = lse.stride()
    a.seqlens_q, a.seqlens_k = sq_p, sk_p
    a.q_offset, a.scale, a.deterministic = q_offset, scale, int(deterministic)
    a.threads, a.stream = _threads(dev), stream
    _lib.check(L.spat_backward(kern, C.byref(a)), "spat_backward")
    del sq, sk
    return dq, dk, dv


@_bwd.register_fake
def _bwd_fake(dout, q, k, v, o, lse, pattern, scale, layout, seqlens_q, seqlens_k, q_offset, deterministic,
              backend):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, pattern, scale, layout, seqlens_q, seqlens_k, q_offset, deterministic, backend = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse, seqlens_q, seqlens_k)
    ctx.args = (pattern, scale, layout, q_offset, deterministic, backend)


def _backward(ctx, do, dlse):
    q, k, v, o, lse, seqlens_q, seqlens_k = ctx.saved_tensors
    pattern, scale, layout, q_offset, deterministic, backend = ctx.args
    if do is None:
        return (None,) * 11
    dq, dk, dv = _bwd(do, q, k, v, o, lse, pattern, scale, layout, seqlens_q, seqlens_k, q_offset,
                      deterministic, backend)
    return dq, dk, dv, None, None, None, None, None, None, None, None


_fwd.register_autograd(_backward, setup_context=_setup_context)


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"spat.attention: layout must be 'bhsd' or 'bshd', not {layout!r}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"spat.attention: {name} must be a tensor, not {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"spat.attention: {name} must have 4 dimensions ({layout.upper()}), "
                             f"got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES:
            raise TypeError(f"spat.attention: {name} is {t.dtype}; libspat runs float32, float16 and bfloat16")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"spat.attention: {name} is on {t.device}; libspat runs on the CPU and CUDA")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"spat.attention: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"spat.attention: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    (B, Hq, _, d), _ = _bhsd(q, layout)
    (Bk, Hkv, Nk, dk), _ = _bhsd(k, layout)
    (Bv, Hv, Nv, dv), _ = _bhsd(v, layout)
    if (Bk, Hkv, Nk, dk) != (Bv, Hv, Nv, dv):
        raise ValueError(f"spat.attention: k and v must have one shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if Bk != B or dk != d:
        raise ValueError(f"spat.attention: q {tuple(q.shape)} and k {tuple(k.shape)} ({layout.upper()}) "
                         "differ in batch or head dim")
    if Hkv == 0 or Hq % Hkv != 0:
        raise ValueError(f"spat.attention: q has {Hq} heads, k and v {Hkv}: "
                         "the query heads must be a multiple of the KV heads (GQA)")


def _plain(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """True when calling the implementation directly is what the op would
    do: plain tensors, nothing to differentiate, no compiler or functorch
    transform watching."""
    if (torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()
            or torch._C._len_torch_dispatch_stack() > 0):
        return False
    if type(q) is not torch.Tensor or type(k) is not torch.Tensor or type(v) is not torch.Tensor:
        return False
    return not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Union[Pattern, str], *,
              scale: Optional[float] = None, layout: str = "bhsd",
              seqlens_q: Union[torch.Tensor, Sequence[int], None] = None,
              seqlens_k: Union[torch.Tensor, Sequence[int], None] = None, q_offset: int = 0,
              return_lse: bool = False, deterministic: bool = False,
              backend: str = "auto") -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Sparse attention softmax(scale Q K^T on the pattern's pairs) V.

    q: [B, Hq, Nq, d] (layout "bhsd") or [B, Nq, Hq, d] ("bshd"); k, v:
    [B, Hkv, Nk, d] or [B, Nk, Hkv, d] with Hq a multiple of Hkv (GQA, MQA).
    Any strides. float32 on the CPU runs libspat's LLVM kernels (float16 and
    bfloat16 its reference); CUDA tensors run on the current stream.
    scale: default 1/sqrt(d). seqlens_q / seqlens_k: per-batch valid
    lengths (padding): rows past seqlens_q[b] give 0, keys past seqlens_k[b]
    are not there. q_offset: the absolute position of query row 0 (decoding
    against a KV cache). A row with no attended key gives 0.
    return_lse: also return LSE [B, Hq, Nq] (float32, natural log; -inf for
    rows with no key); it carries no gradient. deterministic: bitwise
    reproducible gradients (the CPU backends always are). backend: "auto",
    "reference", "cpu" or "cuda" (libspat's spat_backend).

    Returns O like q (a new contiguous tensor in the same layout).
    Errors of libspat raise spat.SpatError with spat_last_error's text.
    """
    if not isinstance(pattern, Pattern):
        pattern = _compile(pattern)
    _check(q, k, v, layout)
    if backend not in _lib.BACKENDS:
        raise ValueError(f"spat.attention: backend must be one of {sorted(_lib.BACKENDS)}, not {backend!r}")
    if seqlens_q is not None and not isinstance(seqlens_q, torch.Tensor):
        seqlens_q = torch.tensor(list(seqlens_q), dtype=torch.int32)
    if seqlens_k is not None and not isinstance(seqlens_k, torch.Tensor):
        seqlens_k = torch.tensor(list(seqlens_k), dtype=torch.int32)
    args = (q, k, v, pattern.handle, float(scale) if scale is not None else 0.0, layout,
            seqlens_q, seqlens_k, int(q_offset), bool(deterministic), backend)
    if _plain(q, k, v):
        o, lse = _fwd_impl(*args)  # no autograd, no tracing: skip the op dispatcher's cost
    else:
        o, lse = _fwd(*args)
    if return_lse:
        return o, lse.detach()
    return o
