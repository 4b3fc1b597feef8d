# The library and the unit tests again, built with -fsanitize=address,undefined
# (SAN_CFLAGS; configure leaves it out when the compiler cannot, or with
# --disable-sanitizers), run by tests/test_sanitize.sh in make check: the
# unit tests, the parser fuzz test and the kernel.so corruption test. Same
# sources as the plain build (every list above), objects of their own.
if HAVE_SANITIZERS
if HAVE_CHECK
check_LTLIBRARIES = libspatsan.la
libspatsan_la_SOURCES = $(libspatcore_la_SOURCES)
nodist_libspatsan_la_SOURCES = $(nodist_libspatcore_la_SOURCES)
libspatsan_la_CPPFLAGS = $(libspatcore_la_CPPFLAGS)
libspatsan_la_CFLAGS = $(AM_CFLAGS) $(SAN_CFLAGS)
libspatsan_la_LIBADD = $(libspatcore_la_LIBADD)

SAN_TEST_CFLAGS = $(TEST_CFLAGS) $(SAN_CFLAGS)
SAN_TEST_LIBS = libspatsan.la $(CHECK_LIBS)
SAN_TESTS = tests/san_parser tests/san_fuzz tests/san_plan tests/san_stats tests/san_reference \
	tests/san_backward tests/san_api tests/san_module

tests_san_parser_SOURCES = $(tests_test_parser_SOURCES)
tests_san_parser_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_parser_LDFLAGS = $(SAN_CFLAGS)
tests_san_parser_LDADD = $(SAN_TEST_LIBS)
tests_san_fuzz_SOURCES = $(tests_test_fuzz_SOURCES)
tests_san_fuzz_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_fuzz_LDFLAGS = $(SAN_CFLAGS)
tests_san_fuzz_LDADD = $(SAN_TEST_LIBS)
tests_san_plan_SOURCES = $(tests_test_plan_SOURCES)
tests_san_plan_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_plan_LDFLAGS = $(SAN_CFLAGS)
tests_san_plan_LDADD = $(SAN_TEST_LIBS)
tests_san_stats_SOURCES = $(tests_test_stats_SOURCES)
tests_san_stats_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_stats_LDFLAGS = $(SAN_CFLAGS)
tests_san_stats_LDADD = $(SAN_TEST_LIBS)
tests_san_reference_SOURCES = $(tests_test_reference_SOURCES)
tests_san_reference_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_reference_LDFLAGS = $(SAN_CFLAGS)
tests_san_reference_LDADD = $(SAN_TEST_LIBS)
tests_san_backward_SOURCES = $(tests_test_backward_SOURCES)
tests_san_backward_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_backward_LDFLAGS = $(SAN_CFLAGS)
tests_san_backward_LDADD = $(SAN_TEST_LIBS)
tests_san_api_SOURCES = $(tests_test_api_SOURCES)
tests_san_api_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_api_LDFLAGS = $(SAN_CFLAGS)
tests_san_api_LDADD = $(SAN_TEST_LIBS)
tests_san_module_SOURCES = $(tests_test_module_SOURCES)
tests_san_module_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_module_LDFLAGS = $(SAN_CFLAGS)
tests_san_module_LDADD = $(SAN_TEST_LIBS)

if HAVE_LLVM
SAN_TESTS += tests/san_cpu tests/san_corrupt
tests_san_cpu_SOURCES = $(tests_test_cpu_SOURCES)
tests_san_cpu_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_cpu_LDFLAGS = $(SAN_CFLAGS)
tests_san_cpu_LDADD = $(SAN_TEST_LIBS)
tests_san_corrupt_SOURCES = $(tests_test_corrupt_SOURCES)
tests_san_corrupt_CFLAGS = $(SAN_TEST_CFLAGS)
tests_san_corrupt_LDFLAGS = $(SAN_CFLAGS)
tests_san_corrupt_LDADD = $(SAN_TEST_LIBS)
endif

check_PROGRAMS += $(SAN_TESTS)
TESTS += tests/test_sanitize.sh
AM_TESTS_ENVIRONMENT += SPAT_SAN_TESTS='$(SAN_TESTS)'; export SPAT_SAN_TESTS;
CLEANFILES += $(SAN_TESTS:=.out)
endif
endif
EXTRA_DIST += tests/test_sanitize.sh tests/sanitize.mk
