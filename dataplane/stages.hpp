// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore
//
// Private interface between the data-plane stages. process_burst() (classify.cpp) splits
// by direction: frames from the uplink go to decap_burst(), frames from a container port
// to encap_burst(). Both may hand single packets to the ARP/ICMP helpers (arp.cpp) and
// end every packet in exactly one place: tx_enqueue() (or tx_enqueue_bulk()), drop() or
// the exception ring.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "overpass/worker.hpp"

namespace overpass::dp {

/// Counts a drop against `reason` and `port` without freeing anything (used when the
/// packet never existed, e.g. a replication copy that could not be allocated).
inline void count_drop(worker& w, uint16_t port, drop_reason reason) noexcept {
    w.stats.drop(reason);
    w.stats.ports[port].dropped_packets.add(1);
}

/// Counted drop: the packet is freed and attributed to the port it was received on.
inline void drop(worker& w, uint16_t port, rte_mbuf* m, drop_reason reason) noexcept {
    count_drop(w, port, reason);
    rte_pktmbuf_free(m);
}

/// A network's packet and byte counters accumulated over a run of packets of that
/// network and written once per run (a burst mostly carries one network) instead of
/// once per packet. flush() before the burst ends.
template <counter network_counters::*Packets, counter network_counters::*Bytes>
struct network_tally {
    uint16_t slot = UINT16_MAX;
    uint64_t packets = 0;
    uint64_t bytes = 0;
    void add(worker& w, uint16_t s, uint64_t b) noexcept { add(w, s, 1, b); }
    void add(worker& w, uint16_t s, uint64_t n, uint64_t b) noexcept {
        if (s != slot) {
            flush(w);
            slot = s;
        }
        packets += n;
        bytes += b;
    }
    void flush(worker& w) noexcept {
        if (packets == 0)
            return;
        network_counters& nc = w.stats.networks[slot];
        (nc.*Packets).add(packets);
        (nc.*Bytes).add(bytes);
        packets = bytes = 0;
    }
};
using encap_tally = network_tally<&network_counters::encap_packets, &network_counters::encap_bytes>;
using decap_tally = network_tally<&network_counters::decap_packets, &network_counters::decap_bytes>;

/// Index of a 32-bit key in a worker hint array of `Entries` (a power of two):
/// multiplicative (Fibonacci) hashing, the top bits of key x 2^32/phi.
template <uint16_t Entries>
inline uint16_t hint_index(uint32_t key) noexcept {
    static_assert(std::has_single_bit(Entries) && Entries > 1, "a power of two");
    return static_cast<uint16_t>((key * 0x9e3779b1u) >> (32 - std::countr_zero(Entries)));
}

/// The network of `vni`, nullptr when there is none: the worker's hint checked against
/// dp_tables::network_slots, else the networks table (and the hint refreshed). Valid
/// until the worker's next quiescent report, like any value read from the tables.
inline const segment* find_segment(worker& w, uint32_t vni) noexcept {
    uint16_t& hint = w.network_hint[hint_index<network_hint_entries>(vni)];
    if (hint != 0) {
        // acquire; pairs with the release store in table_writer::publish()
        const segment* s = w.tables->network_slots[hint - 1].load(std::memory_order_acquire);
        if (s != nullptr && s->vni == vni)
            return s;
    }
    void* data = nullptr;
    if (rte_hash_lookup_data(w.tables->networks, &vni, &data) < 0)
        return nullptr;
    const auto* s = static_cast<const segment*>(data);
    hint = static_cast<uint16_t>(s->stats_slot + 1);
    return s;
}

/// Frames shorter than this cannot be looked at (Ethernet header in the first segment).
inline constexpr uint16_t eth_len = sizeof(rte_ether_hdr);
/// Nor can an IPv4 frame shorter than this (Ethernet and a minimal IPv4 header).
inline constexpr uint16_t ipv4_min_frame = eth_len + sizeof(rte_ipv4_hdr);

/// Hands `m` (received on `port`) to the control thread through the exception ring;
/// a full ring is a counted drop. m->port tells the control thread where it came from.
inline void to_control(worker& w, uint16_t port, rte_mbuf* m) noexcept {
    m->port = port;
    if (w.exception_ring == nullptr || rte_ring_enqueue(w.exception_ring, m) != 0) {
        drop(w, port, m, drop_reason::exception_ring_full);
        return;
    }
    w.stats.exceptions.add(1);
}

// --- tx.cpp ---
/// Sends w.tx[port] (non-empty) and empties it; leaves the dirty list alone.
void tx_send_buffer(worker& w, uint16_t port) noexcept;

/// Buffers `m` for transmission on `port` (this worker's TX queue). Sends the buffer at
/// once when it is full. Invariant: a port is on w.dirty exactly when w.tx[port].n > 0.
/// Inline: it runs once per forwarded packet.
inline void tx_enqueue(worker& w, uint16_t port, rte_mbuf* m) noexcept {
    tx_buffer& b = w.tx[port];
    if (b.n == max_burst)
        tx_send_buffer(w, port);   // stays on the dirty list: m is appended right below
    else if (b.n == 0)
        w.dirty[w.n_dirty++] = port;
    b.pkts[b.n++] = m;
    b.bytes += rte_pktmbuf_pkt_len(m);   // m's first line is hot here, not at the flush
}

/// tx_enqueue() of `n` (at most max_burst) packets whose lengths sum to `bytes`, copied
/// in at once: a loop of tx_enqueue() reloads the buffer's count after every packet it
/// writes headers into (stores through packet bytes may alias anything). A buffer the
/// packets would overflow is filled up and sent, as tx_enqueue() would do it, so the
/// driver still gets full bursts.
inline void tx_enqueue_bulk(worker& w, uint16_t port, rte_mbuf* const* pkts, uint16_t n, uint32_t bytes) noexcept {
    RTE_ASSERT(n <= max_burst);
    if (n == 0)
        return;
    tx_buffer& b = w.tx[port];
    if (b.n == 0)
        w.dirty[w.n_dirty++] = port;
    const uint16_t room = static_cast<uint16_t>(max_burst - b.n);
    if (n > room) {
        // Rare (once per max_burst packets at most): the lengths of the packets that
        // fill the buffer are summed here, the rest of `bytes` stays with the others.
        uint32_t fill_bytes = 0;
        for (uint16_t i = 0; i < room; i++) {
            b.pkts[b.n + i] = pkts[i];
            fill_bytes += rte_pktmbuf_pkt_len(pkts[i]);
        }
        b.n = max_burst;
        b.bytes += fill_bytes;
        bytes -= fill_bytes;
        pkts += room;
        n = static_cast<uint16_t>(n - room);
        tx_send_buffer(w, port);   // stays on the dirty list: the rest is appended below
    }
    std::memcpy(&b.pkts[b.n], pkts, n * sizeof(pkts[0]));
    b.n = static_cast<uint16_t>(b.n + n);
    b.bytes += bytes;
}

// --- encap.cpp: frames received from a container port ---
void encap_burst(worker& w, const config_snapshot& cfg, uint16_t rx_port, rte_mbuf** pkts,
                 uint16_t n) noexcept;

// --- decap.cpp: frames received from the uplink ---
void decap_burst(worker& w, const config_snapshot& cfg, rte_mbuf** pkts, uint16_t n) noexcept;

// --- arp.cpp ---
/// ARP from a container: anti-spoofing, then proxy reply from `addresses` or the gateway.
/// Returns true when the frame is a unicast ARP reply that passed anti-spoofing: it
/// answers a peer outside ARP suppression (a kernel VXLAN host flooding its request) and
/// is forwarded like any unicast frame. Otherwise the frame was answered or dropped.
bool arp_from_container(worker& w, const port_binding& b, const segment& seg, uint16_t rx_port,
                        rte_mbuf* m) noexcept;
/// ARP on the uplink: requests for the VTEP address are answered, replies go to the
/// control thread through the exception ring.
void arp_from_underlay(worker& w, const config_snapshot& cfg, rte_mbuf* m) noexcept;
/// ICMP to the VTEP address (outer IPv4 already validated, `ip_hdr_len` bytes long):
/// echo requests are answered, everything else is not for us.
void icmp_from_underlay(worker& w, const config_snapshot& cfg, rte_mbuf* m,
                        uint16_t ip_hdr_len) noexcept;

} // namespace overpass::dp
