/*
 * recover.c -- open-time recovery: choosing the root to open at.
 *
 * Owns: reading the two root slots, verifying a root and everything below
 * it (verify_root: the root's header, the free-space map and page table it
 * names, their cross-check), installing the one chosen, and clearing a
 * root slot that holds no valid older root (C5 below).
 *
 *   C5  A root rejected at open is cleared (0xFF), with a barrier, before a
 *       writer commits anything, so it can never validate again later.
 *
 * The commit protocol these roots come from, and C1-C4, C6: commit.c.
 */
#include "mp_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- verification ------------------------------------------------------ */

/* What a verified root describes, before it becomes the pager's state. */
typedef struct loaded {
    uint64_t txn, user_root;
    mp_fsmload fsm;        /* the free-space map (fsm.c) */
    mp_ptload pt;          /* the page table (ptable.c) */
} loaded;

/* A root slot cleared by open (see mp_recover). */
static int all_cleared(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != MP_CLEARED_BYTE)
            return 0;
    return 1;
}

/* Every system page outside the reserved runs is exactly one page the page
 * table uses (its own pages, contents), and vice versa: refs are those
 * pages, fsm the loaded map. */
static int refs_match(const mp_geom *ge, mp_fsmload *fsm, const uint64_t *refs, uint64_t nrefs)
{
    int ok = nrefs == fsm->extra_system;
    uint64_t k = 0;
    for (; ok && k < nrefs; k++) {
        uint64_t g = refs[k] / ge->G, i = refs[k] - g * ge->G;
        uint64_t *bm = fsm->bm + g * ge->words;
        ok = i >= mp_group_run_end(ge, g) - g * ge->G && mp_st_get(bm, i) == ST_SYSTEM;
        if (ok)
            mp_st_set(bm, i, ST_PENDING);   /* marks it seen: a second reference fails */
    }
    while (k-- > 0) {
        uint64_t g = refs[k] / ge->G;
        if (mp_st_get(fsm->bm + g * ge->words, refs[k] - g * ge->G) == ST_PENDING)
            mp_st_set(fsm->bm + g * ge->words, refs[k] - g * ge->G, ST_SYSTEM);
    }
    return ok;
}

/* Verify the root in `root` (one page, its seal checked) and everything
 * below it, reading metadata pages with pread into p->iobuf; fill ld on
 * success.  The checks it runs, in order: the root's own header
 * (format.c), the free-space map it names (fsm.c), the page table it names
 * (ptable.c), and that the two agree about the pages the table uses. */
static int verify_root(mp_pager *p, const unsigned char *root, loaded *ld, char *why, size_t wl)
{
    mp_rootfields f;
    memset(ld, 0, sizeof *ld);
    mp_root_get(root, &f);
    const char *bad = mp_root_problem(root, &f);
    if (bad) {
        mp_msg(why, wl, "%s", bad);
        return 0;
    }
    ld->txn = f.txn;
    ld->user_root = f.user_root;
    if (!mp_fsm_load(p, root, &f, &ld->fsm, why, wl))
        return 0;
    uint64_t *refs, nrefs;
    if (!mp_pt_load(p, root, &f, &ld->pt, &refs, &nrefs, why, wl)) {
        mp_fsmload_free(&ld->fsm);
        return 0;
    }
    int ok = refs_match(&p->geom, &ld->fsm, refs, nrefs);
    free(refs);
    if (!ok) {
        mp_msg(why, wl, "page table and bitmaps disagree about the pages it uses");
        mp_fsmload_free(&ld->fsm);
        mp_ptload_free(&ld->pt);
    }
    return ok;
}

static void install(mp_pager *p, loaded *ld, int slot)
{
    mp_fsm_install(p, &ld->fsm);
    mp_pt_install(p, &ld->pt);
    p->cur_slot = slot;
    p->d_txn = ld->txn;
    p->user_root = p->d_user_root = ld->user_root;
}

/* ---- open -------------------------------------------------------------- */

typedef struct cand {
    int slot;
    uint32_t P;
    uint64_t txn, page_count;
} cand;

static const char *slot_name(int s) { return s ? "root slot 1" : "root slot 0"; }

/* Append "slot: why; " to msg. */
static void append(char *msg, size_t ml, const char *slot, const char *why)
{
    size_t n = strlen(msg);
    if (n + 1 < ml)
        mp_msg(msg + n, ml - n, "%s: %s; ", slot, why);
}

/* Read root slot `slot` assuming page size P: 1 when its magic, version and
 * checksum are right. */
static int read_slot(int fd, uint64_t file_bytes, int slot, uint32_t P, unsigned char *buf,
                     int *saw_magic, int64_t *bad_version)
{
    uint64_t off = (uint64_t)slot * P;
    if (off + P > file_bytes)
        return 0;
    if (pread(fd, buf, P, (off_t)off) != (ssize_t)P)
        return 0;
    mp_rootfields f;
    mp_root_get(buf, &f);
    if (!f.magic)
        return 0;
    *saw_magic = 1;
    if (f.version != MP_FORMAT_VERSION) {
        *bad_version = f.version;   /* any u32, 0 included */
        return 0;
    }
    if (f.page_size != P)
        return 0;
    return mp_root_sealed(buf, P);
}

mp_err mp_recover(mp_pager *p, mp_error *err)
{
    unsigned char *buf = malloc(MP_MAX_PAGE_SIZE);
    if (!buf)
        return mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
    cand c[16];
    int nc = 0, saw_magic = 0;
    int64_t bad_version = -1;   /* a version field seen that this build does not read */
    for (uint32_t P = MP_MIN_PAGE_SIZE; P <= MP_MAX_PAGE_SIZE; P *= 2) {
        /* slot 0 is at offset 0 whatever the page size; its page size
         * field says how long it is */
        for (int slot = 0; slot < 2; slot++) {
            mp_rootfields f;
            if (read_slot(p->fd, p->file_bytes, slot, P, buf, &saw_magic, &bad_version)) {
                mp_root_get(buf, &f);
                c[nc++] = (cand){ slot, P, f.txn, f.page_count };
            }
        }
    }
    free(buf);
    if (nc == 0) {
        if (bad_version >= 0)
            return mp_set_error(err, MP_EVERSION, 0, p->path,
                                "format version %lld is not supported (this build reads version %u)",
                                (long long)bad_version, MP_FORMAT_VERSION);
        if (saw_magic)
            return mp_set_error(err, MP_ECORRUPT, 0, p->path, "corrupt: both root slots fail their checksum");
        return mp_set_error(err, MP_ENOTMP, 0, p->path, "not a mappedpages file (no valid root slot)");
    }
    /* newest first; ties keep slot order */
    for (int i = 1; i < nc; i++)
        for (int j = i; j > 0 && c[j].txn > c[j - 1].txn; j--) {
            cand t = c[j]; c[j] = c[j - 1]; c[j - 1] = t;
        }

    char msg[sizeof err->msg] = "";
    int chosen = -1;
    for (int i = 0; i < nc && chosen < 0; i++) {
        char why[200];
        if (!p->iobuf || p->geom.P != c[i].P) {
            mp_geom_init(&p->geom, c[i].P);
            free(p->iobuf);
            p->iobuf = malloc(c[i].P);
            if (!p->iobuf)
                return mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
        }
        loaded ld;
        unsigned char *root = malloc(c[i].P);
        if (!root)
            return mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
        int e = mp_os_read_page(p, (uint64_t)c[i].slot, root);
        int ok = e == 0 && verify_root(p, root, &ld, why, sizeof why);
        free(root);
        if (e)
            mp_msg(why, sizeof why, "read error: %s", strerror(e));
        if (ok) {
            install(p, &ld, c[i].slot);
            chosen = i;
        } else {
            append(msg, sizeof msg, slot_name(c[i].slot), why);
        }
    }
    if (chosen < 0) {
        size_t n = strlen(msg);
        if (n >= 2)
            msg[n - 2] = 0;
        return mp_set_error(err, MP_ECORRUPT, 0, p->path, "corrupt: %s", msg);
    }
    /* Map the pages (only users' pages are read through the mapping). */
    p->want_reserve = mp_os_default_reserve(p->geom.P, p->opt_max_bytes);
    if (mp_os_reserve(p, p->want_reserve, p->page_count * p->geom.P, err) != MP_OK)
        return MP_ENOMEM;
    if (mp_os_map_to(p, p->page_count * p->geom.P) != MP_OK)
        return mp_set_error(err, MP_ENOMEM, 0, p->path, "%s", p->errmsg);

    /* The other slot: a valid older root, or anything else (C5). */
    int o = p->cur_slot ^ 1;
    int valid_older = 0;
    for (int i = 0; i < nc; i++)
        if (c[i].slot == o && c[i].P == p->geom.P && c[i].txn < p->d_txn)
            valid_older = 1;
    /* A cleared slot is not proof either: an earlier open may have cleared
     * it with a barrier that failed, leaving the pattern only in the page
     * cache.  So a writer clears any slot that is not a valid older root,
     * durably (one extra barrier, only for files that are new or were
     * recovered).  It writes 0xFF bytes, not zeros: a torn root is often
     * its new first sector over stale later ones that should have been
     * zero, so a torn clearing with zeros could complete it.  No valid root
     * holds a sector of 0xFF bytes (docs/FORMAT.md), so any mix of the two
     * that includes a cleared sector is invalid. */
    if (!valid_older) {
        int e = mp_os_read_page(p, (uint64_t)o, p->iobuf);
        if (e || !(mp_all_zero(p->iobuf, p->geom.P) || all_cleared(p->iobuf, p->geom.P)))
            p->recovered = 1;
        if (!p->readonly) {
            memset(p->iobuf, MP_CLEARED_BYTE, p->geom.P);
            e = mp_os_write_page(p, (uint64_t)o, p->iobuf);
            if (!e)
                e = mp_os_barrier(p);
            if (e)
                return mp_set_error(err, mp_err_from_errno(e), e, p->path, "cannot invalidate the rejected root");
        }
    }
    if (mp_fsm_init(p) != MP_OK || mp_pt_init_free(p) != MP_OK)
        return mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
    return MP_OK;
}
