libspatcore_la_SOURCES += \
	runtime/internal.h \
	runtime/error.c runtime/kernel.c runtime/forward.c \
	runtime/reference.c runtime/module.c runtime/module.h runtime/device.c
