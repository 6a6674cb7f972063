/*
 * crc32c.h -- CRC32C (Castagnoli) checksums.
 *
 * Owns the one checksum of the file format: every metadata page and every
 * root carries a CRC32C (see docs/FORMAT.md).  The standard CRC32C: the
 * reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF,
 * so mp_crc32c(0, "123456789", 9) == 0xE3069283 (the iSCSI / ext4 / RocksDB
 * checksum, not zlib's crc32).
 *
 * Chaining: mp_crc32c(mp_crc32c(0, a, n), b, m) is the CRC of a followed by
 * b, so a checksum can be computed piece by piece.
 *
 * On x86-64 CPUs with SSE4.2 the CRC32 instruction is used (three
 * interleaved streams on large buffers); elsewhere a portable slicing-by-8
 * table, built at compile time.  The functions keep no mutable state but a
 * cached CPU-feature flag, and are safe to call from any thread.
 */
#ifndef MP_CRC32C_H
#define MP_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CRC32C of buf[0 .. len) continuing from crc (0 to start).  buf may have
 * any alignment; it may be NULL when len is 0. */
uint32_t mp_crc32c(uint32_t crc, const void *buf, size_t len);

/* The same function, always computed by the portable table code (for tests
 * and benchmarks comparing the two paths). */
uint32_t mp_crc32c_portable(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* MP_CRC32C_H */
