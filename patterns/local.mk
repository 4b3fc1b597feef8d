# The suite of DESIGN.md §5 and examples; installed for users to start from.
patternsdir = $(pkgdatadir)/patterns
dist_patterns_DATA = patterns/dense.spat patterns/causal.spat patterns/window256.spat \
	patterns/causal_window1024.spat patterns/longformer.spat patterns/bigbird.spat \
	patterns/dilated4.spat patterns/strided128.spat patterns/fixed128.spat \
	patterns/longformer_dilated.spat patterns/longnet.spat patterns/logsparse.spat
