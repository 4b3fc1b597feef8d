# Unit tests (Check). Each links the whole library, internals included.
if HAVE_CHECK
TEST_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -I$(top_srcdir)/tests
TEST_LIBS = libspatcore.la $(CHECK_LIBS)
# testutil's check_untouched_outside reads tensors: the two go together.
TEST_UTIL = tests/testutil.c tests/testutil.h tests/tensor.c tests/tensor.h
TEST_COMMON = tests/brute.c tests/brute.h tests/rule_patterns.c tests/rule_patterns.h $(TEST_UTIL)

check_PROGRAMS += tests/test_parser tests/test_fuzz tests/test_plan tests/test_stats \
	tests/test_reference tests/test_backward tests/test_api tests/test_module tests/test_inspect
TESTS += tests/test_parser tests/test_fuzz tests/test_plan tests/test_stats \
	tests/test_reference tests/test_backward tests/test_api tests/test_module tests/test_inspect tests/test_spatc.sh

tests_test_parser_SOURCES = tests/test_parser.c
tests_test_parser_CFLAGS = $(TEST_CFLAGS)
tests_test_parser_LDADD = $(TEST_LIBS)

tests_test_fuzz_SOURCES = tests/test_fuzz.c
tests_test_fuzz_CFLAGS = $(TEST_CFLAGS)
tests_test_fuzz_LDADD = $(TEST_LIBS)

tests_test_plan_SOURCES = tests/test_plan.c $(TEST_COMMON)
tests_test_plan_CFLAGS = $(TEST_CFLAGS)
tests_test_plan_LDADD = $(TEST_LIBS)

tests_test_stats_SOURCES = tests/test_stats.c $(TEST_COMMON)
tests_test_stats_CFLAGS = $(TEST_CFLAGS)
tests_test_stats_LDADD = $(TEST_LIBS)

tests_test_reference_SOURCES = tests/test_reference.c $(TEST_COMMON)
tests_test_reference_CFLAGS = $(TEST_CFLAGS)
tests_test_reference_LDADD = $(TEST_LIBS)

tests_test_backward_SOURCES = tests/test_backward.c $(TEST_COMMON)
tests_test_backward_CFLAGS = $(TEST_CFLAGS)
tests_test_backward_LDADD = $(TEST_LIBS)

tests_test_api_SOURCES = tests/test_api.c
tests_test_api_CFLAGS = $(TEST_CFLAGS)
tests_test_api_LDADD = $(TEST_LIBS)

tests_test_module_SOURCES = tests/test_module.c
tests_test_module_CFLAGS = $(TEST_CFLAGS)
tests_test_module_LDADD = $(TEST_LIBS)

tests_test_inspect_SOURCES = tests/test_inspect.c $(TEST_COMMON)
tests_test_inspect_CFLAGS = $(TEST_CFLAGS)
tests_test_inspect_LDADD = $(TEST_LIBS)
endif

# Tests find patterns/ and the built spatc through these.
AM_TESTS_ENVIRONMENT = SPAT_SRCDIR=$(abs_top_srcdir) SPAT_BUILDDIR=$(abs_top_builddir) PYTHON=$(PYTHON); \
	export SPAT_SRCDIR SPAT_BUILDDIR PYTHON;
EXTRA_DIST += tests/test_spatc.sh
