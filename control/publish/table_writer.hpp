// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (the only writer of the data-plane tables)
//
// table_writer owns the dp_tables that workers read. It keeps a private shadow of the
// networks and VTEPs it published so that derived values (a network's flood lists, a
// VTEP's outer-header template) are rebuilt here, never on the workers; endpoints and
// addresses are read back from their own tables (no copy on the heap). Every replaced
// or deleted value is retired through an rte_rcu_qsbr defer queue and freed only after
// all workers have reported quiescent.
//
// All methods return 0 or a negative errno and never throw.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "overpass/tables.hpp"

namespace overpass::ctl {

/// A MAC as the store's records give it (control/addressing.hpp) as the tables take it.
inline rte_ether_addr to_ether(const std::array<uint8_t, 6>& m) noexcept {
    rte_ether_addr a;
    std::memcpy(a.addr_bytes, m.data(), m.size());
    return a;
}

struct table_limits {
    uint32_t max_endpoints = 65536;   ///< endpoints (and addresses) table size
    uint32_t max_networks = 1024;
    uint32_t max_vteps = 1024;
    uint32_t max_lcores = RTE_MAX_LCORE;  ///< QSBR thread ids are lcore ids
};

struct network_spec {
    uint32_t vni;
    uint16_t mtu;
    rte_be32_t subnet_be;
    rte_be32_t mask_be;
    rte_be32_t gateway_be;
};

class table_writer {
public:
    /// Creates the hash tables, the QSBR variable and the defer queues. `name` makes the
    /// rte_hash names unique within the process. Returns nullptr (and logs why) on failure.
    static std::unique_ptr<table_writer> create(const char* name, const table_limits& limits);
    virtual ~table_writer() = default;

    /// The tables to hand to workers. Valid for the writer's lifetime.
    virtual dp_tables& tables() noexcept = 0;

    /// Replace the host-wide config snapshot (VTEP address and MAC, VXLAN port,
    /// uplink). Rebuilds every VTEP's outer template.
    virtual int set_config(const config_snapshot& cfg) noexcept = 0;

    /// Create or update a network. Its flood lists are derived from endpoints.
    virtual int upsert_network(const network_spec& net) noexcept = 0;
    /// Remove a network and every endpoint still in it.
    virtual int remove_network(uint32_t vni) noexcept = 0;

    /// Known remote VTEP (decap allow-list). Unresolved until resolve_vtep().
    virtual int upsert_vtep(rte_be32_t ip_be) noexcept = 0;
    /// Next-hop MAC learned (ARP reply); builds the outer header template.
    virtual int resolve_vtep(rte_be32_t ip_be, const rte_ether_addr& mac) noexcept = 0;
    /// Remove a VTEP and every remote endpoint behind it.
    virtual int remove_vtep(rte_be32_t ip_be) noexcept = 0;

    /// Endpoint on this host, bound to a started container port.
    /// Programs endpoints, addresses, the port binding and the network's local flood list.
    virtual int upsert_local_endpoint(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac,
                                      uint16_t port_id) noexcept = 0;
    /// Endpoint behind a remote VTEP (the VTEP is added if unknown).
    virtual int upsert_remote_endpoint(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac,
                                       rte_be32_t vtep_ip_be) noexcept = 0;
    /// Remove an endpoint (local or remote) and everything derived from it.
    virtual int remove_endpoint(uint32_t vni, const rte_ether_addr& mac) noexcept = 0;

    /// Free what the workers can no longer see. Called from a timer; never blocks.
    virtual void reclaim() noexcept = 0;
    /// Block until every worker has passed a quiescent point, then reclaim all.
    /// For rare events (port removal, shutdown).
    virtual void synchronize() noexcept = 0;

    /// Entries per table and values waiting for a grace period (for metrics).
    struct sizes {
        uint32_t endpoints, addresses, networks, vteps, ports, retire_backlog;
    };
    virtual sizes size() const noexcept = 0;

    /// Stats slots handed out (stable for the lifetime of the network / VTEP).
    virtual int network_slot(uint32_t vni) const noexcept = 0;
    virtual int vtep_slot(rte_be32_t ip_be) const noexcept = 0;

    /// Every VTEP in the tables with its stats slot and whether its next hop is known.
    struct vtep_view {
        rte_be32_t ip_be;
        uint16_t slot;
        bool resolved;
    };
    virtual std::vector<vtep_view> vteps() const = 0;
    /// Every network in the tables with its stats slot.
    struct network_view {
        uint32_t vni;
        uint16_t slot;
    };
    virtual std::vector<network_view> networks() const = 0;
    virtual const table_limits& limits() const noexcept = 0;

    /// Runs when a stats slot is handed to a new network or VTEP, before anything that
    /// counts into it is published. No worker can still be counting into it then (slots
    /// come back only after a grace period), so the callee may zero the slot's counters.
    enum class slot_kind { network, vtep };
    virtual void on_slot_taken(std::function<void(slot_kind, uint16_t)> cb) = 0;
};

} // namespace overpass::ctl
