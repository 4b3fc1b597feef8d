#include "arena.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

struct sp_arena_chunk {
    sp_arena_chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

enum { CHUNK_MIN = 16 * 1024 };

void sp_arena_init(sp_arena *a) { a->head = NULL; }

void sp_arena_free(sp_arena *a)
{
    for (sp_arena_chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    a->head = NULL;
}

void *sp_arena_alloc(sp_arena *a, size_t size)
{
    const size_t al = alignof(max_align_t);
    size = (size + al - 1) & ~(al - 1);
    if (size == 0)
        size = al;
    sp_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > CHUNK_MIN ? size : CHUNK_MIN;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

void *sp_arena_grow(sp_arena *a, void *old, size_t old_size, size_t new_size)
{
    void *p = sp_arena_alloc(a, new_size);
    if (p && old)
        memcpy(p, old, old_size < new_size ? old_size : new_size);
    return p;
}

char *sp_arena_strndup(sp_arena *a, const char *s, size_t n)
{
    char *p = sp_arena_alloc(a, n + 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *sp_arena_strdup(sp_arena *a, const char *s) { return sp_arena_strndup(a, s, strlen(s)); }
