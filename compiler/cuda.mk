# CUDA backend (issue: CUDA kernels through NVRTC).
#
# The generator (plan -> CUDA C source) is plain C and always built: spatc
# --emit=cuda and kernel.so's source section need no toolkit. The engine
# text, compiler/cuda_engine.cuh with compiler/rng.h pasted in, becomes a C
# string at build time.
libspatcore_la_SOURCES += \
	compiler/backend_cuda.c compiler/backend_cuda.h compiler/cuda_comp.c compiler/cuda_gen.h \
	compiler/cuda_params.h
nodist_libspatcore_la_SOURCES = compiler/cuda_engine_text.c
BUILT_SOURCES += compiler/cuda_engine_text.c
CLEANFILES += compiler/cuda_engine_text.c
EXTRA_DIST += compiler/cuda_engine.cuh compiler/cuda_embed.sh

compiler/cuda_engine_text.c: $(srcdir)/compiler/cuda_engine.cuh $(srcdir)/compiler/rng.h \
		$(srcdir)/compiler/cuda_embed.sh
	$(AM_V_GEN)$(MKDIR_P) compiler && \
	$(SHELL) $(srcdir)/compiler/cuda_embed.sh $(srcdir)/compiler/cuda_engine.cuh sp_cuda_engine_text > $@.tmp && \
	mv $@.tmp $@

# kernel.so's CUDA sections (the source always; CUBIN and PTX when spatc
# has CUDA support and is given --cuda-arch).
libspatcore_la_SOURCES += runtime/module_cuda.c runtime/cuda_run.h runtime/cuda_api.h

# The runtime backend: the driver and NVRTC are opened with dlopen, so it
# builds without the toolkit's headers or libraries.
if HAVE_CUDA
libspatcore_la_SOURCES += runtime/cuda_api.c runtime/cuda_cache.c runtime/cuda_cache.h \
	runtime/cuda.c

# Tests that need no GPU: NVRTC compiles every pattern's source cleanly
# (skipped when NVRTC is absent), the cache, error mapping.
if HAVE_CHECK
check_PROGRAMS += tests/test_cuda_src
TESTS += tests/test_cuda_src
tests_test_cuda_src_SOURCES = tests/test_cuda_src.c tests/rule_patterns.c tests/rule_patterns.h \
	$(TEST_UTIL)
tests_test_cuda_src_CFLAGS = $(TEST_CFLAGS)
tests_test_cuda_src_LDADD = $(TEST_LIBS)

# The backend's launches, streams and module cache on a driver that runs
# nothing (tests/fake_cuda.c, a shared object named libcuda.so.1 that the
# test opens first; skipped when NVRTC is absent).
check_PROGRAMS += tests/test_cuda_launch
TESTS += tests/test_cuda_launch
tests_test_cuda_launch_SOURCES = tests/test_cuda_launch.c $(TEST_UTIL)
tests_test_cuda_launch_CFLAGS = $(TEST_CFLAGS) -DFAKE_CUDA='"$(abs_top_builddir)/tests/fake/libcuda.so.1"'
tests_test_cuda_launch_LDADD = $(TEST_LIBS)
EXTRA_tests_test_cuda_launch_DEPENDENCIES = tests/fake/libcuda.so.1
endif
endif
tests/fake/libcuda.so.1: $(srcdir)/tests/fake_cuda.c $(srcdir)/compiler/cuda_params.h
	$(AM_V_CC)$(MKDIR_P) tests/fake && \
	$(CC) $(CFLAGS) -I$(srcdir)/compiler -shared -fPIC -Wl,-soname,libcuda.so.1 -o $@ $(srcdir)/tests/fake_cuda.c
CLEANFILES += tests/fake/libcuda.so.1
EXTRA_DIST += tests/fake_cuda.c

# The GPU tests and benchmark (tests/gpu/run.sh, bench/gpu/run.sh) run on a
# machine with a GPU, from a `make dist` tarball. test_gpu builds here too,
# with `make check`, so that it keeps compiling; it does not run here.
if HAVE_CUDA
check_PROGRAMS += tests/gpu/test_gpu
tests_gpu_test_gpu_SOURCES = tests/gpu/test_gpu.c tests/rule_patterns.c tests/rule_patterns.h \
	tests/tensor.c tests/tensor.h
tests_gpu_test_gpu_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/tests
tests_gpu_test_gpu_LDADD = libspatcore.la
endif
EXTRA_DIST += tests/gpu/run.sh bench/gpu/run.sh bench/gpu/bench.py bench/gpu/floor.py bench/gpu/trace.py  # and bench/flex_masks.py (llvm.mk)

# The schedules replayed on the host against the reference, pair by pair,
# for every pattern (needs a C++ compiler; skipped without one).
check_PROGRAMS += tests/dump_rules
tests_dump_rules_SOURCES = tests/dump_rules.c tests/rule_patterns.c tests/rule_patterns.h
tests_dump_rules_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/tests
TESTS += tests/test_cuda_sched.sh
EXTRA_DIST += tests/test_cuda_sched.sh tests/cuda_sched.cc
