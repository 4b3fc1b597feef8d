# The reentrant scanner and the pure parser. Both generated files ship in
# the dist tarball, so building one needs neither flex nor bison.
AM_YFLAGS = -d -Wall -Wno-yacc
AM_LFLAGS =
libspatcore_la_SOURCES += grammar/parser.y grammar/lexer.l
BUILT_SOURCES += grammar/parser.h
