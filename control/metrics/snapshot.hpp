// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// One consistent reading of everything overpassd counts: the workers' single-writer
// counters summed over lcores, the ports, tables, slow path, store sync and liveness.
// /v1/stats (and so `overpass stats`), the Prometheus exposition and the DPDK telemetry
// commands are all rendered from it, so the three never disagree on a value (field names
// follow each format's conventions: docs/metrics.md maps them).
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

struct port_sample {
    uint16_t port_id = 0;
    std::string name, kind, endpoint, detail;
    uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
    uint64_t drops = 0;       ///< dropped after RX on this port (any reason) or at TX to it (queue full)
    uint64_t rx_missed = 0;   ///< the device's imissed: RX ring full, the worker fell behind
};

struct worker_sample {
    unsigned lcore = 0;
    uint64_t packets = 0, busy_polls = 0, idle_polls = 0, sleeps = 0, tx_flushes = 0, exceptions = 0;
    uint64_t busy_cycles = 0, idle_cycles = 0;
    uint64_t endpoint_cache_hits = 0, endpoint_cache_misses = 0;   ///< encap's endpoint lookups
};

struct network_sample {
    std::string name;   ///< empty until the sync engine has seen the network's record
    uint32_t vni = 0;
    uint64_t encap_packets = 0, encap_bytes = 0, decap_packets = 0, decap_bytes = 0, flood_packets = 0;
};

struct vtep_sample {
    std::string ip;
    bool resolved = false;   ///< next-hop MAC known (outer header template built)
    uint64_t tx_packets = 0, tx_bytes = 0, rx_packets = 0, rx_bytes = 0;
    std::optional<double> last_seen_unix;   ///< last packet received from it
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
