// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore (lookups) and control thread (the writer: control/publish/endpoint_table_writer.hpp)
//
// The endpoints table: (network, MAC) -> where the endpoint is. One cache line per
// lookup: the keys sit in the bucket next to their values, so a lookup costs the line
// the caller prefetched and nothing after it. rte_hash costs two or three lines per
// lookup (its bucket of signatures, then the key store entry, and the alternative
// bucket on a signature miss), which a million endpoints turn into as many DRAM
// misses (docs/tables-and-rcu.md, "The endpoints table").
//
// Layout: 64-byte buckets of five entries, a bucket per two keys of capacity (at most
// 40% of the entries used, 32 bytes per key). An entry is the key (the MAC in bits
// 0-47, the network's stats slot above it: one 64-bit compare) and the value
// (endpoint_value bits 0-17: location and container port or VTEP slot). A key lives in
// its home bucket (the hash scaled to the bucket count: any count, no power of two to
// round up to) or, when that is full, in the first bucket after it with a free entry.
// Each bucket counts the keys that passed it on the way to a later one (`spill`); a
// lookup goes on to the next bucket only while that count is not zero, and never
// further than max_displacement buckets from home (the writer refuses a key it cannot
// place that close: crafted MACs can slow lookups a little, never make them walk far).
// At full capacity about 1% of the keys live outside their home bucket
// (tests/ctl/endpoint_table_test.cpp measures it).
//
// Concurrency: one writer, lock-free readers, rte_rcu_qsbr. The writer stores an
// entry's value before its key (release); a reader that matches a key reads the value
// stored with it. An overwrite of a value is one atomic store. A deleted entry's key
// becomes dead_key at once and its place is free again only after a grace period, so
// no reader that matched the old key can see a new key's value. Keys are never moved
// and spill counts only count live keys, so a key that is not changed is found by
// every lookup, whatever else the writer does meanwhile.
//
// The network's slot stands for its VNI (8 bytes of key instead of 16): a network's
// endpoints are deleted before the network, and its slot is given to another network
// only after a grace period (table_writer: retired::kind::network_slot), after every
// lookup that could still hold the slot for the old network.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include <rte_common.h>
#include <rte_ether.h>
#include <rte_prefetch.h>

#include "overpass/crc32c.hpp"

namespace overpass {

struct endpoint_table {
    static constexpr uint32_t ways = 5;
    /// How many buckets past its home a key may live (a lookup reads at most one more
    /// bucket than this). At 40% load a random key needs more than one about 1 time in
    /// 100, more than 8 practically never.
    static constexpr uint32_t max_displacement = 32;
    /// Never a key: keys have a network stats slot (< max_network_slots) in bits 48-63.
    static constexpr uint64_t empty_key = ~uint64_t{0};
    static constexpr uint64_t dead_key = ~uint64_t{1};   ///< deleted; free after a grace period

    struct alignas(RTE_CACHE_LINE_SIZE) bucket {
        uint64_t key[ways];      ///< empty_key, dead_key or a key (endpoint_key())
        uint32_t value[ways];    ///< endpoint_value bits 0-17 of a live key; never 0
        uint32_t spill;          ///< live keys whose home bucket is before this one and who live after it
    };

    bucket* buckets = nullptr;
    uint32_t n_buckets = 0;
};
static_assert(sizeof(endpoint_table::bucket) == RTE_CACHE_LINE_SIZE, "a bucket is one cache line");

/// The key of (network stats slot, MAC): the MAC's six bytes in wire order in bits
/// 0-47 (what a little-endian 8-byte load of a frame's first bytes gives, masked), the
/// slot in bits 48-63.
/// Built in registers from a 4-byte and a 2-byte load: six bytes copied into an 8-byte
/// variable go through the stack, and the 8-byte load after them stalls on store
/// forwarding (about 15 cycles per decapsulated frame in perf/dp_bench).
inline uint64_t endpoint_key(uint16_t network_slot, const rte_ether_addr& mac) noexcept {
    static_assert(std::endian::native == std::endian::little, "bytes 0-5 -> bits 0-47");
    uint32_t lo;
    uint16_t hi;
    std::memcpy(&lo, &mac.addr_bytes[0], sizeof(lo));
    std::memcpy(&hi, &mac.addr_bytes[4], sizeof(hi));
    return uint64_t{lo} | uint64_t{hi} << 32 | uint64_t{network_slot} << 48;
}

inline uint32_t endpoint_hash(uint64_t key) noexcept { return crc32c_u64(key, 0); }

/// The home bucket of a key's hash: (hash * buckets) / 2^32, a multiply instead of a
/// modulo (the hash's bits are uniform, so the buckets are equally likely).
inline uint32_t endpoint_home_index(const endpoint_table& t, uint32_t hash) noexcept {
    return static_cast<uint32_t>((uint64_t{hash} * t.n_buckets) >> 32);
}

/// The bucket after `b`, wrapping around.
inline uint32_t endpoint_next_index(const endpoint_table& t, uint32_t b) noexcept {
    return b + 1 == t.n_buckets ? 0 : b + 1;
}

inline const endpoint_table::bucket& endpoint_home(const endpoint_table& t, uint32_t hash) noexcept {
    return t.buckets[endpoint_home_index(t, hash)];
}

inline void endpoint_prefetch(const endpoint_table& t, uint32_t hash) noexcept {
    rte_prefetch0(&endpoint_home(t, hash));
}

/// The value of `key` (hash `hash`), or 0 when it is not in the table.
inline uint32_t endpoint_lookup(const endpoint_table& t, uint64_t key, uint32_t hash) noexcept {
    uint32_t b = endpoint_home_index(t, hash);
    for (uint32_t d = 0;; d++) {
        const endpoint_table::bucket& bk = t.buckets[b];
        for (uint32_t i = 0; i < endpoint_table::ways; i++) {
            // acquire; pairs with the release store of the key in endpoint_table_writer:
            // the value read next is the one stored with this key (on x86 a plain load)
            if (__atomic_load_n(&bk.key[i], __ATOMIC_ACQUIRE) == key)
                return __atomic_load_n(&bk.value[i], __ATOMIC_RELAXED);
        }
        // A spill count can stay above 0 long after its bucket emptied (the key that
        // passed it lives on), so every bucket may have one: the walk is bounded.
        if (__atomic_load_n(&bk.spill, __ATOMIC_RELAXED) == 0 || d == endpoint_table::max_displacement)
            return 0;
        b = endpoint_next_index(t, b);
    }
}

} // namespace overpass
