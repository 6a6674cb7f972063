/*
 * layout.c -- geometry of a mappedpages file, derived from the page size.
 *
 * Owns: which pages are reserved and where each metadata page lives
 * (docs/FORMAT.md, "Geometry"), the shape of the index tree for a given
 * number of groups, and counting bitmap states.  Pure arithmetic: no I/O.
 */
#include "mp_internal.h"

int mp_page_size_valid(uint64_t P)
{
    return P >= MP_MIN_PAGE_SIZE && P <= MP_MAX_PAGE_SIZE && (P & (P - 1)) == 0;
}

void mp_geom_init(mp_geom *g, uint32_t P)
{
    memset(g, 0, sizeof *g);
    g->P = P;
    g->G = 4u * (P - MP_HDR_SIZE);
    g->E = (P - MP_HDR_SIZE) / MP_ENTRY_SIZE;
    g->K = (P - MP_ROOT_HDR_SIZE) / MP_ENTRY_SIZE;
    g->words = (P - MP_HDR_SIZE) / 8u;
#ifdef MP_TEST_FANOUT
    /* Test builds only (tests/tree_heights.c): tiny index nodes, so small
     * files reach every tree height.  Files are not compatible with
     * normal builds. */
    if (g->E > MP_TEST_FANOUT)
        g->E = MP_TEST_FANOUT;
    if (g->K > MP_TEST_FANOUT / 2)
        g->K = MP_TEST_FANOUT / 2;
#endif
    g->epow[0] = 1;
    for (int l = 1; l <= MP_LMAX_LIMIT; l++)   /* saturating: only l <= lmax is used */
        g->epow[l] = g->epow[l - 1] > UINT64_MAX / g->E ? UINT64_MAX : g->epow[l - 1] * g->E;
    /* LMAX: enough levels for the largest possible file. */
    uint64_t counts[MP_LMAX_LIMIT + 1];
    g->lmax = mp_tree_shape(g, mp_groups_for(g, MP_MAX_PAGES), counts);
}

uint64_t mp_groups_for(const mp_geom *g, uint64_t page_count)
{
    return (page_count + g->G - 1) / g->G;
}

uint32_t mp_tree_shape(const mp_geom *g, uint64_t ngroups, uint64_t counts[MP_LMAX_LIMIT + 1])
{
    uint32_t h = 0;
    counts[0] = ngroups;
    while (counts[h] > g->K && h < MP_LMAX_LIMIT) {
        counts[h + 1] = (counts[h] + g->E - 1) / g->E;
        h++;
    }
    for (uint32_t l = h + 1; l <= MP_LMAX_LIMIT; l++)
        counts[l] = 0;
    return h;
}

/* Index levels whose node slots live in this group's reserved run: group 0
 * hosts every level (node 0 of each), group g hosts level l when E^l
 * divides g (it is the first group under that level-l node). */
uint32_t mp_hosted_levels(const mp_geom *g, uint64_t group)
{
    if (group == 0)
        return g->lmax;
    uint32_t n = 0;
    for (uint32_t l = 1; l <= g->lmax; l++)
        if (group % g->epow[l] == 0)
            n = l;
    return n;
}

uint64_t mp_group_base(const mp_geom *g, uint64_t group)
{
    return group * g->G + (group == 0 ? 2u : 0u);
}

uint64_t mp_group_run_end(const mp_geom *g, uint64_t group)
{
    return mp_group_base(g, group) + 2u + 2u * mp_hosted_levels(g, group);
}

uint64_t mp_bitmap_page(const mp_geom *g, uint64_t group, unsigned slot)
{
    return mp_group_base(g, group) + slot;
}

uint64_t mp_node_page(const mp_geom *g, unsigned level, uint64_t node, unsigned slot)
{
    uint64_t host = node * g->epow[level];
    return mp_group_base(g, host) + 2u * level + slot;
}

uint64_t mp_min_page_count(const mp_geom *g)
{
    uint64_t bytes = mp_group_run_end(g, 0) * g->P;
    bytes = (bytes + MP_GROW_UNIT - 1) / MP_GROW_UNIT * MP_GROW_UNIT;
    return bytes / g->P;
}

int mp_page_count_valid(const mp_geom *g, uint64_t page_count)
{
    if (page_count < mp_group_run_end(g, 0) || page_count > MP_MAX_PAGES)
        return 0;
    uint64_t last = (page_count - 1) / g->G;
    return page_count >= mp_group_run_end(g, last);
}

/* Bits set in v, branch-free (SWAR).  __builtin_popcountll compiles to a
 * libgcc call unless the build targets a CPU with POPCNT, and open (and a
 * reader's refresh) counts every bitmap word: where the CPU has POPCNT,
 * count_states_popcnt below is used instead. */
static inline uint64_t popcount64(uint64_t v)
{
#if defined(__POPCNT__)
    return (uint64_t)__builtin_popcountll(v);   /* the build targets POPCNT */
#endif
    v = v - ((v >> 1) & 0x5555555555555555ull);
    v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
    v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (v * 0x0101010101010101ull) >> 56;
}

/* Count the states of pages [from, to) word by word: for each 2-bit pair
 * (hi, lo), "lo and not hi" is regular, "hi and not lo" system, both is
 * pending, neither free.  One body, compiled with each popcount. */
#define COUNT_STATES_BODY(POPCOUNT)                                                   \
    const uint64_t LO = 0x5555555555555555ull;                                        \
    uint64_t reg = 0, sys = 0, pen = 0, i = from;                                     \
    while (i < to) {                                                                  \
        uint64_t w = bm[i >> 5];                                                      \
        uint64_t first = i & 31, n = 32 - first;                                      \
        if (n > to - i)                                                               \
            n = to - i;                                                               \
        if (n == 32) {   /* whole words: no mask */                                   \
            for (; to - i >= 32; i += 32) {                                           \
                w = bm[i >> 5];                                                       \
                uint64_t lo = w & LO, hi = (w >> 1) & LO;                             \
                reg += POPCOUNT(lo & ~hi);                                            \
                sys += POPCOUNT(hi & ~lo);                                            \
                pen += POPCOUNT(lo & hi);                                             \
            }                                                                         \
            continue;                                                                 \
        }                                                                             \
        uint64_t mask = (((uint64_t)1 << (2 * n)) - 1) << (2 * first);                \
        uint64_t lo = w & LO & mask, hi = (w >> 1) & LO & mask;                       \
        reg += POPCOUNT(lo & ~hi);                                                    \
        sys += POPCOUNT(hi & ~lo);                                                    \
        pen += POPCOUNT(lo & hi);                                                     \
        i += n;                                                                       \
    }                                                                                 \
    out->n[ST_REGULAR] = reg;                                                         \
    out->n[ST_SYSTEM] = sys;                                                          \
    out->n[ST_PENDING] = pen;                                                         \
    out->n[ST_FREE] = (to > from ? to - from : 0) - reg - sys - pen;

static void count_states_swar(const uint64_t *bm, uint64_t from, uint64_t to, mp_counts *out)
{
    COUNT_STATES_BODY(popcount64)
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__POPCNT__)
#define MP_POPCNT_DISPATCH 1
__attribute__((target("popcnt"))) static void count_states_popcnt(const uint64_t *bm, uint64_t from,
                                                                  uint64_t to, mp_counts *out)
{
    COUNT_STATES_BODY((uint64_t)__builtin_popcountll)
}

/* Whether the CPU has POPCNT: probed once, as crc32c.c probes SSE4.2. */
static int have_popcnt(void)
{
    static int state;          /* 0: not probed yet, 1: absent, 2: present */
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s == 0) {
        __builtin_cpu_init();
        s = __builtin_cpu_supports("popcnt") ? 2 : 1;
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s == 2;
}
#endif

void mp_count_states(const uint64_t *bm, uint64_t from, uint64_t to, mp_counts *out)
{
#if defined(MP_POPCNT_DISPATCH)
    if (have_popcnt()) {
        count_states_popcnt(bm, from, to, out);
        return;
    }
#endif
    count_states_swar(bm, from, to, out);
}
