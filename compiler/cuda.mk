# CUDA backend (issue: CUDA kernels through NVRTC).
