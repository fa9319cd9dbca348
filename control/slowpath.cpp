// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/log.hpp"
#include "control/slowpath.hpp"

#include <cstring>
#include <span>
#include <vector>

#include <rte_arp.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include <rte_log.h>

#include "control/addressing.hpp"
#include "control/dns.hpp"

namespace overpass::ctl {

namespace {
constexpr auto poll_interval = std::chrono::milliseconds(2);
constexpr auto arp_tick = std::chrono::milliseconds(200);
constexpr auto arp_refresh = std::chrono::seconds(30);
// How long after a request its reply is believed.
constexpr auto arp_answer_window = std::chrono::seconds(3);
} // namespace

slow_path::slow_path(boost::asio::io_context& io, table_writer& writer, rte_ring* exceptions, rte_mempool* pool,
                     rte_ring* inject, uint16_t uplink, rte_ether_addr vtep_mac, rte_be32_t vtep_ip_be)
    : io_(io), poll_timer_(io), arp_timer_(io), writer_(writer), exceptions_(exceptions), pool_(pool),
      inject_(inject), uplink_(uplink), vtep_mac_(vtep_mac), vtep_ip_be_(vtep_ip_be) {}

void slow_path::start() {
    running_ = true;
    poll();
    retry_arp();
}

void slow_path::stop() {
    running_ = false;
    poll_timer_.cancel();
    arp_timer_.cancel();
}

void slow_path::vtep_added(rte_be32_t ip_be) {
    if (ip_be == vtep_ip_be_)
        return;
    auto& s = vteps_[ip_be];
    s.resolved = false;
    s.tries = 0;
    s.next_arp = std::chrono::steady_clock::now();
    send_arp_request(ip_be);
}

void slow_path::poll() {
    rte_mbuf* pkts[32];
    unsigned n;
    while ((n = rte_ring_dequeue_burst(exceptions_, reinterpret_cast<void**>(pkts), 32, nullptr)) > 0)
        for (unsigned i = 0; i < n; i++)
            handle(pkts[i]);
    if (!running_)
        return;
    poll_timer_.expires_after(poll_interval);
    poll_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec)
            poll();
    });
}

void slow_path::handle(rte_mbuf* m) {
    stats_.exceptions++;
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    if (m->data_len >= sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr) &&
        eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
        const auto* arp = reinterpret_cast<const rte_arp_hdr*>(eth + 1);
        if (arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REPLY) &&
            arp->arp_data.arp_tip == vtep_ip_be_) {
            if (learn_arp_reply(*eth, *arp))
                stats_.arp_replies_learned++;
            else
                stats_.arp_replies_refused++;
            rte_pktmbuf_free(m);
            return;
        }
    }
    if (answer_dns(m))
        return;
    stats_.ignored++;
    rte_pktmbuf_free(m);
}

// A reply redirects every tunnel to a VTEP, so it is believed only as the answer to a
// request in flight (sent less than arp_answer_window ago, not answered yet), for a
// unicast sender MAC that the frame's own source agrees with: an unsolicited reply, or
// one naming a broadcast or multicast MAC, is refused.
bool slow_path::learn_arp_reply(const rte_ether_hdr& eth, const rte_arp_hdr& arp) {
    const rte_be32_t sip = arp.arp_data.arp_sip;
    auto it = vteps_.find(sip);
    if (it == vteps_.end())
        return false;
    vtep_state& s = it->second;
    const auto now = std::chrono::steady_clock::now();
    if (!s.asked || now - *s.asked > arp_answer_window)
        return false;
    const rte_ether_addr& sha = arp.arp_data.arp_sha;
    if (!rte_is_unicast_ether_addr(&sha) || rte_is_zero_ether_addr(&sha) || !rte_is_same_ether_addr(&sha, &eth.src_addr))
        return false;
    if (writer_.resolve_vtep(sip, sha) != 0)
        return false;
    if (!s.resolved) {
        char ip[16];
        const auto* b = reinterpret_cast<const uint8_t*>(&sip);
        snprintf(ip, sizeof(ip), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
        OVP_LOG(INFO, "VTEP %s resolved", ip);
    }
    s.asked.reset();
    s.resolved = true;
    s.tries = 0;
    s.next_arp = now + arp_refresh;
    return true;
}

void slow_path::inject(rte_mbuf* m, uint16_t port) {
    m->port = port;
    if (rte_ring_sp_enqueue(inject_, m) != 0)
        rte_pktmbuf_free(m);
}

// A container's query to its network's resolver address (the gateway), handed over by
// a worker. Answered from the store's endpoint names of the same network only; anything
// else is NXDOMAIN (no upstream resolver yet). Returns false if `m` is not such a query.
bool slow_path::answer_dns(rte_mbuf* m) {
    if (m->port >= RTE_MAX_ETHPORTS || m->nb_segs != 1)
        return false;
    // The binding tells which network asked; the control thread is its only writer, so
    // a plain load is current. No binding: the port went away meanwhile.
    const port_binding* b = writer_.tables().ports[m->port].load(std::memory_order_relaxed);
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    if (b == nullptr || m->data_len < sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr) ||
        eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
        return false;
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(eth + 1);
    const uint16_t hl = static_cast<uint16_t>((ip->version_ihl & 0x0f) * 4);
    if (ip->next_proto_id != IPPROTO_UDP || hl < sizeof(rte_ipv4_hdr) ||
        m->data_len < sizeof(rte_ether_hdr) + hl + sizeof(rte_udp_hdr))
        return false;
    const auto* udp = reinterpret_cast<const rte_udp_hdr*>(reinterpret_cast<const uint8_t*>(ip) + hl);
    if (udp->dst_port != rte_cpu_to_be_16(53))
        return false;
    stats_.dns_queries++;
    const std::size_t off = sizeof(rte_ether_hdr) + hl + sizeof(rte_udp_hdr);
    const std::size_t udp_len = rte_be_to_cpu_16(udp->dgram_len);
    if (udp_len < sizeof(rte_udp_hdr) || off + udp_len - sizeof(rte_udp_hdr) > m->data_len) {
        stats_.dns_malformed++;
        rte_pktmbuf_free(m);
        return true;
    }
    const std::span<const uint8_t> query(rte_pktmbuf_mtod_offset(m, const uint8_t*, off), udp_len - sizeof(rte_udp_hdr));
    const auto q = dns::parse_query(query);
    if (!q) {
        stats_.dns_malformed++;
        rte_pktmbuf_free(m);
        return true;
    }
    std::optional<rte_be32_t> addr;
    if (q->qclass == dns::class_in && resolve_)
        addr = resolve_(b->vni, q->name);
    dns::rcode rc = dns::rcode::no_error;
    std::optional<uint32_t> a;
    if (q->qclass != dns::class_in)
        rc = dns::rcode::not_implemented;
    else if (!addr)
        rc = dns::rcode::nx_domain;
    else if (q->qtype == dns::type_a)
        a = *addr;   // other types of a known name: NOERROR with no answer (NODATA)
    const std::vector<uint8_t> answer = dns::build_response(query, *q, rc, a, 0);
    if (rc == dns::rcode::nx_domain)
        stats_.dns_nxdomain++;
    else
        stats_.dns_answers++;

    rte_mbuf* r = rte_pktmbuf_alloc(pool_);
    const uint16_t len = static_cast<uint16_t>(sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr) +
                                               answer.size());
    char* frame = r == nullptr ? nullptr : rte_pktmbuf_append(r, len);
    if (frame == nullptr) {
        if (r != nullptr)
            rte_pktmbuf_free(r);
        rte_pktmbuf_free(m);
        return true;
    }
    auto* reth = reinterpret_cast<rte_ether_hdr*>(frame);
    reth->dst_addr = eth->src_addr;
    // From the gateway's MAC (the endpoints' rule applied to the resolver's address, which
    // is the gateway's), whatever MAC the query was sent to: never from a broadcast one.
    reth->src_addr = to_ether(mac_for_ip(rte_be_to_cpu_32(ip->dst_addr)));
    reth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    auto* rip = reinterpret_cast<rte_ipv4_hdr*>(reth + 1);
    std::memset(rip, 0, sizeof(*rip));
    rip->version_ihl = RTE_IPV4_VHL_DEF;
    rip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(len - sizeof(rte_ether_hdr)));
    rip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
    rip->time_to_live = 64;
    rip->next_proto_id = IPPROTO_UDP;
    rip->src_addr = ip->dst_addr;
    rip->dst_addr = ip->src_addr;
    rip->hdr_checksum = rte_ipv4_cksum(rip);
    auto* rudp = reinterpret_cast<rte_udp_hdr*>(rip + 1);
    rudp->src_port = udp->dst_port;
    rudp->dst_port = udp->src_port;
    rudp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(sizeof(rte_udp_hdr) + answer.size()));
    rudp->dgram_cksum = 0;   // optional for IPv4 (RFC 768)
    std::memcpy(rudp + 1, answer.data(), answer.size());
    const uint16_t port = m->port;
    rte_pktmbuf_free(m);
    inject(r, port);
    return true;
}

void slow_path::retry_arp() {
    const auto now = std::chrono::steady_clock::now();
    for (auto it = vteps_.begin(); it != vteps_.end();) {
        auto& s = it->second;
        if (now >= s.next_arp) {
            // A VTEP the writer no longer knows was removed from the store: forget it.
            if (writer_.vtep_slot(it->first) < 0) {
                it = vteps_.erase(it);
                continue;
            }
            send_arp_request(it->first);
            s.tries++;
            // Unresolved: retry quickly, then back off to once every few seconds.
            const auto wait = s.resolved ? std::chrono::milliseconds(1000)
                                         : std::chrono::milliseconds(std::min(5000u, 200u << std::min(s.tries, 5u)));
            s.next_arp = now + wait;
            if (s.resolved && s.tries > 3)
                s.resolved = false;   // stopped answering refreshes
        }
        ++it;
    }
    if (!running_)
        return;
    arp_timer_.expires_after(arp_tick);
    arp_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec)
            retry_arp();
    });
}

void slow_path::send_arp_request(rte_be32_t target_be) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr)
        return;
    constexpr uint16_t len = sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr);
    char* frame = rte_pktmbuf_append(m, 60);   // padded to the Ethernet minimum
    if (frame == nullptr) {
        rte_pktmbuf_free(m);
        return;
    }
    std::memset(frame, 0, 60);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
    std::memset(eth->dst_addr.addr_bytes, 0xff, RTE_ETHER_ADDR_LEN);
    eth->src_addr = vtep_mac_;
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
    auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
    arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
    arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    arp->arp_hlen = RTE_ETHER_ADDR_LEN;
    arp->arp_plen = 4;
    arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
    arp->arp_data.arp_sha = vtep_mac_;
    arp->arp_data.arp_sip = vtep_ip_be_;
    arp->arp_data.arp_tip = target_be;
    static_assert(len <= 60);
    inject(m, uplink_);
    stats_.arp_requests_sent++;
    if (auto it = vteps_.find(target_be); it != vteps_.end())
        it->second.asked = std::chrono::steady_clock::now();
}

} // namespace overpass::ctl
