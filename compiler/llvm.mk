# LLVM x86 backend (issue: x86 vector kernels through the LLVM C API).
