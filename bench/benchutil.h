/*
 * benchutil.h -- helpers shared by the C benchmarks (header only, so the
 * Makefile's rule "each C file in bench/ is one program" still holds).
 *
 * Owns: a private scratch directory under $TMPDIR (or /tmp) whose files are
 * removed on every exit path (normal exit, error exit, SIGINT/SIGTERM/
 * SIGHUP), a monotonic clock, medians, and the "raw" reference
 * measurement every durable-commit benchmark divides by:
 * pwrite 4 KiB at a fixed offset of a preallocated, already written file,
 * then fdatasync.  That is the fastest a durable single-page commit can be
 * on this machine.
 *
 * Everything is `static inline` so a benchmark that uses only part of it
 * compiles cleanly under the project's -Wall -Wextra -Werror.
 */
#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- clock --------------------------------------------------------------- */

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of this process (user + system, page faults included), for
 * CPU-bound loops: on a shared machine other processes do not inflate it. */
static inline double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Bytes of page cache this process has dirtied so far ("write_bytes" of
 * /proc/self/io: counted when a page becomes dirty, whether by write(2)
 * or through a shared mapping, so it sees what a commit writes through
 * the mmap too), or -1 when the kernel does not say. */
static inline double bench_dirtied_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return -1;
    char line[128];
    double v = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long x;
        if (sscanf(line, "write_bytes: %llu", &x) == 1) {
            v = (double)x;
            break;
        }
    }
    fclose(f);
    return v;
}

/* ---- statistics ---------------------------------------------------------- */

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (n <= 64); the input is not modified. */
static inline double bench_median(const double *v, int n)
{
    double s[64];
    if (n <= 0)
        return 0.0;
    if (n > 64)
        n = 64;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}

/* xorshift64*: fast, good enough to pick random pages. */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* ---- scratch directory, cleaned on every exit path ----------------------- */

#define BENCH_MAX_FILES 32
static char bench_dir_path[PATH_MAX];
static char bench_files[BENCH_MAX_FILES][PATH_MAX];
static volatile sig_atomic_t bench_nfiles;

/* Async-signal-safe: unlink and rmdir only. */
static inline void bench_cleanup(void)
{
    for (int i = 0; i < (int)bench_nfiles; i++)
        if (bench_files[i][0])
            unlink(bench_files[i]);
    if (bench_dir_path[0])
        rmdir(bench_dir_path);
}

static inline void bench_on_signal(int sig)
{
    bench_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static inline void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);   /* atexit removes the scratch files */
}

/* Create the scratch directory ($TMPDIR or /tmp)/mpbench-<name>-XXXXXX. */
static inline const char *bench_dir(const char *name)
{
    if (bench_dir_path[0])
        return bench_dir_path;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    char tmpl[PATH_MAX];
    int w = snprintf(tmpl, sizeof tmpl, "%s/mpbench-%s-XXXXXX", tmp, name);
    if (w < 0 || w >= (int)sizeof tmpl)
        bench_die("TMPDIR too long: %s", tmp);
    if (!mkdtemp(tmpl))
        bench_die("mkdtemp %s: %s", tmpl, strerror(errno));
    memcpy(bench_dir_path, tmpl, sizeof tmpl);
    atexit(bench_cleanup);
    signal(SIGINT, bench_on_signal);
    signal(SIGTERM, bench_on_signal);
    signal(SIGHUP, bench_on_signal);
    return bench_dir_path;
}

/* A path in the scratch directory, registered for removal at exit.  Files a
 * library creates next to it (-wal, -lock...) must be registered too. */
static inline const char *bench_file(const char *name)
{
    if (!bench_dir_path[0])
        bench_die("bench_file before bench_dir");
    for (int i = 0; i < (int)bench_nfiles; i++) {
        const char *slash = strrchr(bench_files[i], '/');
        if (slash && strcmp(slash + 1, name) == 0)
            return bench_files[i];
    }
    if (bench_nfiles >= BENCH_MAX_FILES)
        bench_die("too many scratch files");
    int i = (int)bench_nfiles;
    int w = snprintf(bench_files[i], PATH_MAX, "%s/%s", bench_dir_path, name);
    if (w < 0 || w >= PATH_MAX)
        bench_die("path too long: %s/%s", bench_dir_path, name);
    bench_nfiles = i + 1;
    return bench_files[i];
}

/* Remove a scratch file now (it stays registered: unlinking twice is fine). */
static inline void bench_remove(const char *path)
{
    unlink(path);
}

/* ---- the raw reference: pwrite 4 KiB + fdatasync ------------------------- */

#define BENCH_RAW_FILE_BYTES (1u << 20)

/* A 1 MiB file, fully written and synced, so later overwrites change no
 * metadata fdatasync would have to flush (no block allocation, no
 * unwritten-extent conversion).  Written 4 KiB at a time and then dropped
 * from the page cache: file systems with large folios (ext4 on Linux 6.x)
 * would otherwise cache it in 64 KiB folios, and one dirty byte makes the
 * whole folio go to disk, so "raw" would write 64 KiB per op, not 4. */
static inline int bench_raw_open(void)
{
    const char *path = bench_file("raw.dat");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        bench_die("open %s: %s", path, strerror(errno));
    static char buf[4096];
    memset(buf, 0xA5, sizeof buf);
    for (unsigned off = 0; off < BENCH_RAW_FILE_BYTES; off += sizeof buf)
        if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf)
            bench_die("pwrite %s: %s", path, strerror(errno));
    if (fdatasync(fd) != 0)
        bench_die("fdatasync %s: %s", path, strerror(errno));
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    return fd;
}

/* pwrite 4 KiB at offset 4096 + fdatasync, for `seconds`: ops/s. */
static inline double bench_raw_rate(int fd, double seconds)
{
    static char page[4096];
    uint64_t n = 0;
    double t0 = bench_now(), t;
    do {
        page[0] = (char)n;
        if (pwrite(fd, page, sizeof page, 4096) != (ssize_t)sizeof page)
            bench_die("raw pwrite: %s", strerror(errno));
        if (fdatasync(fd) != 0)
            bench_die("raw fdatasync: %s", strerror(errno));
        n++;
        t = bench_now();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

/* Parse "--name value" numeric options: returns 1 and advances *i. */
static inline int bench_opt_double(int argc, char **argv, int *i, const char *name, double *out)
{
    if (strcmp(argv[*i], name) != 0)
        return 0;
    if (*i + 1 >= argc)
        bench_die("%s needs a value", name);
    char *end;
    double v = strtod(argv[*i + 1], &end);
    if (*end || v < 0)
        bench_die("%s: bad value '%s'", name, argv[*i + 1]);
    *out = v;
    *i += 1;
    return 1;
}

#endif /* BENCHUTIL_H */
