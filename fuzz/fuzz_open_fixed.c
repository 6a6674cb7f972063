/*
 * fuzz_open_fixed.c -- libFuzzer target: patches to a valid file, with
 * checksums repaired, so the structural checks behind the CRCs are fuzzed.
 *
 * At start-up the target builds its base images through the public API
 * (fz_build_image: empty, mixed, page-table tree, tiny, grown, 2 KiB and
 * 8 KiB pages; a -DMP_TEST_FANOUT build gets images of its own geometry,
 * and "tall", whose free-space map has index nodes).
 * An input is
 *
 *   byte 0     base image (mod the number of images)
 *   byte 1     bits 0-4: which checksums fz_reseal recomputes after the
 *              patches (FZ_SEAL_META, FZ_FIX_ENTRIES, FZ_FIX_CONTENT,
 *              FZ_SEAL_ROOT0, FZ_SEAL_ROOT1); bit 5: default address
 *              reservation; bit 6: open and check only, no mutations
 *   then patches, each an op byte (op % 6) and its operands:
 *     0  bytes:  off u24, n = 1 + byte % 16, n bytes
 *     1  u32:    page (a byte; u16 when the image has over 256 pages),
 *                offset u16 (aligned to 4 within the page), value
 *     2  u64:    page, offset u16 (aligned to 8), value
 *     3  copy:   whole page src to page dst (each a page as above)
 *     4  length: truncate at a page boundary / mid-page, or extend
 *     5  bit:    off u24, bit byte
 *   A value is a byte: < 0xE0 picks an "interesting" value (0, 1, page
 *   size, page counts, txn ids, 2^32-1, ...), else 4 or 8 literal bytes.
 *
 * The patched image then goes through fz_exercise() like fuzz_open.c.  With
 * MP_FUZZ_SAVE=FILE in the environment the image is also written to FILE.
 */
#include "fuzz_common.h"
#include "mp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define EXTRA (256u << 10)   /* room for extensions past an image's end */

/* A base image and its working copy.  Only the pages an input changed
 * (dirty) are restored before the next input, and only pages that hold
 * something are written to the file (the rest stays a hole), so a large,
 * mostly empty image (FZ_IMG_TALL: 16 MiB) costs what a small one does. */
typedef struct image {
    unsigned char *base, *work;
    size_t len, cap;             /* base length; work capacity len + EXTRA */
    uint32_t P;
    unsigned char *nonzero;      /* per page of base: not all zeros */
    unsigned char *dirty;        /* per page of work: changed by this input */
    size_t npages;               /* pages of work (cap / P, rounded up) */
} image;

static image images[FZ_IMG_COUNT];
static int nimages;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (int k = 0; k < FZ_IMG_COUNT; k++) {
        image *im = &images[nimages];
        im->base = fz_build_image(k, &im->len, &im->P);
        if (!im->base) {
#ifndef MP_TEST_FANOUT
            if (k == FZ_IMG_TALL)
                continue;   /* only fanout builds have it */
#endif
            fprintf(stderr, "fuzz_open_fixed: cannot build base image %s\n", fz_img_names[k]);
            abort();
        }
        im->cap = im->len + EXTRA;
        im->npages = (im->cap + im->P - 1) / im->P;
        im->work = malloc(im->cap);
        im->nonzero = calloc(im->npages, 1);
        im->dirty = calloc(im->npages, 1);
        if (!im->work || !im->nonzero || !im->dirty)
            abort();
        memcpy(im->work, im->base, im->len);
        for (size_t i = 0; i < im->len; i++)
            if (im->base[i])
                im->nonzero[i / im->P] = 1;
        nimages++;
    }
    return 0;
}

/* Undo the last input's changes. */
static void restore(image *im)
{
    for (size_t pg = 0; pg < im->npages; pg++) {
        if (!im->dirty[pg])
            continue;
        im->dirty[pg] = 0;
        size_t off = pg * im->P;
        if (off < im->len)
            memcpy(im->work + off, im->base + off, im->len - off < im->P ? im->len - off : im->P);
    }
}

static void touch(image *im, size_t off)
{
    im->dirty[off / im->P] = 1;
}

/* Write work[0..len) to path, leaving holes where the base had zeros and
 * the input changed nothing.  0 or an errno. */
static int write_sparse(const char *path, const image *im, size_t len)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno;
    int e = ftruncate(fd, (off_t)len) == 0 ? 0 : errno;
    size_t base_pages = (im->len + im->P - 1) / im->P;
    for (size_t pg = 0; !e && pg * im->P < len; pg++) {
        if (!im->dirty[pg] && !(pg < base_pages && im->nonzero[pg]))
            continue;
        size_t off = pg * im->P, n = len - off < im->P ? len - off : im->P;
        if (pwrite(fd, im->work + off, n, (off_t)off) != (ssize_t)n)
            e = errno ? errno : EIO;
    }
    close(fd);
    return e;
}

typedef struct reader {
    const uint8_t *d;
    size_t n, i;
} reader;

static int more(const reader *r) { return r->i < r->n; }
static unsigned byte(reader *r) { return r->i < r->n ? r->d[r->i++] : 0; }
static uint64_t lit(reader *r, int n)
{
    uint64_t v = 0;
    for (int k = 0; k < n; k++)
        v |= (uint64_t)byte(r) << (8 * k);
    return v;
}

static uint64_t value(reader *r, const unsigned char *img, uint32_t P, size_t len, int width)
{
    unsigned b = byte(r);
    uint64_t pages = len / P, txn = mp_ld64(img + MP_R_TXN), pc = mp_ld64(img + MP_R_PAGECOUNT);
    mp_geom ge;
    mp_geom_init(&ge, P);
    const uint64_t table[] = {
        0, 1, 2, 3, 4, 7, 8, 63, 64, 65,
        P, P - 1, P + 1, pages, pages - 1, pages + 1, pc, pc - 1, pc + 1, pc * 2,
        txn, txn + 1, txn - 1, txn + 2, ge.G, ge.G - 1, ge.E, ge.K, ge.lmax, ge.lmax + 1,
        0x7fffffff, 0x80000000u, 0xffffffffu, 0xfffffffeu, (uint64_t)1 << 32, ((uint64_t)1 << 32) + 1,
        UINT64_MAX, (uint64_t)1 << 63, MP_TYPE_BITMAP, MP_TYPE_INDEX, MP_TYPE_PTLEAF, MP_TYPE_PTNODE,
        (P - 32) / 16, (P - 32) / 16 + 1, MP_PT_DELTA_MAX, MP_PT_DELTA_MAX + 1,
        MP_FM_CARRY_MAX, MP_FM_CARRY_MAX + 1, (P - MP_ROOT_HDR_SIZE) / MP_FM_CARRY_SIZE,
        pc << 2, (pc - 1) << 2 | 1, (pc - 1) << 2 | 2, (pc - 1) << 2 | 3, ge.G << 2 | 1,
    };
    const size_t nt = sizeof table / sizeof table[0];
    if (b < 0xE0)
        return b < nt ? table[b] : (uint64_t)(b - nt);   /* small numbers otherwise */
    return lit(r, width);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    reader r = { data, size, 0 };
    image *im = &images[byte(&r) % (unsigned)nimages];
    unsigned flags = byte(&r);
    uint32_t P = im->P;
    unsigned char *work = im->work;
    size_t len = im->len;
    restore(im);
    int ops = 0;
    while (more(&r) && ops++ < 64) {
        unsigned op = byte(&r) % 6;
        size_t npages = len / P;
        switch (op) {
        case 0: {
            size_t off = (size_t)lit(&r, 3);
            unsigned n = 1 + byte(&r) % 16;
            for (unsigned i = 0; i < n && len; i++) {
                work[(off + i) % len] = (unsigned char)byte(&r);
                touch(im, (off + i) % len);
            }
            break;
        }
        case 1:
        case 2: {
            int w = op == 1 ? 4 : 8;
            size_t pg = npages ? lit(&r, 1 + (npages > 256)) % npages : 0;
            size_t off = (size_t)lit(&r, 2) % P / (size_t)w * (size_t)w;
            uint64_t v = value(&r, work, P, len, w);
            if ((pg + 1) * P <= len) {
                memcpy(work + pg * P + off, &v, (size_t)w);   /* little-endian host */
                touch(im, pg * P);
            }
            break;
        }
        case 3: {
            int wide = 1 + (npages > 256);
            size_t src = npages ? lit(&r, wide) % npages : 0, dst = npages ? lit(&r, wide) % npages : 0;
            if ((src + 1) * P <= len && (dst + 1) * P <= len && src != dst) {
                memcpy(work + dst * P, work + src * P, P);
                touch(im, dst * P);
            }
            break;
        }
        case 4: {
            unsigned b = byte(&r), how = b & 3, amount = b >> 2;
            size_t add = 0;
            if (how == 0 && npages)               /* at a page boundary */
                len = (size_t)(amount % npages + 1) * P;
            else if (how == 1 && len > 1)         /* mid-page */
                len -= 1 + (size_t)amount * 7 % (len - 1);
            else if (how == 2) {                  /* extend with zeros */
                add = ((size_t)amount + 1) * P / 4;
                if (len + add <= im->cap)
                    memset(work + len, 0, add);
            } else if (len >= P) {                /* extend with copies of page 0 */
                add = ((size_t)amount % 8 + 1) * P;
                if (len + add <= im->cap)
                    for (size_t i = 0; i < add; i++)
                        work[len + i] = work[i % P];
            }
            if (add && len + add <= im->cap) {
                for (size_t o = len; o < len + add; o += P)
                    touch(im, o);
                touch(im, len + add - 1);
                len += add;
            }
            break;
        }
        default: {
            size_t off = (size_t)lit(&r, 3);
            unsigned bit = byte(&r);
            if (len) {
                work[off % len] ^= (unsigned char)(1u << (bit & 7));
                touch(im, off % len);
            }
            break;
        }
        }
    }
    fz_reseal_track(work, len, P, flags & FZ_SEAL_ALL, im->dirty);
    const char *path = fz_tmp_path(0, "fixed.mp");
    if (write_sparse(path, im, len) != 0)
        return 0;
    /* MP_FUZZ_SAVE=FILE keeps a copy of the patched image (to replay a
     * finding through mp.open, e.g. in spec/10-fuzz_regress_spec.lua) */
    const char *save = getenv("MP_FUZZ_SAVE");
    if (save && *save)
        fz_write_file(save, work, len);
    fz_exercise(path, ((flags >> 5) & 1) | ((flags >> 5) & 2));
    return 0;
}
