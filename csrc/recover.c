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
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
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
    uint32_t crc;            /* the root's own CRC: tells two roots of one txn apart */
    uint64_t txn, page_count;
} cand;

typedef struct cands {
    cand c[16];
    int n;
    int saw_magic;
    int64_t bad_version;     /* a version field seen that this build does not read */
    uint32_t only_P;         /* the page size gathered at (0: every one) */
    /* with only_P: the txn and CRC fields each slot held (whatever it
     * holds; mp_reader_refresh compares them) */
    uint64_t raw_txn[2];
    uint32_t raw_crc[2];
} cands;

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
    if (f.version < MP_FORMAT_OLDEST || f.version > MP_FORMAT_VERSION) {
        *bad_version = f.version;   /* any u32, 0 included */
        return 0;
    }
    if (f.page_size != P)
        return 0;
    return mp_root_sealed(buf, P);
}

/* The root slots that pass read_slot, newest first (ties keep slot order):
 * at every page size when only_P is 0 (open), else at only_P (refresh).
 * buf: MP_MAX_PAGE_SIZE bytes. */
static void gather(mp_pager *p, uint32_t only_P, unsigned char *buf, cands *cs)
{
    /* A reader's file grows under it: the size first, so that it covers
     * every root read after it (a writer grows the file before it commits
     * a root that needs the growth). */
    struct stat st;
    if (p->readonly && fstat(p->fd, &st) == 0 && (uint64_t)st.st_size > p->file_bytes)
        p->file_bytes = (uint64_t)st.st_size;
    cs->n = 0;
    cs->only_P = only_P;
    cs->saw_magic = 0;
    cs->bad_version = -1;
    for (uint32_t P = MP_MIN_PAGE_SIZE; P <= MP_MAX_PAGE_SIZE; P *= 2) {
        if (only_P && P != only_P)
            continue;
        /* slot 0 is at offset 0 whatever the page size; its page size
         * field says how long it is */
        for (int slot = 0; slot < 2; slot++) {
            mp_rootfields f;
            memset(buf, 0xFF, MP_R_TXN + 8);   /* a slot not read: no txn */
            int ok = read_slot(p->fd, p->file_bytes, slot, P, buf, &cs->saw_magic, &cs->bad_version);
            cs->raw_txn[slot] = mp_ld64(buf + MP_R_TXN);
            cs->raw_crc[slot] = mp_ld32(buf + MP_R_CRC);
            if (ok) {
                mp_root_get(buf, &f);
                cs->c[cs->n++] = (cand){ slot, P, mp_ld32(buf + MP_R_CRC), f.txn, f.page_count };
            }
        }
    }
    for (int i = 1; i < cs->n; i++)
        for (int j = i; j > 0 && cs->c[j].txn > cs->c[j - 1].txn; j--) {
            cand t = cs->c[j]; cs->c[j] = cs->c[j - 1]; cs->c[j - 1] = t;
        }
}

/* The newest candidate is still the one in `was` (same slot, txn, CRC). */
static int same_newest(const cands *now, const cands *was)
{
    if (now->n == 0 || was->n == 0)
        return now->n == was->n;
    const cand *a = &now->c[0], *b = &was->c[0];
    return a->slot == b->slot && a->txn == b->txn && a->crc == b->crc && a->P == b->P;
}

static mp_err no_candidate(const mp_pager *p, const cands *cs, mp_error *err)
{
    if (cs->bad_version >= 0)
        return mp_set_error(err, MP_EVERSION, 0, p->path,
                            "format version %lld is not supported (this build reads versions %u to %u)",
                            (long long)cs->bad_version, MP_FORMAT_OLDEST, MP_FORMAT_VERSION);
    if (cs->saw_magic)
        return mp_set_error(err, MP_ECORRUPT, 0, p->path, "corrupt: both root slots fail their checksum");
    return mp_set_error(err, MP_ENOTMP, 0, p->path, "not a mappedpages file (no valid root slot)");
}

/* How often a reader starts over (readers.c R3) before giving up: only a
 * writer that commits again and again faster than a snapshot can be read
 * gets there. */
#define SNAPSHOT_TRIES 10000

/* readers.c R3 for a reader about to use candidate k of cs: hold its
 * snapshot, then check that no commit is deciding and the newest root is
 * still cs's.  1: held; 0: start over (nothing held but what was held
 * before); -1: an error (*e). */
static int hold_snapshot(mp_pager *p, const cands *cs, int k, unsigned char *buf, int *e)
{
    uint64_t txn = cs->c[k].txn;
    if ((*e = mp_rd_hold(p->fd, txn)) != 0)
        return -1;
    int busy = 0;
    cands now;
    if ((*e = mp_rd_commit_busy(p->fd, &busy)) == 0 && !busy) {
        gather(p, cs->only_P, buf, &now);
        if (same_newest(&now, cs))
            return 1;
    }
    if (txn != p->snap_held)
        mp_rd_drop(p->fd, txn);
    if (*e)
        return -1;
    sched_yield();
    return 0;
}

/* Choose the root to open at among cs (newest first), verify it and
 * everything below it, and install it.  A reader holds the snapshot it
 * verifies (hold_snapshot) and starts over (0) when the writer may have
 * changed what it read; 1: installed; -1: failed (err). */
static int choose(mp_pager *p, cands *cs, unsigned char *buf, int *chosen, mp_error *err)
{
    char msg[sizeof err->msg] = "";
    *chosen = -1;
    for (int i = 0; i < cs->n; i++) {
        char why[200];
        const cand *c = &cs->c[i];
        if (!p->iobuf || p->geom.P != c->P) {
            mp_geom_init(&p->geom, c->P);
            free(p->iobuf);
            p->iobuf = malloc(c->P);
            if (!p->iobuf) {
                mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
                return -1;
            }
        }
        /* (a root with an impossible id is not held: verify_root rejects it) */
        int hold = p->readonly && c->txn <= MP_TXN_MAX;
        if (hold) {
            int e, h = hold_snapshot(p, cs, i, buf, &e);
            if (h < 0) {
                mp_set_error(err, mp_err_from_errno(e), e, p->path, "the readers' lock");
                return -1;
            }
            if (h == 0)
                return 0;
        }
        if (p->readonly) {   /* room for a copy of the root (check.c reads it) */
            unsigned char *copy = realloc(p->snap_root, c->P);
            if (!copy) {
                if (hold && c->txn != p->snap_held)
                    mp_rd_drop(p->fd, c->txn);
                mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
                return -1;
            }
            p->snap_root = copy;
        }
        loaded ld;
        int e = mp_os_read_page(p, (uint64_t)c->slot, buf);
        /* the slot must still hold the root gathered (a writer may have
         * rewritten it since, twice) */
        int same = e == 0 && mp_root_sealed(buf, c->P) && mp_ld32(buf + MP_R_CRC) == c->crc;
        if (e == 0 && !same && p->readonly) {
            if (hold && c->txn != p->snap_held)
                mp_rd_drop(p->fd, c->txn);
            return 0;
        }
        int ok = same && verify_root(p, buf, &ld, why, sizeof why);
        if (e)
            mp_msg(why, sizeof why, "read error: %s", strerror(e));
        else if (!same)
            mp_msg(why, sizeof why, "the root changed while the file was being opened");
        if (ok) {
            install(p, &ld, c->slot);
            p->snap_crc = c->crc;
            if (p->readonly)
                memcpy(p->snap_root, buf, c->P);
            if (p->readonly && p->snap_held != c->txn) {
                if (p->snap_held)
                    mp_rd_drop(p->fd, p->snap_held);
                p->snap_held = c->txn;
            }
            *chosen = i;
            return 1;
        }
        if (hold) {
            /* a commit may have rewritten what this root names while it
             * was read: then start over, else it is a real fault */
            cands now;
            if (c->txn != p->snap_held)
                mp_rd_drop(p->fd, c->txn);
            gather(p, cs->only_P, buf, &now);
            if (!same_newest(&now, cs))
                return 0;
        }
        append(msg, sizeof msg, slot_name(c->slot), why);
    }
    size_t n = strlen(msg);
    if (n >= 2)
        msg[n - 2] = 0;
    mp_set_error(err, MP_ECORRUPT, 0, p->path, "corrupt: %s", msg);
    return -1;
}

/* Gather and choose until a root is installed (a reader may start over). */
static mp_err select_root(mp_pager *p, uint32_t only_P, unsigned char *buf, cands *cs, int *chosen,
                          mp_error *err)
{
    for (int tries = 0;; tries++) {
        gather(p, only_P, buf, cs);
        if (cs->n == 0)
            return no_candidate(p, cs, err);
        int r = choose(p, cs, buf, chosen, err);
        if (r > 0)
            return MP_OK;
        if (r < 0)
            return err->code;
        if (tries == SNAPSHOT_TRIES)
            return mp_set_error(err, MP_ELOCKED, 0, p->path,
                                "no snapshot after %d tries: the writer commits faster than one can be read",
                                SNAPSHOT_TRIES);
    }
}

/* The pager's structures a newly installed root needs: the mapping up to
 * its page count, the free-space counts and held list, the free pids. */
static mp_err settle_installed(mp_pager *p, mp_error *err)
{
    if (mp_os_map_to(p, p->page_count * p->geom.P) != MP_OK)
        return mp_set_error(err, MP_ENOMEM, 0, p->path, "%s", p->errmsg);
    if (mp_fsm_init(p) != MP_OK || mp_pt_init_free(p) != MP_OK)
        return mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
    return MP_OK;
}

mp_err mp_recover(mp_pager *p, mp_error *err)
{
    unsigned char *buf = malloc(MP_MAX_PAGE_SIZE);
    if (!buf)
        return mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
    cands cs;
    int chosen;
    mp_err rc = select_root(p, 0, buf, &cs, &chosen, err);
    free(buf);
    if (rc != MP_OK)
        return rc;
    /* Map the pages (only users' pages are read through the mapping). */
    p->want_reserve = mp_os_default_reserve(p->geom.P, p->opt_max_bytes);
    if (mp_os_reserve(p, p->want_reserve, p->page_count * p->geom.P, err) != MP_OK)
        return MP_ENOMEM;

    /* The other slot: a valid older root, or anything else (C5). */
    int o = p->cur_slot ^ 1;
    int valid_older = 0;
    for (int i = 0; i < cs.n; i++)
        if (cs.c[i].slot == o && cs.c[i].P == p->geom.P && cs.c[i].txn < p->d_txn)
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
    return settle_installed(p, err);
}

/* A reader moves to the newest commit (see mp_refresh in pager.c). */
mp_err mp_reader_refresh(mp_pager *p, mp_error *err)
{
    /* Nothing committed since: both slots' transaction ids and CRCs are as
     * the last look at them saw, read through the mapping (no system
     * call; a commit writes its root with pwrite, which the mapping shows
     * at once, so a refresh after a commit returned sees it). */
    const unsigned char *m = p->map;
    if (p->seen_valid && mp_ld64(m + MP_R_TXN) == p->seen_txn[0] && mp_ld32(m + MP_R_CRC) == p->seen_crc[0] &&
        mp_ld64(m + p->geom.P + MP_R_TXN) == p->seen_txn[1] && mp_ld32(m + p->geom.P + MP_R_CRC) == p->seen_crc[1])
        return MP_OK;
    unsigned char *buf = malloc(MP_MAX_PAGE_SIZE);
    if (!buf)
        return mp_set_error(err, MP_ENOMEM, 0, p->path, "out of memory");
    cands cs;
    gather(p, p->geom.P, buf, &cs);
    mp_err rc = MP_OK;
    int chosen = 0;
    int at_newest = cs.n > 0 && cs.c[0].slot == p->cur_slot && cs.c[0].txn == p->d_txn &&
                    cs.c[0].crc == p->snap_crc;
    if (!at_newest)
        rc = select_root(p, p->geom.P, buf, &cs, &chosen, err);
    free(buf);
    if (rc != MP_OK)
        return rc;
    memcpy(p->seen_txn, cs.raw_txn, sizeof p->seen_txn);   /* the look that chose */
    memcpy(p->seen_crc, cs.raw_crc, sizeof p->seen_crc);
    p->seen_valid = 1;
    if (at_newest)
        return MP_OK;
    p->recovered = chosen > 0;
    return settle_installed(p, err);
}
