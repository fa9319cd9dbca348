// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/slowpath.hpp"

#include <cstring>

#include <rte_arp.h>
#include <rte_ethdev.h>
#include <rte_log.h>

namespace overpass::ctl {

namespace {
constexpr auto poll_interval = std::chrono::milliseconds(2);
constexpr auto arp_tick = std::chrono::milliseconds(200);
constexpr auto arp_refresh = std::chrono::seconds(30);
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
            const rte_be32_t sip = arp->arp_data.arp_sip;
            auto it = vteps_.find(sip);
            if (it != vteps_.end() && writer_.resolve_vtep(sip, arp->arp_data.arp_sha) == 0) {
                if (!it->second.resolved) {
                    char ip[16];
                    const auto* b = reinterpret_cast<const uint8_t*>(&sip);
                    snprintf(ip, sizeof(ip), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
                    RTE_LOG(INFO, USER1, "VTEP %s resolved\n", ip);
                }
                it->second.resolved = true;
                it->second.tries = 0;
                it->second.next_arp = std::chrono::steady_clock::now() + arp_refresh;
                stats_.arp_replies_learned++;
            } else {
                stats_.ignored++;
            }
            rte_pktmbuf_free(m);
            return;
        }
    }
    stats_.ignored++;
    rte_pktmbuf_free(m);
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
    m->port = uplink_;
    if (rte_ring_sp_enqueue(inject_, m) == 0)
        stats_.arp_requests_sent++;
    else
        rte_pktmbuf_free(m);
}

} // namespace overpass::ctl
