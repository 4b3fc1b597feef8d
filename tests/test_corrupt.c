/* A corrupted kernel.so is refused, never trusted (issue 29). One
 * kernel.so, built at test time, and every byte of spat's metadata in it
 * (descriptor, pattern and section tables, names, head dims, source,
 * producer, entry tables, the CPU info of each head dim) changed one at a
 * time, with a sample of code bytes and of the CUDA text:
 *
 * - as a corruption on disk would be: every load must be refused
 *   (SPAT_ELOAD), which the digest does before dlopen;
 * - re-sealed with a fresh digest, as if spatc itself had written the bad
 *   field: the field checks must refuse the load, or the kernel must give
 *   the original O, LSE, dQ, dK and dV bitwise. (Code bytes are left out
 *   here: only the digest can tell changed code from the right one.)
 *
 * Under AddressSanitizer (tests/test_sanitize.sh) a wild read anywhere on
 * the way is a failure too. */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frontend.h"
#include "internal.h"
#include "module.h"
#include "spat.h"

/* Two head classes (a dilated band and global rows and random blocks; a
 * causal band and a stride), so the file has REMAP and ROWS entries of
 * every direction, rnd_cap 1, and two head dims of CPU code. */
static const char *const src =
    "pattern p { block 8;\n"
    "  heads 0..1 { window 12 dilation 3; global 0..1; random 1 blocks seed 5; }\n"
    "  heads 2..3 { causal; window -6..+0; stride 5; } }\n";
static const int dims[] = {8, 16};
enum { B = 1, H = 4, N = 45, D = 8 };

static char dir[256], path[300];
static int fd = -1; /* path, open for writing */
static unsigned char *file;
static size_t flen; /* without the trailer */

/* A byte range of the file: [off, off + len). */
typedef struct range {
    size_t off, len;
    const char *what;
} range;
static range ranges[256];
static int nranges;

/* The loaded object's PT_LOAD segments, to turn addresses into offsets. */
static ElfW(Addr) base;

static void add(const void *p, size_t len, const char *what)
{
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)file;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(file + eh->e_phoff);
    const ElfW(Addr) va = (ElfW(Addr))p - base;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && va >= ph[i].p_vaddr && va + len <= ph[i].p_vaddr + ph[i].p_filesz) {
            ck_assert_int_lt(nranges, 256);
            ranges[nranges++] = (range){ph[i].p_offset + (va - ph[i].p_vaddr), len, what};
            return;
        }
    ck_abort_msg("%s is not in the file", what);
}

/* The byte ranges of spat's metadata, and where the code and CUDA text lie,
 * from the loaded pristine file. */
static range code, cuda;

static void find_ranges(void)
{
    char copy[320];
    snprintf(copy, sizeof copy, "%s/pristine.so", dir);
    FILE *f = fopen(copy, "wb");
    ck_assert(f && fwrite(file, 1, flen, f) == flen && fclose(f) == 0);
    void *dl = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(dl, "%s", dlerror());
    struct link_map *lm;
    ck_assert(dlinfo(dl, RTLD_DI_LINKMAP, &lm) == 0);
    base = lm->l_addr;
    const sp_module_desc *m = dlsym(dl, SP_MODULE_SYMBOL);
    ck_assert(m);
    nranges = 0;
    add(m, sizeof *m, "descriptor");
    add(m->source, m->source_len + 1, "source");
    add(m->source_name, strlen(m->source_name) + 1, "source name");
    add(m->producer, strlen(m->producer) + 1, "producer");
    add(m->patterns, (size_t)m->npatterns * m->pattern_size, "pattern table");
    for (uint32_t i = 0; i < m->npatterns; i++) {
        const sp_module_pattern *p = (const void *)((const char *)m->patterns + i * m->pattern_size);
        add(p->name, strlen(p->name) + 1, "pattern name");
        add(p->head_dims, p->n_head_dims * sizeof *p->head_dims, "head dims");
    }
    add(m->sections, (size_t)m->nsections * m->section_size, "section table");
    int ncpu = 0;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (uint32_t i = 0; i < m->nsections; i++) {
        const sp_module_section *s = (const void *)((const char *)m->sections + i * m->section_size);
        if (s->kind == SP_SECTION_CPU_FORWARD) {
            ncpu++;
            add(s->data, s->bytes, "CPU info");
            add(s->entries, s->nentries * sizeof *s->entries, "entry table");
            for (uint64_t e = 0; e < s->nentries; e++) {
                uintptr_t a = (uintptr_t)s->entries[e];
                lo = a < lo ? a : lo, hi = a > hi ? a : hi;
            }
        } else if (s->kind == SP_SECTION_CUDA_SOURCE) {
            add(s->data, s->bytes, "CUDA source");
            cuda = ranges[--nranges]; /* sampled, not flipped whole */
        }
    }
    ck_assert_int_eq(ncpu, 2);
    ck_assert_int_gt(cuda.len, 0);
    /* Code: from the first entry point to 256 bytes past the last. */
    add((const void *)lo, hi - lo + 256, "code");
    code = ranges[--nranges];
    ck_assert_int_eq(dlclose(dl), 0);
    unlink(copy);
}

/* ------------------------------------------------------------ running */

static float *in, *want, *got;
static size_t ntensor;

/* Q, K, V, dO; then O, LSE, dQ, dK, dV written by run. */
enum { QN = B * H * N * D, LN = B * H * N };

static int run(spat_kernel *k, float *out)
{
    const float *q = in, *kk = in + QN, *v = in + 2 * QN, *dout = in + 3 * QN;
    float *o = out, *lse = out + QN, *dq = lse + LN, *dk = dq + QN, *dv = dk + QN;
    spat_forward_args f;
    spat_forward_args_init(&f, B, H, H, N, N, D);
    f.backend = SPAT_BACKEND_CPU;
    f.threads = 1;
    f.q = q, f.k = kk, f.v = v, f.o = o, f.lse = lse;
    int rc = spat_forward(k, &f);
    if (rc != SPAT_OK)
        return rc;
    spat_backward_args b;
    spat_backward_args_init(&b, B, H, H, N, N, D);
    b.backend = SPAT_BACKEND_CPU;
    b.threads = 1;
    b.q = q, b.k = kk, b.v = v, b.o = o, b.dout = dout, b.lse = lse;
    b.dq = dq, b.dk = dk, b.dv = dv;
    return spat_backward(k, &b);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/spat-test-corrupt-XXXXXX");
    ck_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/kernel.so", dir);
    sp_arena a;
    sp_diag d;
    sp_program *prog;
    sp_arena_init(&a);
    sp_diag_init(&d, "corrupt.spat", src, strlen(src));
    ck_assert_msg(sp_frontend(src, strlen(src), &a, &d, &prog) == 0, "%s", sp_diag_text(&d));
    char err[4096];
    ck_assert_msg(sp_module_write(path, src, strlen(src), "corrupt.spat", prog, NULL, 0, dims, 2, err,
                                  sizeof err) == SPAT_OK, "%s", err);
    sp_diag_free(&d);
    sp_arena_free(&a);
    FILE *f = fopen(path, "rb");
    ck_assert(f && fseek(f, 0, SEEK_END) == 0);
    size_t n = (size_t)ftell(f);
    rewind(f);
    file = malloc(n);
    ck_assert(file && fread(file, 1, n, f) == n);
    fclose(f);
    ck_assert(n > SP_MODULE_TRAILER_BYTES);
    flen = n - SP_MODULE_TRAILER_BYTES;
    find_ranges();

    ntensor = 4 * (size_t)QN + LN; /* O, LSE, dQ, dK, dV */
    in = malloc(sizeof(float) * 4 * QN);
    want = malloc(sizeof(float) * ntensor);
    got = malloc(sizeof(float) * ntensor);
    ck_assert(in && want && got);
    uint32_t x = 12345;
    for (size_t i = 0; i < 4 * (size_t)QN; i++) {
        x = x * 1664525u + 1013904223u;
        in[i] = (float)(x >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    }
    spat_kernel *k;
    ck_assert_msg(spat_load(path, NULL, &k) == SPAT_OK, "%s", spat_last_error());
    ck_assert_msg(run(k, want) == SPAT_OK, "%s", spat_last_error());
    spat_kernel_free(k);
}

static void teardown(void)
{
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(path);
    rmdir(dir);
    free(file);
    free(in);
    free(want);
    free(got);
}

/* The file on disk is the pristine one but for the byte being tried, so a
 * change writes two small pieces: the byte, and the trailer (a fresh
 * digest when reseal, else the original). */
static void put(const void *p, size_t n, size_t at)
{
    ck_assert(pwrite(fd, p, n, (off_t)at) == (ssize_t)n);
}

static void write_changed(size_t at, unsigned char mask, bool reseal)
{
    if (fd < 0) {
        ck_assert((fd = open(path, O_RDWR | O_TRUNC | O_CLOEXEC)) >= 0);
        put(file, flen, 0);
    }
    unsigned char t[SP_MODULE_TRAILER_BYTES];
    file[at] ^= mask;
    if (reseal)
        sp_module_trailer(file, flen, t);
    put(&file[at], 1, at);
    file[at] ^= mask;
    if (!reseal)
        sp_module_trailer(file, flen, t);
    put(t, sizeof t, flen);
}

/* Puts the pristine byte back. */
static void restore(size_t at) { put(&file[at], 1, at); }

typedef struct tally {
    long tried, refused, same;
} tally;

/* Loads the changed file: refused with SPAT_ELOAD, or the same numbers. */
static void try_load(size_t at, unsigned char mask, const char *what, bool must_refuse, tally *t)
{
    char where[96]; /* where in its range */
    snprintf(where, sizeof where, "%s", what);
    for (int r = 0; r < nranges; r++)
        if (at >= ranges[r].off && at < ranges[r].off + ranges[r].len && !strcmp(ranges[r].what, what))
            snprintf(where, sizeof where, "%.60s (+%zu)", what, at - ranges[r].off);
    what = where;
    spat_kernel *k = NULL;
    int rc = spat_load(path, NULL, &k);
    t->tried++;
    if (rc != SPAT_OK) {
        ck_assert_msg(rc == SPAT_ELOAD && k == NULL, "%s byte %zu ^ 0x%02x: status %d: %s", what, at,
                      mask, rc, spat_last_error());
        t->refused++;
        return;
    }
    ck_assert_msg(!must_refuse, "%s byte %zu ^ 0x%02x: loaded despite the digest", what, at, mask);
    memset(got, 0xa5, sizeof(float) * ntensor);
    rc = run(k, got);
    spat_kernel_free(k);
    ck_assert_msg(rc == SPAT_OK, "%s byte %zu ^ 0x%02x: loaded, then status %d: %s", what, at, mask, rc,
                  spat_last_error());
    ck_assert_msg(!memcmp(got, want, sizeof(float) * ntensor),
                  "%s byte %zu ^ 0x%02x: loaded, and gives other numbers", what, at, mask);
    t->same++;
}

/* Bit b of byte i changes: a different bit for neighbouring bytes, and a
 * second, high-bit change where every byte is flipped twice. */
static unsigned char mask_of(size_t i, int pass) { return (unsigned char)(pass ? 0x80u >> (i % 3) : 1u << (i % 8)); }

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* As on disk: every metadata byte (two changes each), 1 in 7 code bytes
 * (at most 2000), 1 in 61 bytes of the CUDA text, and every trailer byte:
 * each load refused. */
START_TEST(refused_on_disk)
{
    double t0 = seconds();
    tally t = {0};
    size_t metadata = 0;
    for (int r = 0; r < nranges; r++) {
        metadata += ranges[r].len;
        for (size_t i = 0; i < ranges[r].len; i++)
            for (int pass = 0; pass < 2; pass++) {
                size_t at = ranges[r].off + i;
                write_changed(at, mask_of(at, pass), false);
                try_load(at, mask_of(at, pass), ranges[r].what, true, &t);
                restore(at);
            }
    }
    size_t step = code.len / 7 > 2000 ? code.len / 2000 : 7;
    for (size_t at = code.off; at < code.off + code.len; at += step) {
        write_changed(at, mask_of(at, 0), false);
        try_load(at, mask_of(at, 0), "code", true, &t);
        restore(at);
    }
    for (size_t at = cuda.off; at < cuda.off + cuda.len; at += 61) {
        write_changed(at, mask_of(at, 0), false);
        try_load(at, mask_of(at, 0), "CUDA source", true, &t);
        restore(at);
    }
    /* The trailer: the original file with one trailer byte changed. */
    for (size_t i = 0; i < SP_MODULE_TRAILER_BYTES; i++) {
        unsigned char tr[SP_MODULE_TRAILER_BYTES];
        write_changed(0, 0, false);
        sp_module_trailer(file, flen, tr);
        tr[i] ^= mask_of(i, 0);
        put(tr, sizeof tr, flen);
        try_load(flen + i, mask_of(i, 0), "trailer", true, &t);
    }
    printf("on disk: %ld loads (%zu metadata bytes in %d ranges, code and CUDA text sampled): %ld "
           "refused, %.1f s\n", t.tried, metadata, nranges, t.refused, seconds() - t0);
}
END_TEST

/* Re-sealed, as if spatc had written the bad field: every metadata byte
 * (two changes each) and 1 in 61 bytes of the CUDA text; each load
 * refused by the field checks, or the same numbers. */
START_TEST(fields_checked)
{
    double t0 = seconds();
    tally t = {0};
    for (int r = 0; r < nranges; r++)
        for (size_t i = 0; i < ranges[r].len; i++)
            for (int pass = 0; pass < 2; pass++) {
                size_t at = ranges[r].off + i;
                write_changed(at, mask_of(at, pass), true);
                try_load(at, mask_of(at, pass), ranges[r].what, false, &t);
                restore(at);
            }
    for (size_t at = cuda.off; at < cuda.off + cuda.len; at += 61) {
        write_changed(at, mask_of(at, 0), true);
        try_load(at, mask_of(at, 0), "CUDA source", false, &t);
        restore(at);
    }
    printf("re-sealed: %ld loads: %ld refused, %ld the same numbers, %.1f s\n", t.tried, t.refused,
           t.same, seconds() - t0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("corrupt");
    TCase *t = tcase_create("corrupt");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 600);
    tcase_add_test(t, refused_on_disk);
    tcase_add_test(t, fields_checked);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
