/*
 * open_time.c -- how long mp_open takes as files grow.
 *
 * For 2^16, 2^18, 2^20, 2^22 and 2^24 pages of 1 KiB (the last is a 16 GiB
 * file, its disk blocks reserved with posix_fallocate): create the file,
 * allocate pages with mp_alloc_bulk in one transaction until the page
 * count reaches the target (growth is geometric, so it may overshoot: the
 * actual count is reported), commit, close.  Then time mp_open (mp_close
 * is not timed):
 *
 *   warm   page cache warm: one untimed open first, then the median of 5
 *   cold   once, after evicting the file's pages from the page cache with
 *          posix_fadvise(POSIX_FADV_DONTNEED) (its data is clean: every
 *          commit ended with fdatasync); only when asked with
 *          --drop-caches (and allowed: root outside a container) the whole
 *          machine's cache with `echo 3 > /proc/sys/vm/drop_caches`
 *
 * Open verifies the root and every metadata page below it (a CRC over
 * each group bitmap and index node) and counts the bitmaps' states, so its
 * cost should track the free-space map: 2 bits a page, page_count / 4
 * bytes.  The table shows ms, ms per million pages and µs per KiB of map.
 * Target (README, "Benchmarks"): 2^24 pages under 50 ms, growing no
 * faster than the free-space map.  Each file is deleted right after it is
 * measured.
 *
 * Usage: open_time [--max-exp E] [--min-exp E] [--drop-caches]
 *        (defaults 24, 16; even steps)
 */
#include "benchutil.h"
#include "mappedpages.h"

#include <sys/mman.h>

#define PAGE 1024u
#define WARM_RUNS 5
#define CHUNK ((size_t)1 << 20)

static mp_pager *P;

static void check(mp_err rc, const char *what)
{
    if (rc != MP_OK)
        bench_die("%s: %s (%s)", what, mp_strerror(rc), P ? mp_errmsg(P) : "");
}

static double timed_open(const char *path)
{
    mp_error err;
    mp_pager *q;
    double t0 = bench_now();
    mp_err rc = mp_open(path, NULL, &q, &err);
    double t = bench_now() - t0;
    if (rc != MP_OK)
        bench_die("%s", err.msg);
    mp_close(q);
    return t;
}

/* --drop-caches: evict the whole machine's page cache, not only the
 * file's.  Off unless asked: a benchmark leaves the machine as it was. */
static int drop_all_caches;

/* Evict the file from the page cache; returns the method used or NULL. */
static const char *evict(const char *path)
{
    int fd;
    if (drop_all_caches) {
        sync();
        fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t w = write(fd, "3\n", 2);
            close(fd);
            if (w == 2)
                return "drop_caches";
        }
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    int ok = fdatasync(fd) == 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
    close(fd);
    return ok ? "fadvise" : NULL;
}

/* Pages of the file resident in the page cache (mincore over a fresh
 * read-only mapping), in bytes; -1 if unknown. */
static double resident_bytes(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        close(fd);
        return -1;
    }
    long ps = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)st.st_size, npg = (len + (size_t)ps - 1) / (size_t)ps;
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    unsigned char *vec = malloc(npg);
    double res = -1;
    if (vec && mincore(m, len, vec) == 0) {
        size_t n = 0;
        for (size_t i = 0; i < npg; i++)
            n += vec[i] & 1;
        res = (double)n * (double)ps;
    }
    free(vec);
    munmap(m, len);
    return res;
}

int main(int argc, char **argv)
{
    double max_exp = 24, min_exp = 16;
    for (int i = 1; i < argc; i++) {
        if (bench_opt_double(argc, argv, &i, "--max-exp", &max_exp) ||
            bench_opt_double(argc, argv, &i, "--min-exp", &min_exp))
            continue;
        if (strcmp(argv[i], "--drop-caches") == 0) {
            drop_all_caches = 1;
            continue;
        }
        fprintf(stderr, "usage: %s [--min-exp E] [--max-exp E] [--drop-caches]\n", argv[0]);
        return 2;
    }
    bench_dir("open_time");
    const char *path = bench_file("open.mp");
    mp_pgno *ids = malloc(CHUNK * sizeof *ids);
    if (!ids)
        bench_die("out of memory");
    printf("open_time: mp_open of files of %u-byte pages; warm = median of %d, cold = once after "
           "eviction; dir %s\n", PAGE, WARM_RUNS, bench_dir("open_time"));
    printf("\n| target | pages | file | free-space map (pages/4) | groups | index height "
           "| open warm, ms | ms per M pages | µs per KiB of map | open cold, ms | cold: resident after open "
           "| setup, s |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);

    double first_ms = 0, first_map = 0, last_ms = 0, last_map = 0;
    for (int e = (int)min_exp; e <= (int)max_exp; e += 2) {
        uint64_t target = (uint64_t)1 << e;
        mp_options o = { .page_size = PAGE };
        mp_error err;
        double t0 = bench_now();
        if (mp_create(path, &o, &P, &err) != MP_OK)
            bench_die("%s", err.msg);
        check(mp_begin(P), "begin");
        while (mp_page_count(P) < target) {
            uint64_t want = target - mp_page_count(P);
            if (want < mp_free_count(P))
                want = mp_free_count(P);   /* fill what is there, then grow */
            if (want == 0)
                want = 1;
            size_t n = want < CHUNK ? (size_t)want : CHUNK;
            check(mp_alloc_bulk(P, n, ids), "alloc_bulk");
        }
        check(mp_commit(P), "commit");
        mp_info in;
        mp_get_info(P, &in);
        mp_close(P);
        P = NULL;
        double setup = bench_now() - t0;

        timed_open(path);   /* warm-up */
        double w[WARM_RUNS];
        for (int k = 0; k < WARM_RUNS; k++)
            w[k] = timed_open(path) * 1e3;
        double warm = bench_median(w, WARM_RUNS);

        const char *how = evict(path);
        double cold = -1, res = -1;
        if (how) {
            cold = timed_open(path) * 1e3;
            res = resident_bytes(path);
        }
        bench_remove(path);

        double map = (double)in.page_count / 4.0;
        uint64_t groups = (in.page_count + (4 * (PAGE - 32)) - 1) / (4 * (PAGE - 32));
        char coldbuf[64] = "n/a", resbuf[64] = "n/a";
        if (cold >= 0)
            snprintf(coldbuf, sizeof coldbuf, "%.1f (%s)", cold, how);
        if (res >= 0)
            snprintf(resbuf, sizeof resbuf, "%.1f MiB", res / 1048576.0);
        printf("| 2^%d | %llu | %.2f GiB | %.0f KiB | %llu | %u | %.2f | %.2f | %.3f | %s | %s | %.1f |\n", e,
               (unsigned long long)in.page_count, (double)in.file_size / 1073741824.0, map / 1024.0,
               (unsigned long long)groups, in.fsm_height, warm, warm / ((double)in.page_count / 1e6),
               warm * 1e3 / (map / 1024.0), coldbuf, resbuf, setup);
        fflush(stdout);
        if (e == (int)min_exp) {
            first_ms = warm;
            first_map = map;
        }
        last_ms = warm;
        last_map = map;
    }
    free(ids);
    if (last_map > first_map) {
        printf("\ngrowth from the smallest to the largest file (same run): open time x%.1f, "
               "free-space map x%.1f (target: open grows no faster than the map)\n",
               last_ms / first_ms, last_map / first_map);
        printf("largest file: warm open %.2f ms (target < 50 ms)\n", last_ms);
    }
    return 0;
}
