/*
 * fuzz_common.h -- shared by the libFuzzer targets (fuzz/fuzz_*.c) and the
 * corpus generator (fuzz/make_corpus.c).  See fuzz/README.md.
 *
 * Nothing here depends on libFuzzer: make_corpus links it with a plain cc.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include "mappedpages.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* An oracle failed: print and abort (libFuzzer reports it as a crash and
 * saves the input).  Used only for conditions the API or docs/FORMAT.md
 * promise, never for legitimate errors. */
#define FZ_CHECK(cond, ...)                                                 \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FUZZ ORACLE FAILED %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, "\n");                                          \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* A per-process temp path in a tmpfs when there is one (/dev/shm), else
 * $TMPDIR or /tmp: "<dir>/mpfuzz-<pid>-<name>".  Static buffer per name
 * slot (slot 0..3). */
const char *fz_tmp_path(int slot, const char *name);

/* Replace path with buf[0..len) (unlink first, so no pager's lock or mode
 * of an earlier run can interfere).  0 or an errno. */
int fz_write_file(const char *path, const void *buf, size_t len);
/* Read a whole file into a malloc'ed buffer; NULL on error. */
unsigned char *fz_read_file(const char *path, size_t *len);

/* ---- valid base images ------------------------------------------------- */

/* Images built through the public API (so they match the geometry of the
 * build: a -DMP_TEST_FANOUT build gets its own images), each at most
 * 64 KiB unless noted. */
enum {
    FZ_IMG_EMPTY,      /* freshly created, 1 KiB pages, one root */
    FZ_IMG_MIXED,      /* regular + protected pages, carried page-table entries, both roots */
    FZ_IMG_TREE,       /* a page-table tree (leaves and a node) plus carried entries */
    FZ_IMG_TINY,       /* an empty store whose page count is its reserved run (8 KiB) */
    FZ_IMG_GROWN,      /* FZ_IMG_TINY with bytes appended by "another tool" */
    FZ_IMG_MIXED2K,    /* like MIXED with 2 KiB pages */
    FZ_IMG_EMPTY8K,    /* freshly created, 8 KiB pages (LMAX 1) */
    FZ_IMG_TALL,       /* more groups than the root holds, so the free-space
                        * map has index nodes: only in a -DMP_TEST_FANOUT
                        * build (K = 4: 16 MiB, mostly holes); elsewhere it
                        * would take 450 MiB and fz_build_image refuses */
    FZ_IMG_COUNT
};
extern const char *const fz_img_names[FZ_IMG_COUNT];
/* Build image `kind` in a malloc'ed buffer (*page_size set); NULL on
 * failure (message on stderr), and for FZ_IMG_TALL outside a fanout
 * build. */
unsigned char *fz_build_image(int kind, size_t *len, uint32_t *page_size);

/* ---- checksum repair ----------------------------------------------------- */

enum {
    FZ_SEAL_META = 1,      /* recompute each reachable metadata page's own CRC */
    FZ_FIX_ENTRIES = 2,    /* parents' entries take their children's CRC */
    FZ_FIX_CONTENT = 4,    /* page-table entries take their content page's CRC */
    FZ_SEAL_ROOT0 = 8,     /* recompute root slot 0's CRC */
    FZ_SEAL_ROOT1 = 16,    /* recompute root slot 1's CRC */
    FZ_SEAL_ALL = 31
};
/* Walk what each root slot (magic present, page size P) names, as
 * docs/FORMAT.md lays it out, and recompute the checksums `flags` asks for,
 * bottom-up, so that structural damage hides behind valid CRCs.  Robust
 * against any bytes: every page number is bounds-checked and the walk has
 * a work budget. */
void fz_reseal(unsigned char *img, size_t len, uint32_t P, unsigned flags);
/* The same, setting dirty[pg] = 1 for every page it writes (dirty has an
 * entry per whole page of img). */
void fz_reseal_track(unsigned char *img, size_t len, uint32_t P, unsigned flags,
                     unsigned char *dirty);

/* ---- exercising a file ---------------------------------------------------- */

/* Open `path` read-only, then read-write; when it opens: mp_check, iterate
 * regular and protected pages reading every byte, mutate (alloc, free,
 * protected alloc/write/free, a transaction with write_ptr, a rollback),
 * close and reopen, checking oracles throughout (FZ_CHECK).  `variant`
 * picks options (reservation size, which mutations).  Returns 1 when the
 * file opened, 0 when it was refused cleanly. */
int fz_exercise(const char *path, unsigned variant);

#endif
