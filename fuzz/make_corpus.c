/*
 * make_corpus.c -- writes the seed corpus of the fuzz targets.
 *
 *   make_corpus DIR     writes DIR/open/, DIR/open_fixed/ and DIR/ops/
 *
 * open/        whole files for fuzz_open: the valid base images of
 *              fz_build_image (1 KiB pages unless named otherwise, each at
 *              most 64 KiB) and a few hostile ones (empty, garbage, wrong
 *              version / page size with a valid CRC, torn roots).
 * open_fixed/  patch lists for fuzz_open_fixed (format in that file): each
 *              base image untouched, and structural damage behind
 *              repaired checksums.
 * ops/         op sequences for fuzz_ops (format in that file).
 *
 * Deterministic: running it again rewrites the same bytes.  Built by
 * `make fuzz-corpus` with a plain cc (no libFuzzer); the files are
 * committed under fuzz/corpus/.
 */
#include "mp_internal.h"
#include "crc32c.h"
#include "fuzz_common.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const char *outdir;
static int failed;

static void put(const char *sub, const char *name, const void *buf, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", outdir, sub);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        failed = 1;
        return;
    }
    snprintf(path, sizeof path, "%s/%s/%s", outdir, sub, name);
    int e = fz_write_file(path, buf, len);
    if (e) {
        fprintf(stderr, "make_corpus: %s: %s\n", path, strerror(e));
        failed = 1;
    }
}

static void reseal_root(unsigned char *img, uint32_t P)
{
    mp_st32(img + MP_R_CRC, 0);
    mp_st32(img + MP_R_CRC, mp_crc32c(0, img, P));
}

/* ---- open/ --------------------------------------------------------------- */

static void corpus_open(void)
{
    for (int k = 0; k < FZ_IMG_COUNT; k++) {
        size_t len;
        uint32_t P;
        if (k == FZ_IMG_TALL)
            continue;   /* fanout builds only (and 16 MiB) */
        unsigned char *img = fz_build_image(k, &len, &P);
        if (!img) {
            failed = 1;
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "%s.mp", fz_img_names[k]);
        put("open", name, img, len);
        if (k == FZ_IMG_MIXED) {
            /* the newest root torn (its header from byte 24 on, as a
             * sector of a half-written page): open falls back to the
             * other; then both torn: corrupt */
            unsigned char *c = malloc(len);
            memcpy(c, img, len);
            int newest = mp_ld64(c + P + MP_R_TXN) > mp_ld64(c + MP_R_TXN);
            memset(c + (size_t)newest * P + 24, 0xEE, 64);
            put("open", "torn-root.mp", c, len);
            memset(c + (size_t)!newest * P + 24, 0xEE, 64);
            put("open", "both-roots-torn.mp", c, len);
            free(c);
        }
        if (k == FZ_IMG_EMPTY) {
            unsigned char *c = malloc(len);
            /* the version after this build's, valid CRC */
            memcpy(c, img, len);
            mp_st32(c + MP_R_VERSION, MP_FORMAT_VERSION + 1);
            reseal_root(c, P);
            put("open", "version-next.mp", c, len);
            /* page size field 2048 in a 1 KiB file, valid CRC over 2 KiB */
            memcpy(c, img, len);
            mp_st32(c + MP_R_PAGESIZE, 2048);
            reseal_root(c, 2048);
            put("open", "pagesize-lie.mp", c, len);
            /* just the two root slots */
            put("open", "roots-only.mp", img, 2 * P);
            free(c);
        }
        free(img);
    }
    put("open", "empty-file.bin", "", 0);
    unsigned char junk[3000];
    uint32_t x = 99;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1664525u + 1013904223u;
        junk[i] = (unsigned char)(x >> 24);
    }
    put("open", "garbage.bin", junk, sizeof junk);
    memcpy(junk, MP_MAGIC, 8);
    put("open", "magic-garbage.bin", junk, sizeof junk);
}

/* ---- open_fixed/ ------------------------------------------------------------ */

/* op bytes (fuzz_open_fixed.c): op % 6 */
enum { OP_BYTES = 0, OP_U32 = 1, OP_U64 = 2, OP_COPY = 3, OP_LEN = 4, OP_BIT = 5 };
/* value selector bytes: indexes into fuzz_open_fixed.c's table */
enum { V0 = 0, V1 = 1, V2 = 2, V64 = 8, V65 = 9, VPAGES = 13, VPAGES1 = 15, VPC1 = 18,
       VTXN1 = 21, VTXN2 = 23, VU32MAX = 32, V2P32 = 34, VTYPE_BM = 38, VDMAX1 = 45 };

static void fixed(const char *name, const unsigned char *b, size_t n)
{
    put("open_fixed", name, b, n);
}

static void corpus_open_fixed(void)
{
    char name[64];
    for (int k = 0; k < FZ_IMG_COUNT; k++) {   /* "tall": fanout builds only */
        unsigned char b[2] = { (unsigned char)k, FZ_SEAL_ALL };
        snprintf(name, sizeof name, "base-%s", fz_img_names[k]);
        fixed(name, b, sizeof b);
    }
    /* root of slot 0 (image "mixed": its newest root is in slot 1 after an
     * even number of commits, so damage both) */
    static const unsigned char pagecount_big[] = { 1, FZ_SEAL_ALL, OP_U64, 0, 32, 0, VPAGES1,
                                                   OP_U64, 1, 32, 0, VPAGES1 };
    fixed("root-pagecount-past-file", pagecount_big, sizeof pagecount_big);
    static const unsigned char pid_limit[] = { 1, FZ_SEAL_ALL, OP_U64, 0, 56, 0, V2P32,
                                               OP_U64, 1, 56, 0, V2P32 };
    fixed("root-pid-limit-huge", pid_limit, sizeof pid_limit);
    static const unsigned char ndelta[] = { 1, FZ_SEAL_ALL, OP_U32, 0, 88, 0, VDMAX1,
                                            OP_U32, 1, 88, 0, VDMAX1 };
    fixed("root-deltas-65", ndelta, sizeof ndelta);
    static const unsigned char pt_top[] = { 2, FZ_SEAL_ALL, OP_U32, 0, 72, 0, V1,
                                            OP_U32, 1, 72, 0, V1 };
    fixed("pt-top-page-1", pt_top, sizeof pt_top);
    static const unsigned char pt_height[] = { 2, FZ_SEAL_ALL, OP_U32, 0, 52, 0, V2,
                                               OP_U32, 1, 52, 0, V2 };
    fixed("pt-height-wrong", pt_height, sizeof pt_height);
    static const unsigned char height[] = { 0, FZ_SEAL_ALL, OP_U32, 0, 48, 0, V1 };
    fixed("fsm-height-1", height, sizeof height);
    static const unsigned char bm_copy[] = { 1, FZ_SEAL_ALL, OP_COPY, 2, 3 };
    fixed("bitmap-slot-copied", bm_copy, sizeof bm_copy);
    static const unsigned char root_copy[] = { 1, FZ_SEAL_ALL, OP_COPY, 0, 1 };
    fixed("root-slot-copied", root_copy, sizeof root_copy);
    /* free pages 40-43 of group 0 marked system (bits 10) in both bitmap
     * slots (pages 2 and 3: byte 32 + 40 / 4 of the page) */
    static const unsigned char bm_sys[] = { 0, FZ_SEAL_ALL, OP_BYTES, 0x2A, 0x08, 0, 0, 0xAA,
                                            OP_BYTES, 0x2A, 0x0C, 0, 0, 0xAA };
    fixed("bitmap-system-page", bm_sys, sizeof bm_sys);
    /* pages 48-55 in state 11 (never on disk) */
    static const unsigned char bm_pending[] = { 1, FZ_SEAL_ALL, OP_BYTES, 0x2C, 0x08, 0, 1, 0xFF, 0xFF,
                                                OP_BYTES, 0x2C, 0x0C, 0, 1, 0xFF, 0xFF };
    fixed("bitmap-pending-state", bm_pending, sizeof bm_pending);
    static const unsigned char trunc[] = { 1, FZ_SEAL_ALL, OP_LEN, (unsigned char)(20u << 2) };
    fixed("truncated-at-page", trunc, sizeof trunc);
    static const unsigned char trunc_mid[] = { 2, FZ_SEAL_ALL, OP_LEN, (unsigned char)(9u << 2 | 1) };
    fixed("truncated-mid-page", trunc_mid, sizeof trunc_mid);
    static const unsigned char extend[] = { 3, FZ_SEAL_ALL, OP_LEN, (unsigned char)(7u << 2 | 3) };
    fixed("extended-with-roots", extend, sizeof extend);
    static const unsigned char txn_newer[] = { 1, FZ_SEAL_ALL, OP_U64, 2, 8, 0, VTXN2,
                                               OP_U64, 3, 8, 0, VTXN2 };
    fixed("bitmap-newer-txn", txn_newer, sizeof txn_newer);
    /* image "tall" (fanout builds; elsewhere image 0; pages are u16 in
     * it): slot 2 in entry 1 of the level-1 index node (pages 4 and 5),
     * and group 3's bitmap (pages 11904, 11905) copied and changed */
    static const unsigned char tall_index[] = { FZ_IMG_TALL, FZ_SEAL_ALL, OP_U32, 4, 0, 44, 0, V2,
                                                OP_U32, 5, 0, 44, 0, V2 };
    fixed("tall-index-entries", tall_index, sizeof tall_index);
    static const unsigned char tall_bitmap[] = { FZ_IMG_TALL, FZ_SEAL_ALL, OP_COPY, 0x80, 0x2e, 0x81, 0x2e,
                                                 OP_U64, 0x80, 0x2e, 0x40, 0, V0 };
    fixed("tall-bitmap-group3", tall_bitmap, sizeof tall_bitmap);
    static const unsigned char no_reseal[] = { 1, 0, OP_BIT, 16, 0, 0, 3 };
    fixed("root-bitflip-no-reseal", no_reseal, sizeof no_reseal);
}

/* ---- ops/ ---------------------------------------------------------------------- */

/* opcodes (fuzz_ops.c): op % 20 */
enum { ALLOC = 0, FREE = 2, ABULK = 4, FBULK = 5, BEGIN = 6, COMMIT = 7, ROLLBACK = 8, ROOT = 9,
       PALLOC = 10, PFREE = 12, PWRITE = 13, WPTR = 14, REWRITE = 15, REOPEN = 16, FAILB = 17,
       PROBE = 18, APPEND = 20 };
/* pick_page / pick_pid selectors: 3 = an allocated one (then 2 / 1 index bytes) */
#define PICK_ALLOC(i) 3, (i), 0
#define PICK_PALLOC(i) 3, (i)

static void corpus_ops(void)
{
    static const unsigned char basic[] = {
        0x00, ALLOC, ALLOC, ALLOC, FREE, PICK_ALLOC(1), ABULK, 10, FBULK, 3, 1, PICK_ALLOC(0), 1,
        PICK_ALLOC(2), 0, ROOT, 1, 2, 3, 4, 5, 6, 7, 8, REOPEN, 1, PROBE, 1, 2, 3, 4, 5, 6, 7, 8,
    };
    put("ops", "regular", basic, sizeof basic);
    static const unsigned char prot[] = {
        0x00, PALLOC, PALLOC, PALLOC, PWRITE, PICK_PALLOC(0), 9, PWRITE, PICK_PALLOC(1), 10, PFREE,
        PICK_PALLOC(2), BEGIN, WPTR, PICK_PALLOC(0), 11, 1, WPTR, PICK_PALLOC(0), 12, 1, PALLOC,
        COMMIT, PALLOC, REOPEN, 0, PWRITE, PICK_PALLOC(0), 13,
    };
    put("ops", "protected", prot, sizeof prot);
    static const unsigned char txn[] = {
        0x01, BEGIN, ALLOC, ALLOC, PALLOC, ROOT, 9, 9, 9, 9, 9, 9, 9, 9, ROLLBACK, BEGIN, BEGIN,
        ABULK, 30, FREE, PICK_ALLOC(3), FREE, PICK_ALLOC(3), COMMIT, COMMIT, ROLLBACK, WPTR, 0, 0,
    };
    put("ops", "transactions", txn, sizeof txn);
    static const unsigned char misuse[] = {
        0x00, FREE, 0, 0, FREE, 0, 1, FREE, 1, 0, FREE, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, PFREE, 0, 0, PFREE, 1, 5, PWRITE, 2, 1, 2, 3, 4, 5, 6, 7, 8, 1, ALLOC, ALLOC, FBULK, 4,
        1, PICK_ALLOC(0), 0, 1, 0, 9, 1, 1, 0, ABULK, 0xfe, REOPEN, 0, ALLOC, PALLOC, WPTR, 0, 0, 0,
    };
    put("ops", "misuse", misuse, sizeof misuse);
    static const unsigned char growth[] = {
        0x00, ABULK, 210, 0x40, 0x00, ABULK, 210, 0xff, 0x01, ABULK, 39, PALLOC, PWRITE, 1, 0, 5,
        ABULK, 255, BEGIN, ABULK, 39, COMMIT,
    };
    put("ops", "growth-full", growth, sizeof growth);
    static const unsigned char poison[] = {
        0x05, ALLOC, PALLOC, PWRITE, PICK_PALLOC(0), 7,
        FAILB, 1, 2, PICK_PALLOC(0), PICK_ALLOC(0),   /* EIO under write_protected */
        ALLOC, BEGIN, COMMIT, REOPEN, 1, FAILB,        /* refused; read-only; FAILB reopens */
        BEGIN, PWRITE, PICK_PALLOC(0), 8, FAILB, 0, 0, REOPEN, 0,   /* ENOSPC under commit */
        FAILB, 1, 1, PICK_PALLOC(0), PICK_ALLOC(0), REOPEN, 0,      /* EIO under free */
    };
    put("ops", "failed-barrier", poison, sizeof poison);
    /* another tool appends 4464 bytes (not a whole page), then 1; growth
     * reuses them */
    static const unsigned char append[] = {
        0x0c, ALLOC, PALLOC, APPEND, 0x70, 0x11, 1, ABULK, 210, 0x90, 0x01, PWRITE, PICK_PALLOC(0), 3,
        APPEND, 0x01, 0x00, 0, ABULK, 39, REOPEN, 1,
    };
    put("ops", "appended-garbage", append, sizeof append);
    static unsigned char many[400];
    size_t n = 0;
    many[n++] = 0x0d;
    many[n++] = BEGIN;
    for (int i = 0; i < 80; i++)
        many[n++] = PALLOC;
    many[n++] = COMMIT;
    for (int i = 0; i < 40 && n + 4 < sizeof many; i++) {
        many[n++] = PWRITE;
        many[n++] = 3;
        many[n++] = (unsigned char)(i * 7);
        many[n++] = (unsigned char)i;
    }
    many[n++] = REOPEN;
    many[n++] = 1;
    put("ops", "page-table-tree", many, n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        perror(outdir);
        return 1;
    }
    corpus_open();
    corpus_open_fixed();
    corpus_ops();
    return failed;
}
