/* Mask pictures. The PNG writer is self-contained (stored deflate blocks,
 * CRC-32 and Adler-32 computed here) so spat needs no zlib or libpng. */
#include "mask.h"

#include <stdlib.h>
#include <string.h>

typedef struct cells {
    int64_t n;
    int size;
    uint32_t *count; /* attended pairs per pixel */
} cells;

static void count_pair(void *arg, int comp, int64_t i, int64_t j)
{
    cells *c = arg;
    (void)comp;
    c->count[(size_t)(i * c->size / c->n) * (size_t)c->size + (size_t)(j * c->size / c->n)]++;
}

/* Fills gray[size*size]: 255 white (no pair) .. 0 black (every pair). */
static unsigned char *shade(const sp_plan *p, int64_t head, int64_t n, int size)
{
    cells c = {n, size, calloc((size_t)size * (size_t)size, sizeof(uint32_t))};
    unsigned char *gray = malloc((size_t)size * (size_t)size);
    sp_view v;
    if (!c.count || !gray || sp_view_init(&v, p, head, n)) {
        free(c.count);
        free(gray);
        return NULL;
    }
    int64_t bad = 0;
    for (int64_t i = 0; i < n && bad >= 0; i++)
        bad = sp_view_row(&v, i, count_pair, &c);
    sp_view_free(&v);
    for (int y = 0; y < size && bad >= 0; y++) {
        /* Pixel (y, x) covers the pairs with i*size/n == y and j*size/n == x. */
        int64_t r0 = ((int64_t)y * n + size - 1) / size, r1 = ((int64_t)(y + 1) * n + size - 1) / size;
        for (int x = 0; x < size; x++) {
            int64_t c0 = ((int64_t)x * n + size - 1) / size, c1 = ((int64_t)(x + 1) * n + size - 1) / size;
            double area = (double)(r1 - r0) * (double)(c1 - c0);
            double f = area > 0 ? c.count[(size_t)y * (size_t)size + (size_t)x] / area : 0;
            /* Any pair at all shows: a sparse cell is never pure white. */
            int g = (int)(255.0 * (1.0 - f) + 0.5);
            if (f > 0 && g > 230)
                g = 230;
            gray[(size_t)y * (size_t)size + (size_t)x] = (unsigned char)g;
        }
    }
    free(c.count);
    if (bad < 0) {
        free(gray);
        return NULL;
    }
    return gray;
}

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int chunk(FILE *f, const char *type, const unsigned char *data, size_t len)
{
    unsigned char hdr[8];
    be32(hdr, (uint32_t)len);
    memcpy(hdr + 4, type, 4);
    uint32_t crc = crc32_update(crc32_update(0, hdr + 4, 4), data, len);
    unsigned char tail[4];
    be32(tail, crc);
    /* IEND has no data (data NULL): fwrite must not be given NULL, even for 0 bytes. */
    return fwrite(hdr, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) &&
                   fwrite(tail, 1, 4, f) == 4
               ? 0
               : -1;
}

/* A zlib stream of stored (uncompressed) deflate blocks. */
static unsigned char *zlib_stored(const unsigned char *raw, size_t n, size_t *out_len)
{
    size_t nblk = n / 65535 + 1, len = 2 + n + 5 * nblk + 4;
    unsigned char *z = malloc(len), *p = z;
    if (!z)
        return NULL;
    *p++ = 0x78;
    *p++ = 0x01;
    uint32_t a = 1, b = 0;
    for (size_t off = 0, k = 0; k < nblk; k++) {
        size_t m = n - off < 65535 ? n - off : 65535;
        *p++ = k + 1 == nblk;
        *p++ = (unsigned char)m;
        *p++ = (unsigned char)(m >> 8);
        *p++ = (unsigned char)~m;
        *p++ = (unsigned char)(~m >> 8);
        memcpy(p, raw + off, m);
        for (size_t x = 0; x < m; x++) {
            a = (a + raw[off + x]) % 65521;
            b = (b + a) % 65521;
        }
        p += m;
        off += m;
    }
    be32(p, b << 16 | a);
    *out_len = len;
    return z;
}

int sp_mask_png(const sp_plan *p, int64_t head, int64_t n, int size, FILE *f)
{
    unsigned char *gray = shade(p, head, n, size);
    if (!gray)
        return -1;
    /* Each scanline: filter type 0, then the pixels. */
    size_t rawlen = (size_t)size * ((size_t)size + 1);
    unsigned char *raw = malloc(rawlen);
    int rc = -1;
    if (raw) {
        for (int y = 0; y < size; y++) {
            raw[(size_t)y * ((size_t)size + 1)] = 0;
            memcpy(raw + (size_t)y * ((size_t)size + 1) + 1, gray + (size_t)y * (size_t)size, (size_t)size);
        }
        size_t zlen;
        unsigned char *z = zlib_stored(raw, rawlen, &zlen);
        unsigned char ihdr[13] = {0};
        be32(ihdr, (uint32_t)size);
        be32(ihdr + 4, (uint32_t)size);
        ihdr[8] = 8; /* bit depth */
        ihdr[9] = 0; /* grayscale */
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        if (z && fwrite(sig, 1, 8, f) == 8 && !chunk(f, "IHDR", ihdr, 13) && !chunk(f, "IDAT", z, zlen) &&
            !chunk(f, "IEND", NULL, 0))
            rc = 0;
        free(z);
    }
    free(raw);
    free(gray);
    return rc;
}

int sp_mask_svg(const sp_plan *p, int64_t head, int64_t n, int size, FILE *f)
{
    unsigned char *gray = shade(p, head, n, size);
    if (!gray)
        return -1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "shape-rendering=\"crispEdges\">\n<title>%s, head %lld, n = %lld</title>\n"
               "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
            size, size, size, size, p->name, (long long)head, (long long)n, size, size);
    /* Runs of equal shade along a row become one rect. */
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size;) {
            unsigned char g = gray[(size_t)y * (size_t)size + (size_t)x];
            int e = x + 1;
            while (e < size && gray[(size_t)y * (size_t)size + (size_t)e] == g)
                e++;
            if (g != 255)
                fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"1\" fill=\"rgb(%d,%d,%d)\"/>\n", x, y,
                        e - x, g, g, g);
            x = e;
        }
    fputs("</svg>\n", f);
    free(gray);
    return ferror(f) ? -1 : 0;
}
