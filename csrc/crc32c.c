/*
 * crc32c.c -- CRC32C (Castagnoli), hardware and portable.
 *
 * Owns: the checksum used by the on-disk format (see crc32c.h for the exact
 * definition).  Two implementations of one function:
 *
 *  - x86-64 with SSE4.2: the CRC32 instruction, 8 bytes per instruction.
 *    Its latency is 3 cycles and its throughput 1 per cycle, so large
 *    buffers are cut into three adjacent blocks whose CRCs are computed in
 *    interleaved, independent streams and then combined (see "Combining").
 *    The CPU is probed once (__builtin_cpu_supports), the answer cached in
 *    a static with relaxed atomic accesses, so there is no data race.
 *  - everywhere else: slicing-by-8 tables (8 bytes per step, 8 lookups).
 *
 * All tables are const and built by the compiler (see "Tables"): nothing is
 * initialized at run time, nothing is written, any thread may call in.
 *
 * Conventions: "register" below is the raw CRC shift register, i.e. the
 * public value xor 0xFFFFFFFF; the public functions do the two inversions
 * and the internal ones work on registers.
 */
#include "crc32c.h"

#include <string.h>

/*
 * Tables
 *
 * A CRC register update is linear over GF(2): feeding the byte v (and then
 * k zero bytes) into a zero register gives the xor of what each set bit of
 * v alone gives.  So every 256-entry table below is determined by 8 basis
 * values, the images of the bytes 1, 2, 4, ... 128, and MP_LIN256 lets the
 * preprocessor expand those 8 constants into the 256 entries.
 *
 * The basis values were computed by the bitwise definition (8 steps of
 * r = (r >> 1) ^ (0x82F63B78 & -(r & 1)) per byte) and are checked, with
 * every table entry, against that definition by the test program; the
 * first row can be checked by eye: slice[0][0x80] is the polynomial.
 */
#define MP_BIT(v, i, c) ((0u - (((unsigned)(v) >> (i)) & 1u)) & (uint32_t)(c))
#define MP_LIN(v, c0, c1, c2, c3, c4, c5, c6, c7)                           \
    (MP_BIT(v, 0, c0) ^ MP_BIT(v, 1, c1) ^ MP_BIT(v, 2, c2) ^               \
     MP_BIT(v, 3, c3) ^ MP_BIT(v, 4, c4) ^ MP_BIT(v, 5, c5) ^               \
     MP_BIT(v, 6, c6) ^ MP_BIT(v, 7, c7))
#define MP_LIN4(v, ...)                                                     \
    MP_LIN((v), __VA_ARGS__), MP_LIN((v) + 1, __VA_ARGS__),                 \
    MP_LIN((v) + 2, __VA_ARGS__), MP_LIN((v) + 3, __VA_ARGS__)
#define MP_LIN16(v, ...)                                                    \
    MP_LIN4((v), __VA_ARGS__), MP_LIN4((v) + 4, __VA_ARGS__),               \
    MP_LIN4((v) + 8, __VA_ARGS__), MP_LIN4((v) + 12, __VA_ARGS__)
#define MP_LIN64(v, ...)                                                    \
    MP_LIN16((v), __VA_ARGS__), MP_LIN16((v) + 16, __VA_ARGS__),            \
    MP_LIN16((v) + 32, __VA_ARGS__), MP_LIN16((v) + 48, __VA_ARGS__)
#define MP_LIN256(...)                                                      \
    { MP_LIN64(0, __VA_ARGS__), MP_LIN64(64, __VA_ARGS__),                  \
      MP_LIN64(128, __VA_ARGS__), MP_LIN64(192, __VA_ARGS__) }

/* slice[k][v]: register after feeding byte v, then k zero bytes, into a
 * zero register.  slice[0] is the classic byte-at-a-time table. */
static const uint32_t slice[8][256] = {
    MP_LIN256(0xf26b8303u, 0xe13b70f7u, 0xc79a971fu, 0x8ad958cfu,
              0x105ec76fu, 0x20bd8edeu, 0x417b1dbcu, 0x82f63b78u),
    MP_LIN256(0x13a29877u, 0x274530eeu, 0x4e8a61dcu, 0x9d14c3b8u,
              0x3fc5f181u, 0x7f8be302u, 0xff17c604u, 0xfbc3faf9u),
    MP_LIN256(0xa541927eu, 0x4f6f520du, 0x9edea41au, 0x38513ec5u,
              0x70a27d8au, 0xe144fb14u, 0xc76580d9u, 0x8b277743u),
    MP_LIN256(0xdd45aab8u, 0xbf672381u, 0x7b2231f3u, 0xf64463e6u,
              0xe964b13du, 0xd725148bu, 0xaba65fe7u, 0x52a0c93fu),
    MP_LIN256(0x38116facu, 0x7022df58u, 0xe045beb0u, 0xc5670b91u,
              0x8f2261d3u, 0x1ba8b557u, 0x37516aaeu, 0x6ea2d55cu),
    MP_LIN256(0xef306b19u, 0xdb8ca0c3u, 0xb2f53777u, 0x6006181fu,
              0xc00c303eu, 0x85f4168du, 0x0e045bebu, 0x1c08b7d6u),
    MP_LIN256(0x68032cc8u, 0xd0065990u, 0xa5e0c5d1u, 0x4e2dfd53u,
              0x9c5bfaa6u, 0x3d5b83bdu, 0x7ab7077au, 0xf56e0ef4u),
    MP_LIN256(0x493c7d27u, 0x9278fa4eu, 0x211d826du, 0x423b04dau,
              0x847609b4u, 0x0d006599u, 0x1a00cb32u, 0x34019664u),
};

/* Portable update: slicing-by-8.  Loads are bytewise, so any alignment and
 * either byte order works; compilers merge the four byte loads. */
static uint32_t portable_update(uint32_t r, const unsigned char *p, size_t len)
{
    while (len >= 8) {
        uint32_t lo = r ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                           (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        r = slice[7][lo & 0xff] ^ slice[6][(lo >> 8) & 0xff] ^
            slice[5][(lo >> 16) & 0xff] ^ slice[4][lo >> 24] ^
            slice[3][p[4]] ^ slice[2][p[5]] ^ slice[1][p[6]] ^ slice[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        r = slice[0][(r ^ *p) & 0xff] ^ (r >> 8);
        p++;
        len--;
    }
    return r;
}

uint32_t mp_crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
    return ~portable_update(~crc, (const unsigned char *)buf, len);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MP_CRC32C_HW 1
#include <nmmintrin.h>

/*
 * Combining
 *
 * For a register r and data D, crc(r, D) = crc(0, D) ^ Z(r, |D|), where
 * Z(r, n) feeds n zero bytes to r.  With D = A || B || C, |A|=|B|=|C|=n:
 *   crc(r, D) = Z(Z(crc(r, A), n) ^ crc(0, B), n) ^ crc(0, C).
 * Z(., n) is linear too, so it is 4 lookups in a table per byte of the
 * register, built like the slicing tables from 32 basis values Z(1<<b, n).
 *
 * Block sizes: LONG for big buffers (the combine cost vanishes), SHORT so
 * that a 1-64 KiB page still runs three streams for most of its length.
 */
#define MP_CRC_LONG 8192
#define MP_CRC_SHORT 256

static const uint32_t zeros_long[4][256] = {
    MP_LIN256(0xe040e0acu, 0xc56db7a9u, 0x8f3719a3u, 0x1b8245b7u,
              0x37048b6eu, 0x6e0916dcu, 0xdc122db8u, 0xbdc82d81u),
    MP_LIN256(0x7e7c2df3u, 0xfcf85be6u, 0xfc1cc13du, 0xfdd5f48bu,
              0xfe479fe7u, 0xf963493fu, 0xf72ae48fu, 0xebb9bfefu),
    MP_LIN256(0xd29f092fu, 0xa0d264afu, 0x4448bfafu, 0x88917f5eu,
              0x14ce884du, 0x299d109au, 0x533a2134u, 0xa6744268u),
    MP_LIN256(0x4904f221u, 0x9209e442u, 0x21ffbe75u, 0x43ff7ceau,
              0x87fef9d4u, 0x0a118559u, 0x14230ab2u, 0x28461564u),
};

static const uint32_t zeros_short[4][256] = {
    MP_LIN256(0xdcb17aa4u, 0xbc8e83b9u, 0x7cf17183u, 0xf9e2e306u,
              0xf629b0fdu, 0xe9bf170bu, 0xd69258e7u, 0xa8c8c73fu),
    MP_LIN256(0x547df88fu, 0xa8fbf11eu, 0x541b94cdu, 0xa837299au,
              0x558225c5u, 0xab044b8au, 0x53e4e1e5u, 0xa7c9c3cau),
    MP_LIN256(0x4a7ff165u, 0x94ffe2cau, 0x2c13b365u, 0x582766cau,
              0xb04ecd94u, 0x6571edd9u, 0xcae3dbb2u, 0x902bc195u),
    MP_LIN256(0x25bbf5dbu, 0x4b77ebb6u, 0x96efd76cu, 0x2833d829u,
              0x5067b052u, 0xa0cf60a4u, 0x4472b7b9u, 0x88e56f72u),
};

static inline uint32_t zeros(const uint32_t tab[4][256], uint32_t r)
{
    return tab[0][r & 0xff] ^ tab[1][(r >> 8) & 0xff] ^
           tab[2][(r >> 16) & 0xff] ^ tab[3][r >> 24];
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);   /* x86 is little-endian, as CRC32 expects */
    return v;
}

/* Three streams over blocks of n bytes each, while 3n bytes remain. */
#define MP_CRC_3WAY(n, tab)                                                 \
    while (len >= 3 * (size_t)(n)) {                                        \
        uint64_t r1 = 0, r2 = 0;                                            \
        const unsigned char *end = p + (n);                                 \
        do {                                                                \
            r0 = _mm_crc32_u64(r0, load64(p));                              \
            r1 = _mm_crc32_u64(r1, load64(p + (n)));                        \
            r2 = _mm_crc32_u64(r2, load64(p + 2 * (n)));                    \
            p += 8;                                                         \
        } while (p < end);                                                  \
        r0 = zeros(tab, (uint32_t)r0) ^ (uint32_t)r1;                       \
        r0 = zeros(tab, (uint32_t)r0) ^ (uint32_t)r2;                       \
        p += 2 * (size_t)(n);                                               \
        len -= 3 * (size_t)(n);                                             \
    }

__attribute__((target("sse4.2")))
static uint32_t hw_update(uint32_t r, const unsigned char *p, size_t len)
{
    uint64_t r0 = r;
    /* Bytes up to an 8-byte boundary, so that the 8-byte loads below do
     * not straddle cache lines. */
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        r0 = _mm_crc32_u8((uint32_t)r0, *p);
        p++;
        len--;
    }
    MP_CRC_3WAY(MP_CRC_LONG, zeros_long)
    MP_CRC_3WAY(MP_CRC_SHORT, zeros_short)
    while (len >= 8) {
        r0 = _mm_crc32_u64(r0, load64(p));
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        r0 = _mm_crc32_u8((uint32_t)r0, *p);
        p++;
        len--;
    }
    return (uint32_t)r0;
}

/* Whether the CPU has SSE4.2.  Probed once; concurrent first calls both
 * probe and store the same answer (relaxed atomics: no data race). */
static int have_sse42(void)
{
#if defined(__SSE4_2__)
    return 1;                  /* the whole build targets SSE4.2 */
#else
    static int state;          /* 0: not probed yet, 1: absent, 2: present */
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s == 0) {
        __builtin_cpu_init();
        s = __builtin_cpu_supports("sse4.2") ? 2 : 1;
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s == 2;
#endif
}
#endif /* x86-64 */

uint32_t mp_crc32c(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
#if defined(MP_CRC32C_HW)
    if (have_sse42())
        return ~hw_update(~crc, p, len);
#endif
    return ~portable_update(~crc, p, len);
}
