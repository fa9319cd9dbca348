// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore (reads) and control thread (sole writer)
//
// The lookup tables shared by the control thread and the workers. All keys are in
// network byte order with explicit zeroed padding. Values are immutable: the control
// thread replaces a value by swapping the pointer and retires the old one through RCU
// (rte_rcu_qsbr defer queue), so a worker may use a value it looked up until its next
// quiescent report, and never after it.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_rcu_qsbr.h>

#include "overpass/endpoint_table.hpp"

namespace overpass {

inline constexpr uint16_t default_vxlan_port = 4789;
/// Outer Ethernet + IPv4 + UDP + VXLAN.
inline constexpr uint16_t vxlan_overhead = 14 + 20 + 8 + 8;
inline constexpr uint16_t default_network_mtu = 1450;

/// The VXLAN header's vx_vni word for a VNI (24-bit VNI in the upper bytes, reserved byte zero).
inline rte_be32_t vni_to_wire(uint32_t vni) noexcept { return rte_cpu_to_be_32(vni << 8); }
/// The VNI carried in a VXLAN header's vx_vni word.
inline uint32_t vni_from_wire(rte_be32_t w) noexcept { return rte_be_to_cpu_32(w) >> 8; }

/// addresses table key: (VNI, IPv4).
struct vni_ip_key {
    rte_be32_t vni_wire;
    rte_be32_t ip_be;
};
static_assert(sizeof(vni_ip_key) == 8);

/// The addresses table stores the MAC itself in the data pointer (no allocation, no
/// retire): bits 0-47 hold the six MAC bytes in wire order.
inline void* mac_to_data(const rte_ether_addr& mac) noexcept {
    uintptr_t v = 0;
    std::memcpy(&v, mac.addr_bytes, RTE_ETHER_ADDR_LEN);
    return reinterpret_cast<void*>(v);
}
inline rte_ether_addr mac_from_data(const void* data) noexcept {
    const auto v = reinterpret_cast<uintptr_t>(data);
    rte_ether_addr mac;
    std::memcpy(mac.addr_bytes, &v, RTE_ETHER_ADDR_LEN);
    return mac;
}

/// endpoints table value (endpoint_table::bucket::value): bits 0-15 the container port
/// (local) or the VTEP's slot (remote, an index into dp_tables::vtep_slots and
/// lcore_stats::vteps); bits 16-17 the location, never zero, so no value is 0 (the
/// table's "not there"). The endpoint's IPv4 address, which the control thread needs
/// back when it unlinks the endpoint, is kept beside the table by its writer.
struct endpoint_value {
    enum class location : uint8_t { local = 1, remote = 2 };
    location where;
    uint16_t index;

    static constexpr unsigned bits = 18;
    uint32_t word() const noexcept { return uint32_t{static_cast<uint8_t>(where)} << 16 | index; }
    static endpoint_value from_word(uint32_t w) noexcept {
        return {static_cast<location>(w >> 16 & 3), static_cast<uint16_t>(w)};
    }
    bool is_local() const noexcept { return where == location::local; }
};

/// Stats slots of networks and VTEPs: indexes into lcore_stats and dp_tables::vtep_slots.
inline constexpr uint16_t max_network_slots = 1024;
static_assert(max_network_slots < 0xffff, "slot 0xffff is the endpoints table's empty and dead keys");
inline constexpr uint16_t max_vtep_slots = 1024;

inline constexpr uint16_t max_local_ports_per_network = 32;
inline constexpr uint16_t max_remote_vteps_per_network = 256;

/// networks table value (key: uint32_t VNI in host order).
struct segment {
    uint32_t vni;
    rte_be32_t vni_wire;
    uint16_t mtu;              ///< largest inner IP packet (frame length - 14)
    uint16_t stats_slot;       ///< index into lcore_stats::networks
    rte_be32_t subnet_be;
    rte_be32_t mask_be;
    rte_be32_t gateway_be;
    rte_ether_addr gateway_mac;
    uint16_t n_local_ports;
    uint16_t n_remote_vteps;
    uint16_t local_ports[max_local_ports_per_network];       ///< BUM flood list, local side
    /// BUM flood list, head-end replication: slots of the VTEPs (dp_tables::vtep_slots)
    uint16_t remote_vtep_slots[max_remote_vteps_per_network];
};

/// vteps table value (key: rte_be32_t underlay IPv4).
struct vtep_entry {
    rte_be32_t ip_be;
    uint16_t stats_slot;       ///< index into lcore_stats::vteps
    bool resolved;             ///< next-hop MAC known; outer template valid
    rte_ether_addr mac;        ///< next-hop MAC
    /// rte_raw_cksum() of the template's IPv4 header: the outer checksum is
    /// ~(outer_ip_sum + total length), with no per-packet pass over the header.
    uint16_t outer_ip_sum;
    /// Prebuilt outer Ethernet/IPv4/UDP/VXLAN header towards this VTEP. Per packet the
    /// encap stage fills in: IPv4 total length and checksum (both zero here),
    /// UDP source port and length, VXLAN VNI.
    alignas(8) uint8_t outer_template[vxlan_overhead];
};

/// What a container port is bound to (array indexed by port id).
struct port_binding {
    uint16_t port_id;
    uint32_t vni;
    rte_be32_t vni_wire;
    rte_be32_t ip_be;
    rte_ether_addr mac;
    uint64_t endpoint_key;     ///< endpoint_key(network slot, mac): decap's check of its local_hint
};

/// Host-wide settings replaced as a whole.
struct config_snapshot {
    uint16_t uplink_port;
    rte_ether_addr vtep_mac;
    rte_be32_t vtep_ip_be;
    rte_be16_t vxlan_port_be;  ///< UDP destination port of VXLAN (default 4789)
    uint16_t uplink_mtu;       ///< largest outer IP packet on the uplink
    /// Head-end replication budget per worker: frames sent for BUM traffic from
    /// containers per second (each copy counts); 0 = unlimited. Bursts up to a tenth of a
    /// second's worth (at least 64).
    uint32_t bum_frames_per_sec;
};

/// Everything a worker reads. Control thread creates and publishes; workers read
/// lock-free. Hash handles are created once at start-up and never replaced.
struct dp_tables {
    /// endpoint_key(network slot, MAC) -> endpoint_value::word(). Buckets allocated
    /// once at start-up, never replaced (endpoint_table.hpp).
    endpoint_table endpoints;
    rte_hash* addresses = nullptr;   ///< vni_ip_key  -> MAC packed with mac_to_data()
    rte_hash* networks = nullptr;    ///< uint32_t vni -> const segment*
    rte_hash* vteps = nullptr;       ///< rte_be32_t ip -> const vtep_entry* (decap: who sent it)
    /// The same vtep_entry values by stats slot (encap and flooding: where to send it).
    /// A slot is stored before any endpoint or flood list that names it is published and
    /// cleared before the VTEP is deleted; it is reused only after a grace period.
    /// release-stored by control; acquire-loaded by workers.
    std::atomic<const vtep_entry*> vtep_slots[max_vtep_slots] = {};
    /// The networks table's segments by stats slot, kept the same way (stored after the
    /// table, cleared before the delete). Workers find a VNI's segment here through a
    /// per-worker hint (worker::network_hint) and ask the networks table only on a miss.
    std::atomic<const segment*> network_slots[max_network_slots] = {};
    /// release-stored by control after the value is complete; acquire-loaded by workers
    std::atomic<const port_binding*> ports[RTE_MAX_ETHPORTS] = {};
    /// release-stored by control; acquire-loaded by workers once per burst
    std::atomic<const config_snapshot*> config{nullptr};
    rte_rcu_qsbr* qsbr = nullptr;    ///< one QSBR variable; thread id = lcore id
    /// Generation of the endpoints table: control bumps it (release) after deleting an
    /// endpoint or overwriting its value, and before giving a network slot to a network
    /// (the caches key by slot); adding an endpoint needs no bump, since the workers'
    /// endpoint caches (worker::ep_cache) hold hits only. A worker acquire-loads it once
    /// per burst and trusts a cached endpoint only under the generation it was cached in.
    /// Starts at 1, so a zeroed cache entry (generation 0) is empty. Last and on a line
    /// of its own: bumped under churn, read by every burst.
    alignas(RTE_CACHE_LINE_SIZE) std::atomic<uint64_t> endpoints_gen{1};
};

} // namespace overpass
