libspatcore_la_SOURCES += \
	compiler/arena.c compiler/arena.h \
	compiler/diag.c compiler/diag.h \
	compiler/ast.h compiler/ir.h \
	compiler/sema.c compiler/frontend.c compiler/frontend.h \
	compiler/plan.c compiler/plan.h compiler/plan_print.c compiler/comp.c compiler/comp.h \
	compiler/view.c compiler/rng.c compiler/rng.h \
	compiler/stats.c compiler/stats.h compiler/reach.c \
	compiler/mask.c compiler/mask.h

bin_PROGRAMS += spatc
spatc_SOURCES = compiler/spatc.c
spatc_LDADD = libspatcore.la
