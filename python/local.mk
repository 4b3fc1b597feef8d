# The Python package (pure Python over libspat through ctypes). `make` writes
# python/spat/_config.py with the directory `make install` puts libspat in,
# the package's second place to look (after $SPAT_LIBRARY); `pip install
# ./python` after `make install` installs it. `make check` runs its pytest
# suite (tests/test_python.sh) against the libspat just built.
noinst_DATA = python/spat/_config.py
python/spat/_config.py: $(srcdir)/python/spat/_config.py.in Makefile
	$(AM_V_GEN)$(MKDIR_P) python/spat && \
	sed -e 's|@libdir[@]|$(libdir)|g' -e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g' \
		$(srcdir)/python/spat/_config.py.in > $@.tmp && mv $@.tmp $@
CLEANFILES += python/spat/_config.py

TESTS += tests/test_python.sh
EXTRA_DIST += tests/test_python.sh python/pyproject.toml python/README.md python/spat/_config.py.in \
	python/spat/__init__.py python/spat/_lib.py python/spat/_pattern.py python/spat/_attention.py \
	python/spat/nn.py python/spat/py.typed python/tests/conftest.py python/tests/reference.py \
	python/tests/test_spat.py python/tests/test_cuda.py examples/lm.py
