/*
 * format.c -- the on-disk encoding (docs/FORMAT.md, "Metadata pages" and
 * "The root"): the one writer and reader of metadata page headers, of the
 * root's fields, and of the seals (CRC32C) and checks of both.
 *
 * Owns: how a metadata page (bitmap, index node, page-table leaf or node)
 * is started, sealed and checked; how a root is started, its fields put
 * and got, sealed and checked.  The entries pages and roots carry are
 * encoded by the inline accessors of mp_internal.h ("format.c" section)
 * beside the declarations of this file.  Pure byte work: no pager, no I/O.
 * commit.c (writing), fsm.c and ptable.c (loading at open) and check.c (the
 * audit) all go through here.
 */
#include "mp_internal.h"
#include "crc32c.h"

int mp_all_zero(const unsigned char *b, size_t n)
{
    /* 8 bytes at a time (open and a reader's refresh check whole pages) */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        if (w)
            return 0;
    }
    for (; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* CRC32C of a page whose 4-byte CRC field at `at` counts as zero (the rule
 * for metadata pages and roots alike), without changing the page. */
static uint32_t crc_without(const unsigned char *page, uint32_t P, uint32_t at)
{
    static const unsigned char zero4[4];
    uint32_t crc = mp_crc32c(0, page, at);
    crc = mp_crc32c(crc, zero4, 4);
    return mp_crc32c(crc, page + at + 4, P - at - 4);
}

static uint32_t seal_at(unsigned char *page, uint32_t P, uint32_t at)
{
    mp_st32(page + at, 0);
    uint32_t crc = mp_crc32c(0, page, P);
    mp_st32(page + at, crc);
    return crc;
}

/* ---- metadata pages ------------------------------------------------------ */

void mp_meta_init(unsigned char *page, uint32_t P, uint32_t type, uint64_t txn, uint32_t level,
                  uint64_t index)
{
    memset(page, 0, P);
    mp_st32(page + MP_H_TYPE, type);
    mp_st64(page + MP_H_TXN, txn);
    mp_st32(page + MP_H_LEVEL, level);
    mp_st32(page + MP_H_INDEX, (uint32_t)index);
}

uint32_t mp_meta_seal(unsigned char *page, uint32_t P)
{
    return seal_at(page, P, MP_H_CRC);
}

/* Why a metadata page fails the rules of "Checksums and verification"
 * (docs/FORMAT.md): its header names another type, level or index, its
 * CRC is wrong, it is newer than the root that names it, or its CRC is not
 * the one its parent records.  NULL when it passes. */
const char *mp_meta_problem(const unsigned char *page, uint32_t P, uint32_t type, uint32_t level,
                            uint64_t index, uint32_t want_crc, uint64_t root_txn)
{
    if (mp_ld32(page + MP_H_TYPE) != type || mp_ld32(page + MP_H_LEVEL) != level ||
        mp_ld32(page + MP_H_INDEX) != (uint32_t)index || !mp_all_zero(page + MP_H_RESERVED, MP_HDR_SIZE - MP_H_RESERVED))
        return "bad header";
    uint32_t crc = crc_without(page, P, MP_H_CRC);
    if (crc != mp_ld32(page + MP_H_CRC))
        return "checksum mismatch";
    if (mp_ld64(page + MP_H_TXN) > root_txn)
        return "written by a newer transaction";
    if (crc != want_crc)
        return "checksum differs from the one its parent records";
    return NULL;
}

/* ---- roots ----------------------------------------------------------------- */

void mp_root_init(unsigned char *root, uint32_t P)
{
    memset(root, 0, P);
    memcpy(root + MP_R_MAGIC, MP_MAGIC, 8);
    mp_st32(root + MP_R_VERSION, MP_FORMAT_VERSION);
    mp_st32(root + MP_R_PAGESIZE, P);
}

void mp_root_put(unsigned char *root, const mp_rootfields *f)
{
    mp_st32(root + MP_R_FLAGS, f->flags);
    mp_st64(root + MP_R_TXN, f->txn);
    mp_st64(root + MP_R_PAGECOUNT, f->page_count);
    mp_st64(root + MP_R_USERROOT, f->user_root);
    mp_st32(root + MP_R_HEIGHT, f->height);
    mp_st32(root + MP_R_PT_HEIGHT, f->pt_height);
    mp_st64(root + MP_R_PT_PIDS, f->pt_pids);
    mp_st64(root + MP_R_PT_COUNT, f->pt_count);
    mp_put_ptref(root + MP_R_PT_TOP, f->pt_top, f->pt_top_crc);
    mp_st64(root + MP_R_PT_TREEPIDS, f->pt_tree_pids);
    mp_st32(root + MP_R_PT_NDELTA, f->pt_ndelta);
    mp_st32(root + MP_R_FM_NCARRY, f->fm_ncarry);
}

void mp_root_get(const unsigned char *root, mp_rootfields *f)
{
    f->magic = memcmp(root + MP_R_MAGIC, MP_MAGIC, 8) == 0;
    f->version = mp_ld32(root + MP_R_VERSION);
    f->page_size = mp_ld32(root + MP_R_PAGESIZE);
    f->flags = mp_ld32(root + MP_R_FLAGS);
    f->txn = mp_ld64(root + MP_R_TXN);
    f->page_count = mp_ld64(root + MP_R_PAGECOUNT);
    f->user_root = mp_ld64(root + MP_R_USERROOT);
    f->height = mp_ld32(root + MP_R_HEIGHT);
    f->pt_height = mp_ld32(root + MP_R_PT_HEIGHT);
    f->pt_pids = mp_ld64(root + MP_R_PT_PIDS);
    f->pt_count = mp_ld64(root + MP_R_PT_COUNT);
    f->pt_top = mp_ptref_pgno(root + MP_R_PT_TOP);
    f->pt_top_crc = mp_ptref_crc(root + MP_R_PT_TOP);
    f->pt_tree_pids = mp_ld64(root + MP_R_PT_TREEPIDS);
    f->pt_ndelta = mp_ld32(root + MP_R_PT_NDELTA);
    f->fm_ncarry = mp_ld32(root + MP_R_FM_NCARRY);
}

uint32_t mp_root_seal(unsigned char *root, uint32_t P)
{
    return seal_at(root, P, MP_R_CRC);
}

int mp_root_sealed(const unsigned char *root, uint32_t P)
{
    return crc_without(root, P, MP_R_CRC) == mp_ld32(root + MP_R_CRC);
}

/* The header rules of a sealed root that need nothing but the root: no
 * flags, a transaction id in (0, MP_TXN_MAX], the reserved bytes zero, at
 * most MP_FM_CARRY_MAX carried free-map entries. */
const char *mp_root_problem(const unsigned char *root, const mp_rootfields *f)
{
    /* A transaction id past 2^63 cannot come from counting commits (one a
     * nanosecond would take 292 years); accepting it would let d_txn + 1
     * wrap to 0, an id no open accepts, and lose the next commit. */
    if (f->flags != 0 || f->txn == 0 || f->txn > MP_TXN_MAX ||
        !mp_all_zero(root + MP_R_RESERVED, MP_ROOT_HDR_SIZE - MP_R_RESERVED) || f->fm_ncarry > MP_FM_CARRY_MAX)
        return "bad root header";
    return NULL;
}

uint64_t mp_root_pt_tail(const mp_rootfields *f, uint32_t P)
{
    return f->pt_ndelta > MP_PT_DELTA_MAX ? P : (uint64_t)f->pt_ndelta * MP_PT_DELTA_SIZE;
}
