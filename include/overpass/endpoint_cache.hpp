// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore (each worker owns one, inside its `worker`)
//
// The endpoint cache: its layout and every operation on it. Encap (dataplane/encap.cpp)
// is its only user; the table writer ends its entries' generation
// (dp_tables::endpoints_gen) on every delete or overwrite of an endpoint and whenever it
// gives a network slot to a network (control/publish/table_writer.cpp).
#pragma once

#include <cstdint>

#include <rte_common.h>

#include "overpass/tables.hpp"

namespace overpass {

/// A worker's exact-match cache of endpoint lookups: (network, MAC) -> the endpoints
/// table's value, in front of the table for encap. An entry is two words: the key (the
/// table's key: destination MAC in bits 0-47, the network's stats slot above it) and
/// the value (endpoint_value::word(): location and port or VTEP slot) under the table
/// generation (dp_tables::endpoints_gen) it was cached in. A set is one cache line of
/// four entries, indexed by the table's hash of the key; a hit costs one line,
/// prefetched while the burst is parsed, like a table lookup, but the cache's lines
/// hold four active destinations each where the table's are spread over the whole
/// table (32 MB at a million endpoints). An entry counts only while its generation is
/// current, so a delete or an overwrite anywhere invalidates every cached entry at once
/// (cheap and safe; under heavy churn the cache misses and the table answers). Only hits of the table are
/// cached: unknown unicast always misses. No promotion on a hit (no store on the hit
/// path); replacement is bimodal (cache_insert()).
/// 65,536 entries, 1 MiB per worker: bigger than an L2, which the probe does not need
/// (each set is prefetched while the burst is parsed, and probed after the whole burst
/// has been parsed), and enough for tens of thousands of active destinations per
/// worker, where an 8192-entry cache like OVS's EMC thrashes (OVS puts its 1M-entry
/// signature match cache behind the EMC for the same reason).
struct endpoint_cache {
    static constexpr uint32_t sets = 16384;   ///< power of two
    static constexpr uint32_t ways = 4;
    /// endpoint_value::word()'s bits; the generation takes the 46 bits above them (it
    /// would wrap after 7e13 table changes).
    static constexpr unsigned value_bits = endpoint_value::bits;
    static constexpr uint64_t value_mask = (uint64_t{1} << value_bits) - 1;
    struct entry {
        uint64_t key;      ///< destination MAC (bits 0-47) | network stats slot << 48
        uint64_t tagged;   ///< generation << value_bits | value; generation 0: empty
    };
    struct alignas(RTE_CACHE_LINE_SIZE) set {
        entry way[ways];
    };
    /// Lookups of probing bursts per decision, and the bursts that skip the cache after
    /// each probing one while it answers less than half (cache_probing()).
    static constexpr uint32_t window = 1024;
    static constexpr uint32_t skip_when_missing = 15;
    set set_of[sets];
    uint32_t full_inserts;     ///< inserts into a full set (bimodal insertion)
    uint32_t window_lookups;   ///< lookups of probing bursts in the current window
    uint32_t window_hits;
    uint32_t skip_bursts;      ///< bursts left that skip the cache
    bool missing;              ///< the last window's hits were under half: probe 1 burst in 16
};
static_assert(sizeof(endpoint_cache::set) == RTE_CACHE_LINE_SIZE, "a set is one cache line");
static_assert(max_network_slots <= 1u << 16, "a network slot fits the key's upper 16 bits");

/// The endpoint cache's set for a key's hash (endpoint_hash()).
inline endpoint_cache::set& cache_set(endpoint_cache& c, uint32_t hash) noexcept {
    return c.set_of[hash & (endpoint_cache::sets - 1)];
}

/// An entry's generation bits against `gen_tag` (generation << value_bits).
inline bool cache_current(const endpoint_cache::entry& e, uint64_t gen_tag) noexcept {
    return (e.tagged & ~endpoint_cache::value_mask) == gen_tag;
}

/// The value cached for `key` under the generation `gen_tag`, if any.
inline bool cache_lookup(const endpoint_cache::set& s, uint64_t key, uint64_t gen_tag, uint32_t& value) noexcept {
    for (const endpoint_cache::entry& e : s.way) {
        if (e.key == key && cache_current(e, gen_tag)) {
            value = static_cast<uint32_t>(e.tagged & endpoint_cache::value_mask);
            return true;
        }
    }
    return false;
}

/// Caches what the endpoints table answered for `key` under `gen_tag`, into a way that holds
/// nothing current if there is one. In a full set the new entry replaces ways 1-3 in
/// turn and way 0 stays, except on one insert in 32 (bimodal insertion): destinations
/// cycling through more keys than a set holds keep a quarter of it hitting instead of
/// evicting each other in turn, and way 0 still ages.
inline void cache_insert(endpoint_cache& c, endpoint_cache::set& s, uint64_t key, uint64_t gen_tag, uint32_t value) noexcept {
    constexpr uint32_t ways = endpoint_cache::ways;
    uint32_t victim = ways;
    for (uint32_t i = 0; i < ways; i++) {
        const endpoint_cache::entry& e = s.way[i];
        if (!cache_current(e, gen_tag)) {
            if (victim == ways)
                victim = i;
        } else if (e.key == key) {
            return;   // the same key twice in one burst
        }
    }
    if (victim == ways) {
        const uint32_t n = ++c.full_inserts;
        victim = (n & 31) == 0 ? 0 : 1 + n % (ways - 1);
    }
    s.way[victim] = {key, gen_tag | value};
}

/// Whether this burst uses the endpoint cache. While it answers less than half of the
/// lookups (more active destinations than it holds), only one burst in 16 probes and
/// fills it: a cache that mostly misses costs more than it saves, in its own probes and
/// inserts and in the L2 lines it takes from the endpoints table. The probing bursts
/// keep measuring, so it comes back on when the destinations fit again.
inline bool cache_probing(endpoint_cache& c, bool enabled) noexcept {
    if (!enabled)
        return false;
    if (c.skip_bursts == 0)
        return true;
    c.skip_bursts--;
    return false;
}

/// Accounts one probing burst's lookups and hits; a full window decides whether the
/// cache is missing, and while it is, each probing burst is followed by skipping ones.
inline void cache_account(endpoint_cache& c, uint32_t lookups, uint32_t hits) noexcept {
    c.window_lookups += lookups;
    c.window_hits += hits;
    if (c.window_lookups >= endpoint_cache::window) {
        c.missing = c.window_hits * 2 < c.window_lookups;
        c.window_lookups = c.window_hits = 0;
    }
    if (c.missing)
        c.skip_bursts = endpoint_cache::skip_when_missing;
}

} // namespace overpass
