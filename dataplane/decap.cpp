// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore
//
// Uplink ingress: ARP and ping for the VTEP address, outer IPv4/UDP/VXLAN validation,
// decapsulation and delivery to local ports.
// Invariants:
//  - only IPv4/UDP to our VTEP address and VXLAN port, with the I flag, from a known
//    VTEP and for a known VNI is decapsulated; anything else is a counted drop;
//  - a decapsulated frame is delivered only to local ports of its own VNI;
//  - per burst: the sender VTEPs (worker hints checked against the slot array, bulk
//    lookup for the rest), networks (once per run of one VNI: the worker's hint checked
//    against the slot array, a lookup on a miss), local endpoints (worker hints checked
//    against the port bindings; the endpoints table for the rest, their buckets
//    prefetched first).
#include <bit>
#include <cstring>

#include <rte_cycles.h>
#include <rte_hash.h>
#include <rte_ip.h>
#include <rte_prefetch.h>
#include <rte_udp.h>
#include <rte_vxlan.h>

#include "dataplane/cksum.hpp"
#include "dataplane/stages.hpp"

namespace overpass::dp {

namespace {

constexpr rte_be32_t vxlan_i_flag = RTE_BE32(0x08000000);

/// Outer IPv4 header checksum: trust the NIC when it checked, compute otherwise.
bool outer_cksum_ok(const rte_mbuf* m, const rte_ipv4_hdr* ip, uint16_t hl) noexcept {
    switch (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) {
    case RTE_MBUF_F_RX_IP_CKSUM_GOOD:
        return true;
    case RTE_MBUF_F_RX_IP_CKSUM_BAD:
        return false;
    default:
        return (hl == ipv4_hdr_min_len ? ipv4_hdr20_sum(ip) : rte_raw_cksum(ip, hl)) == 0xffff;
    }
}

/// Outer headers of the common case: IPv4 without options.
constexpr uint16_t plain_outer_len = eth_len + ipv4_hdr_min_len + sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr);

/// What the outer headers of a VXLAN frame for this host hold, in the words
/// plain_vxlan_for_us() compares (built once per burst).
struct outer_expect {
    uint64_t dst_mac;     ///< bytes 0-5 of the frame (little-endian load, upper 16 bits 0)
    rte_be32_t ip_be;
    rte_be16_t port_be;

    explicit outer_expect(const config_snapshot& cfg) noexcept : dst_mac(0), ip_be(cfg.vtep_ip_be), port_be(cfg.vxlan_port_be) {
        std::memcpy(&dst_mac, cfg.vtep_mac.addr_bytes, RTE_ETHER_ADDR_LEN);
    }
};

/// The common case in one pass and one branch: an option-less IPv4 packet to our MAC
/// and address, not a fragment, without Ethernet padding, UDP to the VXLAN port with
/// consistent lengths, the I flag set, and every header up to the inner Ethernet one in
/// the first segment. Everything else (ARP, ICMP, options, padding, errors) takes
/// check_outer()'s step-by-step path, which names the drop reason.
bool plain_vxlan_for_us(const rte_mbuf* m, const outer_expect& ex) noexcept {
    if (m->data_len < plain_outer_len + eth_len)
        return false;
    const auto* p = rte_pktmbuf_mtod(m, const uint8_t*);
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(p + eth_len);
    const auto* udp = reinterpret_cast<const rte_udp_hdr*>(ip + 1);
    const auto* vxh = reinterpret_cast<const rte_vxlan_hdr*>(udp + 1);
    uint64_t head;       // destination MAC, 2 bytes of the source
    uint32_t type_vhl;   // EtherType, version/IHL, TOS
    std::memcpy(&head, p, sizeof(head));
    std::memcpy(&type_vhl, p + 12, sizeof(type_vhl));
    static_assert(std::endian::native == std::endian::little, "byte order of the words");
    constexpr uint32_t ipv4_45 = 0x08 | 0x00 << 8 | 0x45 << 16;   // 08 00 45 in memory
    const uint32_t total = rte_be_to_cpu_16(ip->total_length);
    uint64_t diff = ((head ^ ex.dst_mac) & 0xffffffffffffULL) | ((type_vhl ^ ipv4_45) & 0xffffff);
    diff |= (eth_len + total) ^ rte_pktmbuf_pkt_len(m);
    diff |= ip->dst_addr ^ ex.ip_be;
    diff |= ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK);
    diff |= ip->next_proto_id ^ uint32_t{IPPROTO_UDP};
    diff |= udp->dst_port ^ ex.port_be;
    diff |= rte_be_to_cpu_16(udp->dgram_len) ^ (total - ipv4_hdr_min_len);
    diff |= ~vxh->vx_flags & vxlan_i_flag;
    switch (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) {
    case RTE_MBUF_F_RX_IP_CKSUM_GOOD:
        break;
    case RTE_MBUF_F_RX_IP_CKSUM_BAD:
        return false;
    default:   // as outer_cksum_ok(), without the call
        diff |= ipv4_hdr20_sum(ip) ^ 0xffffu;
    }
    return diff == 0;
}

/// Validates the outer headers of one uplink frame. Returns the length of the outer
/// headers (Ethernet to VXLAN) when the frame is VXLAN for us; otherwise the frame was
/// consumed (answered, handed to the control thread or dropped) and 0 is returned.
uint16_t check_outer(worker& w, const config_snapshot& cfg, const outer_expect& ex, rte_mbuf* m) noexcept {
    if (likely(plain_vxlan_for_us(m, ex)))
        return plain_outer_len;
    const uint16_t port = cfg.uplink_port;
    if (m->data_len < eth_len) {
        drop(w, port, m, drop_reason::malformed);
        return 0;
    }
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    if (eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_ARP)) {
        arp_from_underlay(w, cfg, m);
        return 0;
    }
    if (eth->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4) ||
        !rte_is_same_ether_addr(&eth->dst_addr, &cfg.vtep_mac)) {
        drop(w, port, m, drop_reason::not_for_us);
        return 0;
    }
    if (m->data_len < ipv4_min_frame) {
        drop(w, port, m, drop_reason::malformed);
        return 0;
    }
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(eth + 1);
    const uint16_t ihl = ip->version_ihl & RTE_IPV4_HDR_IHL_MASK;
    const uint16_t hl = ihl * RTE_IPV4_IHL_MULTIPLIER;
    const uint16_t total = rte_be_to_cpu_16(ip->total_length);
    if ((ip->version_ihl >> 4) != 4 || ihl < 5 || m->data_len < eth_len + hl || total < hl ||
        uint32_t{eth_len} + total > rte_pktmbuf_pkt_len(m) || !outer_cksum_ok(m, ip, hl)) {
        drop(w, port, m, drop_reason::outer_ip_invalid);
        return 0;
    }
    if (ip->dst_addr != cfg.vtep_ip_be) {
        drop(w, port, m, drop_reason::not_for_us);
        return 0;
    }
    if ((ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0) {
        drop(w, port, m, drop_reason::outer_fragment);
        return 0;
    }
    // Ethernet padding after the IP packet is not part of the inner frame.
    const uint32_t padding = rte_pktmbuf_pkt_len(m) - eth_len - total;
    if (padding != 0 && rte_pktmbuf_trim(m, static_cast<uint16_t>(padding)) != 0) {
        drop(w, port, m, drop_reason::malformed);
        return 0;
    }
    if (ip->next_proto_id == IPPROTO_ICMP) {
        icmp_from_underlay(w, cfg, m, hl);
        return 0;
    }
    if (ip->next_proto_id != IPPROTO_UDP) {
        drop(w, port, m, drop_reason::not_for_us);
        return 0;
    }
    const uint16_t outer_len = eth_len + hl + sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr);
    if (m->data_len < eth_len + hl + sizeof(rte_udp_hdr)) {
        drop(w, port, m, drop_reason::malformed);
        return 0;
    }
    const auto* udp = rte_pktmbuf_mtod_offset(m, const rte_udp_hdr*, eth_len + hl);
    if (udp->dst_port != cfg.vxlan_port_be) {
        drop(w, port, m, drop_reason::not_for_us);
        return 0;
    }
    // The inner Ethernet header must follow in the first segment.
    if (rte_be_to_cpu_16(udp->dgram_len) != total - hl || m->data_len < outer_len + eth_len) {
        drop(w, port, m, drop_reason::malformed);
        return 0;
    }
    const auto* vx = reinterpret_cast<const rte_vxlan_hdr*>(udp + 1);
    if ((vx->vx_flags & vxlan_i_flag) == 0) {   // RFC 7348: other flag bits are ignored
        drop(w, port, m, drop_reason::vxlan_bad_flags);
        return 0;
    }
    return outer_len;
}

/// Delivers a decapsulated BUM frame to every local port of its segment.
void flood_from_underlay(worker& w, uint16_t uplink, rte_mbuf* m, const segment& seg) noexcept {
    w.stats.networks[seg.stats_slot].flood_packets.add(1);
    if (seg.n_local_ports == 0) {
        rte_pktmbuf_free(m);   // nobody of this network on this host
        return;
    }
    for (uint16_t i = 0; i + 1 < seg.n_local_ports; i++) {
        rte_mbuf* c = rte_pktmbuf_copy(m, w.pool, 0, UINT32_MAX);
        if (c == nullptr)
            count_drop(w, uplink, drop_reason::replication_failed);
        else
            tx_enqueue(w, seg.local_ports[i], c);
    }
    tx_enqueue(w, seg.local_ports[seg.n_local_ports - 1], m);
}

/// Sender VTEPs of a burst: the worker's hint for each address, checked against the
/// slot array; the addresses without a valid hint are looked up in bulk and their hints
/// refreshed. A burst from a real NIC queue mixes a few VTEPs, and one host talks to a
/// bounded number of them (max_vtep_slots): the hints nearly always hold.
void lookup_vteps(worker& w, const rte_be32_t* ips, uint16_t n, const vtep_entry** out) noexcept {
    const void* keys[max_burst];
    uint16_t idx[max_burst];
    uint16_t hint_at[max_burst];
    uint16_t n_miss = 0;
    for (uint16_t i = 0; i < n; i++) {
        const uint16_t h = hint_index<vtep_hint_entries>(ips[i]);
        const uint16_t hint = w.vtep_hint[h];
        if (hint != 0) {
            // acquire; pairs with the release store in table_writer::publish()
            const vtep_entry* v = w.tables->vtep_slots[hint - 1].load(std::memory_order_acquire);
            if (v != nullptr && v->ip_be == ips[i]) {
                out[i] = v;
                continue;
            }
        }
        out[i] = nullptr;
        idx[n_miss] = i;
        hint_at[n_miss] = h;
        keys[n_miss++] = &ips[i];
    }
    if (n_miss == 0)
        return;
    void* data[max_burst];
    uint64_t hits = 0;
    rte_hash_lookup_bulk_data(w.tables->vteps, keys, n_miss, &hits, data);
    for (uint16_t k = 0; k < n_miss; k++) {
        if (((hits >> k) & 1) == 0)
            continue;   // unknown VTEP: stays nullptr
        const auto* v = static_cast<const vtep_entry*>(data[k]);
        out[idx[k]] = v;
        w.vtep_hint[hint_at[k]] = static_cast<uint16_t>(v->stats_slot + 1);
    }
}

/// Inner sources of a burst (stage 3): each frame's source MAC must be an endpoint of its
/// network that lives behind the VTEP that sent it, so a host (or anything that reaches
/// the underlay with a VTEP's address) can speak only for its own endpoints. Asked of
/// the worker's endpoint cache, which encap fills with the same remote endpoints, then
/// of the table; `ok[i]` says whether frame i passed.
void check_sources(worker& w, const uint64_t* keys, const uint32_t* hashes, const uint16_t* vtep_slot, uint16_t n,
                   bool* ok) noexcept {
    const endpoint_table& table = w.tables->endpoints;
    // acquire; pairs with the release bump in table_writer::endpoints_changed()
    const uint64_t gen_tag = w.tables->endpoints_gen.load(std::memory_order_acquire) << endpoint_cache::value_bits;
    uint32_t value[max_burst];
    uint16_t miss[max_burst];
    uint16_t n_miss = 0;
    for (uint16_t i = 0; i < n; i++) {
        // A run of frames from one sender (a TCP stream) asks once.
        if (i != 0 && keys[i] == keys[i - 1]) {
            value[i] = UINT32_MAX;   // "as the frame before", resolved below
            continue;
        }
        if (!w.use_endpoint_cache || !cache_lookup(cache_set(w.ep_cache, hashes[i]), keys[i], gen_tag, value[i])) {
            endpoint_prefetch(table, hashes[i]);
            miss[n_miss++] = i;
        }
    }
    for (uint16_t k = 0; k < n_miss; k++) {
        const uint16_t i = miss[k];
        value[i] = endpoint_lookup(table, keys[i], hashes[i]);
        if (value[i] != 0 && w.use_endpoint_cache)
            cache_insert(w.ep_cache, cache_set(w.ep_cache, hashes[i]), keys[i], gen_tag, value[i]);
    }
    for (uint16_t i = 0; i < n; i++) {
        if (value[i] == UINT32_MAX)
            value[i] = value[i - 1];
        const endpoint_value ep = endpoint_value::from_word(value[i]);
        ok[i] = value[i] != 0 && !ep.is_local() && ep.index == vtep_slot[i];
    }
}

/// The container port of local endpoint `key` (endpoint_key(), table hash `hash`) if
/// the worker's hint for it holds, else RTE_MAX_ETHPORTS.
uint16_t local_port_hint(const worker& w, uint64_t key, uint32_t hash) noexcept {
    const uint16_t hint = w.local_hint[hash & (local_hint_entries - 1)];
    if (hint == 0)
        return RTE_MAX_ETHPORTS;
    // acquire; pairs with the release exchange in table_writer (port binding publish)
    const port_binding* b = w.tables->ports[hint - 1].load(std::memory_order_acquire);
    if (b == nullptr || b->endpoint_key != key)
        return RTE_MAX_ETHPORTS;
    return hint - 1;
}

} // namespace

void decap_burst(worker& w, const config_snapshot& cfg, rte_mbuf** pkts, uint16_t n) noexcept {
    const uint16_t uplink = cfg.uplink_port;

    // Stage 1: outer headers.
    const outer_expect ex(cfg);
    rte_mbuf* vx[max_burst];
    uint16_t outer_len[max_burst];
    rte_be32_t src_ip[max_burst];
    uint32_t vni[max_burst];
    uint16_t n_vx = 0;
    for (uint16_t i = 0; i < n; i++) {
        if (i + 3 < n)
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 3], void*));
        rte_mbuf* m = pkts[i];
        const uint16_t len = check_outer(w, cfg, ex, m);
        if (len == 0)
            continue;
        const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, eth_len);
        const auto* vxh = rte_pktmbuf_mtod_offset(m, const rte_vxlan_hdr*, len - sizeof(rte_vxlan_hdr));
        vx[n_vx] = m;
        outer_len[n_vx] = len;
        src_ip[n_vx] = ip->src_addr;
        vni[n_vx] = vni_from_wire(vxh->vx_vni);
        n_vx++;
    }
    if (n_vx == 0)
        return;

    // Stage 2: sender VTEP (hints, then in bulk) and network (once per run of a VNI: a
    // burst from the uplink usually carries one).
    const vtep_entry* vteps[max_burst];
    lookup_vteps(w, src_ip, n_vx, vteps);

    const uint64_t now = rte_rdtsc();
    decap_tally tally;
    rte_mbuf* in[max_burst];              // frames from known VTEPs in known networks
    const segment* in_seg[max_burst];
    uint16_t in_vtep[max_burst];          // the sender VTEP's slot
    uint64_t src_keys[max_burst];
    uint32_t src_hashes[max_burst];
    uint16_t n_in = 0;
    uint32_t run_vni = UINT32_MAX;   // no VNI: they have 24 bits
    const segment* seg = nullptr;
    for (uint16_t i = 0; i < n_vx; i++) {
        rte_mbuf* m = vx[i];
        const vtep_entry* vtep = vteps[i];
        if (vtep == nullptr) {
            drop(w, uplink, m, drop_reason::unknown_vtep);
            continue;
        }
        if (vni[i] != run_vni) {
            run_vni = vni[i];
            seg = find_segment(w, run_vni);
        }
        if (seg == nullptr) {
            drop(w, uplink, m, drop_reason::unknown_vni);
            continue;
        }
        const uint32_t outer_bytes = rte_pktmbuf_pkt_len(m);
        vtep_counters& vc = w.stats.vteps[vtep->stats_slot];
        vc.rx_packets.add(1);
        vc.rx_bytes.add(outer_bytes);
        vc.last_seen_tsc.set(now);
        tally.add(w, seg->stats_slot, outer_bytes - outer_len[i]);

        rte_pktmbuf_adj(m, outer_len[i]);   // cannot fail: check_outer() saw the bytes
        const auto* inner = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
        src_keys[n_in] = endpoint_key(seg->stats_slot, inner->src_addr);
        src_hashes[n_in] = endpoint_hash(src_keys[n_in]);
        if (w.use_endpoint_cache)
            rte_prefetch0(&cache_set(w.ep_cache, src_hashes[n_in]));
        in[n_in] = m;
        in_seg[n_in] = seg;
        in_vtep[n_in++] = vtep->stats_slot;
    }
    tally.flush(w);
    if (n_in == 0)
        return;

    // Stage 3: inner source, behind the sending VTEP; then broadcast and multicast are
    // flooded to the network's local ports, unicast goes on to stage 4.
    bool src_ok[max_burst];
    check_sources(w, src_keys, src_hashes, in_vtep, n_in, src_ok);
    rte_mbuf* uni[max_burst];
    uint64_t ep_keys[max_burst];
    uint32_t ep_hashes[max_burst];
    uint16_t n_uni = 0;
    for (uint16_t i = 0; i < n_in; i++) {
        rte_mbuf* m = in[i];
        if (!src_ok[i]) {
            drop(w, uplink, m, drop_reason::inner_src_not_remote);
            continue;
        }
        const auto* inner = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
        if (rte_is_multicast_ether_addr(&inner->dst_addr)) {
            flood_from_underlay(w, uplink, m, *in_seg[i]);
            continue;
        }
        ep_keys[n_uni] = endpoint_key(in_seg[i]->stats_slot, inner->dst_addr);
        ep_hashes[n_uni] = endpoint_hash(ep_keys[n_uni]);
        uni[n_uni++] = m;
    }
    if (n_uni == 0)
        return;

    // Stage 4: inner destination, only local endpoints of that VNI qualify: the worker's
    // hint checked against the port binding, the endpoints table for the rest (their
    // buckets prefetched first).
    uint16_t miss[max_burst];
    uint16_t n_miss = 0;
    for (uint16_t i = 0; i < n_uni; i++) {
        const uint16_t port = local_port_hint(w, ep_keys[i], ep_hashes[i]);
        if (port != RTE_MAX_ETHPORTS) {
            tx_enqueue(w, port, uni[i]);
            continue;
        }
        endpoint_prefetch(w.tables->endpoints, ep_hashes[i]);
        miss[n_miss++] = i;
    }
    for (uint16_t k = 0; k < n_miss; k++) {
        const uint16_t i = miss[k];
        const uint32_t value = endpoint_lookup(w.tables->endpoints, ep_keys[i], ep_hashes[i]);
        const endpoint_value ep = endpoint_value::from_word(value);
        if (value == 0 || !ep.is_local()) {   // unknown, or not on this host
            drop(w, uplink, uni[i], drop_reason::unknown_dst);
            continue;
        }
        w.local_hint[ep_hashes[i] & (local_hint_entries - 1)] = static_cast<uint16_t>(ep.index + 1);
        tx_enqueue(w, ep.index, uni[i]);
    }
}

} // namespace overpass::dp
