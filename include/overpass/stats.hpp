// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore (writes) and control thread (reads)
//
// Per-lcore counters. Each counter has exactly one writer (its worker) and is bumped
// with a relaxed load plus a relaxed store: a plain add without a lock prefix. The
// control thread reads them with relaxed loads and sums over workers at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include <rte_build_config.h>
#include <rte_common.h>

#include "overpass/tables.hpp"   // max_network_slots, max_vtep_slots

namespace overpass {

/// Why a packet was dropped. Generated from drop_reasons.def.
enum class drop_reason : uint16_t {
#define OVP_DROP(name, help) name,
#include "overpass/drop_reasons.def"
#undef OVP_DROP
};

inline constexpr std::size_t drop_reason_count = 0
#define OVP_DROP(name, help) +1
#include "overpass/drop_reasons.def"
#undef OVP_DROP
    ;

/// Label of a drop reason, as used in metrics and the API ("spoofed_mac").
inline constexpr std::array<const char*, drop_reason_count> drop_reason_names = {
#define OVP_DROP(name, help) #name,
#include "overpass/drop_reasons.def"
#undef OVP_DROP
};

/// Help text of a drop reason.
inline constexpr std::array<const char*, drop_reason_count> drop_reason_help = {
#define OVP_DROP(name, help) help,
#include "overpass/drop_reasons.def"
#undef OVP_DROP
};

/// A single-writer counter. add() must only be called by the owning lcore.
struct counter {
    std::atomic<uint64_t> v{0};
    void add(uint64_t n) noexcept { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
    void set(uint64_t n) noexcept { v.store(n, std::memory_order_relaxed); }
};

struct port_counters {
    counter rx_packets, rx_bytes, tx_packets, tx_bytes, drops;
};

/// Per network (indexed by segment::stats_slot).
struct network_counters {
    counter encap_packets, encap_bytes, decap_packets, decap_bytes, bum_packets;
};

/// Per remote VTEP (indexed by vtep_entry::stats_slot).
struct vtep_counters {
    counter tx_packets, tx_bytes, rx_packets, rx_bytes;
    counter last_seen_tsc;   ///< TSC of the last packet received from this VTEP
};

/// All counters of one worker. Worker writes; control reads.
struct lcore_stats {
    std::array<counter, drop_reason_count> drops;
    std::array<port_counters, RTE_MAX_ETHPORTS> ports;
    std::array<network_counters, max_network_slots> networks;
    std::array<vtep_counters, max_vtep_slots> vteps;
    counter packets;        ///< packets received from any queue
    counter busy_polls;     ///< loop iterations that received at least one packet
    counter idle_polls;     ///< loop iterations that received nothing
    counter sleeps;         ///< idle back-off sleeps
    counter tx_flushes;     ///< tx bursts issued
    counter exceptions;     ///< packets handed to the control thread
    counter endpoint_cache_hits;     ///< encap endpoint lookups answered by the worker's cache
    counter endpoint_cache_misses;   ///< ... and by the endpoints table
    counter busy_cycles;    ///< TSC cycles of iterations that received packets
    counter idle_cycles;    ///< TSC cycles of empty iterations, sleeps included

    void drop(drop_reason r, uint64_t n = 1) noexcept { drops[static_cast<std::size_t>(r)].add(n); }
};

} // namespace overpass
