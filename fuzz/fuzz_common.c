/*
 * fuzz_common.c -- helpers shared by the fuzz targets and make_corpus:
 * temp files, valid base images, checksum repair (fz_reseal) and the
 * open/check/iterate/mutate/reopen routine (fz_exercise).  See
 * fuzz/README.md.
 *
 * It uses the core's internal geometry helpers (mp_internal.h) to lay out
 * the walk exactly as docs/FORMAT.md does, so a -DMP_TEST_FANOUT build
 * repairs its own tiny-node geometry.
 */
#include "mp_internal.h"
#include "crc32c.h"
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- files --------------------------------------------------------------- */

static char tmp_paths[4][512];

/* at exit: remove this process's temp files (a crash leaves them; they
 * are named by pid, so they never collide) */
static void remove_tmp(void)
{
    for (int i = 0; i < 4; i++)
        if (tmp_paths[i][0])
            unlink(tmp_paths[i]);
}

const char *fz_tmp_path(int slot, const char *name)
{
    static char (*paths)[512] = tmp_paths;
    static const char *dir;
    if (!dir) {
        atexit(remove_tmp);
        struct stat st;
        const char *t = getenv("MP_FUZZ_TMPDIR");
        if (t && *t)
            dir = t;
        else if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
            dir = "/dev/shm";
        else if ((t = getenv("TMPDIR")) && *t)
            dir = t;
        else
            dir = "/tmp";
    }
    slot &= 3;
    snprintf(paths[slot], sizeof paths[slot], "%s/mpfuzz-%ld-%s", dir, (long)getpid(), name);
    return paths[slot];
}

int fz_write_file(const char *path, const void *buf, size_t len)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno;
    const unsigned char *b = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t r = write(fd, b + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            return e;
        }
        done += (size_t)r;
    }
    close(fd);
    return 0;
}

unsigned char *fz_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    size_t done = 0;
    while (buf && done < n) {
        ssize_t r = read(fd, buf + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            buf = NULL;
            break;
        }
        done += (size_t)r;
    }
    close(fd);
    if (buf)
        *len = n;
    return buf;
}

/* ---- base images -------------------------------------------------------- */

const char *const fz_img_names[FZ_IMG_COUNT] = {
    "empty", "mixed", "tree", "tiny", "grown", "mixed2k", "empty8k", "tall",
};

#define BUILD_OK(call)                                                           \
    do {                                                                         \
        mp_err rc_ = (call);                                                     \
        if (rc_ != MP_OK) {                                                      \
            fprintf(stderr, "fz_build_image: %s: %s (%s)\n", #call, mp_errname(rc_), \
                    p ? mp_errmsg(p) : "");                                      \
            goto fail;                                                           \
        }                                                                        \
    } while (0)

static void stamp(mp_pager *p, mp_pgno id)
{
    unsigned char *pg = mp_page_ptr(p, id);
    uint32_t P = mp_page_size(p);
    for (uint32_t i = 0; i < P; i++)
        pg[i] = (unsigned char)(id * 31u + i);
}

static void fill_prot(unsigned char *buf, uint32_t P, mp_pgno pid, unsigned v)
{
    memset(buf, (int)v, P);
    memcpy(buf, &pid, 8);
}

/* regular pages, protected pages with content, a transaction with an
 * in-place protected write, and a last set_root so both roots are valid */
static int build_mixed(mp_pager *p)
{
    uint32_t P = mp_page_size(p);
    unsigned char *buf = malloc(P);
    mp_pgno ids[8], pid[6], id;
    if (!buf)
        return 0;
    BUILD_OK(mp_alloc_bulk(p, 8, ids));
    for (int i = 0; i < 8; i++)
        stamp(p, ids[i]);
    BUILD_OK(mp_free(p, ids[1]));
    BUILD_OK(mp_free(p, ids[5]));
    BUILD_OK(mp_set_root(p, 0x1234));
    for (int i = 0; i < 6; i++)
        BUILD_OK(mp_alloc_protected(p, &pid[i]));
    for (int i = 0; i < 6; i++) {
        if (i == 3)
            continue;
        fill_prot(buf, P, pid[i], 0x40u + (unsigned)i);
        BUILD_OK(mp_write_protected(p, pid[i], buf));
    }
    BUILD_OK(mp_free_protected(p, pid[2]));
    BUILD_OK(mp_begin(p));
    void *w;
    BUILD_OK(mp_protected_write_ptr(p, pid[1], &w));
    memset((unsigned char *)w + 8, 0x77, 100);
    BUILD_OK(mp_alloc(p, &id));
    stamp(p, id);
    BUILD_OK(mp_commit(p));
    BUILD_OK(mp_set_root(p, 42));
    free(buf);
    return 1;
fail:
    free(buf);
    return 0;
}

/* 70 pids allocated in one transaction (more than the root can carry, so
 * the table is written as a tree: two leaves under a node with 1 KiB
 * pages, a taller tree in a fanout build), then writes and frees carried
 * in the root on top of it */
static int build_tree(mp_pager *p)
{
    uint32_t P = mp_page_size(p);
    unsigned char *buf = malloc(P);
    mp_pgno pid, ids[4];
    if (!buf)
        return 0;
    BUILD_OK(mp_begin(p));
    for (int i = 0; i < 70; i++)
        BUILD_OK(mp_alloc_protected(p, &pid));
    BUILD_OK(mp_commit(p));
    static const mp_pgno wr[] = { 0, 5, 64, 69 };
    for (int i = 0; i < 4; i++) {
        fill_prot(buf, P, wr[i], 0x60u + (unsigned)i);
        BUILD_OK(mp_write_protected(p, wr[i], buf));
    }
    BUILD_OK(mp_free_protected(p, 10));
    BUILD_OK(mp_free_protected(p, 65));
    BUILD_OK(mp_alloc_bulk(p, 4, ids));
    for (int i = 0; i < 4; i++)
        stamp(p, ids[i]);
    BUILD_OK(mp_free(p, ids[2]));
    BUILD_OK(mp_set_root(p, 7));
    free(buf);
    return 1;
fail:
    free(buf);
    return 0;
}

#ifdef MP_TEST_FANOUT
/* Grow the file past K groups (allocate, then free all but a few pages in
 * every group), so the free-space map gets a level of index nodes; a few
 * protected pages too. */
static int build_tall(mp_pager *p)
{
    const mp_geom *ge = &p->geom;
    size_t n = (size_t)ge->K * ge->G + 64;
    mp_pgno *ids = malloc(n * sizeof *ids), *keep = malloc(n * sizeof *keep), pid;
    unsigned char *buf = malloc(ge->P);
    size_t nfree = 0, nkeep = 0;
    if (!ids || !keep || !buf)
        goto fail;
    BUILD_OK(mp_alloc_bulk(p, n, ids));
    for (size_t i = 0; i < n; i++) {
        if (i % 1999 == 0)
            keep[nkeep++] = ids[i];
        else
            ids[nfree++] = ids[i];
    }
    BUILD_OK(mp_free_bulk(p, nfree, ids));
    for (size_t i = 0; i < nkeep; i++)
        stamp(p, keep[i]);
    for (int i = 0; i < 3; i++) {
        BUILD_OK(mp_alloc_protected(p, &pid));
        fill_prot(buf, ge->P, pid, 0x30u + (unsigned)i);
        BUILD_OK(mp_write_protected(p, pid, buf));
    }
    BUILD_OK(mp_set_root(p, 99));
    free(ids);
    free(keep);
    free(buf);
    return 1;
fail:
    free(ids);
    free(keep);
    free(buf);
    return 0;
}
#endif

/* A created file cut down to its reserved run: page count = the end of
 * group 0's reserved run, root CRC recomputed, file truncated.  Valid by
 * docs/FORMAT.md, though mp_create never makes one. */
static unsigned char *shrink_to_tiny(unsigned char *img, size_t *len, uint32_t P)
{
    mp_geom ge;
    mp_geom_init(&ge, P);
    uint64_t pc = mp_group_run_end(&ge, 0);
    if (pc * P > *len)
        return img;
    mp_st64(img + MP_R_PAGECOUNT, pc);
    mp_st32(img + MP_R_CRC, 0);
    mp_st32(img + MP_R_CRC, mp_crc32c(0, img, P));
    *len = (size_t)(pc * P);
    return img;
}

unsigned char *fz_build_image(int kind, size_t *len, uint32_t *page_size)
{
    const char *path = fz_tmp_path(3, "img.mp");
#ifndef MP_TEST_FANOUT
    if (kind == FZ_IMG_TALL)
        return NULL;
#endif
    uint32_t P = kind == FZ_IMG_MIXED2K ? 2048 : kind == FZ_IMG_EMPTY8K ? 8192 : 1024;
    mp_options o = { .page_size = P, .max_bytes = 64u << 20 };
    mp_error err;
    mp_pager *p = NULL;
    unsigned char *img = NULL;
    unlink(path);
    if (mp_create(path, &o, &p, &err) != MP_OK) {
        fprintf(stderr, "fz_build_image: create %s: %s\n", path, err.msg);
        return NULL;
    }
    int ok = 1;
    if (kind == FZ_IMG_MIXED || kind == FZ_IMG_MIXED2K)
        ok = build_mixed(p);
    else if (kind == FZ_IMG_TREE)
        ok = build_tree(p);
#ifdef MP_TEST_FANOUT
    else if (kind == FZ_IMG_TALL)
        ok = build_tall(p) && p->d_height >= 1;
#endif
    if (ok && mp_check(p) != MP_OK) {
        fprintf(stderr, "fz_build_image: check: %s\n", mp_errmsg(p));
        ok = 0;
    }
    mp_close(p);
    p = NULL;
    if (ok)
        img = fz_read_file(path, len);
    unlink(path);
    if (!img)
        return NULL;
    if (kind == FZ_IMG_TINY || kind == FZ_IMG_GROWN)
        img = shrink_to_tiny(img, len, P);
    if (kind == FZ_IMG_GROWN) {
        size_t extra = 3000;
        unsigned char *g = realloc(img, *len + extra);
        if (!g) {
            free(img);
            return NULL;
        }
        img = g;
        uint32_t x = 12345;
        for (size_t i = 0; i < extra; i++) {
            x = x * 1103515245u + 12345u;
            img[*len + i] = (unsigned char)(x >> 16);
        }
        *len += extra;
    }
    /* self-check: the image opens */
    if (fz_write_file(path, img, *len) != 0)
        goto fail;
    mp_options ro = { .readonly = 1, .max_bytes = 64u << 20 };
    if (mp_open(path, &ro, &p, &err) != MP_OK) {
        fprintf(stderr, "fz_build_image: %s does not open: %s\n", fz_img_names[kind], err.msg);
        goto fail;
    }
    mp_close(p);
    unlink(path);
    *page_size = P;
    return img;
fail:
    unlink(path);
    free(img);
    return NULL;
}

/* ---- checksum repair ------------------------------------------------------ */

typedef struct reseal {
    unsigned char *img;
    size_t len;
    uint32_t P;
    unsigned flags;
    mp_geom ge;
    uint64_t counts[MP_LMAX_LIMIT + 1];
    long budget;
    unsigned char *dirty;     /* optional: a flag per page written */
} reseal;

static int page_ok(const reseal *r, uint64_t pg)
{
    return pg < MP_MAX_PAGES && (pg + 1) * r->P <= r->len;
}

/* every write goes through here (at lies in a whole page of img) */
static void put32(reseal *r, unsigned char *at, uint32_t v)
{
    mp_st32(at, v);
    if (r->dirty)
        r->dirty[(size_t)(at - r->img) / r->P] = 1;
}

static uint32_t seal(reseal *r, unsigned char *page)
{
    put32(r, page + MP_H_CRC, 0);
    uint32_t crc = mp_crc32c(0, page, r->P);
    put32(r, page + MP_H_CRC, crc);
    return crc;
}

static uint32_t child_crc(reseal *r, unsigned char *page)
{
    return (r->flags & FZ_SEAL_META) ? seal(r, page) : mp_ld32(page + MP_H_CRC);
}

/* node n of FSM level l (a group bitmap at level 0) in slot `slot` */
static uint32_t reseal_fsm(reseal *r, unsigned l, uint64_t n, unsigned slot)
{
    if (r->budget-- <= 0)
        return 0;
    uint64_t pg = l == 0 ? mp_bitmap_page(&r->ge, n, slot) : mp_node_page(&r->ge, l, n, slot);
    if (!page_ok(r, pg))
        return 0;
    unsigned char *page = r->img + pg * r->P;
    if (l > 0) {
        uint64_t first = n * r->ge.E, end = first + r->ge.E;
        if (end > r->counts[l - 1])
            end = r->counts[l - 1];
        for (uint64_t c = first; c < end; c++) {
            unsigned char *at = page + MP_HDR_SIZE + (c - first) * MP_ENTRY_SIZE;
            uint32_t s = mp_ld32(at + 4);
            if (s > 1)
                continue;
            uint32_t crc = reseal_fsm(r, l - 1, c, s);
            if (r->flags & FZ_FIX_ENTRIES)
                put32(r, at, crc);
        }
    }
    return child_crc(r, page);
}

static void fix_content(reseal *r, unsigned char *entry /* {pgno, crc} */)
{
    uint32_t cp = mp_ld32(entry);
    if (cp > 1 && page_ok(r, cp) && (r->flags & FZ_FIX_CONTENT))
        put32(r, entry + 4, mp_crc32c(0, r->img + (uint64_t)cp * r->P, r->P));
}

static uint32_t reseal_pt(reseal *r, unsigned l, uint64_t pg)
{
    if (r->budget-- <= 0 || pg < 2 || !page_ok(r, pg) || l > MP_PT_LEVELS)
        return 0;
    unsigned char *page = r->img + pg * r->P;
    if (l == 0) {
        uint64_t cap = mp_pt_leaf_cap(&r->ge);
        for (uint64_t i = 0; i < cap; i++)
            fix_content(r, page + MP_HDR_SIZE + i * MP_PT_ENTRY_SIZE);
    } else {
        for (uint64_t i = 0; i < r->ge.E; i++) {
            unsigned char *at = page + MP_HDR_SIZE + i * 8;
            uint32_t cp = mp_ld32(at);
            if (cp == 0)
                continue;
            uint32_t crc = reseal_pt(r, l - 1, cp);
            if (r->flags & FZ_FIX_ENTRIES)
                put32(r, at + 4, crc);
        }
    }
    return child_crc(r, page);
}

static void reseal_slot(reseal *r, unsigned slot)
{
    uint32_t P = r->P;
    if (!page_ok(r, slot))
        return;
    unsigned char *root = r->img + (size_t)slot * P;
    if (memcmp(root, MP_MAGIC, 8) != 0 || mp_ld32(root + MP_R_PAGESIZE) != P)
        return;
    /* free-space map */
    uint64_t pc = mp_ld64(root + MP_R_PAGECOUNT), fit = r->len / P;
    if (pc > fit)
        pc = fit;
    if (pc == 0)
        pc = 1;
    uint32_t h = mp_tree_shape(&r->ge, mp_groups_for(&r->ge, pc), r->counts);
    if (h == mp_ld32(root + MP_R_HEIGHT) && h <= r->ge.lmax) {
        uint64_t n = r->counts[h] < r->ge.K ? r->counts[h] : r->ge.K;
        for (uint64_t i = 0; i < n; i++) {
            unsigned char *at = root + MP_ROOT_HDR_SIZE + i * MP_ENTRY_SIZE;
            uint32_t s = mp_ld32(at + 4);
            if (s > 1)
                continue;
            uint32_t crc = reseal_fsm(r, h, i, s);
            if (r->flags & FZ_FIX_ENTRIES)
                put32(r, at, crc);
        }
    }
    /* page table: the tree, then the entries the root carries */
    uint32_t top = mp_ld32(root + MP_R_PT_TOP);
    if (mp_ld64(root + MP_R_PT_TREEPIDS) && top) {
        uint32_t crc = reseal_pt(r, mp_ld32(root + MP_R_PT_HEIGHT), top);
        if (r->flags & FZ_FIX_ENTRIES)
            put32(r, root + MP_R_PT_TOP + 4, crc);
    }
    uint32_t nd = mp_ld32(root + MP_R_PT_NDELTA);
    for (uint32_t i = 0; nd <= MP_PT_DELTA_MAX && i < nd && MP_PT_DELTA_SIZE * (i + 1) <= P - MP_ROOT_HDR_SIZE; i++)
        fix_content(r, root + P - MP_PT_DELTA_SIZE * (i + 1) + 8);
}

void fz_reseal_track(unsigned char *img, size_t len, uint32_t P, unsigned flags,
                     unsigned char *dirty)
{
    if (!mp_page_size_valid(P))
        return;
    reseal r = { .img = img, .len = len, .P = P, .flags = flags, .budget = 20000, .dirty = dirty };
    mp_geom_init(&r.ge, P);
    for (unsigned slot = 0; slot < 2; slot++)
        reseal_slot(&r, slot);
    for (unsigned slot = 0; slot < 2; slot++) {
        if (!(flags & (slot ? FZ_SEAL_ROOT1 : FZ_SEAL_ROOT0)) || !page_ok(&r, slot))
            continue;
        unsigned char *root = img + (size_t)slot * P;
        put32(&r, root + MP_R_CRC, 0);
        put32(&r, root + MP_R_CRC, mp_crc32c(0, root, P));
    }
}

void fz_reseal(unsigned char *img, size_t len, uint32_t P, unsigned flags)
{
    fz_reseal_track(img, len, P, flags, NULL);
}

/* ---- exercising a file ------------------------------------------------------ */

static volatile uint64_t g_sink;

typedef struct walked {
    uint64_t regular, prot, txn, root, pid_limit, page_count;
    mp_pgno first_reg, first_pid, second_pid;
} walked;

/* mp_check_each's problems, but for damaged protected contents: open
 * checks the root and every metadata page it loads, not the content of
 * every protected page (only mp_check reads them all), so a mutated
 * content page behind a valid page table opens and is then reported. */
typedef struct structural {
    unsigned n;
    char first[256];
} structural;

static void note_structural(void *ud, const char *problem)
{
    structural *s = ud;
    if (strstr(problem, "content does not match its checksum") != NULL)
        return;
    if (s->n++ == 0)
        snprintf(s->first, sizeof s->first, "%s", problem);
}

static void walk(mp_pager *p, walked *w, const char *when)
{
    mp_info in;
    mp_get_info(p, &in);
    structural bad = { 0, "" };
    mp_err rc = mp_check_each(p, note_structural, &bad);
    FZ_CHECK(rc == MP_OK || (rc == MP_ECORRUPT && bad.n == 0),
             "%s: mp_check after a successful open: %s: %s", when, mp_errname(rc),
             bad.n ? bad.first : mp_errmsg(p));
    uint32_t P = mp_page_size(p);
    uint64_t pc = mp_page_count(p), n = 0, sum = 0;
    FZ_CHECK(pc == in.page_count && pc * P <= in.file_size, "%s: page count %llu, file %llu bytes",
             when, (unsigned long long)pc, (unsigned long long)in.file_size);
    memset(w, 0, sizeof *w);
    w->first_reg = w->first_pid = w->second_pid = UINT64_MAX;
    mp_pgno from = 0, id;
    while (mp_next_page(p, from, &id)) {
        FZ_CHECK(id >= from && id < pc, "%s: mp_next_page(%llu) gave %llu", when,
                 (unsigned long long)from, (unsigned long long)id);
        FZ_CHECK(mp_check_page(p, id) == MP_OK, "%s: iterated page %llu is not allocated", when,
                 (unsigned long long)id);
        const unsigned char *pg = mp_page_ptr(p, id);
        FZ_CHECK(pg != NULL, "%s: no pointer for page %llu", when, (unsigned long long)id);
        for (uint32_t i = 0; i < P; i += 8) {
            uint64_t v;
            memcpy(&v, pg + i, 8);
            sum += v;
        }
        if (w->first_reg == UINT64_MAX)
            w->first_reg = id;
        n++;
        FZ_CHECK(n <= pc, "%s: more regular pages than pages", when);
        from = id + 1;
    }
    w->regular = n;
    FZ_CHECK(in.regular_count == n, "%s: info says %llu regular pages, iteration %llu", when,
             (unsigned long long)in.regular_count, (unsigned long long)n);
    n = 0;
    from = 0;
    while (mp_next_protected(p, from, &id)) {
        FZ_CHECK(id >= from && id < in.pid_limit, "%s: mp_next_protected(%llu) gave %llu", when,
                 (unsigned long long)from, (unsigned long long)id);
        FZ_CHECK(mp_check_protected(p, id) == MP_OK, "%s: iterated pid %llu not allocated", when,
                 (unsigned long long)id);
        const unsigned char *c = mp_protected_ptr(p, id);
        FZ_CHECK(c != NULL, "%s: no content for pid %llu", when, (unsigned long long)id);
        for (uint32_t i = 0; i < P; i++)
            sum += c[i];
        if (n == 0)
            w->first_pid = id;
        else if (n == 1)
            w->second_pid = id;
        n++;
        from = id + 1;
    }
    w->prot = n;
    FZ_CHECK(in.protected_count == n, "%s: info says %llu protected pages, iteration %llu", when,
             (unsigned long long)in.protected_count, (unsigned long long)n);
    FZ_CHECK(in.protected_pages <= n && in.system_count + in.protected_pages + in.free_count +
                                            in.regular_count + in.pending_count + in.held_count == pc,
             "%s: info counts do not add up", when);
    /* edges: never a crash, never a pointer past the pages */
    FZ_CHECK(mp_page_ptr(p, pc) == NULL && mp_page_ptr(p, UINT64_MAX) == NULL, "%s: page_ptr past the end",
             when);
    FZ_CHECK(mp_check_page(p, 0) == MP_ERESERVED && mp_check_page(p, 1) == MP_ERESERVED,
             "%s: root slots not reserved", when);
    FZ_CHECK(mp_check_page(p, pc) == MP_ERANGE && mp_check_page(p, UINT64_MAX) == MP_ERANGE,
             "%s: check_page past the end", when);
    FZ_CHECK(mp_protected_ptr(p, in.pid_limit) == NULL && mp_protected_ptr(p, UINT64_MAX) == NULL &&
                 mp_check_protected(p, UINT64_MAX) == MP_ERANGE,
             "%s: protected past the limit", when);
    w->txn = in.txn;
    w->root = in.user_root;
    w->pid_limit = in.pid_limit;
    w->page_count = pc;
    g_sink += sum;
}

static int full(mp_err rc)
{
    return rc == MP_EFULL || rc == MP_ENOSPC || rc == MP_ENOMEM;
}

#define OK_OR_FULL(rc, what)                                                       \
    FZ_CHECK((rc) == MP_OK || full(rc), "%s: %s: %s", what, mp_errname(rc), mp_errmsg(p))

static void mutate(mp_pager *p, const walked *w)
{
    uint32_t P = mp_page_size(p);
    unsigned char *buf = malloc(P);
    FZ_CHECK(buf != NULL, "out of memory");
    memset(buf, 0xA5, P);
    mp_pgno id = UINT64_MAX, pid = UINT64_MAX, ids[3];
    mp_err rc = mp_alloc(p, &id);
    OK_OR_FULL(rc, "alloc");
    if (rc == MP_OK) {
        FZ_CHECK(mp_check_page(p, id) == MP_OK, "alloc gave %llu, not allocated", (unsigned long long)id);
        unsigned char *pg = mp_page_ptr(p, id);
        memset(pg, 0x5A, 16);
        memset(pg + P - 16, 0x5A, 16);
    }
    if (w->first_reg != UINT64_MAX) {
        rc = mp_free(p, w->first_reg);
        FZ_CHECK(rc == MP_OK, "free of an iterated page: %s: %s", mp_errname(rc), mp_errmsg(p));
        rc = mp_free(p, w->first_reg);
        FZ_CHECK(rc == MP_ENOTALLOC, "double free: %s", mp_errname(rc));
    }
    FZ_CHECK(mp_free(p, 0) == MP_ERESERVED, "free of page 0");
    FZ_CHECK(mp_free(p, mp_page_count(p)) == MP_ERANGE, "free past the end");
    rc = mp_alloc_protected(p, &pid);
    OK_OR_FULL(rc, "alloc_protected");
    if (rc == MP_OK) {
        rc = mp_write_protected(p, pid, buf);
        OK_OR_FULL(rc, "write_protected");
    }
    if (w->first_pid != UINT64_MAX) {
        rc = mp_free_protected(p, w->first_pid);
        OK_OR_FULL(rc, "free_protected");
        if (rc == MP_OK)
            FZ_CHECK(mp_free_protected(p, w->first_pid) == MP_ENOTALLOC, "double free_protected");
    }
    rc = mp_begin(p);
    FZ_CHECK(rc == MP_OK, "begin: %s", mp_errname(rc));
    rc = mp_alloc_bulk(p, 3, ids);
    OK_OR_FULL(rc, "alloc_bulk");
    if (w->second_pid != UINT64_MAX) {
        void *wp;
        rc = mp_protected_write_ptr(p, w->second_pid, &wp);
        OK_OR_FULL(rc, "protected_write_ptr");
        if (rc == MP_OK)
            memset((unsigned char *)wp + P / 2, 0x3C, P / 2);
    }
    rc = mp_set_root(p, w->root + 1);
    FZ_CHECK(rc == MP_OK, "set_root in a transaction: %s", mp_errname(rc));
    rc = mp_commit(p);
    OK_OR_FULL(rc, "commit");
    rc = mp_begin(p);
    FZ_CHECK(rc == MP_OK, "begin: %s", mp_errname(rc));
    rc = mp_alloc(p, &id);
    OK_OR_FULL(rc, "alloc in a transaction");
    if (pid != UINT64_MAX && mp_check_protected(p, pid) == MP_OK)
        OK_OR_FULL(mp_free_protected(p, pid), "free_protected in a transaction");
    FZ_CHECK(mp_rollback(p) == MP_OK, "rollback");
    free(buf);
}

int fz_exercise(const char *path, unsigned variant)
{
    mp_options ro = { .readonly = 1, .max_bytes = (variant & 1) ? 0 : (uint64_t)16 << 20 };
    mp_options rw = ro;
    rw.readonly = 0;
    mp_error err;
    mp_pager *p = NULL;
    walked a, b, c;

    mp_err rc_ro = mp_open(path, &ro, &p, &err);
    if (rc_ro == MP_OK) {
        FZ_CHECK(p != NULL, "open OK without a pager");
        walk(p, &a, "read-only open");
        mp_close(p);
        p = NULL;
    } else {
        FZ_CHECK(p == NULL && err.code == rc_ro && err.msg[0], "failed open: no clean error");
    }
    mp_err rc_rw = mp_open(path, &rw, &p, &err);
    FZ_CHECK((rc_ro == MP_OK) == (rc_rw == MP_OK), "read-only open %s, read-write open %s (%s)",
             mp_errname(rc_ro), mp_errname(rc_rw), rc_rw ? err.msg : "");
    if (rc_rw != MP_OK) {
        FZ_CHECK(p == NULL && err.code == rc_rw && err.msg[0], "failed open: no clean error");
        return 0;
    }
    walk(p, &b, "read-write open");
    FZ_CHECK(a.txn == b.txn && a.root == b.root && a.regular == b.regular && a.prot == b.prot &&
                 a.pid_limit == b.pid_limit && a.page_count == b.page_count,
             "read-only and read-write opens disagree (txn %llu/%llu)", (unsigned long long)a.txn,
             (unsigned long long)b.txn);
    if (!(variant & 2)) {
        mutate(p, &b);
        walk(p, &b, "after mutations");
    }
    mp_close(p);
    p = NULL;
    /* what was committed must open again, exactly */
    mp_err rc = mp_open(path, &ro, &p, &err);
    FZ_CHECK(rc == MP_OK, "reopen after committed mutations: %s", err.msg);
    walk(p, &c, "reopen");
    FZ_CHECK(c.txn == b.txn && c.root == b.root && c.regular == b.regular && c.prot == b.prot &&
                 c.pid_limit == b.pid_limit && c.page_count == b.page_count,
             "reopen shows another state (txn %llu, expected %llu)", (unsigned long long)c.txn,
             (unsigned long long)b.txn);
    mp_close(p);
    return 1;
}
