/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hash.c — the string hash of the daemon's tables of names and paths.  No bus, no I/O.
 *
 * g_str_hash() is djb2, one dependent multiply-add per byte; a path is hashed twice per grant
 * (lookup, insert), and at a million grants that was a fifth of the time state_load() takes,
 * and each open hashes a decision key of some 150 bytes.  This takes 8 bytes per step
 * (multiply, xor-shift) and ends with murmur3's fmix64, so the low 32 bits GHashTable uses
 * depend on every input bit.  The per-process random seed keeps names that collide from being
 * worked out in advance (with djb2 that is easy, and all guests share one table).
 */
#include <stdint.h>
#include <string.h>

#include "hash.h"

static uint64_t hash_seed;

static uint64_t seed(void) {
        static gsize once = 0;

        if (g_once_init_enter(&once)) {
                hash_seed = (uint64_t) g_random_int() << 32 | g_random_int();
                g_once_init_leave(&once, 1);
        }
        return hash_seed;
}

guint str_hash_seeded(gconstpointer v) {
        const unsigned char *s = v;
        size_t n = strlen(v);
        uint64_t h = seed() ^ (n * UINT64_C(0x9e3779b97f4a7c15)), w;

        for (; n >= 8; s += 8, n -= 8) {
                memcpy(&w, s, 8);
                h = (h ^ w) * UINT64_C(0xbf58476d1ce4e5b9);
                /* A multiply only carries upwards: fold the top back down, or two words that
                 * differ only in their last byte could cancel out. */
                h ^= h >> 29;
        }
        w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * UINT64_C(0xbf58476d1ce4e5b9);

        h ^= h >> 33;
        h *= UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 33;
        return (guint) h;
}
