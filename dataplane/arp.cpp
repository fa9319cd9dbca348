// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore
//
// ARP suppression for containers, ARP and ping for the VTEP address on the uplink.
// Replies are built in place in the request's mbuf and sent back out the port the
// request came from. Nothing is ever broadcast for ARP.
#include <rte_arp.h>
#include <rte_hash.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_ring.h>

#include "dataplane/stages.hpp"

namespace overpass::dp {

namespace {

constexpr uint16_t arp_frame_len = eth_len + sizeof(rte_arp_hdr);
constexpr uint8_t reply_ttl = 64;

/// Returns the ARP header if the frame is a well-formed Ethernet/IPv4 ARP packet;
/// otherwise drops the frame (malformed or arp_unsupported) and returns nullptr.
rte_arp_hdr* parse_arp(worker& w, uint16_t port, rte_mbuf* m) noexcept {
    if (m->data_len < arp_frame_len) {
        drop(w, port, m, drop_reason::malformed);
        return nullptr;
    }
    auto* arp = rte_pktmbuf_mtod_offset(m, rte_arp_hdr*, eth_len);
    if (arp->arp_hardware != RTE_BE16(RTE_ARP_HRD_ETHER) ||
        arp->arp_protocol != RTE_BE16(RTE_ETHER_TYPE_IPV4) ||
        arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != sizeof(rte_be32_t)) {
        drop(w, port, m, drop_reason::arp_unsupported);
        return nullptr;
    }
    return arp;
}

/// Turns the request in `m` into the reply "`answer_ip` is at `answer_mac`".
void make_arp_reply(rte_mbuf* m, rte_arp_hdr* arp, const rte_ether_addr& answer_mac,
                    rte_be32_t answer_ip) noexcept {
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    const rte_ether_addr requester_mac = arp->arp_data.arp_sha;
    const rte_be32_t requester_ip = arp->arp_data.arp_sip;
    eth->dst_addr = requester_mac;
    eth->src_addr = answer_mac;
    arp->arp_opcode = RTE_BE16(RTE_ARP_OP_REPLY);
    arp->arp_data.arp_tha = requester_mac;
    arp->arp_data.arp_tip = requester_ip;
    arp->arp_data.arp_sha = answer_mac;
    arp->arp_data.arp_sip = answer_ip;
}

} // namespace

bool arp_from_container(worker& w, const port_binding& b, const segment& seg, uint16_t rx_port,
                        rte_mbuf* m) noexcept {
    rte_arp_hdr* arp = parse_arp(w, rx_port, m);
    if (arp == nullptr)
        return false;
    const rte_ether_addr sha = arp->arp_data.arp_sha;
    if (!rte_is_same_ether_addr(&sha, &b.mac)) {
        drop(w, rx_port, m, drop_reason::spoofed_mac);
        return false;
    }
    const rte_be32_t sip = arp->arp_data.arp_sip;
    if (sip == 0) {
        // An address probe (RFC 5227): the kernel checking for conflicts, not spoofing.
        drop(w, rx_port, m, drop_reason::arp_unsupported);
        return false;
    }
    if (sip != b.ip_be) {
        drop(w, rx_port, m, drop_reason::spoofed_ip);
        return false;
    }
    const rte_be32_t tip = arp->arp_data.arp_tip;
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    // A kernel VXLAN peer without ARP suppression floods its requests to us; the
    // container's unicast reply goes back like any unicast frame.
    if (arp->arp_opcode == RTE_BE16(RTE_ARP_OP_REPLY) && tip != sip && rte_is_unicast_ether_addr(&eth->dst_addr))
        return true;
    // Gratuitous ARP (sender == target) announces what the tables already know.
    if (arp->arp_opcode != RTE_BE16(RTE_ARP_OP_REQUEST) || tip == sip) {
        drop(w, rx_port, m, drop_reason::arp_unsupported);
        return false;
    }
    rte_ether_addr answer;
    if (seg.gateway_be != 0 && tip == seg.gateway_be) {
        answer = seg.gateway_mac;
    } else {
        const vni_ip_key key{b.vni_wire, tip};
        void* data = nullptr;
        if (rte_hash_lookup_data(w.tables->addresses, &key, &data) < 0) {
            drop(w, rx_port, m, drop_reason::arp_unknown_target);
            return false;
        }
        answer = mac_from_data(data);
    }
    make_arp_reply(m, arp, answer, tip);
    tx_enqueue(w, rx_port, m);
    return false;
}

void arp_from_underlay(worker& w, const config_snapshot& cfg, rte_mbuf* m) noexcept {
    const uint16_t port = cfg.uplink_port;
    rte_arp_hdr* arp = parse_arp(w, port, m);
    if (arp == nullptr)
        return;
    if (arp->arp_opcode == RTE_BE16(RTE_ARP_OP_REQUEST)) {
        if (arp->arp_data.arp_tip != cfg.vtep_ip_be) {
            drop(w, port, m, drop_reason::not_for_us);
            return;
        }
        make_arp_reply(m, arp, cfg.vtep_mac, cfg.vtep_ip_be);
        tx_enqueue(w, port, m);
        return;
    }
    if (arp->arp_opcode == RTE_BE16(RTE_ARP_OP_REPLY)) {
        // The control thread learns next-hop MACs of VTEPs from replies.
        to_control(w, port, m);
        return;
    }
    drop(w, port, m, drop_reason::arp_unsupported);
}

void icmp_from_underlay(worker& w, const config_snapshot& cfg, rte_mbuf* m,
                        uint16_t ip_hdr_len) noexcept {
    const uint16_t port = cfg.uplink_port;
    if (m->data_len < eth_len + ip_hdr_len + sizeof(rte_icmp_hdr)) {
        drop(w, port, m, drop_reason::malformed);
        return;
    }
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    auto* icmp = rte_pktmbuf_mtod_offset(m, rte_icmp_hdr*, eth_len + ip_hdr_len);
    if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0) {
        drop(w, port, m, drop_reason::not_for_us);
        return;
    }
    eth->dst_addr = eth->src_addr;
    eth->src_addr = cfg.vtep_mac;
    ip->dst_addr = ip->src_addr;
    ip->src_addr = cfg.vtep_ip_be;
    ip->time_to_live = reply_ttl;
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
    icmp->icmp_cksum = 0;
    // Padding was trimmed by the caller: the ICMP message runs to the end of the mbuf.
    uint16_t sum = 0;
    rte_raw_cksum_mbuf(m, eth_len + ip_hdr_len, rte_pktmbuf_pkt_len(m) - eth_len - ip_hdr_len, &sum);
    icmp->icmp_cksum = static_cast<uint16_t>(~sum);
    tx_enqueue(w, port, m);
}

} // namespace overpass::dp
