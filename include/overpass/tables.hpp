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

namespace overpass {

inline constexpr uint16_t default_vxlan_port = 4789;
/// Outer Ethernet + IPv4 + UDP + VXLAN.
inline constexpr uint16_t vxlan_overhead = 14 + 20 + 8 + 8;
inline constexpr uint16_t default_network_mtu = 1450;

/// The VXLAN header's vx_vni word for a VNI (24-bit VNI in the upper bytes, reserved byte zero).
inline rte_be32_t vni_to_wire(uint32_t vni) noexcept { return rte_cpu_to_be_32(vni << 8); }
/// The VNI carried in a VXLAN header's vx_vni word.
inline uint32_t vni_from_wire(rte_be32_t w) noexcept { return rte_be_to_cpu_32(w) >> 8; }

/// endpoints table key: (VNI, MAC). 16 bytes, not 12: rte_hash compares 16-byte keys
/// with one vector compare, other lengths through memcmp() (a call per candidate);
/// the key store spends 32 bytes per entry either way (pointer + key, 16-byte aligned).
struct vni_mac_key {
    rte_be32_t vni_wire;      ///< vni_to_wire(vni)
    rte_ether_addr mac;
    uint8_t pad[6];           ///< always zero
};
static_assert(sizeof(vni_mac_key) == 16);

/// Built as two 64-bit words in registers: byte-wise stores followed by the hash's
/// 8-byte loads would stall on store forwarding (seen in perf/dp_bench profiles).
inline vni_mac_key make_vni_mac_key(rte_be32_t vni_wire, const rte_ether_addr& mac) noexcept {
    uint32_t mac_lo;
    uint16_t mac_hi;
    std::memcpy(&mac_lo, &mac.addr_bytes[0], sizeof(mac_lo));
    std::memcpy(&mac_hi, &mac.addr_bytes[4], sizeof(mac_hi));
    static_assert(std::endian::native == std::endian::little, "word layout of the key");
    const uint64_t words[2] = {uint64_t{vni_wire} | uint64_t{mac_lo} << 32, mac_hi};
    vni_mac_key k;
    std::memcpy(&k, words, sizeof(k));
    return k;
}

/// The endpoints table's hash of `k`, computed inline: equal to rte_hash_crc(&k, 16, 0),
/// the table's hash_func and init value, so lookups can pass it with the key
/// (rte_hash_lookup_with_hash_bulk_data) instead of a call per key through the
/// table's function pointer.
inline hash_sig_t vni_mac_key_hash(const vni_mac_key& k) noexcept {
    uint64_t words[2];
    std::memcpy(words, &k, sizeof(words));
    return rte_hash_crc_8byte(words[1], rte_hash_crc_8byte(words[0], 0));
}

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

/// endpoints table value, carried in the data pointer itself like the addresses table's
/// MAC: no allocation, nothing to retire on overwrite, and no dependent cache miss after
/// the lookup (a million endpoints do not fit in any cache). Bits 0-15: the container
/// port (local) or the VTEP's slot (remote, an index into dp_tables::vtep_slots and
/// lcore_stats::vteps); bits 16-17: the location, never zero, so no value is null;
/// bits 32-63: the endpoint's IPv4 address. Workers read `where` and `index` only; the
/// address is there for the control thread, whose table_writer keeps no copy of the
/// endpoints table and reads its records back from it.
struct endpoint_value {
    enum class location : uint8_t { local = 1, remote = 2 };
    location where;
    uint16_t index;
    rte_be32_t ip_be = 0;

    void* to_data() const noexcept {
        static_assert(sizeof(uintptr_t) == 8, "the address travels in the upper half of the pointer");
        return reinterpret_cast<void*>(uintptr_t{ip_be} << 32 | uintptr_t{static_cast<uint8_t>(where)} << 16 |
                                       index);
    }
    static endpoint_value from_data(const void* data) noexcept {
        const auto v = reinterpret_cast<uintptr_t>(data);
        return {static_cast<location>(v >> 16 & 3), static_cast<uint16_t>(v), static_cast<rte_be32_t>(v >> 32)};
    }
    bool is_local() const noexcept { return where == location::local; }
};

/// Stats slots of networks and VTEPs: indexes into lcore_stats and dp_tables::vtep_slots.
inline constexpr uint16_t max_network_slots = 1024;
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
    rte_hash* endpoints = nullptr;   ///< vni_mac_key -> endpoint_value (in the pointer)
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
