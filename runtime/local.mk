libspatcore_la_SOURCES += \
	runtime/internal.h \
	runtime/error.c runtime/kernel.c runtime/args.c runtime/forward.c runtime/backward.c \
	runtime/reference.c runtime/reference.h runtime/reference_bwd.c \
	runtime/module.c runtime/module.h runtime/device.c runtime/inspect.c \
	runtime/digest.c runtime/digest.h
