/* The front end: .spat text -> (grammar/ scanner and parser) AST ->
 * (compiler/sema.c) pattern IR. Reentrant: all state lives in the arena and
 * the diagnostics, so two threads may compile at once. */
#ifndef SPAT_FRONTEND_H
#define SPAT_FRONTEND_H

#include <stddef.h>

#include "arena.h"
#include "ast.h"
#include "diag.h"
#include "ir.h"

/* Parses text into an AST. Syntax errors are reported to d with recovery,
 * so every error of the file is listed. Returns 0, or -1 when d has errors
 * (a partial AST may still be stored in *out). */
int sp_parse(const char *src, size_t len, sp_arena *a, sp_diag *d, sp_ast_file **out);

/* Checks an AST and lowers it to pattern IR (units to tokens, head groups,
 * defaults). Reports every semantic error to d. Returns 0 or -1. */
int sp_sema(const sp_ast_file *ast, sp_arena *a, sp_diag *d, sp_program **out);

/* Both: text -> IR. Returns 0 or -1 (errors in d). */
int sp_frontend(const char *src, size_t len, sp_arena *a, sp_diag *d, sp_program **out);

/* The pattern called name, or NULL. */
const sp_pattern *sp_program_find(const sp_program *p, const char *name);

#endif
