# LLVM x86 backend (issue: x86 vector kernels through the LLVM C API).
#
# The runtime side (runtime/cpu.c: thread pool, work lists, merges) is
# always built: a kernel.so's CPU code runs without LLVM on the machine. The
# generator and the in-process JIT need LLVM.
libspatcore_la_SOURCES += runtime/cpu.c runtime/cpu.h runtime/cpu_abi.h runtime/pool.c runtime/pool.h \
	runtime/module_cpu.c

if HAVE_LLVM
libspatcore_la_SOURCES += \
	compiler/backend_llvm.c compiler/backend_llvm.h compiler/llvm_gen.h \
	compiler/llvm_target.c compiler/llvm_ir.c compiler/llvm_exp.c \
	compiler/llvm_tile.c compiler/llvm_comp.c compiler/llvm_bwd.c runtime/jit.c
endif

# The CPU backend against the reference backend (tests/test_cpu.c).
if HAVE_LLVM
if HAVE_CHECK
check_PROGRAMS += tests/test_cpu
TESTS += tests/test_cpu
tests_test_cpu_SOURCES = tests/test_cpu.c tests/rule_patterns.c tests/rule_patterns.h \
	$(TEST_UTIL)
tests_test_cpu_CFLAGS = $(TEST_CFLAGS)
tests_test_cpu_LDADD = $(TEST_LIBS)

# A corrupted kernel.so is refused, never trusted (its files hold CPU code).
check_PROGRAMS += tests/test_corrupt
TESTS += tests/test_corrupt
tests_test_corrupt_SOURCES = tests/test_corrupt.c
tests_test_corrupt_CFLAGS = $(TEST_CFLAGS)
tests_test_corrupt_LDADD = $(TEST_LIBS)
endif
endif

# The CPU benchmark: spat-bench against OpenBLAS sgemm and the dense kernel
# in the same process (OpenBLAS is linked into the benchmark alone), and
# bench/suite.sh, which runs DESIGN.md's suite into a markdown table.
if HAVE_LLVM
if HAVE_OPENBLAS
noinst_PROGRAMS += bench/spat-bench
bench_spat_bench_SOURCES = bench/spat-bench.c
bench_spat_bench_LDADD = libspat.la -lopenblas -lm
endif
endif
EXTRA_DIST += bench/suite.sh bench/flex_cpu.py bench/flex_masks.py
