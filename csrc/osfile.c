/*
 * osfile.c -- the file underneath a pager.
 *
 * Owns: the address-space reservation and the shared mapping inside it
 * (stable addresses: the file is mapped at the start of a PROT_NONE
 * reservation and each growth maps the new tail in place, so no page ever
 * moves while the pager is open), growth with disk blocks reserved before
 * use (posix_fallocate: a full disk is an error, never a SIGBUS), the
 * single durability barrier every commit goes through, and whole-page
 * pread/pwrite for metadata (which never goes through the mapping), and
 * the same operations on another descriptor (mp_copy's new file).
 * Barriers, growth and page writes consult the test hook (mp_set_io_hook)
 * first, so tests can make each of them fail.
 */
#include "mp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* The test hook (mappedpages.h, "fault injection"): consulted before every
 * barrier, growth and metadata write. */
static mp_io_hook g_hook;
static void *g_hook_ctx;

void mp_set_io_hook(mp_io_hook hook, void *ctx)
{
    g_hook = hook;
    g_hook_ctx = ctx;
}

/* fdatasync(fd), or what the test hook says instead: 0 or an errno. */
int mp_os_sync_fd(int fd)
{
    if (g_hook)
        return g_hook(MP_IO_BARRIER, fd, g_hook_ctx);
    while (fdatasync(fd) != 0) {
        if (errno != EINTR)
            return errno ? errno : EIO;
    }
    return 0;
}

/* The one place a pager's barrier is issued.  fdatasync covers writes made
 * through the shared mapping too (Linux writes back the file's dirty page
 * cache whichever way it was dirtied) and the file size. */
int mp_os_barrier(mp_pager *p)
{
    p->barriers++;
    return mp_os_sync_fd(p->fd);
}

/* Address space to reserve: enough for the largest file of this page size,
 * capped at 16 TiB so a process can hold several pagers (the kernel gives
 * 128 TiB of user address space); mp_os_reserve halves it if refused. */
uint64_t mp_os_default_reserve(uint32_t P, uint64_t max_bytes)
{
    if (max_bytes)
        return max_bytes;
    uint64_t want = MP_MAX_PAGES * P, cap = (uint64_t)16 << 40;
    return want < cap ? want : cap;
}

static uint64_t os_page(void)
{
    long s = sysconf(_SC_PAGESIZE);
    return s > 0 ? (uint64_t)s : 4096u;
}

static uint64_t round_up(uint64_t v, uint64_t unit)
{
    return (v + unit - 1) / unit * unit;
}

/* Reserve address space: want bytes if the kernel agrees, halving down to
 * at_least (the bytes we must map now). */
mp_err mp_os_reserve(mp_pager *p, uint64_t want, uint64_t at_least, mp_error *err)
{
    uint64_t unit = MP_GROW_UNIT;
    at_least = round_up(at_least ? at_least : unit, unit);
    want = round_up(want, unit);
    if (want < at_least)
        want = at_least;
    for (;;) {
        void *m = MAP_FAILED;
        if (want <= (uint64_t)SIZE_MAX)
            m = mmap(NULL, (size_t)want, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED) {
            p->map = m;
            p->reserve_bytes = want;
            p->mapped_bytes = 0;
            return MP_OK;
        }
        if (want == at_least)
            break;
        want = round_up(want / 2, unit);
        if (want < at_least)
            want = at_least;
    }
    return mp_set_error(err, MP_ENOMEM, errno, p->path, "cannot reserve %llu bytes of address space",
                        (unsigned long long)at_least);
}

/* Map the file over the reservation up to bytes (rounded to the OS page). */
mp_err mp_os_map_to(mp_pager *p, uint64_t bytes)
{
    bytes = round_up(bytes, os_page());
    if (bytes > p->reserve_bytes)
        return mp_fail(p, MP_EFULL,
                       "%s: file would outgrow the reserved address space (%llu bytes; see option max_bytes)",
                       p->path, (unsigned long long)p->reserve_bytes);
    if (bytes <= p->mapped_bytes)
        return MP_OK;
    int prot = PROT_READ | (p->readonly ? 0 : PROT_WRITE);
    void *want = p->map + p->mapped_bytes;
    void *m = mmap(want, (size_t)(bytes - p->mapped_bytes), prot, MAP_SHARED | MAP_FIXED,
                   p->fd, (off_t)p->mapped_bytes);
    if (m == MAP_FAILED) {
        int e = errno;
        return mp_fail(p, mp_err_from_errno(e), "%s: mmap: %s", p->path, strerror(e));
    }
    p->mapped_bytes = bytes;
    return MP_OK;
}

/* Disk blocks for bytes [from, to) of fd (posix_fallocate, after the test
 * hook): 0 or an errno. */
int mp_os_allocate_fd(int fd, uint64_t from, uint64_t to)
{
    int e = g_hook ? g_hook(MP_IO_GROW, fd, g_hook_ctx) : 0;
    return e ? e : posix_fallocate(fd, (off_t)from, (off_t)(to - from));
}

/* Make pages [from, to) (in bytes) usable: disk blocks allocated, so writing
 * them through the mapping can never hit a full disk (SIGBUS), even where
 * the file was already that long (another tool may have extended it
 * sparsely), then mapped. */
mp_err mp_os_grow_file(mp_pager *p, uint64_t from, uint64_t to)
{
    if (to > p->reserve_bytes)
        return mp_fail(p, MP_EFULL,
                       "%s: file would outgrow the reserved address space (%llu bytes; see option max_bytes)",
                       p->path, (unsigned long long)p->reserve_bytes);
    if (to > from) {
        /* Nothing in memory changes before this succeeds (fsm.c grows the
         * page count only afterwards), so a failure here leaves the pager
         * as it was and usable. */
        int e = mp_os_allocate_fd(p->fd, from, to);
        if (e != 0)
            return mp_fail(p, mp_err_from_errno(e), "%s: cannot grow the file to %llu bytes: %s",
                           p->path, (unsigned long long)to, strerror(e));
        if (to > p->file_bytes)
            p->file_bytes = to;
    }
    return mp_os_map_to(p, to);
}

int mp_os_read_page(const mp_pager *p, uint64_t pgno, unsigned char *buf)
{
    size_t done = 0, n = p->geom.P;
    while (done < n) {
        ssize_t r = pread(p->fd, buf + done, n - done, (off_t)(pgno * n + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if (r == 0)
            return EIO;   /* past the end of the file: the caller checked sizes */
        done += (size_t)r;
    }
    return 0;
}

int mp_os_write_at(int fd, uint64_t off, const void *buf, size_t n)
{
    const unsigned char *b = buf;
    size_t done = 0;
    if (g_hook) {
        int e = g_hook(MP_IO_WRITE, fd, g_hook_ctx);
        if (e)
            return e;
    }
    while (done < n) {
        ssize_t r = pwrite(fd, b + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? errno : EIO;
        done += (size_t)r;
    }
    return 0;
}

int mp_os_write_page(mp_pager *p, uint64_t pgno, const unsigned char *buf)
{
    return mp_os_write_at(p->fd, pgno * p->geom.P, buf, p->geom.P);
}

/* fsync the directory holding path, so that a new file's name is durable. */
int mp_os_sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return errno;
    int rc = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return rc == EINVAL ? 0 : rc;   /* some file systems cannot sync directories */
}

void mp_os_unmap(mp_pager *p)
{
    if (p->map) {
        munmap(p->map, (size_t)p->reserve_bytes);
        p->map = NULL;
    }
}
