// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore (writes) and control thread (reads)
//
// Per-lcore counters. Each counter has exactly one writer (its worker) and is bumped
// with a relaxed load plus a relaxed store: a plain add without a lock prefix. The
// control thread reads them with relaxed loads and sums over workers at scrape time.
// The counters of ports, workers, networks and VTEPs are declared in counters.def, the
// drop reasons in drop_reasons.def; everything below is generated from those lists.
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

/// Unit of a counter in counters.def.
enum class counter_unit : uint8_t {
    count,    ///< packets or events
    bytes,
    cycles,   ///< TSC ticks (seconds to Prometheus)
};

// The counter groups, generated from counters.def: one `counter` per entry, in the order
// of the list, and nothing else (the static_asserts below): the same layout and the same
// .add() as hand-written fields. reset() zeroes a group; see worker_pool::reset_*_counters
// for when that is allowed.

/// Per port id, counted by the workers.
struct port_counters {
#define OVP_PORT_COUNTER(name, unit, help) counter name;
#include "overpass/counters.def"

    void reset() noexcept {
#define OVP_PORT_COUNTER(name, unit, help) name.set(0);
#include "overpass/counters.def"
    }
};

/// Per network (indexed by segment::stats_slot).
struct network_counters {
#define OVP_NETWORK_COUNTER(name, unit, help) counter name;
#include "overpass/counters.def"

    void reset() noexcept {
#define OVP_NETWORK_COUNTER(name, unit, help) name.set(0);
#include "overpass/counters.def"
    }
};

/// Per remote VTEP (indexed by vtep_entry::stats_slot).
struct vtep_counters {
#define OVP_VTEP_COUNTER(name, unit, help) counter name;
#include "overpass/counters.def"
    /// TSC of the last packet received from this VTEP: a time, not a count (the
    /// snapshot takes the latest over lcores; last_seen in every format).
    counter last_seen_tsc;

    void reset() noexcept {
#define OVP_VTEP_COUNTER(name, unit, help) name.set(0);
#include "overpass/counters.def"
        last_seen_tsc.set(0);
    }
};

/// Counters of each group, from counters.def.
inline constexpr std::size_t port_counter_count = 0
#define OVP_PORT_COUNTER(name, unit, help) +1
#include "overpass/counters.def"
    ;
inline constexpr std::size_t network_counter_count = 0
#define OVP_NETWORK_COUNTER(name, unit, help) +1
#include "overpass/counters.def"
    ;
inline constexpr std::size_t vtep_counter_count = 0
#define OVP_VTEP_COUNTER(name, unit, help) +1
#include "overpass/counters.def"
    ;
inline constexpr std::size_t worker_counter_count = 0
#define OVP_WORKER_COUNTER(name, unit, family, help) +1
#include "overpass/counters.def"
    ;

static_assert(sizeof(port_counters) == port_counter_count * sizeof(counter), "port_counters: counters only");
static_assert(sizeof(network_counters) == network_counter_count * sizeof(counter), "network_counters: counters only");
static_assert(sizeof(vtep_counters) == (vtep_counter_count + 1) * sizeof(counter), "vtep_counters: counters only");

/// All counters of one worker. Worker writes; control reads.
struct lcore_stats {
    std::array<counter, drop_reason_count> drops;
    std::array<port_counters, RTE_MAX_ETHPORTS> ports;
    std::array<network_counters, max_network_slots> networks;
    std::array<vtep_counters, max_vtep_slots> vteps;
    // packets, busy_polls, idle_polls, ...: the OVP_WORKER_COUNTERs of counters.def
#define OVP_WORKER_COUNTER(name, unit, family, help) counter name;
#include "overpass/counters.def"

    void drop(drop_reason r, uint64_t n = 1) noexcept { drops[static_cast<std::size_t>(r)].add(n); }
};

static_assert(sizeof(lcore_stats) == (drop_reason_count + RTE_MAX_ETHPORTS * port_counter_count +
                                      max_network_slots * network_counter_count +
                                      max_vtep_slots * (vtep_counter_count + 1) + worker_counter_count) *
                                         sizeof(counter),
              "lcore_stats: counters only, no padding");

} // namespace overpass
