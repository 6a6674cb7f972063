/*
 * fuzz_open.c -- libFuzzer target: the input bytes are a whole file.
 *
 * The bytes are written to a per-process temp file (a tmpfs when there is
 * one; the same path every run), then fz_exercise() opens it read-only and
 * read-write and, when it opens, checks, iterates, reads every byte of
 * every page, mutates, commits, closes and reopens it.  A file must open or
 * fail with a clean error: never crash, hang, leak or touch memory outside
 * the mapping (ASan + UBSan), and never break the oracles in
 * fuzz_common.c.
 *
 * Random bytes almost never pass the root CRC: fuzz_open_fixed.c patches
 * valid images and repairs checksums to reach the structural checks.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_tmp_path(0, "open.mp");
    if (fz_write_file(path, data, size) != 0)
        return 0;
    /* odd sizes use the default (large) address reservation */
    fz_exercise(path, (unsigned)(size & 1));
    return 0;
}
