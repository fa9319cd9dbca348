// SPDX-License-Identifier: Apache-2.0
// runs on: init only (test binary: the main lcore plays the control thread)
//
// The slow path's underlay ARP: a reply redirects every tunnel to a VTEP, so only the
// answer to a request in flight, from a unicast MAC the frame's source agrees with, may
// set the VTEP's next hop. Replies go in through the exception ring, requests come out of
// the inject ring, and the table writer's VTEP entry shows what was believed.
#include <boost/asio/io_context.hpp>
#include <rte_arp.h>
#include <rte_ring.h>

#include "control/publish/table_writer.hpp"
#include "control/slowpath.hpp"
#include "tests/dp/dp_support.hpp"

using namespace overpass;
using namespace overpass::test;

namespace {

const rte_ether_addr vtep_mac = mac(0x02, 0, 0, 0, 0, 0x01);
const rte_be32_t vtep_ip = ip4(198, 18, 0, 1);
const rte_be32_t peer_ip = ip4(198, 18, 0, 2);
const rte_ether_addr peer_mac = mac(0x02, 0, 0, 0, 0, 0x02);
const rte_ether_addr attacker_mac = mac(0x02, 0, 0, 0, 0, 0x66);
const rte_ether_addr multicast_mac = mac(0x01, 0, 0x5e, 0, 0, 0x01);

class slowpath_arp : public ::testing::Test {
protected:
    void SetUp() override {
        static int seq;
        char name[16];
        std::snprintf(name, sizeof(name), "spw%d", seq);
        ctl::table_limits lim;
        lim.max_endpoints = 16;
        lim.max_networks = 4;
        lim.max_vteps = 4;
        tw_ = ctl::table_writer::create(name, lim);
        ASSERT_NE(tw_, nullptr);
        config_snapshot cfg{};
        cfg.vtep_mac = vtep_mac;
        cfg.vtep_ip_be = vtep_ip;
        cfg.vxlan_port_be = rte_cpu_to_be_16(default_vxlan_port);
        cfg.uplink_mtu = 1500;
        ASSERT_EQ(tw_->set_config(cfg), 0);
        ASSERT_EQ(tw_->upsert_vtep(peer_ip), 0);
        std::snprintf(name, sizeof(name), "spx%d", seq);
        exc_ = rte_ring_create(name, 64, SOCKET_ID_ANY, RING_F_SC_DEQ);
        std::snprintf(name, sizeof(name), "spi%d", seq++);
        inject_ = rte_ring_create(name, 64, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
        ASSERT_NE(exc_, nullptr);
        ASSERT_NE(inject_, nullptr);
        pool_ = make_pool(name, 255);
        ASSERT_NE(pool_, nullptr);
        slow_ = std::make_unique<ctl::slow_path>(io_, *tw_, exc_, pool_, inject_, 0, vtep_mac, vtep_ip);
    }
    void TearDown() override {
        slow_.reset();
        drain_requests();
        rte_ring_free(exc_);
        rte_ring_free(inject_);
        rte_mempool_free(pool_);
    }

    /// ARP requests the slow path sent since the last call.
    unsigned drain_requests() {
        unsigned n = 0;
        void* m;
        while (inject_ != nullptr && rte_ring_dequeue(inject_, &m) == 0) {
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
            n++;
        }
        return n;
    }
    /// Hands one ARP reply to our VTEP to the slow path and lets it run.
    void reply(const rte_ether_addr& eth_src, const rte_ether_addr& sha) {
        rte_mbuf* m = to_mbuf(pool_, eth(vtep_mac, eth_src, RTE_ETHER_TYPE_ARP,
                                         arp(RTE_ARP_OP_REPLY, sha, peer_ip, vtep_mac, vtep_ip)));
        ASSERT_NE(m, nullptr);
        ASSERT_EQ(rte_ring_enqueue(exc_, m), 0);
        slow_->start();
        io_.restart();
        io_.run_for(std::chrono::milliseconds(50));
        slow_->stop();
        io_.restart();
        io_.poll();
    }
    /// The next hop the tables hold for the peer VTEP (zero: unresolved).
    rte_ether_addr next_hop() {
        const int slot = tw_->vtep_slot(peer_ip);
        EXPECT_GE(slot, 0);
        const vtep_entry* v = tw_->tables().vtep_slots[slot].load();
        rte_ether_addr none{};
        return v != nullptr && v->resolved ? v->mac : none;
    }

    boost::asio::io_context io_;
    std::unique_ptr<ctl::table_writer> tw_;
    rte_ring* exc_ = nullptr;
    rte_ring* inject_ = nullptr;
    rte_mempool* pool_ = nullptr;
    std::unique_ptr<ctl::slow_path> slow_;
};

} // namespace

TEST_F(slowpath_arp, only_the_answer_to_a_request_in_flight_is_believed) {
    // Nobody asked yet: an unsolicited reply is refused.
    reply(attacker_mac, attacker_mac);
    EXPECT_TRUE(rte_is_zero_ether_addr(&(const rte_ether_addr&)next_hop()));
    EXPECT_EQ(slow_->stats().arp_replies_refused, 1u);

    slow_->vtep_added(peer_ip);
    EXPECT_GE(drain_requests(), 1u);
    reply(peer_mac, peer_mac);
    rte_ether_addr hop = next_hop();
    EXPECT_TRUE(rte_is_same_ether_addr(&hop, &peer_mac));
    EXPECT_EQ(slow_->stats().arp_replies_learned, 1u);

    // Answered: a second reply, unasked, does not redirect the tunnel.
    reply(attacker_mac, attacker_mac);
    hop = next_hop();
    EXPECT_TRUE(rte_is_same_ether_addr(&hop, &peer_mac));
    EXPECT_EQ(slow_->stats().arp_replies_refused, 2u);
    EXPECT_EQ(slow_->stats().arp_replies_learned, 1u);
}

TEST_F(slowpath_arp, broadcast_multicast_and_mismatched_senders_are_refused) {
    slow_->vtep_added(peer_ip);
    drain_requests();
    reply(bcast, bcast);                  // would flood the underlay
    reply(multicast_mac, multicast_mac);
    reply(attacker_mac, peer_mac);        // the frame's source disagrees with the ARP sender
    EXPECT_TRUE(rte_is_zero_ether_addr(&(const rte_ether_addr&)next_hop()));
    EXPECT_EQ(slow_->stats().arp_replies_refused, 3u);
    EXPECT_EQ(slow_->stats().arp_replies_learned, 0u);
    // The request is still in flight: the real answer is believed.
    reply(peer_mac, peer_mac);
    const rte_ether_addr hop = next_hop();
    EXPECT_TRUE(rte_is_same_ether_addr(&hop, &peer_mac));
    EXPECT_EQ(slow_->stats().arp_replies_learned, 1u);
}

// A container's DNS query sent to the broadcast MAC is answered from the gateway's MAC
// (the resolver is the gateway address), never from ff:ff:ff:ff:ff:ff.
TEST_F(slowpath_arp, dns_answers_come_from_the_gateways_mac) {
    constexpr uint32_t vni = 100;
    constexpr uint16_t port = 5;
    const rte_be32_t gw = ip4(10, 0, 1, 1);
    const rte_be32_t a_ip = ip4(10, 0, 1, 2);
    const rte_ether_addr a_mac = mac(0x02, 0x42, 10, 0, 1, 2);
    const rte_ether_addr gw_mac = mac(0x02, 0x42, 10, 0, 1, 1);
    ASSERT_EQ(tw_->upsert_network({vni, 1450, ip4(10, 0, 1, 0), ip4(255, 255, 255, 0), gw}), 0);
    ASSERT_EQ(tw_->upsert_local_endpoint(vni, a_ip, a_mac, port), 0);
    slow_->set_resolver([&](uint32_t v, const std::string& name) -> std::optional<rte_be32_t> {
        if (v == vni && name == "app2")
            return ip4(10, 0, 1, 3);
        return std::nullopt;
    });
    // id 0x1234, RD, one question: app2 A IN
    const bytes query = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 4, 'a', 'p', 'p', '2', 0, 0, 1, 0, 1};
    for (const rte_ether_addr& to : {bcast, gw_mac}) {
        rte_mbuf* m = to_mbuf(pool_, eth(to, a_mac, RTE_ETHER_TYPE_IPV4, ipv4(a_ip, gw, 17, udp(40000, 53, query))));
        ASSERT_NE(m, nullptr);
        m->port = port;
        ASSERT_EQ(rte_ring_enqueue(exc_, m), 0);
        slow_->start();
        io_.restart();
        io_.run_for(std::chrono::milliseconds(50));
        slow_->stop();
        void* out = nullptr;
        ASSERT_EQ(rte_ring_dequeue(inject_, &out), 0) << "no answer";
        auto* r = static_cast<rte_mbuf*>(out);
        const auto* reth = rte_pktmbuf_mtod(r, const rte_ether_hdr*);
        EXPECT_TRUE(rte_is_same_ether_addr(&reth->src_addr, &gw_mac));
        EXPECT_TRUE(rte_is_same_ether_addr(&reth->dst_addr, &a_mac));
        EXPECT_EQ(r->port, port);
        rte_pktmbuf_free(r);
    }
    EXPECT_EQ(slow_->stats().dns_answers, 2u);
    ASSERT_EQ(tw_->remove_endpoint(vni, a_mac), 0);
    ASSERT_EQ(tw_->remove_network(vni), 0);
}

int main(int argc, char** argv) { return run_dp_tests(argc, argv); }
