/*
 * crash_sim.c -- crash simulator: a power loss at every durability barrier.
 *
 * Built with -DMP_TEST_FANOUT=8 like the other test programs (index nodes of
 * 8 entries, roots of 4 top entries, page-table leaves of 8 entries, at most
 * 4 page-table entries carried in the root), so a file of a few groups has
 * an index level and a deep page table.
 *
 * How it works
 *
 *   An I/O hook (mp_set_io_hook) is called instead of fdatasync.  At
 *   each barrier it reads the whole file with pread (writes made through
 *   pwrite and through the shared mapping are all in the page cache): that
 *   is the "new" image; the content right after the previous barrier is the
 *   "old" one.  The pages that differ, and the length (old or new), are what
 *   a power loss during this barrier could leave in any combination.  The
 *   hook records the differing pages (old and new bytes), runs the real
 *   fdatasync and returns 0.
 *
 *   A seeded random workload drives one live pager: regular alloc / free /
 *   alloc_bulk / free_bulk, writes to regular pages through the mapping,
 *   alloc_protected / free_protected, mp_write_protected (outside and inside
 *   transactions), mp_protected_write_ptr (inside), set_root, transactions
 *   touching 1 to 500 pages, rollbacks, empty commits, clean reopens, and
 *   growth of the file to several groups of 1 KiB pages (FSM index height 1,
 *   page-table height 3).  A model of the logical state is kept: allocated
 *   regular pages, every allocated pid with a hash of its content, the root
 *   (regular-page contents are not transactional and are not checked).
 *   After every commit the live pager must equal the model, and the state
 *   S(k) it defines (plus txn id, page count and pid limit as the live
 *   pager reports them) is recorded.
 *
 *   After commit k returns, the barrier(s) it issued are checked: for each,
 *   K random crash images plus the all-old and the all-new image.  In an
 *   image every differing page is old, new, or torn (a random non-trivial
 *   subset of its 512-byte sectors new, the rest old); the length is the
 *   old one or the new one (the new one only when larger; pages past the
 *   old length read as zeros when "old").  Strategies vary: independent
 *   coin flips with p = 0.1/0.5/0.9/random, "all new but one page",
 *   "all new but a few", "all old but one page".  Each image is written to a
 *   scratch file (incrementally: only the differing pages change), opened
 *   for writing with mp_open, and must open, pass mp_check, and show
 *   exactly S(k-1) or S(k) -- the all-old image exactly S(k-1), the all-new
 *   image exactly S(k).  The scratch file is then restored (open may have
 *   zeroed a rejected root slot).
 *
 *   Creation: the creating commit's barrier (old image: the empty file) may
 *   leave a file that is not a mappedpages file yet.  Its images may fail
 *   to open with MP_ENOTMP (empty, too short, no magic) or MP_ECORRUPT
 *   (magic but no valid root: a torn root slot 0, or root 0 without its
 *   bitmap); the creating commit had not returned, so nothing was promised
 *   and the application would create the file again.  An image that opens
 *   must show the initial state S(1), and the all-new image must open.
 *
 *   Crash, reopen, continue, crash again: every few commits (randomly) one
 *   of the images just checked becomes the live file: the pager is closed,
 *   the image is copied over the working file and opened for writing, and
 *   the workload continues from the recovered state (the model is resynced
 *   to it: S(k-1) or S(k)).  Images whose root slot reached the disk whole
 *   but whose state was rejected (a page below it old or torn) are
 *   preferred, since those make open fall back and invalidate the rejected
 *   root with a barrier of its own; that barrier is recorded and checked
 *   like any other, and every one of its images must show the state the
 *   open recovered, never the one it is rejecting.  (Open clears with 0xFF
 *   bytes for this: a torn root, say sector 0 new and sector 1 stale, is
 *   rejected, and a torn clearing with zeros that reached only sector 1
 *   would complete the root as the commit meant it.)  Once the open has
 *   returned at S(k-1), S(k) (hash of the logical state + txn id) joins a
 *   set of rejected states that no later image or open may ever show, and
 *   the lost transaction is usually replayed (same operations, same bytes,
 *   so the same pages are rewritten with the same content) with a different
 *   root, which is exactly the case where a rejected root that was not
 *   durably invalidated would come back.
 *
 *   Readers beside the writer: up to two read-only pagers on the working
 *   file (same process, own descriptors, so own OFD locks) open, refresh and
 *   close at random steps and sometimes inside a commit (through the I/O
 *   hook: at a page write before the root, where a refresh may meet the
 *   commit lock and must then fail keeping its snapshot, or at the barrier
 *   after the root).  After every commit each must still show exactly the
 *   state of its snapshot, protected contents included (a held page reused
 *   and rewritten changes them), none of its protected pages may be an
 *   allocated regular page of the writer or another content's page, and
 *   mp_readers must list exactly their snapshots.  So commits hold pages
 *   (state 11 in the bitmaps or carried in the root) and release them, and
 *   their images are checked like any other; the number of held pages is
 *   part of each state S(k), so an image must recover the held set too.
 *   One image in 16 is opened by a reader before the writer opens it: both
 *   must show the same state.  A power loss closes the readers; a
 *   crash-reopen opens, half the time, a new reader on the crash image
 *   before the writer recovers it, and that reader then lives on.  The
 *   readers draw from their own random stream: with -R 0 (no readers) the
 *   workload is the one it always was.
 *
 * Every violation prints the seed, the barrier number, the image number
 * and the image (length, which pages new / torn / old), saves the image
 * file, and tells how to replay it.  The run ends with one summary line:
 *
 *   crash_sim: images checked N, violations V, barriers B, reopen-continue cycles R,
 *   images with held pages H (...), without W (...)
 *
 * Usage: crash_sim [options] DIR SEED [OPS [IMAGES_PER_BARRIER]]
 *   OPS                 workload steps per seed (default 300)
 *   IMAGES_PER_BARRIER  random crash images per barrier, besides the
 *                       all-old and all-new ones (default 16)
 *   -n N                run seeds SEED .. SEED+N-1 (totals at the end)
 *   -g PAGES            regular pages the workload grows to (default 20000)
 *   -c N                mean commits between crash-reopen-continue cycles (12)
 *   -R N                readers beside the writer, 0 to 2 (default 2)
 *   -r B:I              replay: print every detail of image I of barrier B
 *                       (same seed, OPS and IMAGES_PER_BARRIER), keep it as
 *                       DIR/replay-SEED-B-I.mp, and stop there
 *   -v                  one line per commit
 * Exit status 0 when no violation was found.
 */
#include "mappedpages.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MP_TEST_FANOUT
#error "build with -DMP_TEST_FANOUT=8"
#endif

#define PS 1024u
#define SECTOR 512u
#define NSECT (PS / SECTOR)
#define MAXPID 1500
#define PID_FREE UINT64_MAX
#define MAX_TXN_PAGES 500

/* ---- configuration and counters ----------------------------------------- */

static const char *dir;
static unsigned long long seed;
static long nops = 300;
static int kimg = 16;
static uint64_t grow_to = 20000;
static int reopen_every = 12;
static int max_readers = 2;   /* readers beside the writer (0 to NREADERS) */
static long long replay_barrier = -1;
static int replay_image = -1;
static int verbose;

typedef struct stats {
    uint64_t images, violations, barriers, reopens, commits, rollbacks;
    uint64_t fallbacks;          /* images that opened at S(k-1) while S(k) != S(k-1) */
    uint64_t rejected_roots;     /* of those, images whose new root was whole */
    uint64_t create_fail_ok;     /* creation images that were not a file yet */
    uint64_t reopen_fallbacks;   /* live reopens that fell back */
    uint64_t replays;            /* lost transactions replayed */
    uint64_t held_images;        /* images of a commit before or after which pages are held */
    uint64_t held_recovered;     /* images that recovered a state holding pages */
    uint64_t release_images;     /* images of a commit that left fewer pages held */
    uint64_t held_commits, release_commits;
    uint64_t reader_images;      /* images a reader opened before the writer did */
    uint64_t rd_opens, rd_refreshes, rd_closes, rd_in_commit, rd_refused, rd_checks;
    uint64_t rd_crash_opens;     /* readers opened on a crash image before the writer */
    uint64_t max_pages, max_regular, max_pids, max_diff;
    uint32_t max_fsm_height;
    uint64_t max_barriers_per_commit;
} stats;
static stats st, total;

/* ---- helpers ------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t wl_rng;   /* the workload's stream */

static uint64_t rnd(void) { return splitmix(&wl_rng); }
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

/* An independent stream for (barrier, image, purpose): image choices do
 * not depend on how many images were drawn before. */
static uint64_t derived(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t s = seed * 0xD1B54A32D192ED03ull ^ a * 0x9E3779B97F4A7C15ull ^ b * 0xC2B2AE3D27D4EB4Full ^
                 c * 0x165667B19E3779F9ull;
    splitmix(&s);
    return s;
}

static uint64_t barrier_no;      /* barriers recorded since the seed started */
static long step_no;

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "crash_sim: FATAL seed %llu step %ld barrier %llu: ", seed, step_no,
            (unsigned long long)barrier_no);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  replay: crash_sim -g %llu -c %d -R %d DIR %llu %ld %d\n", (unsigned long long)grow_to,
            reopen_every, max_readers, seed, nops, kimg);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

#define GROW(arr, cap, need)                                                    \
    do {                                                                        \
        if ((need) > (cap) || !(arr)) {                                         \
            size_t c_ = (cap) ? (cap) : 16;                                     \
            while (c_ < (need))                                                 \
                c_ *= 2;                                                        \
            (arr) = xrealloc((arr), c_ * sizeof *(arr));                        \
            (cap) = c_;                                                         \
        }                                                                       \
    } while (0)

static uint64_t page_hash(const unsigned char *p)
{
    uint64_t h = 0x6a09e667f3bcc909ull;
    for (uint32_t i = 0; i < PS; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    return h;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0xff51afd7ed558ccdull;
    return h ^ (h >> 31);
}

static void pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const unsigned char *b = buf;
    while (n) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("pwrite: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
}

static void pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    unsigned char *b = buf;
    while (n) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("pread: %s", r < 0 ? strerror(errno) : "short file");
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
}

static void set_len(int fd, uint64_t len)
{
    if (ftruncate(fd, (off_t)len) != 0)
        die("ftruncate: %s", strerror(errno));
}

static uint64_t file_len(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        die("fstat: %s", strerror(errno));
    return (uint64_t)sb.st_size;
}

/* ---- logical states -------------------------------------------------------- */

typedef struct pidh {
    uint64_t pid, h;
} pidh;

/* What a committed transaction defines (regular-page contents excepted). */
typedef struct state {
    int valid;
    uint64_t txn, root, page_count, pid_limit, hash;
    uint64_t held;     /* pages held for readers (state 11 on disk); not hashed */
    size_t nreg, creg;
    uint32_t *reg;     /* allocated regular pages, ascending */
    size_t npid, cpid;
    pidh *pids;        /* allocated pids, ascending, with content hashes */
} state;

static void state_free(state *s)
{
    free(s->reg);
    free(s->pids);
    memset(s, 0, sizeof *s);
}

static void state_copy(state *d, const state *s)
{
    GROW(d->reg, d->creg, s->nreg);
    GROW(d->pids, d->cpid, s->npid);
    memcpy(d->reg, s->reg, s->nreg * sizeof *s->reg);
    memcpy(d->pids, s->pids, s->npid * sizeof *s->pids);
    d->nreg = s->nreg;
    d->npid = s->npid;
    d->valid = s->valid;
    d->txn = s->txn;
    d->root = s->root;
    d->page_count = s->page_count;
    d->pid_limit = s->pid_limit;
    d->held = s->held;
    d->hash = s->hash;
}

static void state_seal(state *s)
{
    GROW(s->reg, s->creg, s->nreg);   /* never NULL: memcmp/memcpy want pointers */
    GROW(s->pids, s->cpid, s->npid);
    uint64_t h = mix(mix(mix(mix(0x1234, s->txn), s->root), s->page_count), s->pid_limit);
    h = mix(h, s->nreg);
    for (size_t i = 0; i < s->nreg; i++)
        h = mix(h, s->reg[i]);
    h = mix(h, s->npid);
    for (size_t i = 0; i < s->npid; i++)
        h = mix(mix(h, s->pids[i].pid), s->pids[i].h);
    s->hash = h;
    s->valid = 1;
}

static int state_eq(const state *a, const state *b)
{
    return a->valid && b->valid && a->hash == b->hash && a->txn == b->txn && a->root == b->root &&
           a->page_count == b->page_count && a->pid_limit == b->pid_limit && a->held == b->held &&
           a->nreg == b->nreg &&
           a->npid == b->npid && memcmp(a->reg, b->reg, a->nreg * sizeof *a->reg) == 0 &&
           memcmp(a->pids, b->pids, a->npid * sizeof *a->pids) == 0;
}

/* Read the logical state out of a pager; fills why with a complaint if the
 * pager's own counters disagree with what iteration shows. */
static void state_extract(mp_pager *p, state *s, char *why, size_t wl)
{
    mp_info in;
    mp_get_info(p, &in);
    s->txn = in.txn;
    s->root = mp_root(p);
    s->page_count = mp_page_count(p);
    s->pid_limit = in.pid_limit;
    s->held = in.held_count;
    s->nreg = 0;
    mp_pgno id = 0;
    while (mp_next_page(p, id, &id)) {
        GROW(s->reg, s->creg, s->nreg + 1);
        s->reg[s->nreg++] = (uint32_t)id;
        id++;
    }
    s->npid = 0;
    mp_pgno pid = 0;
    while (mp_next_protected(p, pid, &pid)) {
        const unsigned char *c = mp_protected_ptr(p, pid);
        GROW(s->pids, s->cpid, s->npid + 1);
        s->pids[s->npid++] = (pidh){ pid, c ? page_hash(c) : 0 };
        pid++;
    }
    state_seal(s);
    if (why) {
        why[0] = 0;
        if (in.regular_count != s->nreg || in.protected_count != s->npid)
            snprintf(why, wl, "info says %llu regular / %llu protected pages, iteration finds %zu / %zu",
                     (unsigned long long)in.regular_count, (unsigned long long)in.protected_count, s->nreg,
                     s->npid);
    }
}

/* First difference between got and want, one line. */
static void state_diff(FILE *f, const char *name, const state *got, const state *want)
{
    fprintf(f, "    vs %s (txn %llu): ", name, (unsigned long long)want->txn);
    if (!want->valid) {
        fprintf(f, "no such state\n");
        return;
    }
    if (got->txn != want->txn)
        fprintf(f, "txn %llu != %llu; ", (unsigned long long)got->txn, (unsigned long long)want->txn);
    if (got->root != want->root)
        fprintf(f, "root %llx != %llx; ", (unsigned long long)got->root, (unsigned long long)want->root);
    if (got->page_count != want->page_count)
        fprintf(f, "page count %llu != %llu; ", (unsigned long long)got->page_count,
                (unsigned long long)want->page_count);
    if (got->pid_limit != want->pid_limit)
        fprintf(f, "pid limit %llu != %llu; ", (unsigned long long)got->pid_limit,
                (unsigned long long)want->pid_limit);
    if (got->held != want->held)
        fprintf(f, "%llu held pages != %llu; ", (unsigned long long)got->held, (unsigned long long)want->held);
    if (got->nreg != want->nreg)
        fprintf(f, "%zu regular pages != %zu; ", got->nreg, want->nreg);
    for (size_t i = 0; i < got->nreg && i < want->nreg; i++)
        if (got->reg[i] != want->reg[i]) {
            fprintf(f, "regular page #%zu is %u, want %u; ", i, got->reg[i], want->reg[i]);
            break;
        }
    if (got->npid != want->npid)
        fprintf(f, "%zu pids != %zu; ", got->npid, want->npid);
    for (size_t i = 0; i < got->npid && i < want->npid; i++)
        if (got->pids[i].pid != want->pids[i].pid || got->pids[i].h != want->pids[i].h) {
            fprintf(f, "pid #%zu: %llu/%016llx, want %llu/%016llx; ", i, (unsigned long long)got->pids[i].pid,
                    (unsigned long long)got->pids[i].h, (unsigned long long)want->pids[i].pid,
                    (unsigned long long)want->pids[i].h);
            break;
        }
    fprintf(f, "\n");
}

/* States rejected by an open (S(k) when a reopen fell back to S(k-1)):
 * no later open may show one again. */
static struct {
    uint64_t hash, txn;
} *rejected;
static size_t nrejected, crejected;

static int is_rejected(const state *s)
{
    for (size_t i = 0; i < nrejected; i++)
        if (rejected[i].hash == s->hash && rejected[i].txn == s->txn)
            return 1;
    return 0;
}

static void add_rejected(const state *s)
{
    if (is_rejected(s))
        return;
    GROW(rejected, crejected, nrejected + 1);
    rejected[nrejected].hash = s->hash;
    rejected[nrejected].txn = s->txn;
    nrejected++;
}

/* A later commit produced the very same state (same txn id, same
 * content): it is acknowledged now, not a resurrection. */
static void unreject(const state *s)
{
    for (size_t i = 0; i < nrejected; i++)
        if (rejected[i].hash == s->hash && rejected[i].txn == s->txn)
            rejected[i] = rejected[--nrejected];
}

/* ---- the model ------------------------------------------------------------ */

static unsigned char *reg_w, *reg_c;  /* 1 = allocated regular page (working / committed) */
static uint32_t *rpos;                /* index + 1 in rlist, 0 = not there */
static uint32_t *rlist;               /* allocated regular pages (working), any order */
static size_t reg_cap, rn, rcap;
static uint64_t pid_w[MAXPID], pid_c[MAXPID];  /* content hash or PID_FREE */
static uint64_t npid_w;
static uint64_t zero_hash;

static void reg_ensure(uint64_t id)
{
    if (id < reg_cap)
        return;
    size_t cap = reg_cap ? reg_cap : 4096;
    while (cap <= id)
        cap *= 2;
    reg_w = xrealloc(reg_w, cap);
    reg_c = xrealloc(reg_c, cap);
    rpos = xrealloc(rpos, cap * sizeof *rpos);
    memset(reg_w + reg_cap, 0, cap - reg_cap);
    memset(reg_c + reg_cap, 0, cap - reg_cap);
    memset(rpos + reg_cap, 0, (cap - reg_cap) * sizeof *rpos);
    reg_cap = cap;
}

static void reg_add(uint64_t id)
{
    reg_ensure(id);
    reg_w[id] = 1;
    GROW(rlist, rcap, rn + 1);
    rlist[rn++] = (uint32_t)id;
    rpos[id] = (uint32_t)rn;
}

static void reg_del(uint64_t id)
{
    uint32_t i = rpos[id] - 1;
    rlist[i] = rlist[--rn];
    rpos[rlist[i]] = i + 1;
    rpos[id] = 0;
    reg_w[id] = 0;
}

static void model_rebuild_list(void)
{
    rn = 0;
    for (size_t id = 0; id < reg_cap; id++) {
        rpos[id] = 0;
        if (reg_w[id]) {
            GROW(rlist, rcap, rn + 1);
            rlist[rn++] = (uint32_t)id;
            rpos[id] = (uint32_t)rn;
        }
    }
    npid_w = 0;
    for (int i = 0; i < MAXPID; i++)
        npid_w += pid_w[i] != PID_FREE;
}

static void model_commit(void)
{
    memcpy(reg_c, reg_w, reg_cap);
    memcpy(pid_c, pid_w, sizeof pid_c);
}

static void model_rollback(void)
{
    memcpy(reg_w, reg_c, reg_cap);
    memcpy(pid_w, pid_c, sizeof pid_w);
    model_rebuild_list();
}

static void model_load(const state *s)
{
    memset(reg_w, 0, reg_cap);
    for (size_t i = 0; i < s->nreg; i++) {
        reg_ensure(s->reg[i]);
        reg_w[s->reg[i]] = 1;
    }
    for (int i = 0; i < MAXPID; i++)
        pid_w[i] = PID_FREE;
    for (size_t i = 0; i < s->npid; i++) {
        if (s->pids[i].pid >= MAXPID)
            die("pid %llu beyond the model", (unsigned long long)s->pids[i].pid);
        pid_w[s->pids[i].pid] = s->pids[i].h;
    }
    model_commit();
    model_rebuild_list();
}

/* The committed state per the model, with the live pager's txn id, page
 * count and pid limit (the model has no opinion on those). */
static void model_state(mp_pager *p, state *s)
{
    mp_info in;
    mp_get_info(p, &in);
    s->txn = in.txn;
    s->root = mp_root(p);   /* checked against the model's root by the caller */
    s->page_count = in.page_count;
    s->pid_limit = in.pid_limit;
    s->held = in.held_count;
    s->nreg = 0;
    for (size_t id = 0; id < reg_cap; id++)
        if (reg_c[id]) {
            GROW(s->reg, s->creg, s->nreg + 1);
            s->reg[s->nreg++] = (uint32_t)id;
        }
    s->npid = 0;
    for (uint64_t pid = 0; pid < MAXPID; pid++)
        if (pid_c[pid] != PID_FREE) {
            GROW(s->pids, s->cpid, s->npid + 1);
            s->pids[s->npid++] = (pidh){ pid, pid_c[pid] };
        }
    state_seal(s);
}

/* Content of pid at version ver: pid and ver, then pseudo-random bytes. */
static void gen_page(unsigned char *buf, uint64_t pid, uint64_t ver)
{
    uint64_t s = pid * 0x9E3779B97F4A7C15ull ^ ver;
    memcpy(buf, &pid, 8);
    memcpy(buf + 8, &ver, 8);
    for (uint32_t i = 16; i < PS; i += 8) {
        uint64_t w = splitmix(&s);
        memcpy(buf + i, &w, 8);
    }
}

/* ---- barrier recording ------------------------------------------------------ */

typedef struct record {
    uint64_t barrier, lo, ln;   /* number; old and new file length */
    size_t nd, cd;
    uint32_t *pg;               /* differing pages, ascending */
    unsigned char *oldp, *newp; /* their old and new bytes, PS each */
} record;

static record *recs;
static size_t nrecs, crecs;

enum { HOOK_PASS, HOOK_RECORD };
static int hook_mode = HOOK_RECORD;
static unsigned char *img_old, *img_new;  /* file after the last barrier / being read */
static size_t img_cap;
static uint64_t old_len;
static const unsigned char zero_page[PS];

static void img_reserve(uint64_t n)
{
    if (n <= img_cap)
        return;
    size_t cap = img_cap ? img_cap : (1u << 20);
    while (cap < n)
        cap *= 2;
    img_old = xrealloc(img_old, cap);
    img_new = xrealloc(img_new, cap);
    img_cap = cap;
}

static void record_free(record *r)
{
    free(r->pg);
    free(r->oldp);
    free(r->newp);
    memset(r, 0, sizeof *r);
}

static void readers_in_commit(mp_io_op op);

static int barrier_hook(mp_io_op op, int fd, void *ctx)
{
    (void)ctx;
    if (hook_mode != HOOK_RECORD)
        return 0;   /* scratch images: durability is not the point */
    readers_in_commit(op);
    if (op != MP_IO_BARRIER)
        return 0;   /* growth and page writes run as usual */
    uint64_t ln = file_len(fd);
    img_reserve(ln > old_len ? ln : old_len);
    if (ln)
        pread_all(fd, img_new, (size_t)ln, 0);
    if (ln % PS || old_len % PS)
        die("file length %llu (old %llu) is not a whole number of pages", (unsigned long long)ln,
            (unsigned long long)old_len);
    GROW(recs, crecs, nrecs + 1);
    record *r = &recs[nrecs++];
    memset(r, 0, sizeof *r);
    r->barrier = ++barrier_no;
    r->lo = old_len;
    r->ln = ln;
    uint64_t npages = (ln > old_len ? ln : old_len) / PS;
    for (uint64_t pg = 0; pg < npages; pg++) {
        uint64_t off = pg * PS;
        const unsigned char *o = off < old_len ? img_old + off : zero_page;
        const unsigned char *n = off < ln ? img_new + off : zero_page;
        if (memcmp(o, n, PS) == 0)
            continue;
        if (r->nd == r->cd) {
            size_t c = r->cd ? 2 * r->cd : 16;
            r->pg = xrealloc(r->pg, c * sizeof *r->pg);
            r->oldp = xrealloc(r->oldp, c * PS);
            r->newp = xrealloc(r->newp, c * PS);
            r->cd = c;
        }
        r->pg[r->nd] = (uint32_t)pg;
        memcpy(r->oldp + r->nd * PS, o, PS);
        memcpy(r->newp + r->nd * PS, n, PS);
        r->nd++;
    }
    if (r->nd > st.max_diff)
        st.max_diff = r->nd;
    st.barriers++;
    while (fdatasync(fd) != 0)
        if (errno != EINTR)
            return errno;
    unsigned char *t = img_old;
    img_old = img_new;
    img_new = t;
    old_len = ln;
    return 0;
}

/* ---- crash images ----------------------------------------------------------- */

enum { PG_OLD, PG_NEW, PG_TORN };

typedef struct choice {
    unsigned char *mode;   /* per differing page */
    uint32_t *mask;        /* torn: bit s set = sector s new */
    size_t cap;
    int len_new;
    int strategy;
} choice;

static const char *strategy_name[] = { "all old", "all new", "coin p=0.1", "coin p=0.5", "coin p=0.9",
                                       "coin p=random", "all new but one", "all new but a few",
                                       "all old but one" };

static uint32_t torn_mask(uint64_t *s)
{
    uint32_t full = (1u << NSECT) - 1;
    return 1 + (uint32_t)(splitmix(s) % (full - 1));   /* neither none nor all */
}

static void make_choice(const record *r, int img, choice *ch)
{
    if (r->nd > ch->cap || !ch->mode) {
        ch->cap = r->nd ? r->nd : 1;
        ch->mode = xrealloc(ch->mode, ch->cap);
        ch->mask = xrealloc(ch->mask, ch->cap * sizeof *ch->mask);
    }
    uint64_t s = derived(r->barrier, (uint64_t)img, 1);
    int grew = r->ln > r->lo;
    if (img == 0 || img == 1) {
        memset(ch->mode, img == 0 ? PG_OLD : PG_NEW, r->nd);
        ch->len_new = img == 1 && grew;
        ch->strategy = img;
        return;
    }
    int strat = 2 + (int)(splitmix(&s) % 7);
    ch->strategy = strat;
    ch->len_new = grew && splitmix(&s) % 4 != 0;
    if (strat <= 5) {
        uint64_t p = strat == 2 ? 10 : strat == 3 ? 50 : strat == 4 ? 90 : splitmix(&s) % 101;
        for (size_t i = 0; i < r->nd; i++) {
            ch->mode[i] = splitmix(&s) % 100 < p ? PG_NEW : PG_OLD;
            if (ch->mode[i] == PG_NEW && splitmix(&s) % 4 == 0)
                ch->mode[i] = PG_TORN;
        }
    } else if (strat == 6 || strat == 7) {
        memset(ch->mode, PG_NEW, r->nd);
        for (size_t i = 0; i < r->nd; i++)
            if (strat == 7 && splitmix(&s) % 20 == 0)
                ch->mode[i] = splitmix(&s) % 2 ? PG_OLD : PG_TORN;
        if (r->nd)
            ch->mode[splitmix(&s) % r->nd] = splitmix(&s) % 2 ? PG_OLD : PG_TORN;
    } else {
        memset(ch->mode, PG_OLD, r->nd);
        if (r->nd)
            ch->mode[splitmix(&s) % r->nd] = splitmix(&s) % 2 ? PG_NEW : PG_TORN;
    }
    for (size_t i = 0; i < r->nd; i++)
        if (ch->mode[i] == PG_TORN)
            ch->mask[i] = torn_mask(&s);
}

static uint64_t image_len(const record *r, const choice *ch)
{
    return ch->len_new ? r->ln : r->lo;
}

/* Did a root slot (page 0 or 1) that this barrier changed reach the disk
 * whole and new? */
static int root_whole(const record *r, const choice *ch)
{
    for (size_t i = 0; i < r->nd && r->pg[i] < 2; i++)
        if (ch->mode[i] == PG_NEW && (uint64_t)(r->pg[i] + 1) * PS <= image_len(r, ch))
            return 1;
    return 0;
}

static void page_version(const record *r, const choice *ch, size_t i, unsigned char *out)
{
    const unsigned char *o = r->oldp + i * PS, *n = r->newp + i * PS;
    if (ch->mode[i] == PG_OLD) {
        memcpy(out, o, PS);
    } else if (ch->mode[i] == PG_NEW) {
        memcpy(out, n, PS);
    } else {
        for (uint32_t s = 0; s < NSECT; s++)
            memcpy(out + s * SECTOR, (ch->mask[i] >> s & 1) ? n + s * SECTOR : o + s * SECTOR, SECTOR);
    }
}

static void print_choice(FILE *f, const record *r, const choice *ch)
{
    fprintf(f, "    image: %s; length %s (%llu bytes; old %llu, new %llu); %zu differing pages\n",
            strategy_name[ch->strategy], ch->len_new ? "new" : "old",
            (unsigned long long)image_len(r, ch), (unsigned long long)r->lo, (unsigned long long)r->ln,
            r->nd);
    static const int order[3] = { PG_NEW, PG_TORN, PG_OLD };
    for (int k = 0; k < 3; k++) {
        int m = order[k];
        const char *name = m == PG_NEW ? "new" : m == PG_TORN ? "torn (sectors new)" : "old";
        size_t n = 0;
        for (size_t i = 0; i < r->nd; i++)
            n += ch->mode[i] == m;
        if (!n)
            continue;
        fprintf(f, "    %s:", name);
        size_t shown = 0;
        for (size_t i = 0; i < r->nd; i++) {
            if (ch->mode[i] != m)
                continue;
            if (shown++ == 64) {
                fprintf(f, " ... (%zu in all)", n);
                break;
            }
            if (m == PG_TORN)
                fprintf(f, " %u(%x)", r->pg[i], ch->mask[i]);
            else
                fprintf(f, " %u", r->pg[i]);
        }
        fprintf(f, "\n");
    }
}

/* The scratch file holds the old image of the record being checked. */
static int cfd = -1;
static char work_path[4096], check_path[4096];
static unsigned char slots_save[2 * PS];

static void build_image(const record *r, const choice *ch)
{
    unsigned char buf[PS];
    uint64_t len = image_len(r, ch);
    if (len != r->lo)
        set_len(cfd, len);
    for (size_t i = 0; i < r->nd; i++) {
        if (ch->mode[i] == PG_OLD || (uint64_t)(r->pg[i] + 1) * PS > len)
            continue;
        page_version(r, ch, i, buf);
        pwrite_all(cfd, buf, PS, (uint64_t)r->pg[i] * PS);
    }
}

static void restore_image(const record *r, const choice *ch)
{
    for (size_t i = 0; i < r->nd; i++)
        if (ch->mode[i] != PG_OLD && (uint64_t)(r->pg[i] + 1) * PS <= r->lo)
            pwrite_all(cfd, r->oldp + i * PS, PS, (uint64_t)r->pg[i] * PS);
    if (image_len(r, ch) != r->lo)
        set_len(cfd, r->lo);
    if (r->lo >= 2 * PS)
        pwrite_all(cfd, slots_save, 2 * PS, 0);   /* open may have zeroed a slot */
}

static void apply_new(const record *r)
{
    if (r->ln != r->lo)
        set_len(cfd, r->ln);
    for (size_t i = 0; i < r->nd; i++)
        if ((uint64_t)(r->pg[i] + 1) * PS <= r->ln)
            pwrite_all(cfd, r->newp + i * PS, PS, (uint64_t)r->pg[i] * PS);
}

static void save_image_copy(const char *tag, const record *r, int img)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s-%llu-%llu-%d.mp", dir, tag, seed, (unsigned long long)r->barrier, img);
    uint64_t len = file_len(cfd);
    unsigned char *buf = xmalloc((size_t)len);
    pread_all(cfd, buf, (size_t)len, 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        pwrite_all(fd, buf, (size_t)len, 0);
        close(fd);
        fprintf(stderr, "    saved as %s\n", path);
    }
    free(buf);
}

/* ---- checking images ---------------------------------------------------------- */

enum { KIND_CREATE, KIND_COMMIT, KIND_OPEN };
static const char *kind_name[] = { "creating commit", "commit", "open invalidating a root slot" };
enum { OUT_VIOLATION, OUT_NOFILE, OUT_PREV, OUT_CUR };

static int saved_violations;

__attribute__((format(printf, 6, 7)))
static void violation(const record *r, int img, const choice *ch, int kind, const state *cur,
                      const char *fmt, ...)
{
    va_list ap;
    st.violations++;
    fprintf(stderr, "crash_sim: VIOLATION seed %llu barrier %llu image %d (%s, txn %llu): ", seed,
            (unsigned long long)r->barrier, img, kind_name[kind], (unsigned long long)cur->txn);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    print_choice(stderr, r, ch);
    fprintf(stderr, "    replay: crash_sim -g %llu -c %d -R %d -r %llu:%d DIR %llu %ld %d\n",
            (unsigned long long)grow_to, reopen_every, max_readers, (unsigned long long)r->barrier, img, seed, nops, kimg);
}

static state got;   /* scratch */

/* Build image img of record r in the scratch file, open it, compare. */
static int check_image(const record *r, int img, const choice *ch, const state *prev, const state *cur,
                       int kind)
{
    int replaying = (long long)r->barrier == replay_barrier && img == replay_image;
    if (r->lo >= 2 * PS)
        pread_all(cfd, slots_save, 2 * PS, 0);
    build_image(r, ch);
    st.images++;
    if (replaying) {
        fprintf(stderr, "crash_sim: replay seed %llu barrier %llu image %d (%s)\n", seed,
                (unsigned long long)r->barrier, img, kind_name[kind]);
        print_choice(stderr, r, ch);
        if (prev)
            fprintf(stderr, "    %s txn %llu, root %llx, %zu regular pages, %zu pids, page count %llu\n",
                    kind == KIND_OPEN ? "being rejected:" : "S(k-1):", (unsigned long long)prev->txn, (unsigned long long)prev->root, prev->nreg, prev->npid,
                    (unsigned long long)prev->page_count);
        fprintf(stderr, "    %s txn %llu, root %llx, %zu regular pages, %zu pids, page count %llu\n",
                kind == KIND_OPEN ? "recovered:" : "S(k):  ", (unsigned long long)cur->txn, (unsigned long long)cur->root, cur->nreg, cur->npid,
                (unsigned long long)cur->page_count);
        save_image_copy("replay", r, img);
    }
    int out = OUT_VIOLATION;
    mp_pager *p = NULL;
    mp_error e;
    mp_options o = { 0 };
    hook_mode = HOOK_PASS;
    /* Now and then a reader opens the image before the writer does: both
     * must find the same state (the writer may clear a rejected root
     * under the reader's snapshot, and must not disturb it). */
    static state rgot;
    mp_pager *rp = NULL;
    mp_err rrc = MP_OK;
    int with_reader = max_readers > 0 && derived(r->barrier, (uint64_t)img, 3) % 16 == 0;
    if (with_reader) {
        mp_options ro = { .readonly = 1 };
        mp_error re;
        rrc = mp_open(check_path, &ro, &rp, &re);
        if (rrc == MP_OK)
            state_extract(rp, &rgot, NULL, 0);
        st.reader_images++;
    }
    mp_err rc = mp_open(check_path, &o, &p, &e);
    if (with_reader && (rrc == MP_OK) != (rc == MP_OK))
        violation(r, img, ch, kind, cur, "a reader's open (%s) and the writer's (%s) disagree", mp_errname(rrc),
                  mp_errname(rc));
    if (rc != MP_OK) {
        if (replaying)
            fprintf(stderr, "    open: %s (%s)\n", mp_errname(rc), e.msg);
        if (kind == KIND_CREATE && img != 1 && (rc == MP_ENOTMP || rc == MP_ECORRUPT)) {
            out = OUT_NOFILE;
            st.create_fail_ok++;
        } else {
            violation(r, img, ch, kind, cur, "open failed: %s: %s", mp_errname(rc), e.msg);
        }
    } else {
        char why[300];
        state_extract(p, &got, why, sizeof why);
        mp_info in;
        mp_get_info(p, &in);
        if (replaying)
            fprintf(stderr, "    opened: txn %llu, recovered %d, %zu regular pages, %zu pids, root %llx\n",
                    (unsigned long long)got.txn, in.recovered, got.nreg, got.npid, (unsigned long long)got.root);
        mp_err crc = mp_check(p);
        /* every page of the recovered state is backed by the file (a
         * regular page past the end would SIGBUS on access) */
        volatile unsigned char sink = 0;
        for (size_t i = got.nreg > 4 ? got.nreg - 4 : 0; i < got.nreg; i++)
            if (in.page_count * PS <= in.file_size)
                sink ^= *(const unsigned char *)mp_page_ptr(p, got.reg[i]);
        (void)sink;
        if (in.file_size < in.page_count * PS) {
            violation(r, img, ch, kind, cur, "the file (%llu bytes) is shorter than the page count (%llu pages)",
                      (unsigned long long)in.file_size, (unsigned long long)in.page_count);
        } else if (crc != MP_OK) {
            violation(r, img, ch, kind, cur, "mp_check: %s: %s", mp_errname(crc), mp_errmsg(p));
        } else if (why[0]) {
            violation(r, img, ch, kind, cur, "%s", why);
        } else if (is_rejected(&got)) {
            violation(r, img, ch, kind, cur, "a state rejected by an earlier open came back (txn %llu)",
                      (unsigned long long)got.txn);
        } else if (state_eq(&got, cur)) {
            out = OUT_CUR;
            if (img == 0 && kind == KIND_COMMIT && !state_eq(cur, prev)) {
                out = OUT_VIOLATION;
                violation(r, img, ch, kind, cur, "the all-old image shows the new state");
            }
        } else if (prev && state_eq(&got, prev)) {
            out = OUT_PREV;
            if (img == 1) {
                out = OUT_VIOLATION;
                violation(r, img, ch, kind, cur, "the all-new image shows the previous state");
            } else if (kind == KIND_OPEN) {
                out = OUT_VIOLATION;
                violation(r, img, ch, kind, cur, "a crash during the open's clearing shows the state it rejected");
            }
        } else {
            violation(r, img, ch, kind, cur, "recovered a state that is neither S(k-1) nor S(k)");
            fprintf(stderr, "    got: txn %llu, root %llx, %zu regular pages, %zu pids, page count %llu\n",
                    (unsigned long long)got.txn, (unsigned long long)got.root, got.nreg, got.npid,
                    (unsigned long long)got.page_count);
            if (prev)
                state_diff(stderr, "S(k-1)", &got, prev);
            state_diff(stderr, "S(k)", &got, cur);
        }
        if (out == OUT_PREV && !state_eq(prev, cur)) {
            st.fallbacks++;
            st.rejected_roots += root_whole(r, ch);
        }
        if (out != OUT_VIOLATION && rp) {
            static state again;
            state_extract(rp, &again, NULL, 0);
            if (!state_eq(&rgot, &got) || !state_eq(&again, &got)) {
                out = OUT_VIOLATION;
                violation(r, img, ch, kind, cur, "a reader opened first shows another state (txn %llu)",
                          (unsigned long long)rgot.txn);
                state_diff(stderr, "the writer's", &rgot, &got);
            }
        }
        st.held_recovered += got.held > 0;
        mp_close(p);
    }
    mp_close(rp);
    if (out == OUT_VIOLATION && saved_violations < 5) {
        saved_violations++;
        save_image_copy("violation", r, img);
    }
    hook_mode = HOOK_RECORD;
    restore_image(r, ch);
    if (replaying) {
        fprintf(stderr, "crash_sim: replay done (%s)\n",
                out == OUT_CUR ? (kind == KIND_OPEN ? "S(k): the recovered state" : "S(k)")
                : out == OUT_PREV ? (kind == KIND_OPEN ? "S(k-1): the state being rejected" : "S(k-1)")
                : out == OUT_NOFILE ? "no file" : "violation");
        exit(out == OUT_VIOLATION ? 1 : 0);
    }
    return out;
}

/* ---- the live pager ---------------------------------------------------------- */

static mp_pager *live;
static state S_prev, S_cur;
static uint64_t w_root, c_root;

static void ok(mp_err rc, const char *what)
{
    if (rc != MP_OK)
        die("%s: %s: %s", what, mp_errname(rc), live ? mp_errmsg(live) : "");
}

/* The script of the current step, for replaying a lost transaction. */
enum { OP_ALLOC, OP_FREE, OP_ALLOC_BULK, OP_FREE_BULK, OP_RWRITE, OP_PALLOC, OP_PFREE, OP_PWRITE, OP_PWPTR,
       OP_ROOT };
typedef struct sop {
    int op;
    uint64_t a, b;
    size_t n, first;   /* free_bulk ids: script_ids[first .. first+n) */
} sop;
static sop *script, *lost;
static size_t nscript, cscript, nlost, clost;
static uint32_t *script_ids, *lost_ids;
static size_t nscript_ids, cscript_ids, nlost_ids, clost_ids;
static int replay_pending;

static void script_add(int op, uint64_t a, uint64_t b, const uint32_t *ids, size_t n)
{
    GROW(script, cscript, nscript + 1);
    script[nscript] = (sop){ op, a, b, n, nscript_ids };
    if (ids) {
        GROW(script_ids, cscript_ids, nscript_ids + n);
        memcpy(script_ids + nscript_ids, ids, n * sizeof *ids);
        nscript_ids += n;
    }
    nscript++;
}

static void check_records(const state *prev, const state *cur, int kind, int allow_reopen, int depth);

/* Regular-page noise: a recognisable pattern in part of an allocated page. */
static void rwrite(uint64_t id, uint64_t v)
{
    unsigned char *pg = mp_page_ptr(live, id);
    if (!pg)
        die("no address for page %llu", (unsigned long long)id);
    uint64_t s = v;
    uint32_t off = (uint32_t)(splitmix(&s) % PS), len = 1 + (uint32_t)(splitmix(&s) % (PS - off));
    memset(pg + off, (int)(v & 0xff), len);
    memcpy(pg, &id, 8);
}

static uint64_t palloc(void)
{
    mp_pgno pid;
    ok(mp_alloc_protected(live, &pid), "alloc_protected");
    if (pid >= MAXPID)
        die("alloc_protected gave pid %llu past the model's %d", (unsigned long long)pid, MAXPID);
    if (pid_w[pid] != PID_FREE || pid_c[pid] != PID_FREE)
        die("alloc_protected gave pid %llu, which is allocated or freed by this transaction",
            (unsigned long long)pid);
    pid_w[pid] = zero_hash;
    npid_w++;
    return pid;
}

static void pwrite_whole(uint64_t pid, uint64_t ver)
{
    unsigned char buf[PS];
    gen_page(buf, pid, ver);
    ok(mp_write_protected(live, pid, buf), "write_protected");
    pid_w[pid] = page_hash(buf);
}

/* In place, in a transaction: two calls, each writing half the page. */
static void pwrite_ptr(uint64_t pid, uint64_t ver)
{
    unsigned char buf[PS];
    void *w1, *w2;
    ok(mp_protected_write_ptr(live, pid, &w1), "protected_write_ptr");
    if (page_hash(w1) != pid_w[pid])
        die("protected_write_ptr of pid %llu does not start from its current content", (unsigned long long)pid);
    gen_page(buf, pid, ver);
    memcpy(w1, buf, PS / 2);
    ok(mp_protected_write_ptr(live, pid, &w2), "protected_write_ptr");
    if (w1 != w2)
        die("two write pointers of pid %llu in one transaction differ", (unsigned long long)pid);
    memcpy((unsigned char *)w2 + PS / 2, buf + PS / 2, PS / 2);
    pid_w[pid] = page_hash(buf);
}

static void alloc_bulk(size_t n)
{
    mp_pgno *ids = xmalloc(n * sizeof *ids);
    ok(mp_alloc_bulk(live, n, ids), "alloc_bulk");
    for (size_t i = 0; i < n; i++) {
        reg_ensure(ids[i]);
        if (reg_w[ids[i]] || reg_c[ids[i]])
            die("alloc_bulk gave page %llu, allocated or freed by this transaction", (unsigned long long)ids[i]);
        reg_add(ids[i]);
    }
    free(ids);
}

static void free_bulk(const uint32_t *ids32, size_t n)
{
    mp_pgno *ids = calloc(n ? n : 1, sizeof *ids);
    if (!ids)
        die("out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = ids32[i];
    ok(mp_free_bulk(live, n, ids), "free_bulk");
    for (size_t i = 0; i < n; i++)
        reg_del(ids[i]);
    free(ids);
}

static uint64_t grow_target(void)
{
    uint64_t t = grow_to * (uint64_t)(step_no + 1) / (uint64_t)(nops * 8 / 10 + 1);
    return t < grow_to ? t : grow_to;
}

static uint64_t pid_target(void)
{
    uint64_t cap = MAXPID - 100;
    uint64_t t = cap * (uint64_t)(step_no + 1) / (uint64_t)(nops * 6 / 10 + 1);
    return t < cap ? t : cap;
}

/* Kinds of transactions, with the weights of the operations they do. */
enum { FL_MIXED, FL_REGULAR, FL_PROTECTED, FL_COUNT };
enum { W_ALLOC_BULK, W_ALLOC, W_FREE, W_FREE_BULK, W_RWRITE, W_PALLOC, W_PFREE, W_PWRITE, W_PWPTR, W_ROOT, W_COUNT };
static const unsigned weights[FL_COUNT][W_COUNT] = {
    [FL_MIXED] = { 14, 6, 6, 8, 12, 12, 6, 18, 12, 6 },
    [FL_REGULAR] = { 40, 10, 10, 15, 20, 1, 1, 1, 1, 1 },
    [FL_PROTECTED] = { 3, 1, 1, 1, 4, 20, 6, 35, 25, 2 },
};

static uint64_t random_pid(void)
{
    uint64_t pid;
    int tries = 0;
    do
        pid = below(MAXPID);
    while (pid_w[pid] == PID_FREE && ++tries < 64);
    if (pid_w[pid] == PID_FREE) {
        uint64_t start = below(MAXPID);
        for (uint64_t k = 0; k < MAXPID; k++)
            if (pid_w[(start + k) % MAXPID] != PID_FREE)
                return (start + k) % MAXPID;
        die("no allocated pid");
    }
    return pid;
}

/* One operation; returns the pages it touched (at least 1).  Sets
 * *commits when, outside a transaction, it was a commit. */
static size_t one_op(int in_txn, int flavor, size_t budget, int *commits)
{
    int growing = rn < grow_target(), pgrowing = npid_w < pid_target();
    unsigned w[W_COUNT], sum = 0;
    memcpy(w, weights[flavor], sizeof w);
    if (!growing)
        w[W_ALLOC_BULK] /= 2;
    else
        w[W_FREE_BULK] /= 2;
    if (pgrowing)
        w[W_PFREE] /= 2;
    else
        w[W_PALLOC] /= 4;
    if (!rn)
        w[W_FREE] = w[W_FREE_BULK] = w[W_RWRITE] = 0;
    if (!npid_w)
        w[W_PFREE] = w[W_PWRITE] = w[W_PWPTR] = 0;
    if (npid_w >= MAXPID - 64)
        w[W_PALLOC] = 0;
    if (!in_txn) {
        w[W_PWRITE] += w[W_PWPTR];
        w[W_PWPTR] = 0;
    }
    for (int i = 0; i < W_COUNT; i++)
        sum += w[i];
    uint64_t r = below(sum);
    int op = 0;
    while (r >= w[op])
        r -= w[op++];
    *commits = 1;
    switch (op) {
    case W_ALLOC_BULK: {
        size_t lim = growing ? budget : (budget < 8 ? budget : 8);
        size_t n = 1 + (size_t)below(lim);
        alloc_bulk(n);
        script_add(OP_ALLOC_BULK, n, 0, NULL, 0);
        return n;
    }
    case W_ALLOC: {
        mp_pgno id;
        ok(mp_alloc(live, &id), "alloc");
        reg_ensure(id);
        if (reg_w[id] || reg_c[id])
            die("alloc gave page %llu, allocated or freed by this transaction", (unsigned long long)id);
        reg_add(id);
        script_add(OP_ALLOC, 0, 0, NULL, 0);
        return 1;
    }
    case W_FREE: {
        uint64_t id = rlist[below(rn)];
        ok(mp_free(live, id), "free");
        reg_del(id);
        script_add(OP_FREE, id, 0, NULL, 0);
        return 1;
    }
    case W_FREE_BULK: {
        size_t cap = growing ? (budget < 8 ? budget : 8) : budget;
        size_t n = 1 + (size_t)below(cap < rn ? cap : rn);
        uint32_t *ids = xmalloc(n * sizeof *ids);
        for (size_t i = 0; i < n; i++) {   /* distinct: take them off the list as we go */
            ids[i] = rlist[below(rn)];
            reg_del(ids[i]);
        }
        for (size_t i = 0; i < n; i++)
            reg_add(ids[i]);
        free_bulk(ids, n);
        script_add(OP_FREE_BULK, 0, 0, ids, n);
        free(ids);
        return n;
    }
    case W_RWRITE: {
        uint64_t id = rlist[below(rn)], v = rnd();
        rwrite(id, v);
        script_add(OP_RWRITE, id, v, NULL, 0);
        *commits = 0;
        return 1;
    }
    case W_PALLOC:
        palloc();
        script_add(OP_PALLOC, 0, 0, NULL, 0);
        return 1;
    case W_PFREE: {
        uint64_t pid = random_pid();
        ok(mp_free_protected(live, pid), "free_protected");
        pid_w[pid] = PID_FREE;
        npid_w--;
        script_add(OP_PFREE, pid, 0, NULL, 0);
        return 1;
    }
    case W_PWRITE: {
        uint64_t pid = random_pid(), ver = rnd();
        pwrite_whole(pid, ver);
        script_add(OP_PWRITE, pid, ver, NULL, 0);
        return 1;
    }
    case W_PWPTR: {
        uint64_t pid = random_pid(), ver = rnd();
        pwrite_ptr(pid, ver);
        script_add(OP_PWPTR, pid, ver, NULL, 0);
        return 1;
    }
    default:
        w_root = rnd();
        ok(mp_set_root(live, w_root), "set_root");
        script_add(OP_ROOT, w_root, 0, NULL, 0);
        return 1;
    }
}

/* ---- readers beside the writer ------------------------------------------------- */

/* Up to two read-only pagers on the working file, in this process: each
 * has its own descriptor, so each holds its snapshot with its own OFD lock
 * (csrc/readers.c).  They open, refresh and close at random steps, from a
 * stream of their own (the writer's workload is the same with or without
 * them), and sometimes from inside a commit of the writer, through the I/O
 * hook: at a page write, before the root (the commit may hold the commit
 * lock: a refresh must then fail and keep its snapshot, readers.c R3), or
 * at the barrier, after the root (the snapshot is then S(k-1) or S(k),
 * known once the commit returns).
 *
 * After every commit each reader must still show exactly its snapshot:
 * every protected page's content as it was when the snapshot was taken
 * (which fails as soon as the writer reuses a page the snapshot reaches and
 * writes it), the regular pages, pids and root of that commit; no page
 * holding a protected content of the snapshot may be an allocated regular
 * page of the writer, or hold another pid's content or another content of
 * the same pid; and mp_readers must list exactly the readers' snapshots.
 * A power loss kills the readers with the writer; a crash-reopen may open
 * a new reader on the crash image before the writer recovers it. */
#define NREADERS 2
typedef struct reader {
    mp_pager *p;
    int pending;   /* taken inside a commit: S(k-1) or S(k), settled after it */
    state snap;    /* what it must show */
} reader;
static reader rd[NREADERS];
static uint64_t rd_rng;
static int rd_armed;       /* an action inside the next commit: 0 none, RD_AT_* */
static int rd_arm_count;   /* ... at the page write this many writes from now */
static int rd_arm_slot;
enum { RD_AT_WRITE = 1, RD_AT_BARRIER };

static uint64_t rd_below(uint64_t n) { return n ? splitmix(&rd_rng) % n : 0; }

__attribute__((format(printf, 2, 3)))
static void reader_violation(int i, const char *fmt, ...)
{
    va_list ap;
    st.violations++;
    fprintf(stderr, "crash_sim: VIOLATION seed %llu step %ld barrier %llu: reader %d (snapshot txn %llu): ", seed,
            step_no, (unsigned long long)barrier_no, i, (unsigned long long)rd[i].snap.txn);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n    replay: crash_sim -g %llu -c %d -R %d DIR %llu %ld %d\n", (unsigned long long)grow_to,
            reopen_every, max_readers, seed, nops, kimg);
}

static void reader_close(int i)
{
    mp_close(rd[i].p);
    rd[i].p = NULL;
    rd[i].pending = 0;
}

/* The reader's snapshot is now taken: outside a commit it must be S(k). */
static void reader_took(int i, int in_commit)
{
    char why[300];
    state_extract(rd[i].p, &rd[i].snap, why, sizeof why);
    rd[i].pending = in_commit;
    if (why[0])
        reader_violation(i, "%s", why);
    else if (!in_commit && !state_eq(&rd[i].snap, &S_cur)) {
        reader_violation(i, "a new snapshot is not the last commit");
        state_diff(stderr, "S(k)", &rd[i].snap, &S_cur);
    }
}

static void reader_open(int i, int in_commit)
{
    mp_options o = { .readonly = 1 };
    mp_error e;
    mp_err rc = mp_open(work_path, &o, &rd[i].p, &e);
    if (rc == MP_ELOCKED && in_commit) {
        st.rd_refused++;   /* the commit lock was held all along (R3) */
        rd[i].p = NULL;
        return;
    }
    if (rc != MP_OK)
        die("reader open: %s: %s", mp_errname(rc), e.msg);
    st.rd_opens++;
    reader_took(i, in_commit);
}

static void reader_refresh(int i, int in_commit)
{
    mp_err rc = mp_refresh(rd[i].p);
    if (rc == MP_ELOCKED && in_commit) {
        st.rd_refused++;   /* it keeps its snapshot: checked after the commit */
        return;
    }
    if (rc != MP_OK)
        die("reader refresh: %s: %s", mp_errname(rc), mp_errmsg(rd[i].p));
    st.rd_refreshes++;
    reader_took(i, in_commit);
}

/* The I/O hook's part: the armed action, once, inside a commit of the live
 * writer (not during an open: live is NULL then). */
static void readers_in_commit(mp_io_op op)
{
    if (!rd_armed || !live || op == MP_IO_GROW)
        return;
    if ((rd_armed == RD_AT_BARRIER) != (op == MP_IO_BARRIER))
        return;
    if (rd_armed == RD_AT_WRITE && rd_arm_count-- > 0)
        return;
    rd_armed = 0;
    st.rd_in_commit++;
    int i = rd_arm_slot;
    if (rd[i].p)
        reader_refresh(i, 1);
    else
        reader_open(i, 1);
}

static void readers_close_all(void)
{
    for (int i = 0; i < NREADERS; i++)
        if (rd[i].p)
            reader_close(i);
    rd_armed = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Page -> pid + 1 of the live writer's protected contents (0: none). */
static uint32_t *owner;
static size_t owner_cap;

static uint64_t page_of(mp_pager *p, const void *ptr)
{
    const unsigned char *base = mp_page_ptr(p, 0), *c = ptr;
    uint64_t n = mp_page_count(p);
    if (!base || !c || c < base || c >= base + n * PS)
        return UINT64_MAX;   /* reads as zeros: no page of its own */
    return (uint64_t)(c - base) / PS;
}

/* Every reader still shows its snapshot, and no page of it is in use by
 * the writer for anything else (see above). */
static void readers_verify(const char *when)
{
    static state now;
    int any = 0;
    for (int i = 0; i < NREADERS; i++)
        any |= rd[i].p != NULL;
    if (!any)
        return;
    if (live) {
        uint64_t np = mp_page_count(live);
        GROW(owner, owner_cap, np);
        memset(owner, 0, np * sizeof *owner);
        mp_pgno pid = 0;
        while (mp_next_protected(live, pid, &pid)) {
            uint64_t pg = page_of(live, mp_protected_ptr(live, pid));
            if (pg < np)
                owner[pg] = (uint32_t)pid + 1;
            pid++;
        }
    }
    uint64_t want[NREADERS];
    size_t nwant = 0;
    for (int i = 0; i < NREADERS; i++) {
        reader *r = &rd[i];
        if (!r->p)
            continue;
        st.rd_checks++;
        uint64_t before = st.violations;
        char why[300];
        state_extract(r->p, &now, why, sizeof why);
        if (why[0]) {
            reader_violation(i, "%s: %s", when, why);
        } else if (r->pending) {
            if (state_eq(&now, &S_cur) || state_eq(&now, &S_prev)) {
                r->pending = 0;
                state_copy(&r->snap, &now);
            } else {
                reader_violation(i, "%s: a snapshot taken inside a commit is neither S(k-1) nor S(k)", when);
                state_diff(stderr, "S(k-1)", &now, &S_prev);
                state_diff(stderr, "S(k)", &now, &S_cur);
            }
        } else if (!state_eq(&now, &r->snap)) {
            reader_violation(i, "%s: the snapshot changed under the reader", when);
            state_diff(stderr, "its snapshot", &now, &r->snap);
        }
        if (live) {
            uint64_t np = mp_page_count(live);
            for (size_t k = 0; k < now.npid; k++) {
                uint64_t pid = now.pids[k].pid;
                uint64_t pg = page_of(r->p, mp_protected_ptr(r->p, pid));
                if (pg == UINT64_MAX)
                    continue;
                if (mp_check_page(live, pg) == MP_OK)
                    reader_violation(i, "%s: page %llu, pid %llu's content in the snapshot, is a regular page "
                                     "of the writer", when, (unsigned long long)pg, (unsigned long long)pid);
                else if (pg < np && owner[pg] && (owner[pg] != pid + 1 || pid_c[pid] != now.pids[k].h))
                    reader_violation(i, "%s: page %llu, pid %llu's content in the snapshot, holds the writer's "
                                     "pid %llu", when, (unsigned long long)pg, (unsigned long long)pid,
                                     (unsigned long long)owner[pg] - 1);
            }
        }
        mp_info in;
        mp_get_info(r->p, &in);
        if (st.violations != before) {   /* one report per reader is enough */
            reader_close(i);
            continue;
        }
        int dup = 0;
        for (size_t k = 0; k < nwant; k++)
            dup |= want[k] == in.txn;
        if (!dup)
            want[nwant++] = in.txn;
    }
    if (!live)
        return;
    qsort(want, nwant, sizeof *want, cmp_u64);
    uint64_t got_snaps[NREADERS + 2], n = 0;
    mp_err rc = mp_readers(live, got_snaps, NREADERS + 2, &n);
    if (rc != MP_OK)
        die("mp_readers: %s: %s", mp_errname(rc), mp_errmsg(live));
    int same = n == nwant;
    for (size_t k = 0; same && k < nwant; k++)
        same = got_snaps[k] == want[k];
    if (!same) {
        st.violations++;
        fprintf(stderr, "crash_sim: VIOLATION seed %llu step %ld: %s: mp_readers lists %llu snapshots (first %llu), "
                "the readers hold %zu (first %llu)\n", seed, step_no, when, (unsigned long long)n,
                (unsigned long long)(n ? got_snaps[0] : 0), nwant, (unsigned long long)(nwant ? want[0] : 0));
    }
}

/* At the start of a step: open, refresh, close; arm an action inside the
 * next commit. */
static void readers_step(void)
{
    readers_verify("before a step");
    rd_armed = 0;
    for (int i = 0; i < max_readers; i++) {
        if (!rd[i].p) {
            if (rd_below(100) < 8)
                reader_open(i, 0);
            continue;
        }
        uint64_t r = rd_below(100);
        if (r < 12) {
            reader_refresh(i, 0);
        } else if (r < 15) {
            reader_close(i);
            st.rd_closes++;
        }
    }
    if (max_readers && rd_below(4) == 0) {
        rd_armed = rd_below(2) ? RD_AT_WRITE : RD_AT_BARRIER;
        rd_arm_count = (int)rd_below(3);
        rd_arm_slot = (int)rd_below((uint64_t)max_readers);
    }
}

static void verify_live(const char *when)
{
    static state m, l;
    char why[300];
    model_state(live, &m);
    state_extract(live, &l, why, sizeof why);
    if (why[0])
        die("%s: live pager: %s", when, why);
    if (l.root != c_root)
        die("%s: live root %llx, model %llx", when, (unsigned long long)l.root, (unsigned long long)c_root);
    if (!state_eq(&m, &l)) {
        fprintf(stderr, "crash_sim: live pager and model disagree (%s):\n", when);
        state_diff(stderr, "model", &l, &m);
        die("%s: live pager disagrees with the model", when);
    }
}

static void note_growth(void)
{
    mp_info in;
    mp_get_info(live, &in);
    if (in.page_count > st.max_pages)
        st.max_pages = in.page_count;
    if (in.regular_count > st.max_regular)
        st.max_regular = in.regular_count;
    if (in.protected_count > st.max_pids)
        st.max_pids = in.protected_count;
    if (in.fsm_height > st.max_fsm_height)
        st.max_fsm_height = in.fsm_height;
}

/* A commit returned: S(k) is known; check its barrier(s). */
static void after_commit(void)
{
    static state snew;
    c_root = w_root;
    model_commit();
    st.commits++;
    verify_live("after a commit");
    model_state(live, &snew);
    if (snew.txn != S_cur.txn && snew.txn != S_cur.txn + 1)
        die("commit moved the txn id from %llu to %llu", (unsigned long long)S_cur.txn,
            (unsigned long long)snew.txn);
    if (nrecs == 0)
        die("a commit returned without a durability barrier");
    if (nrecs > st.max_barriers_per_commit)
        st.max_barriers_per_commit = nrecs;
    if (nrecs > 2) {
        st.violations++;
        fprintf(stderr, "crash_sim: VIOLATION seed %llu barrier %llu: one commit issued %zu barriers\n", seed,
                (unsigned long long)barrier_no, nrecs);
    }
    unreject(&snew);
    state_copy(&S_prev, &S_cur);
    state_copy(&S_cur, &snew);
    note_growth();
    if (S_prev.held || S_cur.held)
        st.held_commits++;
    if (S_cur.held < S_prev.held)
        st.release_commits++;
    readers_verify("after a commit");
    if (verbose)
        fprintf(stderr, "step %ld: commit txn %llu, %zu regular, %zu pids, %llu pages, %zu barrier(s), %zu pages differ\n",
                step_no, (unsigned long long)snew.txn, snew.nreg, snew.npid, (unsigned long long)snew.page_count,
                nrecs, recs[nrecs - 1].nd);
    check_records(&S_prev, &S_cur, KIND_COMMIT, 1, 0);
    if (st.commits % 16 == 0)
        ok(mp_check(live), "audit of the live pager");
}

/* Crash: the chosen image of r becomes the working file; reopen it and
 * continue from whatever it recovered.  prev and cur are the states the
 * image may show (prev NULL: only cur). */
static void crash_reopen(const record *r, const choice *ch, int img, int kind, const state *prev,
                         const state *cur, int depth)
{
    /* locals, not statics: this recurses (a crash during the open's own
     * barrier), and prev/cur may be S_prev/S_cur, which change below */
    state target = { 0 }, other = { 0 };
    build_image(r, ch);   /* the scratch file is now the crash image, and stays so */
    mp_close(live);
    live = NULL;
    readers_close_all();   /* the power loss ends them too */
    uint64_t len = file_len(cfd);
    img_reserve(len);
    if (len)
        pread_all(cfd, img_old, (size_t)len, 0);
    old_len = len;
    int fd = open(work_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        die("open %s: %s", work_path, strerror(errno));
    if (len)
        pwrite_all(fd, img_old, (size_t)len, 0);
    close(fd);
    st.reopens++;
    if (max_readers && rd_below(2) == 0) {
        /* a reader comes first: it must show the state the writer then
         * recovers, and keep it while the writer continues */
        reader_open(0, 1);
        st.rd_crash_opens++;
    }
    mp_error e;
    mp_options o = { 0 };
    hook_mode = HOOK_RECORD;
    mp_err rc = mp_open(work_path, &o, &live, &e);
    if (rc != MP_OK) {
        violation(r, img, ch, kind, cur, "crash-reopen: open failed: %s: %s", mp_errname(rc), e.msg);
        die("cannot continue");
    }
    char why[300];
    state_extract(live, &target, why, sizeof why);
    if (why[0] || is_rejected(&target) || (!state_eq(&target, cur) && !(prev && state_eq(&target, prev)))) {
        violation(r, img, ch, kind, cur, "crash-reopen recovered a wrong state%s%s", why[0] ? ": " : "", why);
        if (prev)
            state_diff(stderr, "S(k-1)", &target, prev);
        state_diff(stderr, "S(k)", &target, cur);
        die("cannot continue");
    }
    /* The open rejected the other candidate if that one is newer. */
    const state *alt = prev && !state_eq(prev, cur) ? (state_eq(&target, cur) ? prev : cur) : NULL;
    int fell_back = alt && alt->txn > target.txn;
    if (fell_back) {
        state_copy(&other, alt);
        st.reopen_fallbacks++;
        /* replay the lost transaction (same bytes), with another root */
        if (nscript && below(4) != 0) {
            GROW(lost, clost, nscript);
            memcpy(lost, script, nscript * sizeof *script);
            nlost = nscript;
            GROW(lost_ids, clost_ids, nscript_ids);
            if (nscript_ids)
                memcpy(lost_ids, script_ids, nscript_ids * sizeof *script_ids);
            nlost_ids = nscript_ids;
            replay_pending = 1;
        }
    }
    if (verbose)
        fprintf(stderr, "step %ld: crash at barrier %llu image %d, reopened at txn %llu (%s)\n", step_no,
                (unsigned long long)r->barrier, img, (unsigned long long)target.txn,
                fell_back ? "fell back, rejecting the newer state" : "the newer state");
    model_load(&target);
    c_root = w_root = target.root;
    state_copy(&S_prev, &target);
    state_copy(&S_cur, &target);
    readers_verify("after crash-reopen");
    ok(mp_check(live), "audit after crash-reopen");
    /* The open's own barrier (when it cleared a root slot): every image,
     * torn clearings included, must show the target, never the state being
     * rejected. */
    check_records(fell_back ? &other : &target, &target, KIND_OPEN, depth < 2 && below(4) == 0, depth + 1);
    /* The open returned (unless a nested crash-reopen moved on): from now
     * on the rejected state must never come back. */
    if (fell_back && state_eq(&S_cur, &target))
        add_rejected(&other);
    state_free(&target);
    state_free(&other);
}

static void check_records(const state *prev, const state *cur, int kind, int allow_reopen, int depth)
{
    /* take the list: a crash-reopen records new barriers */
    record *mine = recs;
    size_t n = nrecs;
    recs = NULL;
    nrecs = crecs = 0;
    static choice ch[2];   /* one per depth parity is enough: depth <= 2, used in turn */
    choice *c = &ch[depth & 1];
    int *outs = xmalloc((size_t)(kimg + 2) * sizeof *outs);
    for (size_t j = 0; j < n; j++) {
        record *r = &mine[j];
        int nimg = r->nd == 0 && r->ln == r->lo ? 1 : kimg + 2;
        for (int img = 0; img < nimg; img++) {
            int which = nimg == 1 ? 1 : img;
            make_choice(r, which, c);
            outs[img] = check_image(r, which, c, prev, cur, kind);
            st.held_images += (prev && prev->held) || cur->held;
            st.release_images += prev && cur->held < prev->held;
        }
        uint64_t s = derived(r->barrier, 0, 2);
        int last = j + 1 == n;
        if (last && allow_reopen && reopen_every > 0 && splitmix(&s) % (uint64_t)reopen_every == 0) {
            /* prefer an image whose whole new root was rejected */
            int pick = -1, cands = 0;
            for (int img = 0; img < nimg; img++) {
                if (outs[img] == OUT_PREV) {
                    make_choice(r, img, c);
                    if (root_whole(r, c) && splitmix(&s) % (uint64_t)++cands == 0)
                        pick = img;
                }
            }
            if (pick < 0 || splitmix(&s) % 3 == 0) {
                cands = 0;
                pick = -1;
                for (int img = 0; img < nimg; img++)
                    if (outs[img] == OUT_PREV || outs[img] == OUT_CUR)
                        if (splitmix(&s) % (uint64_t)++cands == 0)
                            pick = img;
            }
            if (pick >= 0) {
                make_choice(r, nimg == 1 ? 1 : pick, c);
                free(outs);
                outs = NULL;
                crash_reopen(r, c, pick, kind, kind == KIND_CREATE ? NULL : prev, cur, depth);
                for (size_t k = 0; k < n; k++)
                    record_free(&mine[k]);
                free(mine);
                return;
            }
        }
        apply_new(r);
    }
    free(outs);
    for (size_t k = 0; k < n; k++)
        record_free(&mine[k]);
    free(mine);
    /* the scratch file must now equal the file after the last barrier */
    if (kind != KIND_OPEN && (st.commits % 8 == 0 || verbose)) {
        uint64_t len = file_len(cfd);
        if (len != old_len)
            die("scratch file is %llu bytes, the image %llu", (unsigned long long)len,
                (unsigned long long)old_len);
        unsigned char *buf = xmalloc((size_t)len);
        if (len)
            pread_all(cfd, buf, (size_t)len, 0);
        if (len && memcmp(buf, img_old, (size_t)len) != 0)
            die("scratch file drifted from the recorded image");
        free(buf);
    }
}

/* ---- workload steps ------------------------------------------------------------ */

static void replay_lost(void)
{
    replay_pending = 0;
    st.replays++;
    nscript = nscript_ids = 0;
    ok(mp_begin(live), "begin (replay)");
    for (size_t i = 0; i < nlost; i++) {
        const sop *o = &lost[i];
        switch (o->op) {
        case OP_ALLOC: {
            mp_pgno id;
            ok(mp_alloc(live, &id), "alloc (replay)");
            reg_ensure(id);
            if (reg_w[id] || reg_c[id])
                die("alloc gave page %llu, allocated or freed by this transaction", (unsigned long long)id);
            reg_add(id);
            break;
        }
        case OP_ALLOC_BULK:
            alloc_bulk(o->a);
            break;
        case OP_FREE:
            if (o->a < reg_cap && reg_w[o->a]) {
                ok(mp_free(live, o->a), "free (replay)");
                reg_del(o->a);
            }
            break;
        case OP_FREE_BULK: {
            uint32_t *ids = xmalloc(o->n * sizeof *ids);
            size_t m = 0;
            for (size_t k = 0; k < o->n; k++) {
                uint32_t id = lost_ids[o->first + k];
                if (id < reg_cap && reg_w[id]) {
                    reg_del(id);   /* also drops duplicates */
                    ids[m++] = id;
                }
            }
            for (size_t k = 0; k < m; k++)
                reg_add(ids[k]);
            if (m)
                free_bulk(ids, m);
            free(ids);
            break;
        }
        case OP_RWRITE:
            if (o->a < reg_cap && reg_w[o->a])
                rwrite(o->a, o->b);
            break;
        case OP_PALLOC:
            if (npid_w < MAXPID - 64)
                palloc();
            break;
        case OP_PFREE:
            if (pid_w[o->a] != PID_FREE) {
                ok(mp_free_protected(live, o->a), "free_protected (replay)");
                pid_w[o->a] = PID_FREE;
                npid_w--;
            }
            break;
        case OP_PWRITE:
            if (pid_w[o->a] != PID_FREE)
                pwrite_whole(o->a, o->b);
            break;
        case OP_PWPTR:
            if (pid_w[o->a] != PID_FREE)
                pwrite_ptr(o->a, o->b);
            break;
        case OP_ROOT:
            w_root = o->a;
            ok(mp_set_root(live, w_root), "set_root (replay)");
            break;
        }
    }
    w_root = rnd();   /* a state that differs from the lost one */
    ok(mp_set_root(live, w_root), "set_root (replay)");
    ok(mp_commit(live), "commit (replay)");
    after_commit();
}

static void step(void)
{
    uint64_t r = below(100);
    nscript = nscript_ids = 0;
    if (rn < grow_target() && (r < 8 || (rn < grow_target() * 3 / 4 && r < 35))) {   /* growth */
        uint64_t gap = grow_target() - rn;
        size_t n = 1 + (size_t)below(gap < 4 * MAX_TXN_PAGES ? gap : 4 * MAX_TXN_PAGES);
        alloc_bulk(n);
        script_add(OP_ALLOC_BULK, n, 0, NULL, 0);
        after_commit();
        return;
    }
    if (r < 16 && npid_w + 8 < MAXPID - 64) {       /* a big protected transaction */
        ok(mp_begin(live), "begin");
        uint64_t gap = npid_w < pid_target() ? pid_target() - npid_w : 0;
        size_t nalloc = (size_t)below(1 + (gap < 250 ? gap : 250));
        size_t nwrite = (size_t)below(1 + (npid_w < MAX_TXN_PAGES - nalloc ? npid_w : MAX_TXN_PAGES - nalloc));
        for (size_t i = 0; i < nalloc; i++) {
            uint64_t pid = palloc(), ver = rnd();
            script_add(OP_PALLOC, 0, 0, NULL, 0);
            if (below(4)) {
                if (below(2)) {
                    pwrite_whole(pid, ver);
                    script_add(OP_PWRITE, pid, ver, NULL, 0);
                } else {
                    pwrite_ptr(pid, ver);
                    script_add(OP_PWPTR, pid, ver, NULL, 0);
                }
            }
        }
        for (size_t i = 0; i < nwrite; i++) {
            uint64_t pid = random_pid(), ver = rnd();
            if (below(2)) {
                pwrite_whole(pid, ver);
                script_add(OP_PWRITE, pid, ver, NULL, 0);
            } else {
                pwrite_ptr(pid, ver);
                script_add(OP_PWPTR, pid, ver, NULL, 0);
            }
        }
        if (below(6) == 0) {
            ok(mp_rollback(live), "rollback");
            model_rollback();
            w_root = c_root;
            st.rollbacks++;
        } else {
            ok(mp_commit(live), "commit");
            after_commit();
        }
        return;
    }
    if (r < 50) {                                   /* a transaction */
        ok(mp_begin(live), "begin");
        size_t budget = 1 + (size_t)below((uint64_t)1 << below(10));
        if (budget > MAX_TXN_PAGES)
            budget = MAX_TXN_PAGES;
        int flavor = (int)below(FL_COUNT);
        while (budget > 0) {
            int commits;
            size_t used = one_op(1, flavor, budget, &commits);
            budget = used >= budget ? 0 : budget - used;
            if (below(200) == 0)
                break;
        }
        if (below(5) == 0) {
            ok(mp_rollback(live), "rollback");
            model_rollback();
            w_root = c_root;
            st.rollbacks++;
            if (nrecs)
                die("rollback issued a barrier");
        } else {
            ok(mp_commit(live), "commit");
            after_commit();
        }
    } else if (r < 96) {                            /* one auto-committed operation */
        int commits;
        one_op(0, (int)below(FL_COUNT), MAX_TXN_PAGES, &commits);
        if (commits)
            after_commit();
        else if (nrecs)
            die("a regular-page write issued a barrier");
    } else if (r < 98) {                            /* a commit that changes nothing */
        if (rn)
            rwrite(rlist[below(rn)], rnd());
        ok(mp_begin(live), "begin");
        ok(mp_commit(live), "commit");
        after_commit();
    } else {                                        /* clean reopen */
        mp_close(live);
        live = NULL;
        mp_error e;
        mp_options o = { 0 };
        hook_mode = HOOK_RECORD;
        mp_err rc = mp_open(work_path, &o, &live, &e);
        if (rc != MP_OK)
            die("clean reopen: %s: %s", mp_errname(rc), e.msg);
        verify_live("after a clean reopen");
        readers_verify("after a clean reopen");
        check_records(&S_cur, &S_cur, KIND_OPEN, 0, 1);
    }
}

/* ---- one seed -------------------------------------------------------------------- */

static void run_seed(void)
{
    memset(&st, 0, sizeof st);
    wl_rng = seed * 0x2545F4914F6CDD1Dull + 17;
    rd_rng = seed * 0x9FB21C651E98DF25ull + 29;
    barrier_no = 0;
    step_no = 0;
    nrejected = 0;
    replay_pending = 0;
    saved_violations = 0;
    snprintf(work_path, sizeof work_path, "%s/crash_sim-%llu.mp", dir, seed);
    snprintf(check_path, sizeof check_path, "%s/crash_sim-%llu.img", dir, seed);
    unlink(work_path);
    unlink(check_path);
    cfd = open(check_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (cfd < 0)
        die("open %s: %s", check_path, strerror(errno));
    reg_ensure(0);
    memset(reg_w, 0, reg_cap);
    memset(reg_c, 0, reg_cap);
    for (int i = 0; i < MAXPID; i++)
        pid_w[i] = pid_c[i] = PID_FREE;
    model_rebuild_list();
    w_root = c_root = 0;
    old_len = 0;
    hook_mode = HOOK_RECORD;
    mp_set_io_hook(barrier_hook, NULL);

    mp_error e;
    mp_options o = { .page_size = PS };
    mp_err rc = mp_create(work_path, &o, &live, &e);
    if (rc != MP_OK)
        die("create: %s", e.msg);
    S_prev.valid = 0;
    model_state(live, &S_cur);
    verify_live("after create");
    if (nrecs != 1)
        die("create issued %zu barriers", nrecs);
    check_records(NULL, &S_cur, KIND_CREATE, 0, 0);

    for (step_no = 0; step_no < nops; step_no++) {
        readers_step();
        if (replay_pending)
            replay_lost();
        else
            step();
    }
    verify_live("at the end");
    readers_verify("at the end");
    ok(mp_check(live), "final audit");
    readers_close_all();
    mp_close(live);
    live = NULL;
    mp_set_io_hook(NULL, NULL);
    rc = mp_open(work_path, NULL, &live, &e);
    if (rc != MP_OK)
        die("final reopen: %s", e.msg);
    verify_live("after the final reopen");
    mp_close(live);
    live = NULL;
    close(cfd);
    cfd = -1;
    unlink(work_path);
    unlink(check_path);
    while (nrecs)
        record_free(&recs[--nrecs]);
}

static void add_totals(void)
{
    uint64_t *t = (uint64_t *)&total, *s = (uint64_t *)&st;
    size_t nsum = offsetof(stats, max_pages) / sizeof(uint64_t);
    for (size_t i = 0; i < nsum; i++)
        t[i] += s[i];
#define MAXOF(f) if (st.f > total.f) total.f = st.f
    MAXOF(max_pages);
    MAXOF(max_regular);
    MAXOF(max_pids);
    MAXOF(max_diff);
    MAXOF(max_fsm_height);
    MAXOF(max_barriers_per_commit);
#undef MAXOF
}

static void usage(void)
{
    fprintf(stderr, "usage: crash_sim [-n SEEDS] [-g PAGES] [-c REOPEN_EVERY] [-r BARRIER:IMAGE] [-R READERS] [-v] "
                    "DIR SEED [OPS [IMAGES_PER_BARRIER]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long nseeds = 1;
    int opt;
    while ((opt = getopt(argc, argv, "n:g:c:r:R:v")) != -1) {
        switch (opt) {
        case 'R': max_readers = atoi(optarg); break;
        case 'n': nseeds = atol(optarg); break;
        case 'g': grow_to = strtoull(optarg, NULL, 10); break;
        case 'c': reopen_every = atoi(optarg); break;
        case 'r':
            if (sscanf(optarg, "%lld:%d", &replay_barrier, &replay_image) != 2)
                usage();
            break;
        case 'v': verbose = 1; break;
        default: usage();
        }
    }
    if (argc - optind < 2)
        usage();
    dir = argv[optind];
    unsigned long long seed0 = strtoull(argv[optind + 1], NULL, 10);
    if (argc - optind > 2)
        nops = atol(argv[optind + 2]);
    if (argc - optind > 3)
        kimg = atoi(argv[optind + 3]);
    if (nseeds < 1 || nops < 1 || kimg < 0 || kimg > 10000 || max_readers < 0 || max_readers > NREADERS)
        usage();
    unsigned char zeros[PS];
    memset(zeros, 0, PS);
    zero_hash = page_hash(zeros);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < nseeds; i++) {
        seed = seed0 + (unsigned long long)i;
        run_seed();
        printf("seed %llu: %llu images (%llu fell back to S(k-1), %llu with a whole rejected root, %llu creation "
               "images not a file yet), %llu barriers, "
               "%llu commits, %llu rollbacks, %llu reopen-continue (%llu fell back, %llu lost txns replayed), "
               "max %llu pages / %llu regular / %llu pids, FSM height %u, %llu pages differ at most, "
               "%llu barrier(s) per commit at most, %llu images with held pages (%llu recovered holding pages, "
               "%llu of releasing commits; %llu commits held, %llu released), %llu images opened by a reader "
               "first, readers: %llu opens, %llu refreshes, %llu closes, %llu inside a commit (%llu refused), "
               "%llu opened on a crash image, %llu snapshot checks, %llu violations\n",
               seed, (unsigned long long)st.images, (unsigned long long)st.fallbacks,
               (unsigned long long)st.rejected_roots, (unsigned long long)st.create_fail_ok,
               (unsigned long long)st.barriers, (unsigned long long)st.commits, (unsigned long long)st.rollbacks,
               (unsigned long long)st.reopens, (unsigned long long)st.reopen_fallbacks,
               (unsigned long long)st.replays, (unsigned long long)st.max_pages,
               (unsigned long long)st.max_regular, (unsigned long long)st.max_pids, st.max_fsm_height,
               (unsigned long long)st.max_diff, (unsigned long long)st.max_barriers_per_commit,
               (unsigned long long)st.held_images, (unsigned long long)st.held_recovered,
               (unsigned long long)st.release_images, (unsigned long long)st.held_commits,
               (unsigned long long)st.release_commits, (unsigned long long)st.reader_images,
               (unsigned long long)st.rd_opens, (unsigned long long)st.rd_refreshes,
               (unsigned long long)st.rd_closes, (unsigned long long)st.rd_in_commit,
               (unsigned long long)st.rd_refused, (unsigned long long)st.rd_crash_opens,
               (unsigned long long)st.rd_checks, (unsigned long long)st.violations);
        fflush(stdout);
        add_totals();
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("crash_sim: images checked %llu, violations %llu, barriers %llu, reopen-continue cycles %llu, "
           "images with held pages %llu (recovered holding pages %llu, of releasing commits %llu), without %llu "
           "(%ld seeds from %llu, %ld ops, %d images per barrier, %d readers, %.1f s)\n",
           (unsigned long long)total.images, (unsigned long long)total.violations,
           (unsigned long long)total.barriers, (unsigned long long)total.reopens,
           (unsigned long long)total.held_images, (unsigned long long)total.held_recovered,
           (unsigned long long)total.release_images, (unsigned long long)(total.images - total.held_images),
           nseeds, seed0, nops, kimg, max_readers, secs);
    return total.violations ? 1 : 0;
}
