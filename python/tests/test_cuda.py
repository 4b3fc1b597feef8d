"""The spat package on CUDA tensors (skipped where torch sees no GPU): the
forward in every dtype against the float64 reference, layouts, GQA, varlen,
a side stream, the backward where libspat has it, and CUDA-graph capture."""
import pytest
import torch

import spat
import reference as ref

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")

PAT = "pattern lf { block 16; window 9; global 0, 40; random 1 blocks seed 2; }"
TOL = {torch.float32: 2e-3, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def cuda_qkv(B, Hq, Hkv, Nq, Nk, d, dtype, layout="bhsd", grad=False):
    g = torch.Generator().manual_seed(Hq * 100 + Nk)
    shapes = ([(B, Hq, Nq, d), (B, Hkv, Nk, d), (B, Hkv, Nk, d)] if layout == "bhsd"
              else [(B, Nq, Hq, d), (B, Nk, Hkv, d), (B, Nk, Hkv, d)])
    return [torch.randn(*s, generator=g).to("cuda", dtype).requires_grad_(grad) for s in shapes]


def has_cuda_backward():
    q, k, v = cuda_qkv(1, 1, 1, 8, 8, 64, torch.float16, grad=True)
    try:
        spat.attention(q, k, v, spat.compile(PAT)).sum().backward()
    except spat.SpatError as e:
        if e.status == 4:  # SPAT_EHEADDIM: no backward code for this backend yet
            return False
        raise
    return True


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_forward(dtype, layout):
    pat = spat.compile(PAT)
    q, k, v = cuda_qkv(2, 4, 2, 100, 100, 64, dtype, layout)
    o, lse = spat.attention(q, k, v, pat, layout=layout, return_lse=True)
    assert o.device == q.device and o.dtype == dtype and o.shape == q.shape
    ro, rlse = ref.attention(q.cpu(), k.cpu(), v.cpu(), pat, layout=layout)
    torch.testing.assert_close(o.cpu().double(), ro, atol=TOL[dtype], rtol=TOL[dtype])
    torch.testing.assert_close(lse.cpu().double(), rlse, atol=TOL[dtype], rtol=TOL[dtype])


def test_noncontiguous_varlen_side_stream():
    pat = spat.compile(PAT)
    base = torch.randn(2, 90, 3, 4, 64, device="cuda", dtype=torch.float16)
    q, k, v = base[:, :, 0], base[:, :, 1, :2], base[:, :, 2, :2]  # BSHD views, GQA 4:2
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        o = spat.attention(q, k, v, pat, layout="bshd", seqlens_q=[90, 50], seqlens_k=[90, 60])
    torch.cuda.current_stream().wait_stream(s)
    ro, _ = ref.attention(q.cpu(), k.cpu(), v.cpu(), pat, layout="bshd", seqlens_q=[90, 50], seqlens_k=[90, 60])
    torch.testing.assert_close(o.cpu().double(), ro, atol=1e-2, rtol=1e-2)


def test_backward():
    if not has_cuda_backward():
        pytest.skip("libspat has no CUDA backward yet (spat_backward: SPAT_EHEADDIM)")
    pat = spat.compile(PAT)
    q, k, v = cuda_qkv(2, 4, 2, 100, 100, 64, torch.float16, grad=True)
    o = spat.attention(q, k, v, pat)
    do = torch.randn_like(o)
    g = torch.autograd.grad(o, (q, k, v), do)
    qc, kc, vc = (t.detach().cpu().requires_grad_() for t in (q, k, v))
    ro, _ = ref.attention(qc, kc, vc, pat)
    rg = torch.autograd.grad(ro, (qc, kc, vc), do.cpu().double())
    for a, b in zip(g, rg):
        torch.testing.assert_close(a.cpu().double(), b, atol=3e-2, rtol=3e-2)


def test_cuda_graph_capture():
    pat = spat.compile(PAT)
    backward = has_cuda_backward()
    q, k, v = cuda_qkv(1, 4, 4, 128, 128, 64, torch.bfloat16, grad=backward)
    # Warm up on a side stream (the first call compiles with NVRTC), as torch's docs ask.
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            o = spat.attention(q, k, v, pat)
            if backward:
                o.float().sum().backward()
    torch.cuda.current_stream().wait_stream(s)
    for t in (q, k, v):
        t.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o = spat.attention(q, k, v, pat)
        if backward:
            o.float().sum().backward()
    with torch.no_grad():
        q.copy_(torch.randn_like(q))
    graph.replay()
    torch.cuda.synchronize()
    ro, _ = ref.attention(q.detach().cpu(), k.detach().cpu(), v.detach().cpu(), pat)
    torch.testing.assert_close(o.detach().cpu().double(), ro, atol=3e-2, rtol=3e-2)


def test_wrong_device():
    pat = spat.compile(PAT)
    q, k, v = cuda_qkv(1, 2, 2, 16, 16, 64, torch.float16)
    with pytest.raises(ValueError, match="one device"):
        spat.attention(q, k.cpu(), v, pat)
    with pytest.raises(spat.SpatError):
        spat.attention(q, k, v, pat, backend="cpu")
