/* spatc: the command-line compiler. Reads a .spat file, reports every error
 * (exit 1), and writes what --emit asks for: kernel.so (default), the plan,
 * stats as JSON, or a mask picture. Every output goes to a temporary file
 * that is renamed into place only when complete, so a failed run leaves an
 * existing output untouched. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_cuda.h"
#include "backend_llvm.h"
#include "frontend.h"
#include "mask.h"
#include "module.h"
#include "plan.h"
#include "stats.h"

typedef enum emit { EMIT_SO, EMIT_IR, EMIT_STATS, EMIT_MASK, EMIT_CUDA, EMIT_LLVM, EMIT_ASM } emit;

typedef struct opts {
    const char *input, *output, *pattern;
    const char *cuda_arch; /* --cuda-arch: architectures to precompile kernel.so's CUDA code for */
    const char *cpu, *features; /* -mcpu, --target-features: the CPU code's target (NULL: host) */
    bool no_opt;                /* --no-opt: --emit=llvm before LLVM's optimiser */
    emit emit;
    int64_t seq_len, heads, head;
    int head_dims[32], nhead_dims;
    int size;
    bool layers;
} opts;

static void usage(FILE *f)
{
    fputs("usage: spatc FILE.spat [-o OUT] [--emit=so|ir|stats|mask|cuda] [options]\n"
          "\n"
          "  -o OUT              output file (default: FILE.so; for masks NAME.png)\n"
          "  --emit=so           a kernel.so for libspat's spat_load (the default)\n"
          "  --emit=ir           the kernel plan, readable\n"
          "  --emit=stats        pairs, densities, FLOPs, layers to connect, as JSON\n"
          "  --emit=mask         a picture of one head's pairs (.png, or .svg by -o's name)\n"
          "  --emit=cuda         the CUDA C source of one pattern's GPU kernels\n"
          "  --emit=llvm         the LLVM IR of the CPU kernels (optimised; --no-opt: as built)\n"
          "  --emit=asm          the x86 assembly of the CPU kernels\n"
          "  -mcpu=CPU           CPU to generate code for (LLVM names; default: this host)\n"
          "  --target-features=F LLVM features, e.g. -avx512f or +avx2,+fma (with no -mcpu\n"
          "                      they modify the host's)\n"
          "  --cuda-arch A[,A..] also put NVRTC-compiled code for these GPUs in kernel.so:\n"
          "                      sm_XY[a] (CUBIN) or compute_XY[a] (PTX), e.g. sm_80,sm_90a\n"
          "  --pattern NAME      only this pattern (default: all of the file)\n"
          "  --seq-len N         length for stats and masks (default 4096; masks 512)\n"
          "  --heads H           heads for stats (default: the pattern's, else 1)\n"
          "  --head H            the head a mask shows (default 0)\n"
          "  --head-dim D[,D..]  head dimensions to build (default 64,128; stats: first)\n"
          "  --size PX           mask picture size (default min(N, 1024))\n"
          "  --no-layers         skip layers_to_connect in stats\n"
          "  -h, --help          this text;   --version  the version\n",
          f);
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    enum { O_EMIT = 256, O_PATTERN, O_SEQ, O_HEADS, O_HEAD, O_HD, O_SIZE, O_NOLAYERS, O_VERSION,
           O_CUDA_ARCH, O_MCPU, O_FEATURES, O_NOOPT };
    static const struct option lopts[] = {
        {"emit", required_argument, 0, O_EMIT},        {"pattern", required_argument, 0, O_PATTERN},
        {"seq-len", required_argument, 0, O_SEQ},      {"heads", required_argument, 0, O_HEADS},
        {"head", required_argument, 0, O_HEAD},        {"head-dim", required_argument, 0, O_HD},
        {"size", required_argument, 0, O_SIZE},        {"no-layers", no_argument, 0, O_NOLAYERS},
        {"help", no_argument, 0, 'h'},                 {"version", no_argument, 0, O_VERSION},
        {"cuda-arch", required_argument, 0, O_CUDA_ARCH}, {"mcpu", required_argument, 0, O_MCPU},
        {"target-features", required_argument, 0, O_FEATURES}, {"no-opt", no_argument, 0, O_NOOPT},
        {0, 0, 0, 0}};
    /* -mcpu=X, the compilers' spelling (getopt_long would read it as -m -c
     * -p -u), is taken out of argv here; --mcpu=X works too. */
    const char *mcpu = NULL;
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "-mcpu=", 6)) {
            mcpu = argv[i] + 6;
            memmove(argv + i, argv + i + 1, sizeof *argv * (size_t)(argc - i));
            argc--, i--;
        }
    *o = (opts){.emit = EMIT_SO, .seq_len = -1, .heads = -1, .layers = true, .head_dims = {64, 128},
                .nhead_dims = 2, .cpu = mcpu};
    int c;
    int64_t v;
    while ((c = getopt_long(argc, argv, "o:h", lopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            o->output = optarg;
            break;
        case O_EMIT:
            if (!strcmp(optarg, "so"))
                o->emit = EMIT_SO;
            else if (!strcmp(optarg, "ir"))
                o->emit = EMIT_IR;
            else if (!strcmp(optarg, "stats"))
                o->emit = EMIT_STATS;
            else if (!strcmp(optarg, "mask"))
                o->emit = EMIT_MASK;
            else if (!strcmp(optarg, "cuda"))
                o->emit = EMIT_CUDA;
            else if (!strcmp(optarg, "llvm"))
                o->emit = EMIT_LLVM;
            else if (!strcmp(optarg, "asm"))
                o->emit = EMIT_ASM;
            else {
                fprintf(stderr, "spatc: unknown --emit kind '%s' (so, ir, stats, mask, cuda, llvm, asm)\n", optarg);
                return -1;
            }
            break;
        case O_PATTERN:
            o->pattern = optarg;
            break;
        case O_SEQ:
            if (parse_i64(optarg, 1, (int64_t)1 << 31, &o->seq_len))
                goto bad;
            break;
        case O_HEADS:
            if (parse_i64(optarg, 1, 65536, &o->heads))
                goto bad;
            break;
        case O_HEAD:
            if (parse_i64(optarg, 0, 65535, &o->head))
                goto bad;
            break;
        case O_SIZE:
            if (parse_i64(optarg, 1, 8192, &v))
                goto bad;
            o->size = (int)v;
            break;
        case O_HD: {
            o->nhead_dims = 0;
            char *s = optarg, *tok, *save = NULL;
            while ((tok = strtok_r(s, ",", &save))) {
                s = NULL;
                if (o->nhead_dims == 32 || parse_i64(tok, 8, 256, &v) || v % 8) {
                    fprintf(stderr, "spatc: --head-dim: '%s' is not a multiple of 8 in 8..256\n", tok);
                    return -1;
                }
                o->head_dims[o->nhead_dims++] = (int)v;
            }
            if (!o->nhead_dims)
                goto bad;
            break;
        }
        case O_NOLAYERS:
            o->layers = false;
            break;
        case O_CUDA_ARCH:
            o->cuda_arch = optarg;
            break;
        case O_MCPU:
            o->cpu = optarg;
            break;
        case O_FEATURES:
            o->features = optarg;
            break;
        case O_NOOPT:
            o->no_opt = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case O_VERSION:
            printf("spatc %s\n", PACKAGE_VERSION);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        continue;
    bad:
        fprintf(stderr, "spatc: bad value '%s' for --%s\n", optarg, lopts[c - O_EMIT].name);
        return -1;
    }
    if (optind != argc - 1) {
        fprintf(stderr, optind >= argc ? "spatc: no input file\n" : "spatc: one input file, please\n");
        usage(stderr);
        return -1;
    }
    o->input = argv[optind];
    if (o->cuda_arch && o->emit != EMIT_SO) {
        fputs("spatc: --cuda-arch adds code to kernel.so; it needs --emit=so\n", stderr);
        return -1;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            char *g = realloc(buf, 2 * cap + 1);
            if (!g)
                free(buf);
            buf = g;
            cap *= 2;
        }
    }
    int err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    if (buf)
        buf[n] = 0;
    *len = n;
    return buf;
}

/* ---- outputs: temporary file, then rename ------------------------------ */

typedef struct out {
    const char *path; /* NULL: stdout */
    char *tmp;
    FILE *f;
} out;

static int out_open(out *o, const char *path)
{
    *o = (out){.path = path};
    if (!path) {
        o->f = stdout;
        return 0;
    }
    size_t n = strlen(path) + 16;
    o->tmp = malloc(n);
    if (!o->tmp)
        return -1;
    snprintf(o->tmp, n, "%s.tmpXXXXXX", path);
    /* mkstemp makes the file 0600; a compiler's outputs are 0666 & ~umask.
     * (Reading the umask sets it: spatc runs one thread.) */
    mode_t mask = umask(0);
    umask(mask);
    int fd = mkstemp(o->tmp);
    if (fd >= 0 && fchmod(fd, 0666 & ~mask) != 0) {
        close(fd);
        unlink(o->tmp);
        fd = -1;
    }
    if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
        fprintf(stderr, "spatc: cannot write %s: %s\n", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(o->tmp);
        }
        free(o->tmp);
        return -1;
    }
    return 0;
}

/* Commits the output when ok, else discards it. */
static int out_close(out *o, bool ok)
{
    if (!o->path) {
        fflush(stdout);
        return ok && !ferror(stdout) ? 0 : -1;
    }
    int rc = ferror(o->f) | fclose(o->f);
    if (ok && rc)
        fprintf(stderr, "spatc: cannot write %s: %s\n", o->path, strerror(errno));
    if (ok && !rc && rename(o->tmp, o->path)) {
        fprintf(stderr, "spatc: cannot write %s: %s\n", o->path, strerror(errno));
        rc = -1;
    }
    if (!ok || rc)
        unlink(o->tmp);
    free(o->tmp);
    return ok && !rc ? 0 : -1;
}

/* ---- the emitters ------------------------------------------------------- */

typedef struct job {
    const opts *o;
    sp_arena *a;
    sp_diag *d;
    const sp_program *prog;
    const char *src;
    size_t len;
} job;

static bool selected(const job *j, const sp_pattern *p)
{
    return !j->o->pattern || !strcmp(j->o->pattern, p->name);
}

static int build_plan(const job *j, const sp_pattern *p, sp_plan **plan)
{
    if (sp_plan_build(p, j->a, j->d, plan)) {
        fputs(sp_diag_text(j->d), stderr);
        return -1;
    }
    return 0;
}

static int emit_ir(const job *j)
{
    out o;
    if (out_open(&o, j->o->output))
        return -1;
    bool ok = true;
    for (int k = 0; k < j->prog->npatterns && ok; k++) {
        sp_plan *plan;
        if (!selected(j, &j->prog->patterns[k]))
            continue;
        ok = !build_plan(j, &j->prog->patterns[k], &plan);
        if (ok)
            sp_plan_print(plan, o.f);
    }
    return out_close(&o, ok);
}

static int64_t stats_heads(const job *j, const sp_pattern *p)
{
    return j->o->heads > 0 ? j->o->heads : p->nheads > 0 ? p->nheads : 1;
}

static int emit_stats(const job *j)
{
    /* Refuse a head count before printing anything. */
    for (int k = 0; k < j->prog->npatterns; k++) {
        const sp_pattern *p = &j->prog->patterns[k];
        if (selected(j, p) && p->nheads > 0 && stats_heads(j, p) != p->nheads) {
            fprintf(stderr, "spatc: pattern '%s' describes %" PRId64 " heads; --heads %" PRId64 " does not match\n",
                    p->name, p->nheads, stats_heads(j, p));
            return -1;
        }
    }
    out o;
    if (out_open(&o, j->o->output))
        return -1;
    bool ok = true, first = true;
    int64_t n = j->o->seq_len > 0 ? j->o->seq_len : 4096;
    fprintf(o.f, "{\"file\": \"%s\", \"patterns\": [", j->o->input);
    for (int k = 0; k < j->prog->npatterns && ok; k++) {
        const sp_pattern *p = &j->prog->patterns[k];
        sp_plan *plan;
        sp_stats st;
        if (!selected(j, p))
            continue;
        if (build_plan(j, p, &plan)) {
            ok = false;
            break;
        }
        if (sp_stats_compute(plan, n, stats_heads(j, p), j->o->head_dims[0], j->o->layers, &st)) {
            fputs("spatc: out of memory\n", stderr);
            ok = false;
            break;
        }
        fputs(first ? "\n  " : ",\n  ", o.f);
        sp_stats_json(&st, p->name, o.f);
        sp_stats_free(&st);
        first = false;
    }
    fputs("\n]}\n", o.f);
    return out_close(&o, ok);
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static int emit_mask(const job *j)
{
    int count = 0;
    for (int k = 0; k < j->prog->npatterns; k++)
        count += selected(j, &j->prog->patterns[k]);
    if (j->o->output && count > 1) {
        fputs("spatc: --emit=mask with -o draws one pattern: name it with --pattern\n", stderr);
        return -1;
    }
    int64_t n = j->o->seq_len > 0 ? j->o->seq_len : 512;
    int size = j->o->size > 0 ? j->o->size : (int)(n < 1024 ? n : 1024);
    if (size > n)
        size = (int)n;
    for (int k = 0; k < j->prog->npatterns; k++) {
        const sp_pattern *p = &j->prog->patterns[k];
        sp_plan *plan;
        if (!selected(j, p))
            continue;
        if (p->nheads > 0 && j->o->head >= p->nheads) {
            fprintf(stderr, "spatc: pattern '%s' has heads 0..%" PRId64 "; no head %" PRId64 "\n", p->name,
                    p->nheads - 1, j->o->head);
            return -1;
        }
        char def[300];
        snprintf(def, sizeof def, "%s.png", p->name);
        const char *path = j->o->output ? j->o->output : def;
        out o;
        if (build_plan(j, p, &plan) || out_open(&o, path))
            return -1;
        int64_t head = j->o->head > 0 ? j->o->head : 0;
        int rc = ends_with(path, ".svg") ? sp_mask_svg(plan, head, n, size, o.f) : sp_mask_png(plan, head, n, size, o.f);
        if (out_close(&o, rc == 0))
            return -1;
        fprintf(stderr, "spatc: wrote %s (%s, head %" PRId64 ", n = %" PRId64 ", %dx%d)\n", path, p->name, head, n,
                size, size);
    }
    return 0;
}

static int emit_cuda(const job *j)
{
    int count = 0;
    for (int k = 0; k < j->prog->npatterns; k++)
        count += selected(j, &j->prog->patterns[k]);
    if (count > 1) {
        fputs("spatc: --emit=cuda writes the source of one pattern: name it with --pattern\n", stderr);
        return -1;
    }
    for (int k = 0; k < j->prog->npatterns; k++) {
        sp_plan *plan;
        if (!selected(j, &j->prog->patterns[k]))
            continue;
        if (build_plan(j, &j->prog->patterns[k], &plan))
            return -1;
        char msg[512];
        if (!sp_cuda_supported(plan, msg, sizeof msg)) {
            fprintf(stderr, "spatc: %s\n", msg);
            return -1;
        }
        out o;
        if (out_open(&o, j->o->output))
            return -1;
        int rc = sp_cuda_emit(plan, o.f, msg, sizeof msg);
        if (rc)
            fprintf(stderr, "spatc: %s\n", msg);
        return out_close(&o, rc == 0);
    }
    return 0;
}

/* --emit=llvm | asm: the CPU code of the selected patterns, as kernel.so
 * would hold it (one module; pattern i's functions are spat_cpu_p<i>_...). */
static int emit_llvm(const job *j, bool asm_text)
{
#ifdef SPAT_HAVE_LLVM
    const sp_plan *plans[1024];
    int n = 0;
    for (int k = 0; k < j->prog->npatterns && n < 1024; k++) {
        sp_plan *plan;
        if (!selected(j, &j->prog->patterns[k]))
            continue;
        if (build_plan(j, &j->prog->patterns[k], &plan))
            return -1;
        plans[n++] = plan;
    }
    char err[4096];
    sp_llvm_target t;
    if (sp_llvm_target_resolve(j->o->cpu, j->o->features, &t, err, sizeof err)) {
        fprintf(stderr, "spatc: %s\n", err);
        return -1;
    }
    int kind = asm_text ? SP_LLVM_ASM : j->o->no_opt ? SP_LLVM_IR_RAW : SP_LLVM_IR;
    char *data = NULL;
    size_t len = 0;
    int rc = sp_llvm_compile(plans, n, j->o->head_dims, j->o->nhead_dims, &t, kind, &data, &len,
                             NULL, err, sizeof err);
    sp_llvm_target_free(&t);
    if (rc) {
        fprintf(stderr, "spatc: %s\n", err);
        return -1;
    }
    out o;
    if (out_open(&o, j->o->output)) {
        free(data);
        return -1;
    }
    bool ok = fwrite(data, 1, len, o.f) == len;
    free(data);
    return out_close(&o, ok);
#else
    (void)asm_text;
    fprintf(stderr, "spatc: this spatc was built without LLVM: no --emit=%s\n", j->o->emit == EMIT_ASM ? "asm" : "llvm");
    return -1;
#endif
}

static int emit_so(const job *j)
{
    const char *names[1024];
    int nnames = 0;
    for (int k = 0; k < j->prog->npatterns && nnames < 1024; k++) {
        sp_plan *plan;
        if (!selected(j, &j->prog->patterns[k]))
            continue;
        /* Plan every pattern now, so a plan error fails before any output. */
        if (build_plan(j, &j->prog->patterns[k], &plan))
            return -1;
        names[nnames++] = j->prog->patterns[k].name;
    }
    char def[4096];
    const char *path = j->o->output;
    if (!path) {
        const char *base = strrchr(j->o->input, '/');
        base = base ? base + 1 : j->o->input;
        size_t n = strlen(base);
        if (ends_with(base, ".spat"))
            n -= 5;
        snprintf(def, sizeof def, "%.*s.so", (int)n, base);
        path = def;
    }
    char err[4096];
    sp_module_opts mo = {.cuda_archs = j->o->cuda_arch, .cpu = j->o->cpu, .cpu_features = j->o->features};
    if (sp_module_write_opts(path, j->src, j->len, j->o->input, j->prog, names, nnames,
                             j->o->head_dims, j->o->nhead_dims, &mo, err, sizeof err)) {
        fprintf(stderr, "spatc: %s\n", err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o))
        return 2;
    size_t len = 0;
    char *src = read_file(o.input, &len);
    if (!src) {
        fprintf(stderr, "spatc: cannot read %s: %s\n", o.input, strerror(errno));
        return 1;
    }
    sp_arena a;
    sp_arena_init(&a);
    sp_diag d;
    sp_diag_init(&d, strcmp(o.input, "-") ? o.input : "<stdin>", src, len);
    sp_program *prog = NULL;
    int rc = 1;
    if (sp_frontend(src, len, &a, &d, &prog)) {
        fputs(sp_diag_text(&d), stderr);
        fprintf(stderr, "%d error%s\n", d.nerrors, d.nerrors == 1 ? "" : "s");
        goto done;
    }
    if (prog->npatterns == 0) {
        fprintf(stderr, "spatc: %s holds no pattern\n", o.input);
        goto done;
    }
    if (o.pattern && !sp_program_find(prog, o.pattern)) {
        fprintf(stderr, "spatc: %s has no pattern '%s'; it has:", o.input, o.pattern);
        for (int k = 0; k < prog->npatterns; k++)
            fprintf(stderr, " %s", prog->patterns[k].name);
        fputc('\n', stderr);
        goto done;
    }
    job j = {&o, &a, &d, prog, src, len};
    switch (o.emit) {
    case EMIT_SO: rc = emit_so(&j); break;
    case EMIT_IR: rc = emit_ir(&j); break;
    case EMIT_STATS: rc = emit_stats(&j); break;
    case EMIT_MASK: rc = emit_mask(&j); break;
    case EMIT_CUDA: rc = emit_cuda(&j); break;
    case EMIT_LLVM: rc = emit_llvm(&j, false); break;
    case EMIT_ASM: rc = emit_llvm(&j, true); break;
    }
    rc = rc ? 1 : 0;
done:
    sp_diag_free(&d);
    sp_arena_free(&a);
    free(src);
    return rc;
}
