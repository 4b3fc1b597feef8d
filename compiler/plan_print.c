/* The plan as text (`spatc --emit=ir`), and its hash. The text names every
 * value a kernel depends on, so two plans that print alike run alike: that
 * is what lets kernel.so carry a hash instead of a serialised plan. */
#include "plan.h"

#include <inttypes.h>
#include <stdlib.h>

const char *sp_comp_kind_name(sp_comp_kind k)
{
    switch (k) {
    case SP_C_ROWS: return "rows";
    case SP_C_COLS: return "cols";
    case SP_C_DENSE: return "dense";
    case SP_C_BAND: return "band";
    case SP_C_BLOCKBAND: return "blockband";
    case SP_C_SEGMENT: return "segment";
    case SP_C_RESIDUE: return "residue";
    case SP_C_OFFSETS: return "offsets";
    case SP_C_RANDOM: return "random";
    }
    return "?";
}

static void print_end(FILE *f, int64_t v, bool from_end)
{
    if (!from_end)
        fprintf(f, "%" PRId64, v);
    else if (v == 0)
        fprintf(f, "L");
    else
        fprintf(f, "L-%" PRId64, v);
}

static void print_set(FILE *f, const sp_set *s)
{
    fputc('{', f);
    for (int k = 0; k < s->n; k++) {
        const sp_setitem *it = &s->items[k];
        if (k)
            fputs(", ", f);
        print_end(f, it->lo, it->lo_end);
        if (it->lo != it->hi || it->lo_end != it->hi_end) {
            fputs("..", f);
            print_end(f, it->hi, it->hi_end);
        }
    }
    fputc('}', f);
}

/* "j in {0..15} + {j mod 128 in 112..127}" */
static void print_posset(FILE *f, char x, const sp_posset *s)
{
    fprintf(f, "%c in ", x);
    if (s->spans.n)
        print_set(f, &s->spans);
    for (int k = 0; k < s->nper; k++)
        fprintf(f, "%s{%c mod %" PRId64 " in %" PRId64 "..%" PRId64 "}", k || s->spans.n ? " + " : "",
                x, s->per[k].s, s->per[k].a, s->per[k].b);
}

static void print_comp(FILE *f, const sp_comp *c)
{
    fprintf(f, "%-9s ", sp_comp_kind_name(c->kind));
    switch (c->kind) {
    case SP_C_ROWS:
        print_posset(f, 'i', &c->u.rows);
        break;
    case SP_C_COLS:
        print_posset(f, 'j', &c->u.cols);
        break;
    case SP_C_DENSE:
        fputs("all pairs", f);
        break;
    case SP_C_BAND:
        fprintf(f, "%+" PRId64 " <= j-i <= %+" PRId64, c->u.band.lo, c->u.band.hi);
        if (c->u.band.dil > 1)
            fprintf(f, ", j-i = 0 mod %" PRId64, c->u.band.dil);
        break;
    case SP_C_BLOCKBAND:
        fprintf(f, "%+" PRId64 " <= j/B-i/B <= %+" PRId64, c->u.bband.lo, c->u.bband.hi);
        break;
    case SP_C_SEGMENT:
        fprintf(f, "i/%" PRId64 " = j/%" PRId64, c->u.segment, c->u.segment);
        break;
    case SP_C_RESIDUE:
        fprintf(f, "i-j = 0 mod %" PRId64, c->u.residue);
        break;
    case SP_C_OFFSETS:
        fputs("j-i in {", f);
        for (int k = 0; k < c->u.offsets.n; k++)
            fprintf(f, "%s%+" PRId64, k ? ", " : "", c->u.offsets.off[k]);
        fputc('}', f);
        break;
    case SP_C_RANDOM:
        fprintf(f, "%" PRId64 " blocks per query block, seed %" PRIu64, c->u.random.r,
                c->u.random.seed);
        break;
    }
    if (c->excl) {
        fputs("  (skips pairs of", f);
        for (int e = 0; e < SP_MAX_COMPS; e++)
            if (c->excl >> e & 1)
                fprintf(f, " #%d", e);
        fputc(')', f);
    }
    fputc('\n', f);
}

static void print_heads(FILE *f, const sp_plan *p, int cls)
{
    if (p->nheads == 0) {
        fputs("every head", f);
        return;
    }
    const char *sep = "heads ";
    for (int64_t h = 0; h < p->nheads; h++) {
        if (p->head_class[h] != cls || (h > 0 && p->head_class[h - 1] == cls))
            continue;
        int64_t e = h;
        while (e + 1 < p->nheads && p->head_class[e + 1] == cls)
            e++;
        fprintf(f, "%s%" PRId64, sep, h);
        if (e > h)
            fprintf(f, "..%" PRId64, e);
        sep = ", ";
    }
}

void sp_plan_print(const sp_plan *p, FILE *f)
{
    fprintf(f, "pattern %s%s: block %" PRId64 ", ", p->name, p->transposed_of ? " (transposed)" : "",
            p->block);
    if (p->nheads)
        fprintf(f, "%" PRId64 " heads\n", p->nheads);
    else
        fputs("any number of heads\n", f);
    for (int c = 0; c < p->nclasses; c++) {
        const sp_headplan *hp = &p->classes[c];
        fputs("  ", f);
        print_heads(f, p, c);
        fprintf(f, ":%s%s%s\n", hp->causal ? " causal" : "", hp->anticausal ? " anticausal" : "",
                hp->ncomps ? "" : " no pairs");
        for (int k = 0; k < hp->ncomps; k++) {
            fprintf(f, "    #%d ", k);
            print_comp(f, &hp->comps[k]);
        }
    }
}

uint64_t sp_plan_hash(const sp_plan *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return 0;
    sp_plan_print(p, f);
    fclose(f);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < len; k++)
        h = (h ^ (unsigned char)buf[k]) * 0x100000001b3ull;
    free(buf);
    return h;
}
