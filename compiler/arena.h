/* Arena allocation for the compiler: every AST, IR and plan node of one
 * compilation lives in one arena and dies with it, so no pass frees anything
 * and an error half-way through a pass leaks nothing. */
#ifndef SPAT_ARENA_H
#define SPAT_ARENA_H

#include <stddef.h>

typedef struct sp_arena_chunk sp_arena_chunk;
typedef struct sp_arena {
    sp_arena_chunk *head;
} sp_arena;

void sp_arena_init(sp_arena *a);
void sp_arena_free(sp_arena *a);
/* Zeroed, aligned for any type; NULL only when malloc fails. */
void *sp_arena_alloc(sp_arena *a, size_t size);
/* Grows an array that lives in the arena (the old copy is abandoned). */
void *sp_arena_grow(sp_arena *a, void *old, size_t old_size, size_t new_size);
char *sp_arena_strndup(sp_arena *a, const char *s, size_t n);
char *sp_arena_strdup(sp_arena *a, const char *s);

#define SP_NEW(a, T) ((T *)sp_arena_alloc((a), sizeof(T)))
#define SP_NEWN(a, T, n) ((T *)sp_arena_alloc((a), sizeof(T) * (size_t)(n)))

#endif
