/* kernel.so: written by sp_module_write, read by spat_load. A loaded kernel
 * computes the same bytes as one compiled from the same source; foreign,
 * truncated, corrupt and other-version files are refused with a message;
 * a failed write leaves an existing file as it was and no temporary files
 * behind. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpu_abi.h"
#include "frontend.h"
#include "internal.h"
#include "module.h"
#include "spat.h"

static char dir[256];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/spat-test-module-XXXXXX");
    ck_assert(mkdtemp(dir));
}

static void remove_tree(const char *d)
{
    DIR *h = opendir(d);
    if (!h)
        return;
    for (struct dirent *e; (e = readdir(h));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(h);
    rmdir(d);
}

static void setup(void) { make_dir(); }
static void teardown(void) { remove_tree(dir); }

static char *path_in(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* The names in dir, sorted into one string: "a b c". */
static void listing(char *out, size_t cap)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    ck_assert(n >= 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, "..")) {
            strncat(out, out[0] ? " " : "", cap - strlen(out) - 1);
            strncat(out, ents[i]->d_name, cap - strlen(out) - 1);
        }
        free(ents[i]);
    }
    free(ents);
}

static void write_file(const char *p, const void *data, size_t n)
{
    FILE *f = fopen(p, "wb");
    ck_assert(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
}

static char *read_all(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", p);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc(*n + 1);
    ck_assert(s && fread(s, 1, *n, f) == *n);
    s[*n] = '\0';
    fclose(f);
    return s;
}

/* Appends the digest trailer spatc writes (module.h) to the file at p. */
static void seal_file(const char *p)
{
    size_t n;
    char *bytes = read_all(p, &n);
    unsigned char t[SP_MODULE_TRAILER_BYTES];
    sp_module_trailer(bytes, n, t);
    FILE *f = fopen(p, "ab");
    ck_assert(f && fwrite(t, 1, sizeof t, f) == sizeof t && fclose(f) == 0);
    free(bytes);
}

/* ---------------------------------------------------------- the writer */

typedef struct prog {
    sp_arena a;
    sp_diag d;
    sp_program *p;
    const char *src;
} prog;

static void parse(prog *g, const char *src)
{
    g->src = src;
    sp_arena_init(&g->a);
    sp_diag_init(&g->d, "test.spat", src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &g->a, &g->d, &g->p) == 0, "%s", sp_diag_text(&g->d));
}

static void unparse(prog *g)
{
    sp_diag_free(&g->d);
    sp_arena_free(&g->a);
}

static int write_module(const char *path, const char *src, const char *const *names, int n,
                        const int *dims, int ndims, char *err, size_t errlen)
{
    prog g;
    parse(&g, src);
    int rc = sp_module_write(path, src, strlen(src), "test.spat", g.p, names, n, dims, ndims, err,
                             errlen);
    unparse(&g);
    return rc;
}

static const char *const two_src =
    "# two patterns, one with head groups\n"
    "pattern local { block 8; window 5; global 0; random 1 blocks seed 3; }\n"
    "pattern grouped { causal; heads 0..1 { window -4..+0; } heads 2..3 { stride 3; } }\n";

/* ---------------------------------------------------------- forward runs */

typedef struct out {
    float *o, *lse;
} out;

/* A forward pass on fixed pseudo-random inputs. */
static out run(const spat_kernel *k, int64_t heads, int64_t n, int64_t d)
{
    spat_forward_args a;
    spat_forward_args_init(&a, 2, heads, heads / 2, n, n, d);
    size_t nq = (size_t)(2 * heads * n * d), nk = nq / 2, nl = (size_t)(2 * heads * n);
    float *q = malloc(nq * 4), *kk = malloc(nk * 4), *v = malloc(nk * 4);
    out r = {malloc(nq * 4), malloc(nl * 4)};
    ck_assert(q && kk && v && r.o && r.lse);
    uint32_t x = 12345;
    for (size_t i = 0; i < nq; i++) {
        x = x * 1664525u + 1013904223u;
        q[i] = (float)(x >> 8) / (float)(1u << 24) - 0.5f;
        if (i < nk) {
            kk[i] = q[i] * 0.5f + 0.1f;
            v[i] = (float)(i % 7) - 3.0f;
        }
    }
    a.q = q, a.k = kk, a.v = v, a.o = r.o, a.lse = r.lse;
    int rc = spat_forward(k, &a);
    ck_assert_msg(rc == SPAT_OK, "forward: %s", spat_last_error());
    free(q);
    free(kk);
    free(v);
    return r;
}

static void same_output(const spat_kernel *a, const spat_kernel *b, int64_t heads, int64_t d)
{
    out x = run(a, heads, 77, d), y = run(b, heads, 77, d);
    ck_assert(!memcmp(x.o, y.o, (size_t)(2 * heads * 77 * d) * 4));
    ck_assert(!memcmp(x.lse, y.lse, (size_t)(2 * heads * 77) * 4));
    free(x.o);
    free(x.lse);
    free(y.o);
    free(y.lse);
}

START_TEST(write_then_load)
{
    const int dims[] = {16, 64};
    char err[4096] = "unset";
    const char *p = path_in("kernel.so");
    int rc = write_module(p, two_src, NULL, 0, dims, 2, err, sizeof err);
    ck_assert_msg(rc == SPAT_OK, "write: %s", err);
    ck_assert_str_eq(err, "");
    char ls[1024];
    listing(ls, sizeof ls);
    ck_assert_str_eq(ls, "kernel.so"); /* nothing temporary left */
    struct { const char *name; int64_t heads; } pats[] = {{"local", 4}, {"grouped", 4}};
    for (int i = 0; i < 2; i++) {
        spat_kernel *loaded, *compiled;
        rc = spat_load(p, pats[i].name, &loaded);
        ck_assert_msg(rc == SPAT_OK, "load %s: %s", pats[i].name, spat_last_error());
        spat_compile_options o = {.head_dims = dims, .n_head_dims = 2};
        ck_assert_int_eq(spat_compile(two_src, pats[i].name, &o, &compiled), SPAT_OK);
        ck_assert_str_eq(spat_kernel_name(loaded), pats[i].name);
        ck_assert_int_eq(spat_kernel_heads(loaded), spat_kernel_heads(compiled));
        const int *hd;
        ck_assert_int_eq(spat_kernel_head_dims(loaded, &hd), 2);
        ck_assert(hd[0] == 16 && hd[1] == 64);
        same_output(loaded, compiled, pats[i].heads, 16);
        same_output(loaded, compiled, pats[i].heads, 64);
        /* The loaded kernel was built for 16 and 64 only. */
        spat_forward_args a;
        spat_forward_args_init(&a, 1, pats[i].heads, 1, 4, 4, 128);
        float buf[4096];
        a.q = a.k = a.v = buf;
        a.o = buf + 2048;
        ck_assert_int_eq(spat_forward(loaded, &a), SPAT_EHEADDIM);
        spat_kernel_free(loaded);
        spat_kernel_free(compiled);
    }
    spat_kernel *k = (spat_kernel *)&k;
    ck_assert_int_eq(spat_load(p, NULL, &k), SPAT_ENOPATTERN);
    ck_assert_ptr_null(k);
    ck_assert(strstr(spat_last_error(), "local, grouped"));
    ck_assert_int_eq(spat_load(p, "nope", &k), SPAT_ENOPATTERN);
    ck_assert(strstr(spat_last_error(), "no pattern 'nope'"));
    /* Two kernels from one file at once, freed in either order. */
    spat_kernel *k1, *k2;
    ck_assert_int_eq(spat_load(p, "local", &k1), SPAT_OK);
    ck_assert_int_eq(spat_load(p, "grouped", &k2), SPAT_OK);
    spat_kernel_free(k1);
    same_output(k2, k2, 4, 16);
    spat_kernel_free(k2);
}
END_TEST

/* A subset of the patterns, default head dims, a path without a slash. */
START_TEST(subset_and_relative_path)
{
    const char *names[] = {"grouped"};
    ck_assert_int_eq(write_module(path_in("one.so"), two_src, names, 1, NULL, 0, NULL, 0), SPAT_OK);
    char cwd[1024];
    ck_assert(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(dir), 0);
    spat_kernel *k;
    int rc = spat_load("one.so", NULL, &k); /* the only pattern; not searched on the library path */
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_msg(rc == SPAT_OK, "%s", spat_last_error());
    ck_assert_str_eq(spat_kernel_name(k), "grouped");
    const int *hd;
    ck_assert_int_eq(spat_kernel_head_dims(k, &hd), 2);
    ck_assert(hd[0] == 64 && hd[1] == 128);
    spat_kernel_free(k);
    ck_assert_int_eq(spat_load(path_in("one.so"), "local", &k), SPAT_ENOPATTERN);
}
END_TEST

/* What the descriptor holds, read directly. */
START_TEST(descriptor_contents)
{
    const int dims[] = {128, 8, 64};
    const char *p = path_in("d.so");
    ck_assert_int_eq(write_module(p, two_src, NULL, 0, dims, 3, NULL, 0), SPAT_OK);
    void *h = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(h != NULL, "%s", dlerror());
    const sp_module_desc *m = dlsym(h, SP_MODULE_SYMBOL);
    ck_assert(m);
    ck_assert(m->magic == SP_MODULE_MAGIC);
    ck_assert_uint_eq(m->abi_version, SP_MODULE_ABI);
    ck_assert_uint_eq(m->size, sizeof *m);
    ck_assert_uint_eq(m->pattern_size, sizeof(sp_module_pattern));
    ck_assert_uint_eq(m->section_size, sizeof(sp_module_section));
    ck_assert_uint_eq(m->source_len, strlen(two_src));
    ck_assert_str_eq(m->source, two_src);
    ck_assert_str_eq(m->source_name, "test.spat");
    ck_assert_str_eq(m->producer, PACKAGE_STRING);
    ck_assert_uint_eq(m->npatterns, 2);
    /* One section per pattern: its CUDA source (runtime/module_cuda.c);
     * with LLVM also one per pattern and head dim: its CPU code
     * (runtime/module_cpu.c), whose entries are functions of the file. */
#ifdef SPAT_HAVE_LLVM
    ck_assert_uint_eq(m->nsections, 2 + 2 * 3);
    for (unsigned i = 2; i < m->nsections; i++) {
        const sp_module_section *s = &m->sections[i];
        ck_assert_uint_eq(s->kind, SP_SECTION_CPU_FORWARD);
        ck_assert_uint_eq(s->pattern, (i - 2) / 3);
        ck_assert_int_eq(s->head_dim, dims[(i - 2) % 3 == 0 ? 1 : (i - 2) % 3 == 1 ? 2 : 0]);
        ck_assert(s->arch >= SP_CPU_SSE && s->arch <= SP_CPU_AVX512);
        const sp_cpu_info *info = s->data;
        ck_assert(s->bytes == SP_CPU_INFO_BYTES(info->nentries) && info->abi == SP_CPU_ABI);
        ck_assert(s->nentries == info->nentries && s->nentries > 0);
        for (uint64_t e = 0; e < s->nentries; e++)
            ck_assert(s->entries[e] != NULL);
    }
#else
    ck_assert_uint_eq(m->nsections, 2);
#endif
    prog g;
    parse(&g, two_src);
    for (int i = 0; i < 2; i++) {
        const sp_module_section *s = &m->sections[i];
        ck_assert_uint_eq(s->kind, SP_SECTION_CUDA_SOURCE);
        ck_assert_uint_eq(s->pattern, (unsigned)i);
        ck_assert(s->data && s->bytes > 0 && strstr(s->data, "__global__"));
    }
    for (int i = 0; i < 2; i++) {
        const sp_module_pattern *mp = &m->patterns[i];
        ck_assert_str_eq(mp->name, g.p->patterns[i].name);
        ck_assert_int_eq(mp->nheads, g.p->patterns[i].nheads);
        ck_assert_uint_eq(mp->n_head_dims, 3);
        ck_assert(mp->head_dims[0] == 8 && mp->head_dims[1] == 64 && mp->head_dims[2] == 128);
        sp_plan *plan;
        ck_assert_int_eq(sp_plan_build(&g.p->patterns[i], &g.a, &g.d, &plan), 0);
        ck_assert(mp->plan_hash == sp_plan_hash(plan));
    }
    unparse(&g);
    dlclose(h);
}
END_TEST

/* Sources with every awkward byte survive the trip into C and back. */
START_TEST(awkward_source_bytes)
{
    const char *src = "# quotes \" backslash \\ trigraph ?\?= tab\t cr\r high \xc3\xa9 ?\?/\n"
                      "pattern p { window 2; } # end without newline";
    const char *p = path_in("awk.so");
    char err[4096];
    ck_assert_msg(write_module(p, src, NULL, 0, NULL, 0, err, sizeof err) == SPAT_OK, "%s", err);
    spat_kernel *k;
    ck_assert_msg(spat_load(p, "p", &k) == SPAT_OK, "%s", spat_last_error());
    ck_assert_str_eq(k->source, src);
    spat_kernel_free(k);
}
END_TEST

/* Every file of patterns/ goes through kernel.so unchanged. */
START_TEST(pattern_files)
{
    const char *sd = getenv("SPAT_SRCDIR");
    char pd[1024];
    snprintf(pd, sizeof pd, "%s/patterns", sd ? sd : ".");
    DIR *h = opendir(pd);
    ck_assert_msg(h != NULL, "no patterns/ (SPAT_SRCDIR)");
    int nfiles = 0;
    for (struct dirent *e; (e = readdir(h));) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".spat"))
            continue;
        char file[2048];
        snprintf(file, sizeof file, "%s/%s", pd, e->d_name);
        size_t len;
        char *src = read_all(file, &len);
        char err[4096];
        char soname[64];
        snprintf(soname, sizeof soname, "pf%d.so", nfiles);
        const char *so = path_in(soname);
        ck_assert_msg(write_module(so, src, NULL, 0, NULL, 0, err, sizeof err) == SPAT_OK, "%s: %s",
                      file, err);
        prog g;
        parse(&g, src);
        for (int i = 0; i < g.p->npatterns; i++) {
            spat_kernel *a, *b;
            ck_assert_msg(spat_load(so, g.p->patterns[i].name, &a) == SPAT_OK, "%s", spat_last_error());
            ck_assert_int_eq(spat_compile(src, g.p->patterns[i].name, NULL, &b), SPAT_OK);
            int64_t heads = g.p->patterns[i].nheads ? g.p->patterns[i].nheads : 2;
            same_output(a, b, heads, 64);
            spat_kernel_free(a);
            spat_kernel_free(b);
        }
        unparse(&g);
        free(src);
        nfiles++;
    }
    closedir(h);
    ck_assert_int_ge(nfiles, 9);
}
END_TEST

/* ------------------------------------------------------- load failures */

static void expect_load(const char *p, int code, const char *needle, const char *what)
{
    sp_clear_error();
    spat_kernel *k = (spat_kernel *)&k;
    int rc = spat_load(p, NULL, &k);
    const char *msg = spat_last_error();
    ck_assert_msg(rc == code, "%s: status %d, want %d: %s", what, rc, code, msg);
    ck_assert_ptr_null(k);
    ck_assert_msg(msg[0], "%s: no message", what);
    if (needle)
        ck_assert_msg(strstr(msg, needle), "%s: message '%s' lacks '%s'", what, msg, needle);
    printf("  %-28s %-14s %s\n", what, spat_strerror(rc), msg);
}

/* libm's path, from the maps of this process (the tests link it). */
static int find_libm(char *path, size_t cap)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[1024];
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (p && (strstr(p, "/libm.so") || strstr(p, "/libm-"))) {
            p[strcspn(p, "\n")] = '\0';
            snprintf(path, cap, "%s", p);
            found = 0;
        }
    }
    fclose(f);
    return found;
}

START_TEST(refuses_bad_files)
{
    expect_load(path_in("missing.so"), SPAT_EIO, "No such file", "missing file");
    expect_load(dir, SPAT_EIO, "not a regular file", "a directory");
    const char *txt = path_in("text.so");
    const char *t = "pattern p { window 3; }\n";
    write_file(txt, t, strlen(t));
    expect_load(txt, SPAT_ELOAD, "not an ELF", "text file");
    unsigned char rnd[4096];
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (unsigned char)(i * 7919u >> 3 ^ i);
    const char *rp = path_in("random.so");
    write_file(rp, rnd, sizeof rnd);
    expect_load(rp, SPAT_ELOAD, "not an ELF", "random bytes");
    /* Random bytes behind a valid ELF magic. */
    memcpy(rnd, "\177ELF\002\001\001", 7);
    write_file(rp, rnd, sizeof rnd);
    expect_load(rp, SPAT_ELOAD, NULL, "ELF magic, random body");
    expect_load(path_in("empty.so"), SPAT_EIO, "No such file", "missing (2)");
    write_file(path_in("empty.so"), "", 0);
    expect_load(path_in("empty.so"), SPAT_ELOAD, "not an ELF", "empty file");

    char libm[1024];
    ck_assert_msg(find_libm(libm, sizeof libm) == 0, "libm not mapped in the test process");
    expect_load(libm, SPAT_ELOAD, "not a spat kernel module", "libm (foreign .so)");
    /* With a digest, dlopen maps it and finds no descriptor. */
    size_t n;
    char *bytes = read_all(libm, &n);
    write_file(path_in("libm.so"), bytes, n);
    free(bytes);
    seal_file(path_in("libm.so"));
    expect_load(path_in("libm.so"), SPAT_ELOAD, "no symbol spat_module_v1", "libm with a digest");
}
END_TEST

START_TEST(refuses_truncated)
{
    const char *p = path_in("whole.so");
    ck_assert_int_eq(write_module(p, two_src, NULL, 0, NULL, 0, NULL, 0), SPAT_OK);
    size_t n;
    char *bytes = read_all(p, &n);
    const size_t cuts[] = {n / 2, n - 1, n / 4, 200, 64, 10};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char name[64], what[64];
        snprintf(name, sizeof name, "cut%zu.so", i);
        snprintf(what, sizeof what, "truncated to %zu of %zu", cuts[i], n);
        write_file(path_in(name), bytes, cuts[i]);
        expect_load(path_in(name), SPAT_ELOAD, NULL, what);
    }
    free(bytes);
}
END_TEST

/* spatc's digest: a file without it, or whose bytes or trailer changed, is
 * refused before dlopen; the file's mode is the linker's, 0777 & ~umask. */
START_TEST(digest_and_mode)
{
    const char *p = path_in("sealed.so");
    mode_t old = umask(027);
    int rc = write_module(p, two_src, NULL, 0, NULL, 0, NULL, 0);
    umask(old);
    ck_assert_int_eq(rc, SPAT_OK);
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_msg((sb.st_mode & 07777) == 0750, "mode %o, want 0750 under umask 027",
                  (unsigned)(sb.st_mode & 07777));
    size_t n;
    char *bytes = read_all(p, &n);
    const size_t T = SP_MODULE_TRAILER_BYTES;
    ck_assert(n > T && !memcmp(bytes + n - T, SP_MODULE_TRAILER_MAGIC, 8));
    write_file(path_in("bare.so"), bytes, n - T);
    expect_load(path_in("bare.so"), SPAT_ELOAD, "no spat digest", "no digest (older spatc)");
    bytes[n / 2] ^= 0x10;
    write_file(path_in("flipped.so"), bytes, n);
    expect_load(path_in("flipped.so"), SPAT_ELOAD, "digest does not match", "a flipped byte");
    bytes[n / 2] ^= 0x10;
    bytes[n - T + 8] ^= 1;
    write_file(path_in("length.so"), bytes, n);
    expect_load(path_in("length.so"), SPAT_ELOAD, "trailer covers", "trailer's length");
    bytes[n - T + 8] ^= 1;
    write_file(path_in("same.so"), bytes, n);
    spat_kernel *k;
    ck_assert_msg(spat_load(path_in("same.so"), "local", &k) == SPAT_OK, "%s", spat_last_error());
    spat_kernel_free(k);
    free(bytes);
}
END_TEST

/* Modules whose descriptor lies, built from the same type text. */
static void build_fake(const char *so, const char *fields, const char *src, uint64_t hash,
                       unsigned pattern_size_delta)
{
    char cfile[600], cmd[2048];
    snprintf(cfile, sizeof cfile, "%s.c", so);
    FILE *f = fopen(cfile, "w");
    ck_assert(f);
    fprintf(f, "#include <stdint.h>\n%s\n", SP_MODULE_TYPES_TEXT);
    fprintf(f, "static const int32_t hd[] = {64};\n");
    fprintf(f, "static const struct sp_module_pattern pats[] = {{.size = sizeof(struct sp_module_pattern), "
               ".n_head_dims = 1, .name = \"p\", .nheads = 0, .plan_hash = %" PRIu64 "ull, .head_dims = hd}};\n",
            hash);
    fprintf(f, "const struct sp_module_desc spat_module_v1 = {.magic = %" PRIu64 "ull, .abi_version = %u, "
               ".size = sizeof(struct sp_module_desc), .producer = \"fake\", .source_name = \"fake.spat\", "
               ".source = \"%s\", .source_len = %zu, .npatterns = 1, "
               ".pattern_size = sizeof(struct sp_module_pattern) - %u, .patterns = pats, "
               ".section_size = sizeof(struct sp_module_section), %s};\n",
            (uint64_t)SP_MODULE_MAGIC, SP_MODULE_ABI, src, strlen(src), pattern_size_delta, fields);
    ck_assert(fclose(f) == 0);
    snprintf(cmd, sizeof cmd, "%s -shared -fPIC -o %s %s", SPAT_CC, so, cfile);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
    seal_file(so);
}

static uint64_t hash_of(const char *src)
{
    prog g;
    parse(&g, src);
    sp_plan *plan;
    ck_assert_int_eq(sp_plan_build(&g.p->patterns[0], &g.a, &g.d, &plan), 0);
    uint64_t h = sp_plan_hash(plan);
    unparse(&g);
    return h;
}

START_TEST(refuses_lying_descriptors)
{
    const char *src = "pattern p { window 3; }";
    uint64_t h = hash_of(src);
    /* Designated initialisers given twice: the later one wins (C11 6.7.9). */
    build_fake(path_in("ok.so"), ".nsections = 0", src, h, 0);
    spat_kernel *k;
    ck_assert_msg(spat_load(path_in("ok.so"), NULL, &k) == SPAT_OK, "control: %s", spat_last_error());
    spat_kernel_free(k);
    build_fake(path_in("magic.so"), ".magic = 0x1234", src, h, 0);
    expect_load(path_in("magic.so"), SPAT_ELOAD, "wrong magic", "bad magic");
    build_fake(path_in("abi.so"), ".abi_version = 2", src, h, 0);
    expect_load(path_in("abi.so"), SPAT_ELOAD, "ABI 2", "newer ABI");
    build_fake(path_in("hash.so"), ".nsections = 0", src, h ^ 1, 0);
    expect_load(path_in("hash.so"), SPAT_ELOAD, "plans differently", "plan hash mismatch");
    build_fake(path_in("src.so"), ".nsections = 0", "pattern p { window ; }", h, 0);
    expect_load(path_in("src.so"), SPAT_ELOAD, "does not compile", "source does not compile");
    build_fake(path_in("psize.so"), ".nsections = 0", src, h, 8);
    expect_load(path_in("psize.so"), SPAT_ELOAD, "too small", "short pattern records");
    build_fake(path_in("sect.so"), ".nsections = 3", src, h, 0);
    expect_load(path_in("sect.so"), SPAT_ELOAD, "no section table", "sections without table");
    build_fake(path_in("len.so"), ".source_len = 5", src, h, 0);
    expect_load(path_in("len.so"), SPAT_ELOAD, "embedded source", "wrong source length");
    build_fake(path_in("huge.so"), ".source_len = 1ull << 40", src, h, 0);
    expect_load(path_in("huge.so"), SPAT_ELOAD, "source_len", "source length past the file");
    build_fake(path_in("far.so"), ".nsections = 1000000, .sections = (const void *)pats", src, h, 0);
    expect_load(path_in("far.so"), SPAT_ELOAD, "nsections", "section table past the file");
    build_fake(path_in("wild.so"), ".nsections = 1, .sections = (const void *)64", src, h, 0);
    expect_load(path_in("wild.so"), SPAT_ELOAD, "nsections", "section table outside the file");
}
END_TEST

/* ------------------------------------------------------ write failures */

static const char old_content[] = "the previous kernel.so";

/* A failed write: the old file stays, the directory holds nothing new. */
static void expect_write_fails(const char *cc, int code, const char *needle, const char *what)
{
    const char *p = path_in("kernel.so");
    write_file(p, old_content, sizeof old_content);
    char before[1024], after[1024];
    listing(before, sizeof before);
    if (cc)
        setenv("SPAT_CC", cc, 1);
    char err[4096] = "";
    sp_clear_error();
    int rc = write_module(p, two_src, NULL, 0, NULL, 0, err, sizeof err);
    unsetenv("SPAT_CC");
    ck_assert_msg(rc == code, "%s: status %d, want %d: %s", what, rc, code, err);
    ck_assert_msg(err[0] && !strcmp(err, spat_last_error()), "%s: message '%s'", what, err);
    if (needle)
        ck_assert_msg(strstr(err, needle), "%s: '%s' lacks '%s'", what, err, needle);
    size_t n;
    char *now = read_all(p, &n);
    ck_assert_msg(n == sizeof old_content && !memcmp(now, old_content, n), "%s: file changed", what);
    free(now);
    listing(after, sizeof after);
    ck_assert_msg(!strcmp(before, after), "%s: left '%s' (was '%s')", what, after, before);
    printf("  %-28s %-14s %s\n", what, spat_strerror(rc), err);
}

START_TEST(failed_writes_leave_the_file)
{
    expect_write_fails("/nonexistent/cc", SPAT_EIO, "cannot run the C compiler", "missing compiler");
    expect_write_fails("false", SPAT_EIO, "failed", "compiler fails");
    expect_write_fails("true", SPAT_EIO, "wrote no output", "compiler writes nothing");
    expect_write_fails(SPAT_CC " -include /nonexistent/header.h", SPAT_EIO, "header.h", "compiler errors");
    expect_write_fails(" \t ", SPAT_EIO, "blank", "blank SPAT_CC");

    /* Bad arguments fail before any file is made. */
    const char *p = path_in("kernel.so");
    char err[1024];
    const char *bad[] = {"zzz"};
    ck_assert_int_eq(write_module(p, two_src, bad, 1, NULL, 0, err, sizeof err), SPAT_ENOPATTERN);
    ck_assert(strstr(err, "zzz"));
    const int dims[] = {12};
    ck_assert_int_eq(write_module(p, two_src, NULL, 0, dims, 1, err, sizeof err), SPAT_EINVAL);
    ck_assert(strstr(err, "head_dims[0] = 12"));
    const char *dup[] = {"local", "local"};
    ck_assert_int_eq(write_module(p, two_src, dup, 2, NULL, 0, NULL, 0), SPAT_EINVAL);
    size_t n;
    char *now = read_all(p, &n);
    ck_assert(n == sizeof old_content && !memcmp(now, old_content, n));
    free(now);

    /* Missing directory; a directory in the way of the output. */
    ck_assert_int_eq(write_module(path_in("no/such/dir.so"), two_src, NULL, 0, NULL, 0, err, sizeof err),
                     SPAT_EIO);
    ck_assert(strstr(err, "temporary directory"));
    ck_assert_int_eq(mkdir(path_in("adir"), 0755), 0);
    ck_assert_int_eq(write_module(path_in("adir"), two_src, NULL, 0, NULL, 0, err, sizeof err), SPAT_EIO);
    char ls[1024];
    listing(ls, sizeof ls);
    ck_assert_str_eq(ls, "adir kernel.so");

    /* An unwritable directory (meaningless for root, who writes anyway). */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(dir, 0555), 0);
        int rc = write_module(p, two_src, NULL, 0, NULL, 0, err, sizeof err);
        ck_assert_int_eq(chmod(dir, 0755), 0);
        ck_assert_int_eq(rc, SPAT_EIO);
        now = read_all(p, &n);
        ck_assert(n == sizeof old_content && !memcmp(now, old_content, n));
        free(now);
    }

    /* And a working compiler with extra words replaces the file. */
    setenv("SPAT_CC", SPAT_CC " -Wall -g0", 1);
    int rc = write_module(p, two_src, NULL, 0, NULL, 0, err, sizeof err);
    unsetenv("SPAT_CC");
    ck_assert_msg(rc == SPAT_OK, "%s", err);
    spat_kernel *k;
    ck_assert_int_eq(spat_load(p, "local", &k), SPAT_OK);
    spat_kernel_free(k);
}
END_TEST

START_TEST(bad_arguments)
{
    prog g;
    parse(&g, two_src);
    char err[256];
    ck_assert_int_eq(sp_module_write(NULL, two_src, 1, NULL, g.p, NULL, 0, NULL, 0, err, sizeof err), SPAT_EINVAL);
    ck_assert_int_eq(sp_module_write("x.so", NULL, 1, NULL, g.p, NULL, 0, NULL, 0, err, sizeof err), SPAT_EINVAL);
    ck_assert_int_eq(sp_module_write("x.so", two_src, 1, NULL, NULL, NULL, 0, NULL, 0, err, sizeof err), SPAT_EINVAL);
    ck_assert_int_eq(sp_module_write("x.so", two_src, 1, NULL, g.p, NULL, -1, NULL, 0, NULL, 0), SPAT_EINVAL);
    unparse(&g);
    spat_kernel *k;
    ck_assert_int_eq(spat_load(NULL, NULL, &k), SPAT_EINVAL);
    ck_assert_int_eq(spat_load("", NULL, &k), SPAT_EINVAL);
    ck_assert_int_eq(spat_load("x", NULL, NULL), SPAT_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("module");
    TCase *t = tcase_create("module");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, write_then_load);
    tcase_add_test(t, subset_and_relative_path);
    tcase_add_test(t, descriptor_contents);
    tcase_add_test(t, awkward_source_bytes);
    tcase_add_test(t, pattern_files);
    tcase_add_test(t, refuses_bad_files);
    tcase_add_test(t, refuses_truncated);
    tcase_add_test(t, digest_and_mode);
    tcase_add_test(t, refuses_lying_descriptors);
    tcase_add_test(t, failed_writes_leave_the_file);
    tcase_add_test(t, bad_arguments);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
