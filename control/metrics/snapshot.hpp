// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// One consistent reading of everything overpassd counts: the workers' single-writer
// counters summed over lcores, the ports, tables, slow path, store sync and liveness.
// /v1/stats (and so `overpass stats`), the Prometheus exposition and the DPDK telemetry
// commands are all rendered from it, so the three never disagree on a value. A counter
// of a port, worker, network or VTEP has one name in all of them: its name in
// include/overpass/counters.def (Prometheus: overpass_<scope>_<name>_total, or the
// family a worker counter declares).
//
// Series appear and disappear with their objects: a removed port, network or VTEP is
// not in the next snapshot; a reused port id or stats slot starts from zero (see
// worker_pool::reset_*_counters).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <rte_mempool.h>

#include "control/ports/port_manager.hpp"
#include "control/ports/worker_pool.hpp"
#include "control/publish/table_writer.hpp"
#include "control/slowpath.hpp"
#include "control/cluster/agent.hpp"
#include "overpass/stats.hpp"

namespace overpass::ctl {

// The samples' counters are generated from include/overpass/counters.def, in its order,
// under the same names as the workers' counters: each is the sum over lcores (or, for
// OVP_PORT_DEVICE, the device's own count).

struct port_sample {
    uint16_t port_id = 0;
    std::string name, kind, endpoint, detail;
#define OVP_PORT_COUNTER(id, unit, help) uint64_t id = 0;
#define OVP_PORT_DEVICE(id, field, help) uint64_t id = 0;
#include "overpass/counters.def"
};

struct worker_sample {
    unsigned lcore = 0;
#define OVP_WORKER_COUNTER(id, unit, family, help) uint64_t id = 0;
#include "overpass/counters.def"
};

struct network_sample {
    std::string name;   ///< empty until the sync engine has seen the network's record
    uint32_t vni = 0;
#define OVP_NETWORK_COUNTER(id, unit, help) uint64_t id = 0;
#include "overpass/counters.def"
};

struct vtep_sample {
    std::string ip;
    bool resolved = false;   ///< next-hop MAC known (outer header template built)
#define OVP_VTEP_COUNTER(id, unit, help) uint64_t id = 0;
#include "overpass/counters.def"
    std::optional<double> last_seen_unix;   ///< last packet received from it
};

/// One counter of a sample as counters.def declares it: all that the renderings need.
template <typename Sample>
struct counter_field {
    const char* name;     ///< key in /v1/stats and in telemetry, column of `overpass stats`
    counter_unit unit;
    const char* family;   ///< Prometheus: overpass_<scope>_<family>_total; may end in one {label=value}
    const char* help;     ///< Prometheus HELP
    uint64_t Sample::*value;
};

inline constexpr counter_field<port_sample> port_fields[] = {
#define OVP_PORT_COUNTER(id, unit, help) {#id, counter_unit::unit, #id, help, &port_sample::id},
#define OVP_PORT_DEVICE(id, field, help) {#id, counter_unit::count, #id, help, &port_sample::id},
#include "overpass/counters.def"
};

inline constexpr counter_field<worker_sample> worker_fields[] = {
#define OVP_WORKER_COUNTER(id, unit, family, help) {#id, counter_unit::unit, family, help, &worker_sample::id},
#include "overpass/counters.def"
};

inline constexpr counter_field<network_sample> network_fields[] = {
#define OVP_NETWORK_COUNTER(id, unit, help) {#id, counter_unit::unit, #id, help, &network_sample::id},
#include "overpass/counters.def"
};

inline constexpr counter_field<vtep_sample> vtep_fields[] = {
#define OVP_VTEP_COUNTER(id, unit, help) {#id, counter_unit::unit, #id, help, &vtep_sample::id},
#include "overpass/counters.def"
};

struct table_sample {
    const char* name;
    uint64_t entries, capacity;
};

struct control_sample {
    std::string host, vtep, store_url;
    bool store_up = false, registered = false;
    uint64_t applied_revision = 0, store_errors = 0, table_errors = 0, skipped_records = 0;
    uint64_t snapshots = 0, batches = 0;
    uint64_t renewals = 0, renew_failures = 0, liveness_losses = 0;
    std::optional<double> last_sync_unix;      ///< last watch snapshot/batch applied
    std::optional<double> last_renewal_unix;   ///< last confirmed liveness renewal
    uint64_t local_endpoints = 0, remote_endpoints = 0;
};

struct stats_snapshot {
    double now_unix = 0;
    double start_unix = 0;
    uint64_t tsc_hz = 0;
    std::array<uint64_t, drop_reason_count> drops{};
    std::vector<port_sample> ports;
    std::vector<worker_sample> workers;
    std::vector<network_sample> networks;
    std::vector<vtep_sample> vteps;
    std::vector<table_sample> tables;
    uint64_t retire_backlog = 0;
    uint64_t mbufs_in_use = 0, mbufs_available = 0;
    std::optional<slow_path::counters> slow;
    std::optional<control_sample> control;
};

/// What a snapshot reads. Any pointer may be null (then its part is left out).
struct stats_sources {
    const worker_pool* workers = nullptr;
    const port_manager* ports = nullptr;
    const table_writer* writer = nullptr;
    const slow_path* slow = nullptr;
    const agent* cluster = nullptr;   ///< store sync and liveness
    const rte_mempool* pool = nullptr;
    double start_unix = 0;
};

/// Reads every source once. Control thread only (ports, tables and agent state are its).
stats_snapshot take_snapshot(const stats_sources& src);

/// The /v1/stats document.
nlohmann::json to_json(const stats_snapshot& s);

} // namespace overpass::ctl
