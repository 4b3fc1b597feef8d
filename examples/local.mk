# Examples of the public API (built by `make`, linked against libspat alone).
noinst_PROGRAMS += examples/jit examples/spat-run examples/train
examples_jit_SOURCES = examples/jit.c
examples_jit_LDADD = libspat.la -lm
examples_spat_run_SOURCES = examples/run.c
examples_spat_run_LDADD = libspat.la -lm
examples_train_SOURCES = examples/train.c
examples_train_LDADD = libspat.la -lm
