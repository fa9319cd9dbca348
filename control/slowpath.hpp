// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The control thread's share of packet work: it drains the exception ring (ARP
// replies from the underlay, DNS queries from containers), and resolves remote VTEPs' next-hop
// MACs by sending ARP requests on the uplink (through worker 0's inject ring), retried until answered
// and refreshed while in use.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <rte_arp.h>
#include <rte_ether.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "control/publish/table_writer.hpp"

namespace overpass::ctl {

class slow_path {
public:
    slow_path(boost::asio::io_context& io, table_writer& writer, rte_ring* exceptions, rte_mempool* pool,
              rte_ring* inject, uint16_t uplink, rte_ether_addr vtep_mac, rte_be32_t vtep_ip_be);

    /// A remote VTEP appeared: ARP for it now, and keep at it until it answers.
    void vtep_added(rte_be32_t ip_be);

    /// Answers DNS queries of containers: the address of `name` in network `vni`.
    using resolver = std::function<std::optional<rte_be32_t>(uint32_t vni, const std::string& name)>;
    void set_resolver(resolver r) { resolve_ = std::move(r); }
    void start();
    void stop();

    struct counters {
        uint64_t arp_requests_sent = 0, arp_replies_learned = 0, arp_replies_refused = 0, exceptions = 0, ignored = 0;
        uint64_t dns_queries = 0, dns_answers = 0, dns_nxdomain = 0, dns_malformed = 0;
    };
    /// Each counter once: its name in /v1/stats and telemetry, and its `event` label in
    /// overpass_slowpath_events_total.
    struct counter_field {
        const char* name;
        const char* event;
        uint64_t counters::*member;
    };
    static constexpr counter_field counter_fields[] = {
        {"arp_requests_sent", "arp_request_sent", &counters::arp_requests_sent},
        {"arp_replies_learned", "arp_reply_learned", &counters::arp_replies_learned},
        {"arp_replies_refused", "arp_reply_refused", &counters::arp_replies_refused},
        {"exceptions", "exception", &counters::exceptions},
        {"ignored", "ignored", &counters::ignored},
        {"dns_queries", "dns_query", &counters::dns_queries},
        {"dns_answers", "dns_answer", &counters::dns_answers},
        {"dns_nxdomain", "dns_nxdomain", &counters::dns_nxdomain},
        {"dns_malformed", "dns_malformed", &counters::dns_malformed},
    };
    const counters& stats() const noexcept { return stats_; }

private:
    void poll();
    void retry_arp();
    void handle(rte_mbuf* m);
    void send_arp_request(rte_be32_t target_be);
    bool answer_dns(rte_mbuf* m);
    void inject(rte_mbuf* m, uint16_t port);

    boost::asio::io_context& io_;
    boost::asio::steady_timer poll_timer_, arp_timer_;
    table_writer& writer_;
    rte_ring* exceptions_;
    rte_mempool* pool_;
    rte_ring* inject_;
    uint16_t uplink_;
    rte_ether_addr vtep_mac_;
    rte_be32_t vtep_ip_be_;
    struct vtep_state {
        bool resolved = false;
        std::chrono::steady_clock::time_point next_arp;
        /// When the last ARP request for it was sent, while no reply has answered it: a
        /// reply is believed only then (none: no request in flight).
        std::optional<std::chrono::steady_clock::time_point> asked;
        unsigned tries = 0;
    };
    bool learn_arp_reply(const rte_ether_hdr& eth, const rte_arp_hdr& arp);
    std::map<rte_be32_t, vtep_state> vteps_;
    counters stats_;
    resolver resolve_;
    bool running_ = false;
};

} // namespace overpass::ctl
