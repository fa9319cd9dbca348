// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore
//
// Container ingress: anti-spoofing, ARP suppression, local switching, VXLAN
// encapsulation (RFC 7348) and head-end replication of BUM traffic.
// Invariants:
//  - a burst comes from one port, so its binding and segment are loaded once per burst;
//  - nothing leaves a container port with a source MAC/IP other than its endpoint's;
//  - flooding never leaves the segment (VNI) of the port;
//  - a copy for replication is taken before the original is modified, and the original
//    serves the last destination.
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
#include "overpass/crc32c.hpp"

namespace overpass::dp {

namespace {

constexpr uint16_t vxlan_src_port_base = 49152;   // RFC 7348: 49152-65535 recommended
constexpr uint64_t mac_bits = 0xffffffffffffULL;   // a MAC's 6 bytes in a little-endian 8-byte load

/// 8 and 4 bytes at `p` (packet memory, any alignment).
inline uint64_t load_u64(const void* p) noexcept {
    uint64_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}
inline uint32_t load_u32(const void* p) noexcept {
    uint32_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

/// Hash of the inner flow, so that one flow keeps one outer source port: for IPv4 the
/// addresses and protocol, plus the ports of unfragmented TCP/UDP; for anything else
/// (ARP) the two MAC addresses. CRC32 instructions straight on words loaded from the
/// packet: a key gathered on the stack first stalls on store forwarding.
uint32_t inner_flow_hash(const rte_mbuf* m) noexcept {
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    if (eth->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4) || m->data_len < ipv4_min_frame)
        return crc32c_u32(load_u32(&eth->src_addr.addr_bytes[2]), crc32c_u64(load_u64(eth), 0));
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(eth + 1);
    uint32_t h = crc32c_u64(load_u64(&ip->src_addr), ip->next_proto_id);
    const uint16_t hl = rte_ipv4_hdr_len(ip);
    const bool unfragmented = (ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_MF_FLAG |
                                                               RTE_IPV4_HDR_OFFSET_MASK)) == 0;
    if ((ip->next_proto_id == IPPROTO_TCP || ip->next_proto_id == IPPROTO_UDP) && unfragmented &&
        m->data_len >= eth_len + hl + sizeof(uint32_t))
        h = crc32c_u32(load_u32(rte_pktmbuf_mtod_offset(m, const uint8_t*, eth_len + hl)), h);
    return h;
}

/// The VTEP in `slot` when its next hop is known, else nullptr.
const vtep_entry* resolved_vtep(const worker& w, uint16_t slot) noexcept {
    // acquire; pairs with the release store in table_writer::publish()
    const vtep_entry* v = w.tables->vtep_slots[slot].load(std::memory_order_acquire);
    return v != nullptr && v->resolved ? v : nullptr;
}

/// Per-burst cache of the VTEP entries of the segment's flood list, loaded the first
/// time a BUM frame needs them.
struct flood_vteps {
    bool loaded = false;
    const vtep_entry* v[max_remote_vteps_per_network];
};

void load_flood_vteps(const worker& w, const segment& seg, flood_vteps& fv) noexcept {
    fv.loaded = true;
    for (uint16_t i = 0; i < seg.n_remote_vteps; i++)
        fv.v[i] = resolved_vtep(w, seg.remote_vtep_slots[i]);
}

/// Prepends the outer headers towards `vtep`. Returns false (m untouched) when the
/// mbuf has no headroom, which our pools never produce. The caller counts the frame
/// against its network (encap_tally).
[[gnu::always_inline]] inline bool encap_one(worker& w, rte_mbuf* m, const vtep_entry& vtep,
                                             const segment& seg) noexcept {
    const uint32_t inner_len = rte_pktmbuf_pkt_len(m);
    const uint32_t hash = inner_flow_hash(m);
    auto* outer = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, vxlan_overhead));
    if (outer == nullptr)
        return false;
    std::memcpy(outer, vtep.outer_template, vxlan_overhead);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(outer + eth_len);
    auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
    auto* vx = reinterpret_cast<rte_vxlan_hdr*>(udp + 1);
    const rte_be16_t total_length = rte_cpu_to_be_16(static_cast<uint16_t>(inner_len + vxlan_overhead - eth_len));
    ip->total_length = total_length;
    // The template's IPv4 header has zero length and checksum: its sum, computed by the
    // writer, plus the length is the whole header's.
    ip->hdr_checksum = static_cast<uint16_t>(~cksum_add16(vtep.outer_ip_sum, total_length));
    udp->src_port = rte_cpu_to_be_16(static_cast<uint16_t>(vxlan_src_port_base + ((hash ^ (hash >> 16)) & 0x3fff)));
    udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(inner_len + sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr)));
    udp->dgram_cksum = 0;   // RFC 7348: zero outer UDP checksum over IPv4
    vx->vx_vni = seg.vni_wire;

    vtep_counters& vc = w.stats.vteps[vtep.stats_slot];
    vc.tx_packets.add(1);
    vc.tx_bytes.add(inner_len + vxlan_overhead);
    return true;
}

/// Encapsulates `pkts[i]` towards `via[i]` and queues them on the uplink: one loop over
/// a burst's remote unicast, its network counted once.
void encap_to_uplink(worker& w, const config_snapshot& cfg, uint16_t rx_port, const segment& seg,
                     rte_mbuf* const* pkts, const vtep_entry* const* via, uint16_t n,
                     encap_tally& tally) noexcept {
    rte_mbuf* out[max_burst];
    uint16_t n_out = 0;
    uint32_t inner_bytes = 0;
    for (uint16_t i = 0; i < n; i++) {
        rte_mbuf* m = pkts[i];
        const uint32_t inner_len = rte_pktmbuf_pkt_len(m);
        if (!encap_one(w, m, *via[i], seg)) {
            drop(w, rx_port, m, drop_reason::malformed);
            continue;
        }
        inner_bytes += inner_len;
        out[n_out++] = m;
    }
    tally.add(w, seg.stats_slot, n_out, inner_bytes);
    tx_enqueue_bulk(w, cfg.uplink_port, out, n_out, inner_bytes + uint32_t{n_out} * vxlan_overhead);
}

/// Takes `frames` from the worker's replication token bucket of network slot `slot`;
/// false when it holds fewer. One container flooding unknown MACs must not drain the
/// mbuf pool of every port, nor spend the broadcasts (ARP) of another network.
bool bum_budget(worker& w, const config_snapshot& cfg, uint16_t slot, uint32_t frames) noexcept {
    const uint64_t rate = cfg.bum_frames_per_sec;
    if (rate == 0)
        return true;
    const uint64_t burst = rate / 10 > 64 ? rate / 10 : 64;
    const uint64_t now = rte_rdtsc();
    const uint64_t hz = rte_get_tsc_hz();
    // A second refills any bucket (burst <= rate); capping keeps the product in range.
    worker::bum_bucket& b = w.bum[slot];
    const uint64_t elapsed = now - b.refill_tsc < hz ? now - b.refill_tsc : hz;
    const uint64_t earned = elapsed * rate / hz;
    if (earned != 0) {
        b.tokens = b.tokens + earned < burst ? b.tokens + earned : burst;
        b.refill_tsc = now;
    }
    if (b.tokens < frames)
        return false;
    b.tokens -= frames;
    return true;
}

/// Head-end replication of one BUM (or unknown unicast) frame to every other local port
/// of the segment and every resolved remote VTEP of its flood list.
void flood_from_container(worker& w, const config_snapshot& cfg, uint16_t rx_port, rte_mbuf* m,
                          const segment& seg, flood_vteps& fv, encap_tally& tally) noexcept {
    w.stats.networks[seg.stats_slot].flood_packets.add(1);
    if (!fv.loaded && seg.n_remote_vteps != 0)
        load_flood_vteps(w, seg, fv);

    uint32_t remaining = 0;
    for (uint16_t i = 0; i < seg.n_local_ports; i++)
        remaining += seg.local_ports[i] != rx_port;
    for (uint16_t i = 0; i < seg.n_remote_vteps; i++)
        remaining += fv.v[i] != nullptr;
    if (remaining == 0) {
        rte_pktmbuf_free(m);   // alone in its network: nobody to deliver to
        return;
    }
    if (!bum_budget(w, cfg, seg.stats_slot, remaining)) {
        drop(w, rx_port, m, drop_reason::bum_rate_limited);
        return;
    }

    auto next_copy = [&]() noexcept -> rte_mbuf* {
        if (--remaining == 0)
            return m;
        rte_mbuf* c = rte_pktmbuf_copy(m, w.pool, 0, UINT32_MAX);
        if (c == nullptr)
            count_drop(w, rx_port, drop_reason::replication_failed);
        return c;
    };
    for (uint16_t i = 0; i < seg.n_local_ports; i++) {
        const uint16_t port = seg.local_ports[i];
        if (port == rx_port)
            continue;
        if (rte_mbuf* c = next_copy(); c != nullptr)
            tx_enqueue(w, port, c);
    }
    for (uint16_t i = 0; i < seg.n_remote_vteps; i++) {
        if (fv.v[i] == nullptr)
            continue;
        if (rte_mbuf* c = next_copy(); c != nullptr)
            encap_to_uplink(w, cfg, rx_port, seg, &c, &fv.v[i], 1, tally);
    }
}

/// A DNS query to the network's resolver address (the gateway): UDP to port 53.
bool is_dns_query_to(const rte_mbuf* m, const rte_ipv4_hdr* ip, rte_be32_t resolver_be) noexcept {
    if (resolver_be == 0 || ip->dst_addr != resolver_be || ip->next_proto_id != IPPROTO_UDP)
        return false;
    const uint16_t hl = static_cast<uint16_t>((ip->version_ihl & 0x0f) * 4);
    if (hl < sizeof(rte_ipv4_hdr) || m->data_len < eth_len + hl + sizeof(rte_udp_hdr))
        return false;
    const auto* udp = rte_pktmbuf_mtod_offset(m, const rte_udp_hdr*, eth_len + hl);
    return udp->dst_port == RTE_BE16(53);
}

/// The endpoints table's key (endpoint_key()) of a frame's destination in the network
/// with stats slot `slot`: its destination MAC (the frame's first 6 bytes) and the slot
/// above them. The endpoint cache uses the same key; for it the slot stands for the VNI
/// because the writer ends the cache's generation whenever it gives a slot to a network
/// (table_writer's upsert_network(); docs/tables-and-rcu.md).
uint64_t dst_key(const rte_mbuf* m, uint16_t slot) noexcept {
    return (load_u64(rte_pktmbuf_mtod(m, const void*)) & mac_bits) | uint64_t{slot} << 48;
}

/// A burst's known-unicast frames with their endpoints-table keys and hashes, as the
/// parse loop leaves them (their buckets, or the cache's sets, prefetched).
struct unicast_frames {
    rte_mbuf* pkts[max_burst];
    uint64_t keys[max_burst];
    uint32_t hashes[max_burst];
    uint16_t n = 0;
};

/// A burst's frames to flood: broadcast, multicast and unknown unicast.
struct flood_frames {
    rte_mbuf* pkts[max_burst];
    uint16_t n = 0;
};

/// Stage 1: the endpoints table's value of each frame's destination (0: unknown), from
/// the worker's cache when `cached`, else (and for the cache's misses) from the table.
void lookup_endpoints(worker& w, const unicast_frames& uni, bool cached, uint32_t* value) noexcept {
    const endpoint_table& table = w.tables->endpoints;
    const uint64_t* keys = uni.keys;
    const uint32_t* hashes = uni.hashes;
    const uint16_t n_uni = uni.n;
    if (cached) {
        // acquire; pairs with the release bump in table_writer::endpoints_changed():
        // entries cached under this generation are what a lookup now would answer.
        const uint64_t gen_tag = w.tables->endpoints_gen.load(std::memory_order_acquire)
                                 << endpoint_cache::value_bits;
        uint8_t miss_at[max_burst];
        uint16_t n_miss = 0;
        for (uint16_t i = 0; i < n_uni; i++) {
            if (!cache_lookup(cache_set(w.ep_cache, hashes[i]), keys[i], gen_tag, value[i])) {
                endpoint_prefetch(table, hashes[i]);
                miss_at[n_miss++] = static_cast<uint8_t>(i);
            }
        }
        w.stats.endpoint_cache_hits.add(n_uni - n_miss);
        w.stats.endpoint_cache_misses.add(n_miss);
        cache_account(w.ep_cache, n_uni, n_uni - n_miss);
        for (uint16_t j = 0; j < n_miss; j++) {
            const uint8_t i = miss_at[j];
            value[i] = endpoint_lookup(table, keys[i], hashes[i]);
            if (value[i] != 0)
                cache_insert(w.ep_cache, cache_set(w.ep_cache, hashes[i]), keys[i], gen_tag, value[i]);
        }
    } else {
        if (w.use_endpoint_cache)
            w.stats.endpoint_cache_misses.add(n_uni);   // a burst that skips the cache
        for (uint16_t i = 0; i < n_uni; i++)
            value[i] = endpoint_lookup(table, keys[i], hashes[i]);
    }
}

/// Known unicast of one burst: stage 1 looks the destinations up; a remote endpoint's
/// value names its VTEP's slot, so the VTEP is an array load, not a second hash lookup.
/// Stage 2 sends local frames to their port and gathers remote ones for stage 3, which
/// encapsulates them. Unknown unicast is appended to `bum` for flooding.
void unicast_burst(worker& w, const config_snapshot& cfg, uint16_t rx_port, const segment& seg,
                   const unicast_frames& uni, bool cached, flood_frames& bum, encap_tally& tally) noexcept {
    uint32_t value[max_burst];
    lookup_endpoints(w, uni, cached, value);

    // Stage 2: where each packet goes; remote unicast is gathered for stage 3.
    rte_mbuf* remote[max_burst];
    const vtep_entry* via[max_burst];
    uint16_t n_remote = 0;
    for (uint16_t i = 0; i < uni.n; i++) {
        rte_mbuf* m = uni.pkts[i];
        if (value[i] == 0) {
            bum.pkts[bum.n++] = m;   // unknown unicast is flooded
            continue;
        }
        const endpoint_value ep = endpoint_value::from_word(value[i]);
        if (ep.is_local()) {
            if (ep.index == rx_port)
                drop(w, rx_port, m, drop_reason::hairpin);
            else
                tx_enqueue(w, ep.index, m);
            continue;
        }
        const vtep_entry* vtep = resolved_vtep(w, ep.index);
        if (vtep == nullptr) {
            drop(w, rx_port, m, drop_reason::vtep_unresolved);
            continue;
        }
        remote[n_remote] = m;
        via[n_remote++] = vtep;
    }

    // Stage 3: encapsulation.
    encap_to_uplink(w, cfg, rx_port, seg, remote, via, n_remote, tally);
}

/// What a container's ordinary frame holds, built once per burst from the port's binding
/// and network, in the words plain_unicast() compares.
struct frame_expect {
    uint64_t src_type;     ///< bytes 6-13: the endpoint's MAC, EtherType IPv4 (little-endian load)
    uint64_t gateway_mac;  ///< bytes 0-5 of a frame to the gateway, upper 16 bits 0
    rte_be32_t ip_be;
    rte_be32_t gateway_be;
    uint32_t max_len;      ///< the network's MTU plus the Ethernet header

    frame_expect(const port_binding& b, const segment& seg) noexcept
        : src_type(uint64_t{RTE_BE16(RTE_ETHER_TYPE_IPV4)} << 48), gateway_mac(0), ip_be(b.ip_be),
          gateway_be(seg.gateway_be), max_len(uint32_t{seg.mtu} + eth_len) {
        static_assert(std::endian::native == std::endian::little, "byte order of the words");
        std::memcpy(&src_type, b.mac.addr_bytes, RTE_ETHER_ADDR_LEN);
        std::memcpy(&gateway_mac, seg.gateway_mac.addr_bytes, RTE_ETHER_ADDR_LEN);
    }
};

/// The common frame in one pass and one branch: IPv4 from the endpoint's own MAC and
/// address, unicast, neither to the gateway's MAC (routing) nor to its address (DNS),
/// within the network's MTU, its IPv4 header in the first segment. Anything else takes
/// screen_frame()'s step-by-step path, which names the drop reason.
bool plain_unicast(const rte_mbuf* m, const frame_expect& ex) noexcept {
    if (m->data_len < ipv4_min_frame)
        return false;
    const auto* p = rte_pktmbuf_mtod(m, const uint8_t*);
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(p + eth_len);
    const uint64_t dst = load_u64(p);
    const uint64_t diff = (load_u64(p + 6) ^ ex.src_type) | (ip->src_addr ^ ex.ip_be);
    const bool other = (dst & 1) != 0 ||                      // broadcast, multicast
                       ((dst ^ ex.gateway_mac) & mac_bits) == 0 || ip->dst_addr == ex.gateway_be ||
                       rte_pktmbuf_pkt_len(m) > ex.max_len;
    return (diff == 0) & !other;
}

/// The step-by-step checks of one frame from a container. true: known or unknown
/// unicast, to be looked up; false: consumed (answered, handed to the control thread,
/// dropped, or appended to `bum`).
bool screen_frame(worker& w, const port_binding& b, const segment& seg, uint16_t rx_port, rte_mbuf* m,
                  rte_mbuf** bum, uint16_t& n_bum) noexcept {
    if (m->data_len < eth_len) {
        drop(w, rx_port, m, drop_reason::malformed);
        return false;
    }
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    if (!rte_is_same_ether_addr(&eth->src_addr, &b.mac)) {
        drop(w, rx_port, m, drop_reason::spoofed_mac);
        return false;
    }
    const rte_be16_t type = eth->ether_type;
    if (type == RTE_BE16(RTE_ETHER_TYPE_ARP)) {
        if (!arp_from_container(w, b, seg, rx_port, m))
            return false;   // answered or dropped; a unicast reply is forwarded below
    } else if (type == RTE_BE16(RTE_ETHER_TYPE_IPV4)) {
        if (m->data_len < ipv4_min_frame) {
            drop(w, rx_port, m, drop_reason::malformed);
            return false;
        }
        const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(eth + 1);
        if (ip->src_addr != b.ip_be) {
            drop(w, rx_port, m, drop_reason::spoofed_ip);
            return false;
        }
        if (is_dns_query_to(m, ip, seg.gateway_be)) {
            to_control(w, rx_port, m);   // the control thread answers names
            return false;
        }
    } else {
        // IPv6, VLAN tags and the rest: the overlay carries untagged IPv4 only, and
        // anti-spoofing only knows the endpoint's IPv4 address.
        drop(w, rx_port, m, drop_reason::unsupported_ethertype);
        return false;
    }
    if (rte_pktmbuf_pkt_len(m) - eth_len > seg.mtu) {
        drop(w, rx_port, m, drop_reason::mtu_exceeded);
        return false;
    }
    if (rte_is_multicast_ether_addr(&eth->dst_addr)) {
        bum[n_bum++] = m;
        return false;
    }
    if (seg.gateway_be != 0 && rte_is_same_ether_addr(&eth->dst_addr, &seg.gateway_mac)) {
        drop(w, rx_port, m, drop_reason::no_route);
        return false;
    }
    return true;
}

} // namespace

void encap_burst(worker& w, const config_snapshot& cfg, uint16_t rx_port, rte_mbuf** pkts,
                 uint16_t n) noexcept {
    // acquire; pairs with the release exchange in table_writer (port binding publish)
    const port_binding* b = w.tables->ports[rx_port].load(std::memory_order_acquire);
    const segment* seg = b != nullptr ? find_segment(w, b->vni) : nullptr;
    if (seg == nullptr) {
        const drop_reason r = b == nullptr ? drop_reason::port_unbound : drop_reason::no_network;
        for (uint16_t i = 0; i < n; i++)
            drop(w, rx_port, pkts[i], r);
        return;
    }

    const bool probe = cache_probing(w.ep_cache, w.use_endpoint_cache);
    unicast_frames uni;
    flood_frames bum;

    const frame_expect ex(*b, *seg);
    for (uint16_t i = 0; i < n; i++) {
        if (i + 3 < n)
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 3], void*));
        rte_mbuf* m = pkts[i];
        if (!plain_unicast(m, ex) && !screen_frame(w, *b, *seg, rx_port, m, bum.pkts, bum.n))
            continue;
        const uint16_t k = uni.n++;
        uni.keys[k] = dst_key(m, seg->stats_slot);
        uni.hashes[k] = endpoint_hash(uni.keys[k]);
        // looked up after the parse loop
        if (probe)
            rte_prefetch0(&cache_set(w.ep_cache, uni.hashes[k]));
        else
            endpoint_prefetch(w.tables->endpoints, uni.hashes[k]);
        uni.pkts[k] = m;
    }

    encap_tally tally;
    if (uni.n != 0)
        unicast_burst(w, cfg, rx_port, *seg, uni, probe, bum, tally);

    flood_vteps fv;
    for (uint16_t i = 0; i < bum.n; i++)
        flood_from_container(w, cfg, rx_port, bum.pkts[i], *seg, fv, tally);
    tally.flush(w);
}

} // namespace overpass::dp
