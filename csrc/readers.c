/*
 * readers.c -- which snapshots live readers hold, told through byte-range
 * locks on the data file.
 *
 * Owns: the lock protocol between one writer and any number of readers
 * (docs/FORMAT.md, "Readers beside a writer").  Every lock is an open file
 * description lock (F_OFD_*): it belongs to the reader's own descriptor,
 * so two readers in one process are two holders, and the kernel drops it
 * when that descriptor closes, whatever ends the process (SIGKILL
 * included): there is no reader table to clean up.  The bytes locked lie
 * far past the end of any file; locks do not touch the data.
 *
 *   byte 0        the commit lock: a write lock the writer holds from the
 *                 moment it asks which snapshots are held until the new
 *                 root is written (R2 below);
 *   byte T        a read lock for each reader whose snapshot is
 *                 transaction T (1 <= T < 2^63; T = 2^63 - 1 locks from
 *                 there to the end of the range, since byte T + 1 does not
 *                 exist).
 *
 * Rules (commit.c and pager.c follow them):
 *   R1  A page freed by commit C is reachable from snapshots below C only;
 *       the writer hands it out again only once no byte below C is locked.
 *   R2  The writer takes the commit lock, then asks (mp_rd_oldest), then
 *       writes the new root, then drops the commit lock.
 *   R3  A reader reads the newest root T, locks byte T, then checks that
 *       the commit lock is free and that the newest root is still T; else
 *       it unlocks and starts over.  So a writer that asked before the
 *       reader's lock existed has already written a root newer than T
 *       (the reader sees it and starts over) or still holds the commit
 *       lock (the reader sees that): no reader keeps a snapshot the writer
 *       did not see.
 * A reader never waits for a barrier (the commit lock is dropped before
 * the barrier) and the writer never waits for a reader: every call here
 * is non-blocking.
 */
#include "mp_internal.h"

#include <errno.h>
#include <fcntl.h>

#define COMMIT_BYTE 0

/* A lock of `type` on [start, start + len) (len 0: to the end). */
static struct flock range(short type, uint64_t start, uint64_t len)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)start;
    fl.l_len = (off_t)len;
    return fl;
}

/* One non-blocking OFD lock request: 0 or errno. */
static int ofd_lock(int fd, short type, uint64_t start, uint64_t len)
{
    struct flock fl = range(type, start, len);
    while (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        if (errno != EINTR)
            return errno;
    }
    return 0;
}

/* Is any lock of another descriptor in [start, start + len) (len 0: to the
 * end) in the way of a lock of `type`?  0 or errno; *found and, when
 * found, the first conflicting byte in *at. */
static int ofd_test(int fd, short type, uint64_t start, uint64_t len, int *found, uint64_t *at)
{
    struct flock fl = range(type, start, len);
    while (fcntl(fd, F_OFD_GETLK, &fl) != 0) {
        if (errno != EINTR)
            return errno;
    }
    *found = fl.l_type != F_UNLCK;
    if (*found)
        *at = fl.l_start < (off_t)start ? start : (uint64_t)fl.l_start;
    return 0;
}

/* Length of snapshot txn's byte: 1, or to the end for the last id. */
static uint64_t snap_len(uint64_t txn) { return txn >= (uint64_t)INT64_MAX ? 0 : 1; }

int mp_rd_hold(int fd, uint64_t txn) { return ofd_lock(fd, F_RDLCK, txn, snap_len(txn)); }

int mp_rd_drop(int fd, uint64_t txn) { return ofd_lock(fd, F_UNLCK, txn, snap_len(txn)); }

int mp_rd_commit_busy(int fd, int *busy)
{
    uint64_t at;
    return ofd_test(fd, F_RDLCK, COMMIT_BYTE, 1, busy, &at);
}

int mp_rd_commit_lock(int fd, int on) { return ofd_lock(fd, on ? F_WRLCK : F_UNLCK, COMMIT_BYTE, 1); }

/* The oldest snapshot a reader holds below `below` (0: none), by asking
 * for ever lower conflicts: one call when no reader is there, and one more
 * per distinct snapshot the kernel happens to report before the oldest. */
int mp_rd_oldest(int fd, uint64_t below, uint64_t *oldest)
{
    *oldest = 0;
    uint64_t hi = below;
    while (hi > 1) {
        int found;
        uint64_t at;
        int e = ofd_test(fd, F_WRLCK, 1, hi - 1, &found, &at);
        if (e)
            return e;
        if (!found)
            break;
        *oldest = at;
        hi = at;
    }
    return 0;
}

/* The distinct snapshots held, ascending: the first cap into out, the
 * number in all into *n.  own: the snapshot this descriptor holds (0:
 * none), which the kernel does not report to its holder. */
int mp_rd_list(int fd, uint64_t own, uint64_t *out, size_t cap, uint64_t *n)
{
    *n = 0;
    uint64_t lo = 1;
    for (;;) {
        /* the lowest byte at or above lo that another descriptor holds */
        uint64_t low = 0, hi = 0;   /* hi 0: to the end */
        for (;;) {
            int found;
            uint64_t at;
            int e = ofd_test(fd, F_WRLCK, lo, hi ? hi - lo : 0, &found, &at);
            if (e)
                return e;
            if (!found)
                break;
            low = hi = at;
            if (hi <= lo)
                break;
        }
        if (own >= lo && (low == 0 || own < low))
            low = own;
        if (low == 0)
            return 0;
        if (*n < cap)
            out[*n] = low;
        ++*n;
        if (low >= (uint64_t)INT64_MAX)
            return 0;
        lo = low + 1;
    }
}
