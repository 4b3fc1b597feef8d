/* The front end's entry points: text -> AST (grammar/) -> IR (sema.c). */
#include "frontend.h"

#include <string.h>

int sp_parse(const char *src, size_t len, sp_arena *a, sp_diag *d, sp_ast_file **out)
{
    return sp_grammar_parse(src, len, a, d, out);
}

/* Sema runs even after syntax errors, on what the parser recovered, so that
 * one run reports the semantic errors too; the program is kept only when
 * the whole file is clean. */
int sp_frontend(const char *src, size_t len, sp_arena *a, sp_diag *d, sp_program **out)
{
    sp_ast_file *ast = NULL;
    sp_program *prog = NULL;
    *out = NULL;
    int rc = sp_parse(src, len, a, d, &ast);
    if (!ast)
        return -1;
    if (sp_sema(ast, a, d, &prog) != 0 || rc != 0)
        return -1;
    *out = prog;
    return 0;
}

const sp_pattern *sp_program_find(const sp_program *p, const char *name)
{
    if (!p || !name)
        return NULL;
    for (int i = 0; i < p->npatterns; i++)
        if (p->patterns[i].name && strcmp(p->patterns[i].name, name) == 0)
            return &p->patterns[i];
    return NULL;
}
