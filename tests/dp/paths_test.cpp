// SPDX-License-Identifier: Apache-2.0
// runs on: init only (test binary; calls the worker entry points from the main lcore)
//
// Packet paths of the data plane on crafted frames: golden encap/decap, ARP and ping,
// anti-spoofing, VNI isolation, MTU, BUM replication, every drop reason, truncated and
// random frames. Each test ends with the mbuf pool full again (leak check).
#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <set>

#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_malloc.h>

#include "control/publish/table_writer.hpp"
#include "dataplane/cksum.hpp"
#include "overpass/dataplane.hpp"
#include "tests/dp/dp_support.hpp"

using namespace overpass;
using namespace overpass::test;

namespace {

constexpr uint32_t vni_a = 100;
constexpr uint32_t vni_b = 200;
constexpr uint16_t mtu = 1450;

rte_mempool* g_pool;
ring_port g_uplink, g_c1, g_c2, g_c3, g_small;   // g_small: 16-slot ring, for tx_full
constexpr uint16_t unbound_port = 30;            // no ethdev, no binding
constexpr uint16_t stray_port = 29;              // used with a hand-made binding

const rte_ether_addr vtep_mac = mac(0x02, 0, 0, 0, 0, 0x01);
const rte_be32_t vtep_ip = ip4(198, 18, 0, 1);
const rte_be32_t v1_ip = ip4(198, 18, 0, 2);      // resolved, behind R (vni_a)
const rte_ether_addr v1_mac = mac(0x02, 0, 0, 0, 0, 0x02);
const rte_be32_t v2_ip = ip4(198, 18, 0, 3);      // never resolved, behind R2 (vni_a)
const rte_be32_t v3_ip = ip4(198, 18, 0, 4);      // resolved, behind S (vni_b)
const rte_ether_addr v3_mac = mac(0x02, 0, 0, 0, 0, 0x04);

const rte_be32_t gw_ip = ip4(10, 0, 1, 1);
const rte_ether_addr gw_mac = mac(0x02, 0x42, 10, 0, 1, 1);
const rte_be32_t a_ip = ip4(10, 0, 1, 2);         // A on c1 (vni_a); C on c3 has the same IP+MAC in vni_b
const rte_ether_addr a_mac = mac(0x02, 0x42, 10, 0, 1, 2);
const rte_be32_t b_ip = ip4(10, 0, 1, 3);         // B on c2 (vni_a)
const rte_ether_addr b_mac = mac(0x02, 0x42, 10, 0, 1, 3);
const rte_be32_t d_ip = ip4(10, 0, 1, 4);         // D on g_small (vni_a)
const rte_ether_addr d_mac = mac(0x02, 0x42, 10, 0, 1, 4);
const rte_be32_t r_ip = ip4(10, 0, 1, 10);        // R behind v1 (vni_a)
const rte_ether_addr r_mac = mac(0x02, 0x42, 10, 0, 1, 10);
const rte_be32_t r2_ip = ip4(10, 0, 1, 11);       // R2 behind v2 (vni_a), unresolved
const rte_ether_addr r2_mac = mac(0x02, 0x42, 10, 0, 1, 11);
const rte_be32_t s_ip = ip4(10, 0, 1, 20);        // S behind v3 (vni_b)
const rte_ether_addr s_mac = mac(0x02, 0x42, 10, 0, 1, 20);

int g_writer_seq;

class dp_paths : public ::testing::Test {
protected:
    void SetUp() override {
        char name[16];
        std::snprintf(name, sizeof(name), "pt%d", g_writer_seq++);
        ctl::table_limits lim;
        lim.max_endpoints = 256;
        lim.max_networks = 16;
        lim.max_vteps = 16;
        tw_ = ctl::table_writer::create(name, lim);
        ASSERT_NE(tw_, nullptr);
        std::snprintf(name, sizeof(name), "exc%d", g_writer_seq);
        exc_ = rte_ring_create(name, 4, SOCKET_ID_ANY, RING_F_SC_DEQ);
        ASSERT_NE(exc_, nullptr);
        void* mem = rte_zmalloc("worker", sizeof(worker), RTE_CACHE_LINE_SIZE);
        ASSERT_NE(mem, nullptr);
        w_ = new (mem) worker;
        w_->lcore_id = rte_lcore_id();
        w_->tables = &tw_->tables();
        w_->pool = g_pool;
        w_->exception_ring = exc_;

        config_snapshot cfg{};
        cfg.uplink_port = g_uplink.port_id;
        cfg.vtep_mac = vtep_mac;
        cfg.vtep_ip_be = vtep_ip;
        cfg.vxlan_port_be = rte_cpu_to_be_16(default_vxlan_port);
        cfg.uplink_mtu = 1500;
        ASSERT_EQ(tw_->set_config(cfg), 0);
        const ctl::network_spec na{vni_a, mtu, ip4(10, 0, 1, 0), ip4(255, 255, 255, 0), gw_ip};
        const ctl::network_spec nb{vni_b, mtu, ip4(10, 0, 1, 0), ip4(255, 255, 255, 0), gw_ip};
        ASSERT_EQ(tw_->upsert_network(na), 0);
        ASSERT_EQ(tw_->upsert_network(nb), 0);
        ASSERT_EQ(tw_->upsert_local_endpoint(vni_a, a_ip, a_mac, g_c1.port_id), 0);
        ASSERT_EQ(tw_->upsert_local_endpoint(vni_a, b_ip, b_mac, g_c2.port_id), 0);
        ASSERT_EQ(tw_->upsert_local_endpoint(vni_a, d_ip, d_mac, g_small.port_id), 0);
        ASSERT_EQ(tw_->upsert_local_endpoint(vni_b, a_ip, a_mac, g_c3.port_id), 0);   // "C"
        ASSERT_EQ(tw_->upsert_remote_endpoint(vni_a, r_ip, r_mac, v1_ip), 0);
        ASSERT_EQ(tw_->resolve_vtep(v1_ip, v1_mac), 0);
        ASSERT_EQ(tw_->upsert_remote_endpoint(vni_a, r2_ip, r2_mac, v2_ip), 0);
        ASSERT_EQ(tw_->upsert_remote_endpoint(vni_b, s_ip, s_mac, v3_ip), 0);
        ASSERT_EQ(tw_->resolve_vtep(v3_ip, v3_mac), 0);
    }

    void TearDown() override {
        for (uint16_t p = 0; p < RTE_MAX_ETHPORTS; p++)
            take(p);
        void* m;
        while (rte_ring_dequeue(exc_, &m) == 0)
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        for (const ring_port& rp : {g_uplink, g_c1, g_c2, g_c3, g_small}) {
            rte_mbuf* pkts[64];
            uint16_t n;
            while ((n = rte_eth_rx_burst(rp.port_id, 0, pkts, 64)) != 0)
                rte_pktmbuf_free_bulk(pkts, n);
        }
        w_->~worker();
        rte_free(w_);
        rte_ring_free(exc_);
        tw_.reset();
        EXPECT_TRUE(rte_mempool_full(g_pool)) << "mbuf leak: " << rte_mempool_avail_count(g_pool) << " of "
                                              << g_pool->size << " available";
    }

    /// Feeds frames received on `port` through process_burst().
    void run(uint16_t port, const std::vector<bytes>& frames) {
        std::vector<rte_mbuf*> pkts;
        for (const bytes& f : frames) {
            rte_mbuf* m = to_mbuf(g_pool, f);
            ASSERT_NE(m, nullptr);
            pkts.push_back(m);
        }
        dp::process_burst(*w_, port, pkts.data(), static_cast<uint16_t>(pkts.size()));
    }
    void run1(uint16_t port, const bytes& f) { run(port, {f}); }

    /// What the worker buffered for `port` (and forget it, keeping the dirty invariant).
    std::vector<bytes> take(uint16_t port) {
        std::vector<bytes> out;
        tx_buffer& b = w_->tx[port];
        for (uint16_t i = 0; i < b.n; i++) {
            out.push_back(from_mbuf(b.pkts[i]));
            rte_pktmbuf_free(b.pkts[i]);
        }
        b.n = 0;
        b.bytes = 0;
        auto* end = std::remove(w_->dirty, w_->dirty + w_->n_dirty, port);
        w_->n_dirty = static_cast<uint16_t>(end - w_->dirty);
        return out;
    }
    size_t buffered() const {
        size_t n = 0;
        for (const auto& b : w_->tx)
            n += b.n;
        return n;
    }
    uint64_t drops(drop_reason r) const { return w_->stats.drops[static_cast<size_t>(r)].get(); }
    uint64_t total_drops() const {
        uint64_t n = 0;
        for (const auto& c : w_->stats.drops)
            n += c.get();
        return n;
    }

    static bytes udp_frame(const rte_ether_addr& dst, const rte_ether_addr& src, rte_be32_t sip,
                           rte_be32_t dip, size_t payload = 20, uint16_t sport = 1234) {
        return eth(dst, src, 0x0800, ipv4(sip, dip, 17, udp(sport, 80, pattern(payload))));
    }
    static bytes vxlan_frame(rte_be32_t from, uint32_t vni, const bytes& inner, uint8_t flags = 0x08,
                             uint16_t frag = 0) {
        return eth(vtep_mac, v1_mac, 0x0800, ipv4(from, vtep_ip, 17, udp(55555, 4789, vxlan(vni, inner, flags)), frag));
    }
    /// Expected encapsulation of `inner` towards v1, with the UDP source port chosen by the
    /// code under test (only that field is taken from the actual frame).
    static bytes expected_encap(const bytes& inner, uint16_t sport, uint32_t vni, rte_be32_t to,
                                const rte_ether_addr& to_mac) {
        return eth(to_mac, vtep_mac, 0x0800, ipv4(vtep_ip, to, 17, udp(sport, 4789, vxlan(vni, inner)), 0x4000));
    }
    static uint16_t sport_of(const bytes& outer) { return static_cast<uint16_t>(outer.at(34) << 8 | outer.at(35)); }

    std::unique_ptr<ctl::table_writer> tw_;
    worker* w_ = nullptr;
    rte_ring* exc_ = nullptr;
};

TEST_F(dp_paths, encap_golden) {
    const bytes inner = udp_frame(r_mac, a_mac, a_ip, r_ip);
    run1(g_c1.port_id, inner);
    auto out = take(g_uplink.port_id);
    ASSERT_EQ(out.size(), 1u);
    const uint16_t sport = sport_of(out[0]);
    EXPECT_GE(sport, 49152);
    EXPECT_EQ(hex(out[0]), hex(expected_encap(inner, sport, vni_a, v1_ip, v1_mac)));
    EXPECT_EQ(total_drops(), 0u);
    const auto& nc = w_->stats.networks[tw_->network_slot(vni_a)];
    EXPECT_EQ(nc.encap_packets.get(), 1u);
    EXPECT_EQ(nc.encap_bytes.get(), inner.size());
    const auto& vc = w_->stats.vteps[tw_->vtep_slot(v1_ip)];
    EXPECT_EQ(vc.tx_packets.get(), 1u);
    EXPECT_EQ(vc.tx_bytes.get(), inner.size() + 50);
    EXPECT_EQ(w_->stats.ports[g_c1.port_id].rx_packets.get(), 1u);
}

TEST_F(dp_paths, encap_source_port_follows_the_flow) {
    std::set<uint16_t> ports;
    for (uint16_t flow = 0; flow < 64; flow++) {
        run(g_c1.port_id, {udp_frame(r_mac, a_mac, a_ip, r_ip, 20, static_cast<uint16_t>(1000 + flow)),
                           udp_frame(r_mac, a_mac, a_ip, r_ip, 300, static_cast<uint16_t>(1000 + flow))});
        auto out = take(g_uplink.port_id);
        ASSERT_EQ(out.size(), 2u);
        EXPECT_EQ(sport_of(out[0]), sport_of(out[1])) << "one flow, one source port";
        EXPECT_GE(sport_of(out[0]), 49152);
        ports.insert(sport_of(out[0]));
    }
    EXPECT_GT(ports.size(), 32u) << "flows should spread over source ports";
}

// The outer IPv4 checksum is the template's plus the length (incremental): check it
// against the golden frame for every inner length up to the network MTU.
TEST_F(dp_paths, encap_checksum_for_every_length) {
    for (size_t payload = 0; payload + 42 - 14 <= 1450; payload += 7) {
        const bytes inner = udp_frame(r_mac, a_mac, a_ip, r_ip, payload);
        run1(g_c1.port_id, inner);
        auto out = take(g_uplink.port_id);
        ASSERT_EQ(out.size(), 1u) << "payload " << payload;
        EXPECT_EQ(hex(out[0]), hex(expected_encap(inner, sport_of(out[0]), vni_a, v1_ip, v1_mac)))
            << "payload " << payload;
    }
    EXPECT_EQ(total_drops(), 0u);
}

// The unrolled 20-byte sum used by encap and decap equals rte_raw_cksum() on any
// header, including sums that need every carry fold (all-ones words).
TEST(ipv4_cksum, hdr20_sum_matches_rte_raw_cksum) {
    std::mt19937 rng(7);
    std::array<uint8_t, 21> buf{};   // +1: unaligned starts too
    for (int i = 0; i < 200000; i++) {
        for (auto& b : buf)
            b = static_cast<uint8_t>(i % 97 == 0 ? 0xff : i % 89 == 0 ? 0 : rng());
        const uint8_t* h = buf.data() + (i & 1);
        ASSERT_EQ(dp::ipv4_hdr20_sum(h), rte_raw_cksum(h, 20)) << "iteration " << i;
        const uint16_t w = static_cast<uint16_t>(rng());
        uint8_t with_word[20];
        std::memcpy(with_word, h, 20);
        std::memset(with_word + 2, 0, 2);
        const uint16_t base = dp::ipv4_hdr20_sum(with_word);
        std::memcpy(with_word + 2, &w, 2);
        ASSERT_EQ(dp::cksum_add16(base, w), rte_raw_cksum(with_word, 20)) << "iteration " << i;
    }
}

// Decap remembers a sender's VTEP slot per worker. When the VTEP goes and its slot is
// handed to another VTEP, frames from the old address must not be taken for the new one.
TEST_F(dp_paths, decap_vtep_hint_survives_slot_reuse) {
    const bytes inner = udp_frame(a_mac, r_mac, r_ip, a_ip);
    run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_a, inner));
    ASSERT_EQ(take(g_c1.port_id).size(), 1u);
    const int old_slot = tw_->vtep_slot(v1_ip);
    ASSERT_EQ(tw_->remove_vtep(v1_ip), 0);
    tw_->synchronize();   // the slot comes back after a grace period
    const rte_be32_t v9_ip = ip4(198, 18, 0, 77);
    ASSERT_EQ(tw_->upsert_vtep(v9_ip), 0);
    ASSERT_EQ(tw_->vtep_slot(v9_ip), old_slot) << "the test needs the slot to be reused";
    ASSERT_EQ(tw_->upsert_remote_endpoint(vni_a, r_ip, r_mac, v9_ip), 0);   // R moved behind v9
    // (overpassd zeroes a reused slot's counters through on_slot_taken; not wired here)
    const uint64_t rx_before = w_->stats.vteps[old_slot].rx_packets.get();
    for (int round = 0; round < 2; round++) {
        run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_a, inner));
        EXPECT_EQ(take(g_c1.port_id).size(), 0u) << "round " << round;
        EXPECT_EQ(drops(drop_reason::unknown_vtep), round + 1u);
        run1(g_uplink.port_id, vxlan_frame(v9_ip, vni_a, inner));
        EXPECT_EQ(take(g_c1.port_id).size(), 1u) << "round " << round;
        EXPECT_EQ(w_->stats.vteps[old_slot].rx_packets.get(), rx_before + round + 1u);
    }
    EXPECT_EQ(total_drops(), 2u);
}

// Workers remember a network's slot by VNI (decap, and encap for the RX port's network).
// Once the network is gone, and its slot reused by another, the old hint must find
// nothing; created again in another slot, the network must be found there.
TEST_F(dp_paths, network_hint_survives_slot_reuse) {
    const bytes to_c = udp_frame(a_mac, s_mac, s_ip, a_ip);     // vni_b, C on c3
    const bytes from_c = udp_frame(s_mac, a_mac, a_ip, s_ip);   // C to S behind v3
    run1(g_uplink.port_id, vxlan_frame(v3_ip, vni_b, to_c));
    ASSERT_EQ(take(g_c3.port_id).size(), 1u);
    run1(g_c3.port_id, from_c);
    ASSERT_EQ(take(g_uplink.port_id).size(), 1u);

    const int old_slot = tw_->network_slot(vni_b);
    ASSERT_EQ(tw_->remove_network(vni_b), 0);
    // v3 went with its last endpoint; v1 is still known
    run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_b, to_c));
    EXPECT_EQ(drops(drop_reason::unknown_vni), 1u);
    tw_->synchronize();   // the slot comes back after a grace period
    constexpr uint32_t vni_c = 300;
    ASSERT_EQ(tw_->upsert_network({vni_c, mtu, ip4(10, 0, 3, 0), ip4(255, 255, 255, 0), ip4(10, 0, 3, 1)}), 0);
    ASSERT_EQ(tw_->network_slot(vni_c), old_slot) << "the test needs the slot to be reused";
    run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_b, to_c));
    EXPECT_EQ(drops(drop_reason::unknown_vni), 2u);

    // vni_b again, in another slot, with C and S back.
    ASSERT_EQ(tw_->upsert_network({vni_b, mtu, ip4(10, 0, 1, 0), ip4(255, 255, 255, 0), gw_ip}), 0);
    ASSERT_NE(tw_->network_slot(vni_b), old_slot);
    ASSERT_EQ(tw_->upsert_local_endpoint(vni_b, a_ip, a_mac, g_c3.port_id), 0);
    ASSERT_EQ(tw_->upsert_remote_endpoint(vni_b, s_ip, s_mac, v3_ip), 0);
    ASSERT_EQ(tw_->resolve_vtep(v3_ip, v3_mac), 0);
    for (int round = 0; round < 2; round++) {
        SCOPED_TRACE(round);
        run1(g_uplink.port_id, vxlan_frame(v3_ip, vni_b, to_c));
        const auto in = take(g_c3.port_id);
        ASSERT_EQ(in.size(), 1u);
        EXPECT_EQ(in[0], to_c);
        run1(g_c3.port_id, from_c);
        const auto up = take(g_uplink.port_id);
        ASSERT_EQ(up.size(), 1u);
        EXPECT_EQ(hex(up[0]), hex(expected_encap(from_c, sport_of(up[0]), vni_b, v3_ip, v3_mac)));
    }
    EXPECT_EQ(w_->stats.networks[tw_->network_slot(vni_b)].decap_packets.get(), 2u);
    EXPECT_EQ(total_drops(), 2u);
}

// Decap remembers a local endpoint's port per worker. When the endpoint moves away, or
// its port is bound to another endpoint, the old hint must not deliver anything.
// A VTEP speaks only for the endpoints that live behind it: a decapsulated frame whose
// inner source MAC is unknown, local to this host, or an endpoint behind another VTEP is
// dropped, unicast and flooded alike; from the cache's answer as from the table's.
TEST_F(dp_paths, decap_checks_the_inner_source_against_the_sending_vtep) {
    for (const bool cache : {true, false}) {
        SCOPED_TRACE(cache ? "with the endpoint cache" : "without");
        w_->use_endpoint_cache = cache;
        const uint64_t before = drops(drop_reason::inner_src_not_remote);
        const std::vector<bytes> refused = {
            vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, mac(2, 0x42, 9, 9, 9, 9), ip4(10, 0, 1, 99), a_ip)),  // unknown
            vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, b_mac, b_ip, a_ip)),     // B is local to this host
            vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r2_mac, r2_ip, a_ip)),   // R2 lives behind v2
            vxlan_frame(v1_ip, vni_a, udp_frame(bcast, r2_mac, r2_ip, ip4(10, 0, 1, 255))),
            vxlan_frame(v3_ip, vni_b, udp_frame(a_mac, r_mac, r_ip, a_ip)),    // R is not in vni_b
        };
        run(g_uplink.port_id, refused);
        EXPECT_TRUE(take(g_c1.port_id).empty());
        EXPECT_TRUE(take(g_c2.port_id).empty());
        EXPECT_TRUE(take(g_c3.port_id).empty());
        EXPECT_EQ(drops(drop_reason::inner_src_not_remote), before + refused.size());
        // The real senders still get through, unicast and flooded.
        run(g_uplink.port_id, {vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r_mac, r_ip, a_ip)),
                               vxlan_frame(v1_ip, vni_a, udp_frame(bcast, r_mac, r_ip, ip4(10, 0, 1, 255))),
                               vxlan_frame(v3_ip, vni_b, udp_frame(a_mac, s_mac, s_ip, a_ip))});
        EXPECT_EQ(take(g_c1.port_id).size(), 2u);
        EXPECT_EQ(take(g_c2.port_id).size(), 1u);
        EXPECT_EQ(take(g_c3.port_id).size(), 1u);
        EXPECT_EQ(drops(drop_reason::inner_src_not_remote), before + refused.size());
    }
}

TEST_F(dp_paths, decap_local_hint_follows_moves) {
    const bytes to_a = vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r_mac, r_ip, a_ip));
    run1(g_uplink.port_id, to_a);
    ASSERT_EQ(take(g_c1.port_id).size(), 1u);

    ASSERT_EQ(tw_->upsert_remote_endpoint(vni_a, a_ip, a_mac, v1_ip), 0);   // A moved away
    run1(g_uplink.port_id, to_a);
    EXPECT_EQ(take(g_c1.port_id).size(), 0u);
    EXPECT_EQ(drops(drop_reason::unknown_dst), 1u);

    // Port c1 now holds another endpoint E: frames for A still go nowhere, E's arrive.
    const rte_ether_addr e_mac = mac(2, 0x42, 10, 0, 0, 77);
    const rte_be32_t e_ip = ip4(10, 0, 0, 77);
    ASSERT_EQ(tw_->upsert_local_endpoint(vni_a, e_ip, e_mac, g_c1.port_id), 0);
    run1(g_uplink.port_id, to_a);
    EXPECT_EQ(take(g_c1.port_id).size(), 0u);
    EXPECT_EQ(drops(drop_reason::unknown_dst), 2u);
    run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_a, udp_frame(e_mac, r_mac, r_ip, e_ip)));
    EXPECT_EQ(take(g_c1.port_id).size(), 1u);

    // E leaves and A comes back on c1: delivered there again.
    ASSERT_EQ(tw_->remove_endpoint(vni_a, e_mac), 0);
    ASSERT_EQ(tw_->upsert_local_endpoint(vni_a, a_ip, a_mac, g_c1.port_id), 0);
    for (int i = 0; i < 2; i++) {
        run1(g_uplink.port_id, to_a);
        EXPECT_EQ(take(g_c1.port_id).size(), 1u) << i;
    }
    EXPECT_EQ(total_drops(), 2u);
}

// Encap answers repeated destinations from the worker's endpoint cache. A move to another
// VTEP, a move between local and remote, and a removal must each be seen by the very
// next frame, cached or not.
TEST_F(dp_paths, encap_cache_follows_moves_and_removals) {
    const auto& st = w_->stats;
    const bytes to_r = udp_frame(r_mac, a_mac, a_ip, r_ip);
    for (int i = 0; i < 2; i++) {
        run1(g_c1.port_id, to_r);
        auto out = take(g_uplink.port_id);
        ASSERT_EQ(out.size(), 1u);
        EXPECT_EQ(hex(out[0]), hex(expected_encap(to_r, sport_of(out[0]), vni_a, v1_ip, v1_mac)));
    }
    EXPECT_EQ(st.endpoint_cache_misses.get(), 1u);
    EXPECT_EQ(st.endpoint_cache_hits.get(), 1u) << "the second frame is answered by the cache";

    ASSERT_EQ(tw_->upsert_remote_endpoint(vni_a, r_ip, r_mac, v3_ip), 0);   // R moved to v3
    for (int i = 0; i < 2; i++) {
        run1(g_c1.port_id, to_r);
        auto out = take(g_uplink.port_id);
        ASSERT_EQ(out.size(), 1u) << i;
        EXPECT_EQ(hex(out[0]), hex(expected_encap(to_r, sport_of(out[0]), vni_a, v3_ip, v3_mac))) << i;
    }

    const bytes to_b = udp_frame(b_mac, a_mac, a_ip, b_ip);   // B: local on c2, then remote
    run1(g_c1.port_id, to_b);
    EXPECT_EQ(take(g_c2.port_id).size(), 1u);
    ASSERT_EQ(tw_->upsert_remote_endpoint(vni_a, b_ip, b_mac, v1_ip), 0);
    ASSERT_EQ(tw_->resolve_vtep(v1_ip, v1_mac), 0);   // v1 went with R's move: a new VTEP
    run1(g_c1.port_id, to_b);
    EXPECT_EQ(take(g_c2.port_id).size(), 0u);
    auto out = take(g_uplink.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(hex(out[0]), hex(expected_encap(to_b, sport_of(out[0]), vni_a, v1_ip, v1_mac)));

    ASSERT_EQ(tw_->remove_endpoint(vni_a, r_mac), 0);   // R gone: unknown unicast, flooded
    const uint64_t bum_before = st.networks[tw_->network_slot(vni_a)].flood_packets.get();
    run1(g_c1.port_id, to_r);
    EXPECT_EQ(st.networks[tw_->network_slot(vni_a)].flood_packets.get(), bum_before + 1);
    EXPECT_EQ(take(g_c2.port_id).size(), 0u) << "c2 is no longer bound";
    out = take(g_uplink.port_id);
    ASSERT_EQ(out.size(), 1u) << "flooded to v1 only: v3 left vni_a's flood list with R";
    EXPECT_EQ(hex(out[0]), hex(expected_encap(to_r, sport_of(out[0]), vni_a, v1_ip, v1_mac)));
    take(g_small.port_id);
    EXPECT_EQ(total_drops(), 0u);
}

// The endpoint cache keys by network slot and MAC: one MAC in two networks is two
// endpoints, and a cached answer for one must never serve the other. Nor may anything
// cached under a slot answer for the next network given that slot: a worker burst that
// still held the old network can cache an entry under the slot after the network was
// removed (its VNI re-created elsewhere, the table answering by VNI), which the second
// half plants by hand under the generation current after the removal.
TEST_F(dp_paths, encap_cache_keeps_networks_apart) {
    const auto& st = w_->stats;
    const rte_ether_addr x_mac = mac(0x02, 0x42, 10, 0, 1, 30);
    const rte_be32_t x_ip = ip4(10, 0, 1, 30);
    ASSERT_EQ(tw_->upsert_remote_endpoint(vni_a, x_ip, x_mac, v1_ip), 0);
    ASSERT_EQ(tw_->upsert_remote_endpoint(vni_b, x_ip, x_mac, v3_ip), 0);
    const bytes to_x = udp_frame(x_mac, a_mac, a_ip, x_ip);   // from A on c1 (vni_a), C on c3 (vni_b)
    const uint64_t hits0 = st.endpoint_cache_hits.get();
    for (int i = 0; i < 2; i++) {
        SCOPED_TRACE(i);
        run1(g_c1.port_id, to_x);
        auto out = take(g_uplink.port_id);
        ASSERT_EQ(out.size(), 1u);
        EXPECT_EQ(hex(out[0]), hex(expected_encap(to_x, sport_of(out[0]), vni_a, v1_ip, v1_mac)));
        run1(g_c3.port_id, to_x);
        out = take(g_uplink.port_id);
        ASSERT_EQ(out.size(), 1u);
        EXPECT_EQ(hex(out[0]), hex(expected_encap(to_x, sport_of(out[0]), vni_b, v3_ip, v3_mac)));
    }
    EXPECT_EQ(st.endpoint_cache_hits.get(), hits0 + 2) << "the second round is answered by the cache";

    // vni_b goes. Then, in every set, the entry a late burst of vni_b could have left:
    // X under vni_b's slot, naming local port c2, under the current generation.
    const int old_slot = tw_->network_slot(vni_b);
    ASSERT_EQ(tw_->remove_network(vni_b), 0);
    tw_->synchronize();
    uint64_t x_key = 0;
    std::memcpy(&x_key, x_mac.addr_bytes, RTE_ETHER_ADDR_LEN);
    x_key |= uint64_t(old_slot) << 48;
    const uint64_t stale = w_->tables->endpoints_gen.load() << endpoint_cache::value_bits |
                           endpoint_value{endpoint_value::location::local, g_c2.port_id}.word();
    for (endpoint_cache::set& set : w_->ep_cache.set_of)
        set.way[0] = {x_key, stale};

    // vni_c takes the slot, with port c3 and X behind v1.
    constexpr uint32_t vni_c = 300;
    ASSERT_EQ(tw_->upsert_network({vni_c, mtu, ip4(10, 0, 1, 0), ip4(255, 255, 255, 0), gw_ip}), 0);
    ASSERT_EQ(tw_->network_slot(vni_c), old_slot) << "the test needs the slot to be reused";
    ASSERT_EQ(tw_->upsert_local_endpoint(vni_c, a_ip, a_mac, g_c3.port_id), 0);
    ASSERT_EQ(tw_->upsert_remote_endpoint(vni_c, x_ip, x_mac, v1_ip), 0);
    for (int i = 0; i < 2; i++) {
        SCOPED_TRACE(i);
        run1(g_c3.port_id, to_x);
        EXPECT_EQ(take(g_c2.port_id).size(), 0u) << "vni_b's leftover entry answered for vni_c";
        const auto out = take(g_uplink.port_id);
        ASSERT_EQ(out.size(), 1u);
        EXPECT_EQ(hex(out[0]), hex(expected_encap(to_x, sport_of(out[0]), vni_c, v1_ip, v1_mac)));
    }
    EXPECT_EQ(total_drops(), 0u);
}

// A cache that answers less than half of a window of lookups is probed by one burst in
// 16 only; the bursts in between go to the table directly (and count as misses).
TEST_F(dp_paths, encap_cache_steps_aside_while_it_misses) {
    const auto& st = w_->stats;
    const bytes to_r = udp_frame(r_mac, a_mac, a_ip, r_ip);
    run1(g_c1.port_id, to_r);   // R cached
    take(g_uplink.port_id);
    const uint64_t first_hits = st.endpoint_cache_hits.get();
    // 1280 lookups that cannot hit (unknown destinations, flooded): a window of misses.
    for (int burst = 0; burst < 40; burst++) {
        std::vector<bytes> frames;
        for (int i = 0; i < 32; i++)
            frames.push_back(udp_frame(mac(0x02, 0x42, 10, 9, static_cast<uint8_t>(burst), static_cast<uint8_t>(i)),
                                       a_mac, a_ip, ip4(10, 0, 1, 200)));
        run(g_c1.port_id, frames);
        for (uint16_t p : {g_uplink.port_id, g_c2.port_id, g_small.port_id})
            take(p);
    }
    EXPECT_EQ(st.endpoint_cache_hits.get(), first_hits);
    // Now at most one burst in 16 probes: R, still cached, is answered by the cache once.
    for (int i = 0; i < 16; i++) {
        run1(g_c1.port_id, to_r);
        ASSERT_EQ(take(g_uplink.port_id).size(), 1u) << i;
    }
    EXPECT_EQ(st.endpoint_cache_hits.get(), first_hits + 1);
    EXPECT_EQ(total_drops(), 0u);
}

TEST_F(dp_paths, decap_golden) {
    const bytes inner = udp_frame(a_mac, r_mac, r_ip, a_ip, 100);
    const bytes outer = vxlan_frame(v1_ip, vni_a, inner);
    run1(g_uplink.port_id, outer);
    auto out = take(g_c1.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(hex(out[0]), hex(inner));
    EXPECT_EQ(total_drops(), 0u);
    EXPECT_EQ(buffered(), 0u);
    const auto& vc = w_->stats.vteps[tw_->vtep_slot(v1_ip)];
    EXPECT_EQ(vc.rx_packets.get(), 1u);
    EXPECT_EQ(vc.rx_bytes.get(), outer.size());
    EXPECT_NE(vc.last_seen_tsc.get(), 0u);
    const auto& nc = w_->stats.networks[tw_->network_slot(vni_a)];
    EXPECT_EQ(nc.decap_packets.get(), 1u);
    EXPECT_EQ(nc.decap_bytes.get(), inner.size());
}

// Network counters are summed over runs of one network within a burst: a burst that
// alternates networks must still count every frame to its own network.
TEST_F(dp_paths, decap_counts_each_network_of_a_mixed_burst) {
    const bytes to_a = udp_frame(a_mac, r_mac, r_ip, a_ip);       // vni_a, port c1
    const bytes to_c = udp_frame(a_mac, s_mac, s_ip, a_ip, 50);   // vni_b, port c3
    run(g_uplink.port_id, {vxlan_frame(v1_ip, vni_a, to_a), vxlan_frame(v3_ip, vni_b, to_c),
                           vxlan_frame(v1_ip, vni_a, to_a), vxlan_frame(v1_ip, vni_a, to_a),
                           vxlan_frame(v3_ip, vni_b, to_c)});
    EXPECT_EQ(take(g_c1.port_id).size(), 3u);
    EXPECT_EQ(take(g_c3.port_id).size(), 2u);
    const auto& na = w_->stats.networks[tw_->network_slot(vni_a)];
    const auto& nb = w_->stats.networks[tw_->network_slot(vni_b)];
    EXPECT_EQ(na.decap_packets.get(), 3u);
    EXPECT_EQ(na.decap_bytes.get(), 3 * to_a.size());
    EXPECT_EQ(nb.decap_packets.get(), 2u);
    EXPECT_EQ(nb.decap_bytes.get(), 2 * to_c.size());
    EXPECT_EQ(total_drops(), 0u);
}

TEST_F(dp_paths, decap_strips_ethernet_padding) {
    const bytes inner = eth(a_mac, r_mac, 0x0806, arp(2, r_mac, r_ip, a_mac, a_ip));
    bytes outer = vxlan_frame(v1_ip, vni_a, inner);
    outer.resize(outer.size() + 6, 0);   // trailer after the IP packet
    run1(g_uplink.port_id, outer);
    auto out = take(g_c1.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(hex(out[0]), hex(inner));
}

TEST_F(dp_paths, local_switching_is_not_encapsulated) {
    const bytes f = udp_frame(b_mac, a_mac, a_ip, b_ip);
    run1(g_c1.port_id, f);
    auto out = take(g_c2.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(hex(out[0]), hex(f));
    EXPECT_EQ(buffered(), 0u);
}

TEST_F(dp_paths, arp_proxy_answers_local_remote_and_gateway) {
    const std::vector<std::pair<rte_be32_t, rte_ether_addr>> cases = {{b_ip, b_mac}, {r_ip, r_mac}, {gw_ip, gw_mac}};
    for (const auto& [target, answer] : cases) {
        run1(g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(1, a_mac, a_ip, mac(0, 0, 0, 0, 0, 0), target)));
        auto out = take(g_c1.port_id);
        ASSERT_EQ(out.size(), 1u);
        EXPECT_EQ(hex(out[0]), hex(eth(a_mac, answer, 0x0806, arp(2, answer, target, a_mac, a_ip))));
    }
    EXPECT_EQ(total_drops(), 0u);
    EXPECT_EQ(buffered(), 0u);
}

TEST_F(dp_paths, arp_that_is_not_answered) {
    run1(g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(1, a_mac, a_ip, mac(0, 0, 0, 0, 0, 0), ip4(10, 0, 1, 99))));
    EXPECT_EQ(drops(drop_reason::arp_unknown_target), 1u);
    run1(g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(1, a_mac, a_ip, mac(0, 0, 0, 0, 0, 0), a_ip)));   // gratuitous
    run1(g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(2, a_mac, a_ip, b_mac, b_ip)));   // broadcast reply
    bytes rarp = eth(bcast, a_mac, 0x0806, arp(1, a_mac, a_ip, mac(0, 0, 0, 0, 0, 0), b_ip));
    rarp[16] = 0x86;   // protocol type not IPv4
    run1(g_c1.port_id, rarp);
    EXPECT_EQ(drops(drop_reason::arp_unsupported), 3u);
    EXPECT_EQ(buffered(), 0u);
}

// A kernel VXLAN peer without ARP suppression floods its request to us; the container's
// unicast reply must reach it (switched locally, or encapsulated towards its VTEP), with
// anti-spoofing still applied.
TEST_F(dp_paths, unicast_arp_replies_are_forwarded) {
    const bytes to_local = eth(b_mac, a_mac, 0x0806, arp(2, a_mac, a_ip, b_mac, b_ip));
    run1(g_c1.port_id, to_local);
    auto out = take(g_c2.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(hex(out[0]), hex(to_local));

    const bytes to_remote = eth(r_mac, a_mac, 0x0806, arp(2, a_mac, a_ip, r_mac, r_ip));
    run1(g_c1.port_id, to_remote);
    out = take(g_uplink.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(hex(out[0]), hex(expected_encap(to_remote, sport_of(out[0]), vni_a, v1_ip, v1_mac)));

    run1(g_c1.port_id, eth(r_mac, a_mac, 0x0806, arp(2, a_mac, b_ip, r_mac, r_ip)));   // sender IP not ours
    EXPECT_EQ(drops(drop_reason::spoofed_ip), 1u);
    EXPECT_EQ(buffered(), 0u);
}

TEST_F(dp_paths, uplink_arp_and_ping_for_the_vtep_address) {
    const rte_be32_t peer_ip = ip4(198, 18, 0, 9);
    const rte_ether_addr peer_mac = mac(0x02, 0, 0, 0, 0, 0x09);
    run1(g_uplink.port_id, eth(bcast, peer_mac, 0x0806, arp(1, peer_mac, peer_ip, mac(0, 0, 0, 0, 0, 0), vtep_ip)));
    auto out = take(g_uplink.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(hex(out[0]), hex(eth(peer_mac, vtep_mac, 0x0806, arp(2, vtep_mac, vtep_ip, peer_mac, peer_ip))));

    const bytes data = pattern(56, 3);
    run1(g_uplink.port_id, eth(vtep_mac, peer_mac, 0x0800, ipv4(peer_ip, vtep_ip, 1, icmp_echo(8, 77, 5, data), 0x4000, 61, 999)));
    out = take(g_uplink.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(hex(out[0]), hex(eth(peer_mac, vtep_mac, 0x0800, ipv4(vtep_ip, peer_ip, 1, icmp_echo(0, 77, 5, data), 0x4000, 64, 999))));

    run1(g_uplink.port_id, eth(bcast, peer_mac, 0x0806, arp(1, peer_mac, peer_ip, mac(0, 0, 0, 0, 0, 0), ip4(198, 18, 0, 77))));
    EXPECT_EQ(drops(drop_reason::not_for_us), 1u);
    EXPECT_EQ(total_drops(), 1u);
}

TEST_F(dp_paths, uplink_arp_replies_go_to_the_control_thread) {
    const bytes reply = eth(vtep_mac, v1_mac, 0x0806, arp(2, v1_mac, v1_ip, vtep_mac, vtep_ip));
    run1(g_uplink.port_id, reply);
    EXPECT_EQ(rte_ring_count(exc_), 1u);
    EXPECT_EQ(w_->stats.exceptions.get(), 1u);
    void* m = nullptr;
    ASSERT_EQ(rte_ring_dequeue(exc_, &m), 0);
    EXPECT_EQ(hex(from_mbuf(static_cast<rte_mbuf*>(m))), hex(reply));
    rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    run(g_uplink.port_id, {reply, reply, reply, reply});   // the ring holds 3
    EXPECT_EQ(rte_ring_count(exc_), 3u);
    EXPECT_EQ(drops(drop_reason::exception_ring_full), 1u);
}

TEST_F(dp_paths, anti_spoofing) {
    run1(g_c1.port_id, udp_frame(b_mac, mac(0x02, 0x42, 10, 0, 1, 66), a_ip, b_ip));
    EXPECT_EQ(drops(drop_reason::spoofed_mac), 1u);
    run1(g_c1.port_id, udp_frame(b_mac, a_mac, ip4(10, 0, 1, 66), b_ip));
    EXPECT_EQ(drops(drop_reason::spoofed_ip), 1u);
    run1(g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(1, b_mac, a_ip, mac(0, 0, 0, 0, 0, 0), b_ip)));
    EXPECT_EQ(drops(drop_reason::spoofed_mac), 2u);
    run1(g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(1, a_mac, b_ip, mac(0, 0, 0, 0, 0, 0), r_ip)));
    EXPECT_EQ(drops(drop_reason::spoofed_ip), 2u);
    run1(g_c1.port_id, udp_frame(b_mac, a_mac, a_ip, b_ip, 20) );
    EXPECT_EQ(take(g_c2.port_id).size(), 1u);
    EXPECT_EQ(total_drops(), 4u);
    EXPECT_EQ(w_->stats.ports[g_c1.port_id].dropped_packets.get(), 4u);
    EXPECT_EQ(buffered(), 0u);
}

TEST_F(dp_paths, vni_isolation) {
    // A (vni_a, c1) and C (vni_b, c3) share MAC and IP.
    const bytes from_a = udp_frame(bcast, a_mac, a_ip, ip4(10, 0, 1, 255));
    run1(g_c1.port_id, from_a);
    EXPECT_EQ(take(g_c2.port_id).size(), 1u);
    EXPECT_EQ(take(g_small.port_id).size(), 1u);
    auto up = take(g_uplink.port_id);
    ASSERT_EQ(up.size(), 1u);   // v1 only: v2 is unresolved, v3 carries vni_b
    EXPECT_EQ(hex(up[0]), hex(expected_encap(from_a, sport_of(up[0]), vni_a, v1_ip, v1_mac)));
    EXPECT_EQ(buffered(), 0u);

    run1(g_c3.port_id, from_a);   // the same frame from C stays in vni_b
    up = take(g_uplink.port_id);
    ASSERT_EQ(up.size(), 1u);
    EXPECT_EQ(hex(up[0]), hex(expected_encap(from_a, sport_of(up[0]), vni_b, v3_ip, v3_mac)));
    EXPECT_EQ(buffered(), 0u);

    // C cannot resolve B (vni_a), and unicast to B's MAC is unknown in vni_b: flooded there.
    run1(g_c3.port_id, eth(bcast, a_mac, 0x0806, arp(1, a_mac, a_ip, mac(0, 0, 0, 0, 0, 0), b_ip)));
    EXPECT_EQ(drops(drop_reason::arp_unknown_target), 1u);
    run1(g_c3.port_id, udp_frame(b_mac, a_mac, a_ip, b_ip));
    EXPECT_EQ(take(g_c2.port_id).size(), 0u);
    EXPECT_EQ(take(g_uplink.port_id).size(), 1u);

    // Decap: the same inner MAC goes to A or C by VNI, broadcast only within its VNI.
    const bytes inner = udp_frame(a_mac, s_mac, s_ip, a_ip);
    run1(g_uplink.port_id, vxlan_frame(v3_ip, vni_b, inner));
    EXPECT_EQ(take(g_c3.port_id).size(), 1u);
    EXPECT_EQ(buffered(), 0u);
    run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_a, udp_frame(bcast, r_mac, r_ip, ip4(10, 0, 1, 255))));
    EXPECT_EQ(take(g_c1.port_id).size(), 1u);
    EXPECT_EQ(take(g_c2.port_id).size(), 1u);
    EXPECT_EQ(take(g_small.port_id).size(), 1u);
    EXPECT_EQ(buffered(), 0u);
}

TEST_F(dp_paths, mtu) {
    // Inner IP packet of exactly the MTU passes, one byte more is dropped.
    const size_t fits = mtu - 20 - 8;
    run1(g_c1.port_id, udp_frame(r_mac, a_mac, a_ip, r_ip, fits));
    auto out = take(g_uplink.port_id);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].size(), 14u + mtu + 50u);
    run1(g_c1.port_id, udp_frame(r_mac, a_mac, a_ip, r_ip, fits + 1));
    run1(g_c1.port_id, udp_frame(b_mac, a_mac, a_ip, b_ip, fits + 1));
    EXPECT_EQ(drops(drop_reason::mtu_exceeded), 2u);
    EXPECT_EQ(buffered(), 0u);
}

// A network created elsewhere with a larger MTU than this host's uplink can carry:
// the writer clamps the effective MTU to uplink MTU - 50, so the frame is counted here
// rather than lost on the wire.
TEST_F(dp_paths, network_mtu_is_clamped_to_the_uplink) {
    const ctl::network_spec jumbo{vni_a, 8950, ip4(10, 0, 1, 0), ip4(255, 255, 255, 0), gw_ip};
    ASSERT_EQ(tw_->upsert_network(jumbo), 0);
    run1(g_c1.port_id, udp_frame(r_mac, a_mac, a_ip, r_ip, 1450 - 28));   // IP 1450: fits 1500 - 50
    EXPECT_EQ(take(g_uplink.port_id).size(), 1u);
    run1(g_c1.port_id, udp_frame(r_mac, a_mac, a_ip, r_ip, 1451 - 28));   // IP 1451: does not
    EXPECT_EQ(drops(drop_reason::mtu_exceeded), 1u);
    EXPECT_EQ(buffered(), 0u);
}

// One container flooding must not drain the pool: head-end replication draws from a
// per-worker token bucket (burst = max(rate/10, 64) frames, copies included).
TEST_F(dp_paths, bum_replication_is_rate_limited) {
    config_snapshot cfg = *tw_->tables().config.load();
    cfg.bum_frames_per_sec = 100;   // burst of 64 frames; refills 1 per 10 ms
    ASSERT_EQ(tw_->set_config(cfg), 0);
    const bytes bcast_frame = udp_frame(bcast, a_mac, a_ip, ip4(10, 0, 1, 255));
    uint64_t sent = 0;
    for (int i = 0; i < 200; i++) {
        run1(g_c1.port_id, bcast_frame);
        for (uint16_t p = 0; p < RTE_MAX_ETHPORTS; p++)
            sent += take(p).size();
    }
    const uint64_t limited = drops(drop_reason::bum_rate_limited);
    EXPECT_GT(limited, 100u);            // most of the 200 were refused ...
    EXPECT_GE(sent, 60u);                // ... after the burst went out
    EXPECT_LE(sent, 64u + 10u);          // (plus what refilled while the test ran)
    EXPECT_EQ(buffered(), 0u);
}

// The budget is per network: a storm that spends vni_a's leaves vni_b's broadcasts (its
// ARP) alone.
TEST_F(dp_paths, a_broadcast_storm_spends_only_its_own_networks_budget) {
    config_snapshot cfg = *tw_->tables().config.load();
    cfg.bum_frames_per_sec = 100;
    ASSERT_EQ(tw_->set_config(cfg), 0);
    const bytes storm = udp_frame(bcast, a_mac, a_ip, ip4(10, 0, 1, 255));
    for (int i = 0; i < 200; i++) {
        run1(g_c1.port_id, storm);
        for (uint16_t p = 0; p < RTE_MAX_ETHPORTS; p++)
            take(p);
    }
    const uint64_t limited = drops(drop_reason::bum_rate_limited);
    ASSERT_GT(limited, 100u) << "the storm must have spent vni_a's budget";
    // C in vni_b broadcasts: one copy to S's VTEP.
    run1(g_c3.port_id, storm);
    EXPECT_EQ(drops(drop_reason::bum_rate_limited), limited) << "vni_b paid for vni_a's storm";
    EXPECT_EQ(take(g_uplink.port_id).size(), 1u);
}

TEST_F(dp_paths, bum_replication_and_unknown_unicast) {
    const bytes f = udp_frame(mac(0x01, 0x00, 0x5e, 0, 0, 1), a_mac, a_ip, ip4(224, 0, 0, 1));
    const bytes unknown = udp_frame(mac(0x02, 0x42, 10, 0, 1, 200), a_mac, a_ip, ip4(10, 0, 1, 200));
    for (const bytes& frame : {f, unknown}) {
        run1(g_c1.port_id, frame);
        for (uint16_t p : {g_c2.port_id, g_small.port_id}) {
            auto out = take(p);
            ASSERT_EQ(out.size(), 1u);
            EXPECT_EQ(hex(out[0]), hex(frame));
        }
        auto up = take(g_uplink.port_id);
        ASSERT_EQ(up.size(), 1u);
        EXPECT_EQ(hex(up[0]), hex(expected_encap(frame, sport_of(up[0]), vni_a, v1_ip, v1_mac)));
        EXPECT_EQ(buffered(), 0u);
    }
    EXPECT_EQ(w_->stats.networks[tw_->network_slot(vni_a)].flood_packets.get(), 2u);
    EXPECT_EQ(total_drops(), 0u);
}

TEST_F(dp_paths, tx_flush_sends_and_counts) {
    const bytes f = udp_frame(b_mac, a_mac, a_ip, b_ip);
    run(g_c1.port_id, {f, f, f});
    dp::tx_flush(*w_);
    EXPECT_EQ(w_->n_dirty, 0u);
    rte_mbuf* pkts[8];
    const uint16_t n = rte_eth_rx_burst(g_c2.port_id, 0, pkts, 8);   // the ring loops back
    ASSERT_EQ(n, 3u);
    for (uint16_t i = 0; i < n; i++)
        EXPECT_EQ(hex(from_mbuf(pkts[i])), hex(f));
    rte_pktmbuf_free_bulk(pkts, n);
    EXPECT_EQ(w_->stats.ports[g_c2.port_id].tx_packets.get(), 3u);
    EXPECT_EQ(w_->stats.ports[g_c2.port_id].tx_bytes.get(), 3 * f.size());

    // A burst larger than the TX buffer is sent as it fills; the 16-slot ring takes 15.
    std::vector<bytes> many(40, udp_frame(d_mac, a_mac, a_ip, d_ip));
    run(g_c1.port_id, many);
    dp::tx_flush(*w_);
    EXPECT_EQ(w_->stats.ports[g_small.port_id].tx_packets.get(), 15u);
    EXPECT_EQ(drops(drop_reason::tx_full), 25u);
    EXPECT_EQ(w_->stats.ports[g_small.port_id].dropped_packets.get(), 25u);
}

// Encapsulated frames across a full TX buffer: the uplink's buffer is filled up and sent
// when more come, the port listed once in the dirty list, the frames in order, with
// their packets and bytes counted on the port, the network and the VTEP. Encapsulation
// appends a burst's frames at once (tx_enqueue_bulk()), so the runs below split the
// frames differently around the buffer's 32: 40 in one run (worker bursts of 32 + 8),
// 20 + 20 (12 fill the buffer, 8 wait after it), 10 + 22 (exactly full: it waits).
TEST_F(dp_paths, encap_bursts_fill_the_uplink_buffer_in_order) {
    struct split {
        std::vector<uint16_t> runs;
        uint16_t sent_before_flush;
        uint16_t buffered;
    };
    auto& pc = w_->stats.ports[g_uplink.port_id];
    const auto& nc = w_->stats.networks[tw_->network_slot(vni_a)];
    const auto& vc = w_->stats.vteps[tw_->vtep_slot(v1_ip)];
    for (const split& sp : {split{{40}, 32, 8}, split{{20, 20}, 32, 8}, split{{10, 22}, 0, 32}}) {
        SCOPED_TRACE("first run " + std::to_string(sp.runs[0]));
        const uint64_t tx_before = pc.tx_packets.get(), bytes_before = pc.tx_bytes.get();
        const uint64_t net_before = nc.encap_packets.get(), net_bytes_before = nc.encap_bytes.get();
        const uint64_t vtep_before = vc.tx_packets.get(), vtep_bytes_before = vc.tx_bytes.get();
        std::vector<bytes> frames;
        size_t inner_bytes = 0;
        for (uint16_t run_len : sp.runs) {
            std::vector<bytes> run_frames;
            for (uint16_t i = 0; i < run_len; i++) {
                const auto flow = static_cast<uint16_t>(1000 + frames.size());
                run_frames.push_back(udp_frame(r_mac, a_mac, a_ip, r_ip, static_cast<uint16_t>(20 + flow % 7), flow));
                inner_bytes += run_frames.back().size();
                frames.push_back(run_frames.back());
            }
            run(g_c1.port_id, run_frames);
        }
        EXPECT_EQ(std::count(w_->dirty, w_->dirty + w_->n_dirty, g_uplink.port_id), 1);
        EXPECT_EQ(w_->tx[g_uplink.port_id].n, sp.buffered);
        EXPECT_EQ(pc.tx_packets.get() - tx_before, sp.sent_before_flush);
        dp::tx_flush(*w_);
        EXPECT_EQ(w_->n_dirty, 0u);
        std::vector<bytes> out;
        rte_mbuf* pkts[64];
        const uint16_t n = rte_eth_rx_burst(g_uplink.port_id, 0, pkts, 64);   // the ring loops back
        for (uint16_t i = 0; i < n; i++)
            out.push_back(from_mbuf(pkts[i]));
        rte_pktmbuf_free_bulk(pkts, n);
        ASSERT_EQ(out.size(), frames.size());
        for (size_t i = 0; i < out.size(); i++)
            EXPECT_EQ(hex(out[i]), hex(expected_encap(frames[i], sport_of(out[i]), vni_a, v1_ip, v1_mac))) << i;
        size_t bytes_out = 0;
        for (const bytes& o : out)
            bytes_out += o.size();
        EXPECT_EQ(bytes_out, inner_bytes + 50 * frames.size());
        EXPECT_EQ(pc.tx_packets.get() - tx_before, frames.size());
        EXPECT_EQ(pc.tx_bytes.get() - bytes_before, bytes_out);
        EXPECT_EQ(nc.encap_packets.get() - net_before, frames.size());
        EXPECT_EQ(nc.encap_bytes.get() - net_bytes_before, inner_bytes);
        EXPECT_EQ(vc.tx_packets.get() - vtep_before, frames.size());
        EXPECT_EQ(vc.tx_bytes.get() - vtep_bytes_before, bytes_out);
    }
    EXPECT_EQ(total_drops(), 0u);
}

// A frame whose mbuf has no room for the outer headers (our pools never make one) is a
// counted drop between two frames that are encapsulated: freed once, left out of the
// uplink's buffer and of every counter but the drop's.
TEST_F(dp_paths, encap_without_headroom_is_dropped_alone) {
    const unsigned avail_before = rte_mempool_avail_count(g_pool);
    const bytes f0 = udp_frame(r_mac, a_mac, a_ip, r_ip, 20, 1);
    const bytes f1 = udp_frame(r_mac, a_mac, a_ip, r_ip, 20, 2);
    const bytes f2 = udp_frame(r_mac, a_mac, a_ip, r_ip, 20, 3);
    rte_mbuf* pkts[3] = {to_mbuf(g_pool, f0), to_mbuf(g_pool, f1), to_mbuf(g_pool, f2)};
    for (rte_mbuf* m : pkts)
        ASSERT_NE(m, nullptr);
    // f1 moved to 10 bytes from the buffer's start: 50 do not fit in front of it
    std::memmove(static_cast<uint8_t*>(pkts[1]->buf_addr) + 10, rte_pktmbuf_mtod(pkts[1], void*), f1.size());
    pkts[1]->data_off = 10;
    ASSERT_EQ(from_mbuf(pkts[1]), f1);
    dp::process_burst(*w_, g_c1.port_id, pkts, 3);

    EXPECT_EQ(drops(drop_reason::malformed), 1u);
    EXPECT_EQ(total_drops(), 1u);
    EXPECT_EQ(w_->stats.ports[g_c1.port_id].dropped_packets.get(), 1u);
    EXPECT_EQ(w_->tx[g_uplink.port_id].bytes, f0.size() + f2.size() + 2 * 50);
    const auto& nc = w_->stats.networks[tw_->network_slot(vni_a)];
    EXPECT_EQ(nc.encap_packets.get(), 2u);
    EXPECT_EQ(nc.encap_bytes.get(), f0.size() + f2.size());
    EXPECT_EQ(w_->stats.vteps[tw_->vtep_slot(v1_ip)].tx_packets.get(), 2u);
    auto out = take(g_uplink.port_id);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(hex(out[0]), hex(expected_encap(f0, sport_of(out[0]), vni_a, v1_ip, v1_mac)));
    EXPECT_EQ(hex(out[1]), hex(expected_encap(f2, sport_of(out[1]), vni_a, v1_ip, v1_mac)));
    EXPECT_EQ(rte_mempool_avail_count(g_pool), avail_before);
}

TEST_F(dp_paths, commands_are_executed_and_acknowledged) {
    rte_ring* cmds = rte_ring_create_elem("cmdt", sizeof(command), 16, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(cmds, nullptr);
    w_->cmd_ring = cmds;
    const command c[] = {{command::kind::assign_rxq, g_c1.port_id, 0, 1},
                         {command::kind::assign_rxq, g_c2.port_id, 0, 2},
                         {command::kind::assign_rxq, g_c1.port_id, 0, 3},
                         {command::kind::unassign_rxq, g_c1.port_id, 0, 4}};
    ASSERT_EQ(rte_ring_enqueue_bulk_elem(cmds, c, sizeof(command), 4, nullptr), 4u);
    dp::drain_commands(*w_);
    EXPECT_EQ(w_->cmd_ack.load(), 4u);
    ASSERT_EQ(w_->n_rxqs, 1u);
    EXPECT_EQ(w_->rxqs[0].port, g_c2.port_id);
    w_->cmd_ring = nullptr;
    rte_ring_free(cmds);
}

// The control thread transmits through worker 0's inject ring. A command is acknowledged
// only after every packet injected before it has been handed to its port, which is what
// makes port removal safe (nothing injected for the port can still be in flight).
TEST_F(dp_paths, injected_packets_are_sent_before_a_command_is_acknowledged) {
    rte_ring* cmds = rte_ring_create_elem("cmdi", sizeof(command), 16, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    rte_ring* inject = rte_ring_create("inj", 16, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(cmds, nullptr);
    ASSERT_NE(inject, nullptr);
    w_->cmd_ring = cmds;
    w_->inject_ring = inject;

    const bytes f = arp(1, vtep_mac, vtep_ip, mac(0, 0, 0, 0, 0, 0), v1_ip);
    const bytes frame = eth(bcast, vtep_mac, 0x0806, f);
    rte_mbuf* m = to_mbuf(g_pool, frame);
    ASSERT_NE(m, nullptr);
    m->port = g_c2.port_id;
    ASSERT_EQ(rte_ring_enqueue(inject, m), 0);
    command c{command::kind::unassign_rxq, g_c2.port_id, 0, 7};
    ASSERT_EQ(rte_ring_enqueue_elem(cmds, &c, sizeof(command)), 0);

    dp::drain_commands(*w_);
    EXPECT_EQ(w_->cmd_ack.load(), 7u);
    EXPECT_EQ(buffered(), 0u);
    rte_mbuf* pkts[4];
    const uint16_t n = rte_eth_rx_burst(g_c2.port_id, 0, pkts, 4);   // the ring loops back
    ASSERT_EQ(n, 1u);
    EXPECT_EQ(hex(from_mbuf(pkts[0])), hex(frame));
    rte_pktmbuf_free_bulk(pkts, n);
    EXPECT_EQ(w_->stats.ports[g_c2.port_id].tx_packets.get(), 1u);

    // Without commands pending nothing is drained by drain_commands; the loop's own
    // inject stage picks packets up.
    m = to_mbuf(g_pool, frame);
    ASSERT_NE(m, nullptr);
    m->port = g_c1.port_id;
    ASSERT_EQ(rte_ring_enqueue(inject, m), 0);
    dp::drain_commands(*w_);
    EXPECT_EQ(rte_ring_count(inject), 1u);
    dp::inject_burst(*w_);
    EXPECT_EQ(take(g_c1.port_id).size(), 1u);

    w_->cmd_ring = nullptr;
    w_->inject_ring = nullptr;
    rte_ring_free(cmds);
    rte_ring_free(inject);
}

TEST_F(dp_paths, frames_dropped_while_unconfigured_or_unbound) {
    ctl::table_limits small;
    small.max_endpoints = 8;
    small.max_networks = 2;
    small.max_vteps = 2;
    auto bare = ctl::table_writer::create("bare", small);   // no config published
    ASSERT_NE(bare, nullptr);
    w_->tables = &bare->tables();
    run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r_mac, r_ip, a_ip)));
    run1(g_c1.port_id, udp_frame(b_mac, a_mac, a_ip, b_ip));
    EXPECT_EQ(drops(drop_reason::not_for_us), 2u);
    w_->tables = &tw_->tables();
    bare.reset();
}

/// Every reason in drop_reasons.def, provoked on purpose and seen on its counter.
TEST_F(dp_paths, every_drop_reason_is_reachable) {
    const bytes inner_to_a = udp_frame(a_mac, r_mac, r_ip, a_ip);
    std::map<drop_reason, std::function<void()>> provoke = {
        {drop_reason::malformed, [&] { run1(g_c1.port_id, bytes(10, 0)); }},
        {drop_reason::port_unbound, [&] { run1(unbound_port, udp_frame(b_mac, a_mac, a_ip, b_ip)); }},
        {drop_reason::spoofed_mac, [&] { run1(g_c1.port_id, udp_frame(b_mac, b_mac, a_ip, b_ip)); }},
        {drop_reason::spoofed_ip, [&] { run1(g_c1.port_id, udp_frame(b_mac, a_mac, b_ip, b_ip)); }},
        {drop_reason::no_network, [&] {
             // A binding whose network is gone: only a race produces it with the writer.
             static const port_binding stray{stray_port, 999, vni_to_wire(999), a_ip, a_mac, 0};
             tw_->tables().ports[stray_port].store(&stray, std::memory_order_release);
             run1(stray_port, udp_frame(b_mac, a_mac, a_ip, b_ip));
             tw_->tables().ports[stray_port].store(nullptr, std::memory_order_release);
         }},
        {drop_reason::arp_unknown_target, [&] {
             run1(g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(1, a_mac, a_ip, mac(0, 0, 0, 0, 0, 0), ip4(10, 0, 1, 99))));
         }},
        {drop_reason::arp_unsupported, [&] { run1(g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(2, a_mac, a_ip, b_mac, b_ip))); }},
        {drop_reason::unsupported_ethertype, [&] { run1(g_c1.port_id, eth(b_mac, a_mac, 0x86dd, pattern(60))); }},
        {drop_reason::no_route, [&] { run1(g_c1.port_id, udp_frame(gw_mac, a_mac, a_ip, ip4(8, 8, 8, 8))); }},
        {drop_reason::hairpin, [&] { run1(g_c1.port_id, udp_frame(a_mac, a_mac, a_ip, a_ip)); }},
        {drop_reason::mtu_exceeded, [&] { run1(g_c1.port_id, udp_frame(r_mac, a_mac, a_ip, r_ip, 1500)); }},
        {drop_reason::vtep_unresolved, [&] { run1(g_c1.port_id, udp_frame(r2_mac, a_mac, a_ip, r2_ip)); }},
        {drop_reason::unknown_vtep, [&] { run1(g_uplink.port_id, vxlan_frame(ip4(198, 18, 0, 99), vni_a, inner_to_a)); }},
        {drop_reason::unknown_vni, [&] { run1(g_uplink.port_id, vxlan_frame(v1_ip, 555, inner_to_a)); }},
        {drop_reason::vxlan_bad_flags, [&] { run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_a, inner_to_a, 0x00)); }},
        {drop_reason::outer_ip_invalid, [&] {
             bytes f = vxlan_frame(v1_ip, vni_a, inner_to_a);
             f[24] ^= 0x01;   // IPv4 header checksum
             run1(g_uplink.port_id, f);
         }},
        {drop_reason::outer_fragment, [&] { run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_a, inner_to_a, 0x08, 0x2000)); }},
        {drop_reason::not_for_us, [&] {
             run1(g_uplink.port_id, eth(vtep_mac, v1_mac, 0x0800, ipv4(v1_ip, vtep_ip, 17, udp(1, 53, pattern(30)))));
         }},
        {drop_reason::inner_src_not_remote, [&] { run1(g_uplink.port_id, vxlan_frame(v3_ip, vni_a, inner_to_a)); }},
        {drop_reason::unknown_dst, [&] { run1(g_uplink.port_id, vxlan_frame(v1_ip, vni_a, udp_frame(mac(2, 0x42, 9, 9, 9, 9), r_mac, r_ip, a_ip))); }},
        {drop_reason::bum_rate_limited, [&] {
             config_snapshot cfg = *tw_->tables().config.load();
             cfg.bum_frames_per_sec = 1;   // burst of 64
             ASSERT_EQ(tw_->set_config(cfg), 0);
             for (int i = 0; i < 40; i++)   // 2+ frames out per broadcast: the bucket runs dry
                 run1(g_c1.port_id, udp_frame(bcast, a_mac, a_ip, ip4(10, 0, 1, 255)));
             cfg.bum_frames_per_sec = 0;
             ASSERT_EQ(tw_->set_config(cfg), 0);
         }},
        {drop_reason::replication_failed, [&] {
             rte_mempool* tiny = make_pool("tiny", 2);
             rte_mbuf* hold[2];
             ASSERT_EQ(rte_pktmbuf_alloc_bulk(tiny, hold, 2), 0);
             w_->pool = tiny;
             run1(g_c1.port_id, udp_frame(bcast, a_mac, a_ip, ip4(10, 0, 1, 255)));
             w_->pool = g_pool;
             rte_pktmbuf_free_bulk(hold, 2);
             rte_mempool_free(tiny);
         }},
        {drop_reason::exception_ring_full, [&] {
             const bytes reply = eth(vtep_mac, v1_mac, 0x0806, arp(2, v1_mac, v1_ip, vtep_mac, vtep_ip));
             run(g_uplink.port_id, {reply, reply, reply, reply});
         }},
        {drop_reason::tx_full, [&] {
             run(g_c1.port_id, std::vector<bytes>(20, udp_frame(d_mac, a_mac, a_ip, d_ip)));
             dp::tx_flush(*w_);
         }},
    };
    // Reasons that cannot be provoked from outside, with why. (None so far.)
    const std::set<drop_reason> impossible = {};

    for (size_t i = 0; i < drop_reason_count; i++) {
        const auto r = static_cast<drop_reason>(i);
        SCOPED_TRACE(drop_reason_names[i]);
        if (impossible.count(r) != 0)
            continue;
        auto it = provoke.find(r);
        ASSERT_NE(it, provoke.end()) << "no test provokes drop reason " << drop_reason_names[i];
        const uint64_t before = drops(r);
        it->second();
        EXPECT_GT(drops(r), before) << drop_reason_names[i];
        for (uint16_t p = 0; p < RTE_MAX_ETHPORTS; p++)
            take(p);
    }
}

/// Decap judges the common frame in one pass and everything else step by step: every
/// single-bit flip of the 50 outer header bytes must get the step-by-step verdict of
/// the field it lands in, whichever path decides.
TEST_F(dp_paths, decap_outer_header_bit_flips_are_judged_field_by_field) {
    const bytes good = vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r_mac, r_ip, a_ip));
    constexpr int delivered = -1;
    auto verdict_at = [](size_t off, int bit) -> int {
        if (off < 6)
            return static_cast<int>(drop_reason::not_for_us);   // destination MAC
        if (off < 12)
            return delivered;                                    // source MAC
        if (off < 14)
            return static_cast<int>(drop_reason::not_for_us);   // EtherType
        if (off < 34)
            return static_cast<int>(drop_reason::outer_ip_invalid);   // IPv4: the checksum catches any flip
        if (off < 36)
            return delivered;                                    // UDP source port
        if (off < 38)
            return static_cast<int>(drop_reason::not_for_us);   // UDP destination port
        if (off < 40)
            return static_cast<int>(drop_reason::malformed);    // UDP length
        if (off < 42)
            return delivered;                                    // UDP checksum (not checked)
        if (off == 42)   // VXLAN flags: only I counts (RFC 7348)
            return bit == 3 ? static_cast<int>(drop_reason::vxlan_bad_flags) : delivered;
        if (off < 46 || off == 49)
            return delivered;                                    // reserved
        return static_cast<int>(drop_reason::unknown_vni);      // VNI
    };
    for (size_t off = 0; off < 50; off++) {
        for (int bit = 0; bit < 8; bit++) {
            SCOPED_TRACE("byte " + std::to_string(off) + " bit " + std::to_string(bit));
            bytes f = good;
            f[off] ^= static_cast<uint8_t>(1u << bit);
            std::array<uint64_t, drop_reason_count> before{};
            for (size_t r = 0; r < drop_reason_count; r++)
                before[r] = drops(static_cast<drop_reason>(r));
            run1(g_uplink.port_id, f);
            const int want = verdict_at(off, bit);
            EXPECT_EQ(take(g_c1.port_id).size(), want == delivered ? 1u : 0u);
            for (size_t r = 0; r < drop_reason_count; r++)
                EXPECT_EQ(drops(static_cast<drop_reason>(r)) - before[r], static_cast<int>(r) == want ? 1u : 0u)
                    << drop_reason_names[r];
        }
    }
}

/// The same with the outer IPv4 checksum made right again after each change, so that
/// each check of a header field has to catch its own field.
TEST_F(dp_paths, decap_outer_fields_with_valid_checksums_are_judged_field_by_field) {
    const bytes good = vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r_mac, r_ip, a_ip));
    auto fix_ip_csum = [](bytes& f) {
        const size_t hl = (f[14] & 0x0fu) * 4u;
        f[24] = f[25] = 0;
        const uint16_t c = inet_csum(&f[14], hl);
        f[24] = static_cast<uint8_t>(c >> 8);
        f[25] = static_cast<uint8_t>(c);
    };
    auto set_total = [](bytes& f, int delta) {
        const int total = (f[16] << 8 | f[17]) + delta;
        f[16] = static_cast<uint8_t>(total >> 8);
        f[17] = static_cast<uint8_t>(total);
    };
    auto set_src = [](bytes& f, rte_be32_t ip) { std::memcpy(&f[26], &ip, 4); };
    struct variant {
        const char* what;
        std::function<void(bytes&)> change;
        std::optional<drop_reason> verdict;   // nullopt: delivered to A
    };
    const std::vector<variant> variants = {
        {"another destination address", [](bytes& f) { f[33] ^= 1; }, drop_reason::not_for_us},
        {"more fragments", [](bytes& f) { f[20] |= 0x20; }, drop_reason::outer_fragment},
        {"a fragment offset", [](bytes& f) { f[21] = 1; }, drop_reason::outer_fragment},
        {"don't fragment", [](bytes& f) { f[20] |= 0x40; }, std::nullopt},
        {"TOS, ID and TTL", [](bytes& f) { f[15] = 0xb8; f[18] = 0x12; f[22] = 1; }, std::nullopt},
        {"TCP", [](bytes& f) { f[23] = 6; }, drop_reason::not_for_us},
        {"version 6", [](bytes& f) { f[14] = 0x65; }, drop_reason::outer_ip_invalid},
        {"IHL 4", [](bytes& f) { f[14] = 0x44; }, drop_reason::outer_ip_invalid},
        {"total length past the frame", [&](bytes& f) { set_total(f, 1); }, drop_reason::outer_ip_invalid},
        // The last byte becomes Ethernet padding; UDP's length no longer fits.
        {"total length short of the frame", [&](bytes& f) { set_total(f, -1); }, drop_reason::malformed},
        {"4 bytes of IPv4 options", [&](bytes& f) {
             f.insert(f.begin() + 34, {1, 1, 1, 1});   // NOPs
             f[14] = 0x46;
             set_total(f, 4);
         }, std::nullopt},
        {"Ethernet padding", [](bytes& f) { f.insert(f.end(), 8, 0); }, std::nullopt},
        // R lives behind v1: another VTEP may not speak for it.
        {"another known VTEP", [&](bytes& f) { set_src(f, v3_ip); }, drop_reason::inner_src_not_remote},
        {"an unknown VTEP", [&](bytes& f) { set_src(f, ip4(198, 18, 0, 99)); }, drop_reason::unknown_vtep},
    };
    for (const variant& v : variants) {
        SCOPED_TRACE(v.what);
        bytes f = good;
        v.change(f);
        fix_ip_csum(f);
        std::array<uint64_t, drop_reason_count> before{};
        for (size_t r = 0; r < drop_reason_count; r++)
            before[r] = drops(static_cast<drop_reason>(r));
        run1(g_uplink.port_id, f);
        const std::vector<bytes> out = take(g_c1.port_id);
        if (!v.verdict.has_value()) {
            ASSERT_EQ(out.size(), 1u);
            EXPECT_EQ(out[0], udp_frame(a_mac, r_mac, r_ip, a_ip)) << "the inner frame, without padding";
        } else {
            EXPECT_EQ(out.size(), 0u);
        }
        for (size_t r = 0; r < drop_reason_count; r++)
            EXPECT_EQ(drops(static_cast<drop_reason>(r)) - before[r], v.verdict == static_cast<drop_reason>(r) ? 1u : 0u)
                << drop_reason_names[r];
    }
}

/// Where a frame from A (c1, vni_a) ended up: encapsulated to v1 only, flooded (c2,
/// g_small and v1), handed to the control thread, or dropped for one reason.
struct encap_outcome {
    enum class kind { encap_v1, flood, control, dropped } what;
    drop_reason reason = drop_reason::malformed;   // with dropped
    bool operator==(const encap_outcome& o) const { return what == o.what && (what != kind::dropped || reason == o.reason); }
};
std::ostream& operator<<(std::ostream& os, const encap_outcome& o) {
    static const char* names[] = {"encap to v1", "flood", "to the control thread", "dropped"};
    os << names[static_cast<int>(o.what)];
    if (o.what == encap_outcome::kind::dropped)
        os << " (" << drop_reason_names[static_cast<size_t>(o.reason)] << ")";
    return os;
}

/// Encap judges the common frame in one pass and everything else step by step: every
/// single-bit flip of A's frame to R up to the end of its IPv4 header, and the frames
/// to the gateway and at the MTU, must get the step-by-step verdict.
TEST_F(dp_paths, encap_frame_checks_are_judged_field_by_field) {
    using k = encap_outcome::kind;
    auto outcome_of = [&](const bytes& f) -> encap_outcome {
        std::array<uint64_t, drop_reason_count> before{};
        for (size_t r = 0; r < drop_reason_count; r++)
            before[r] = drops(static_cast<drop_reason>(r));
        run1(g_c1.port_id, f);
        const auto up = take(g_uplink.port_id);
        const size_t c2 = take(g_c2.port_id).size(), small = take(g_small.port_id).size();
        const unsigned exc = rte_ring_count(exc_);
        void* m;
        while (rte_ring_dequeue(exc_, &m) == 0)
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        std::vector<drop_reason> dropped;
        for (size_t r = 0; r < drop_reason_count; r++)
            for (uint64_t d = before[r]; d < drops(static_cast<drop_reason>(r)); d++)
                dropped.push_back(static_cast<drop_reason>(r));
        const bool to_v1 = up.size() == 1 && up[0].size() == f.size() + 50 &&
                           std::equal(up[0].begin(), up[0].begin() + 6, v1_mac.addr_bytes) &&
                           std::equal(up[0].begin() + 50, up[0].end(), f.begin());
        if (!dropped.empty()) {
            if (dropped.size() != 1 || !up.empty() || c2 + small + exc != 0)
                ADD_FAILURE() << dropped.size() << " drops, and " << up.size() + c2 + small + exc << " frames out";
            return {k::dropped, dropped[0]};
        }
        if (exc == 1 && up.empty() && c2 + small == 0)
            return {k::control};
        if (to_v1 && c2 == 0 && small == 0 && exc == 0)
            return {k::encap_v1};
        if (to_v1 && c2 == 1 && small == 1 && exc == 0)
            return {k::flood};
        ADD_FAILURE() << "unexpected: uplink " << up.size() << ", c2 " << c2 << ", small " << small << ", control " << exc;
        return {k::dropped, drop_reason::malformed};
    };
    auto dropped = [](drop_reason r) { return encap_outcome{k::dropped, r}; };

    const bytes good = udp_frame(r_mac, a_mac, a_ip, r_ip);
    ASSERT_EQ(outcome_of(good), encap_outcome{k::encap_v1});
    auto verdict_at = [&](size_t off, int bit) -> encap_outcome {
        if (off < 6) {   // destination MAC (R: 02:42:0a:00:01:0a)
            if (off == 5 && bit == 0)
                return dropped(drop_reason::vtep_unresolved);   // R2, behind unresolved v2
            if (off == 5 && bit == 3)
                return dropped(drop_reason::hairpin);           // A itself
            return {k::flood};   // multicast (byte 0 bit 0) or unknown unicast
        }
        if (off < 12)
            return dropped(drop_reason::spoofed_mac);
        if (off < 14)
            return dropped(drop_reason::unsupported_ethertype);   // no single flip of 0800 is 0806
        if (off >= 26 && off < 30)
            return dropped(drop_reason::spoofed_ip);
        return {k::encap_v1};   // the rest of the inner IPv4 header is the container's business
    };
    for (size_t off = 0; off < 34; off++) {
        for (int bit = 0; bit < 8; bit++) {
            SCOPED_TRACE("byte " + std::to_string(off) + " bit " + std::to_string(bit));
            bytes f = good;
            f[off] ^= static_cast<uint8_t>(1u << bit);
            EXPECT_EQ(outcome_of(f), verdict_at(off, bit));
        }
    }

    const size_t at_mtu = mtu - 28;   // IPv4 and UDP headers: 14 + mtu bytes in all
    const struct {
        const char* what;
        bytes frame;
        encap_outcome verdict;
    } variants[] = {
        {"DNS to the gateway", eth(gw_mac, a_mac, 0x0800, ipv4(a_ip, gw_ip, 17, udp(1234, 53, pattern(20)))),
         {k::control}},
        {"DNS to the gateway's address, R's MAC", eth(r_mac, a_mac, 0x0800, ipv4(a_ip, gw_ip, 17, udp(1234, 53, pattern(20)))),
         {k::control}},
        {"other UDP to the gateway", eth(gw_mac, a_mac, 0x0800, ipv4(a_ip, gw_ip, 17, udp(1234, 54, pattern(20)))),
         dropped(drop_reason::no_route)},
        {"the gateway's address, R's MAC", eth(r_mac, a_mac, 0x0800, ipv4(a_ip, gw_ip, 17, udp(1234, 54, pattern(20)))),
         {k::encap_v1}},
        {"to the gateway's MAC, off the subnet", udp_frame(gw_mac, a_mac, a_ip, ip4(8, 8, 8, 8)), dropped(drop_reason::no_route)},
        {"exactly the MTU", udp_frame(r_mac, a_mac, a_ip, r_ip, at_mtu), {k::encap_v1}},
        {"one byte over the MTU", udp_frame(r_mac, a_mac, a_ip, r_ip, at_mtu + 1), dropped(drop_reason::mtu_exceeded)},
        {"broadcast", udp_frame(bcast, a_mac, a_ip, ip4(10, 0, 1, 255)), {k::flood}},
        {"an Ethernet header only", bytes(good.begin(), good.begin() + 14), dropped(drop_reason::malformed)},
    };
    for (const auto& v : variants) {
        SCOPED_TRACE(v.what);
        EXPECT_EQ(outcome_of(v.frame), v.verdict);
    }
    // Broadcast and multicast are flooded without an endpoint lookup (a unicast to an
    // unknown MAC is flooded after one).
    auto lookups = [&] { return w_->stats.endpoint_cache_hits.get() + w_->stats.endpoint_cache_misses.get(); };
    const uint64_t before = lookups();
    EXPECT_EQ(outcome_of(udp_frame(bcast, a_mac, a_ip, ip4(10, 0, 1, 255))), encap_outcome{k::flood});
    EXPECT_EQ(outcome_of(udp_frame(mac(0x01, 0, 0x5e, 0, 0, 1), a_mac, a_ip, ip4(239, 0, 0, 1))), encap_outcome{k::flood});
    EXPECT_EQ(lookups(), before);
    EXPECT_EQ(outcome_of(udp_frame(mac(2, 0x42, 9, 9, 9, 9), a_mac, a_ip, r_ip)), encap_outcome{k::flood});
    EXPECT_EQ(lookups(), before + 1);
}

/// The outer IPv4 checksum: a NIC's verdict (RTE_MBUF_F_RX_IP_CKSUM_GOOD or _BAD) is
/// trusted as it stands; without one, decap computes it.
TEST_F(dp_paths, decap_trusts_the_nics_outer_checksum_verdict) {
    bytes broken = vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r_mac, r_ip, a_ip));
    const bytes good = broken;
    broken[24] ^= 0x01;   // IPv4 header checksum
    auto run_flagged = [&](const bytes& f, uint64_t flags) {
        rte_mbuf* m = to_mbuf(g_pool, f);
        ASSERT_NE(m, nullptr);
        m->ol_flags |= flags;
        dp::process_burst(*w_, g_uplink.port_id, &m, 1);
    };
    run_flagged(broken, RTE_MBUF_F_RX_IP_CKSUM_GOOD);
    EXPECT_EQ(take(g_c1.port_id).size(), 1u);
    run_flagged(good, RTE_MBUF_F_RX_IP_CKSUM_BAD);
    EXPECT_EQ(take(g_c1.port_id).size(), 0u);
    EXPECT_EQ(drops(drop_reason::outer_ip_invalid), 1u);
    run_flagged(broken, RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN);
    EXPECT_EQ(drops(drop_reason::outer_ip_invalid), 2u);
    run_flagged(good, RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN);
    EXPECT_EQ(take(g_c1.port_id).size(), 1u);
    EXPECT_EQ(total_drops(), 2u);
}

/// Every prefix of a valid frame, on both paths: no crash, and each frame is accounted
/// for exactly once (a drop, a TX buffer or the exception ring).
TEST_F(dp_paths, truncated_frames_are_accounted_for) {
    struct path {
        uint16_t port;
        bytes frame;
    };
    const std::vector<path> paths = {
        {g_uplink.port_id, vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r_mac, r_ip, a_ip))},
        {g_uplink.port_id, vxlan_frame(v1_ip, vni_a, udp_frame(bcast, r_mac, r_ip, a_ip))},
        {g_uplink.port_id, eth(vtep_mac, v1_mac, 0x0800, ipv4(v1_ip, vtep_ip, 1, icmp_echo(8, 1, 1, pattern(16))))},
        {g_uplink.port_id, eth(bcast, v1_mac, 0x0806, arp(1, v1_mac, v1_ip, mac(0, 0, 0, 0, 0, 0), vtep_ip))},
        {g_c1.port_id, udp_frame(r_mac, a_mac, a_ip, r_ip)},
        {g_c1.port_id, udp_frame(bcast, a_mac, a_ip, r_ip)},
        {g_c1.port_id, eth(bcast, a_mac, 0x0806, arp(1, a_mac, a_ip, mac(0, 0, 0, 0, 0, 0), b_ip))},
    };
    for (const path& p : paths) {
        for (size_t len = 0; len <= p.frame.size(); len++) {
            const uint64_t drops_before = total_drops();
            run1(p.port, bytes(p.frame.begin(), p.frame.begin() + static_cast<long>(len)));
            const uint64_t outputs = buffered() + rte_ring_count(exc_);
            const uint64_t dropped = total_drops() - drops_before;
            // A BUM frame may be both delivered and, for one copy, nothing else.
            EXPECT_TRUE(dropped == 1 ? outputs == 0 : outputs >= 1) << "len " << len;
            for (uint16_t q = 0; q < RTE_MAX_ETHPORTS; q++)
                take(q);
            void* m;
            while (rte_ring_dequeue(exc_, &m) == 0)
                rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
    }
}

TEST_F(dp_paths, random_frames_are_accounted_for) {
    std::mt19937 rng(42);
    const bytes seeds[] = {vxlan_frame(v1_ip, vni_a, udp_frame(a_mac, r_mac, r_ip, a_ip)),
                           udp_frame(r_mac, a_mac, a_ip, r_ip),
                           eth(bcast, a_mac, 0x0806, arp(1, a_mac, a_ip, mac(0, 0, 0, 0, 0, 0), b_ip))};
    for (int i = 0; i < 3000; i++) {
        bytes f = seeds[i % 3];
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; k++)
            f[rng() % f.size()] = static_cast<uint8_t>(rng());
        f.resize(rng() % (f.size() + 1));
        const uint16_t port = (i % 3) == 0 ? g_uplink.port_id : g_c1.port_id;
        const uint64_t drops_before = total_drops();
        run1(port, f);
        const uint64_t outputs = buffered() + rte_ring_count(exc_);
        EXPECT_TRUE(total_drops() - drops_before == 1 ? outputs == 0 : outputs >= 1) << "frame " << i;
        for (uint16_t q = 0; q < RTE_MAX_ETHPORTS; q++)
            take(q);
        void* m;
        while (rte_ring_dequeue(exc_, &m) == 0)
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    }
    EXPECT_GT(total_drops(), 1000u);
    EXPECT_EQ(w_->stats.packets.get(), 3000u);
}

class ports_env : public ::testing::Environment {
public:
    void SetUp() override {
        g_pool = make_pool("dp_paths", 4095);
        g_uplink = make_ring_port("r_uplink", 1024, g_pool);
        g_c1 = make_ring_port("r_c1", 1024, g_pool);
        g_c2 = make_ring_port("r_c2", 1024, g_pool);
        g_c3 = make_ring_port("r_c3", 1024, g_pool);
        g_small = make_ring_port("r_small", 16, g_pool);
    }
    void TearDown() override {
        for (const ring_port& rp : {g_uplink, g_c1, g_c2, g_c3, g_small}) {
            rte_eth_dev_stop(rp.port_id);
            rte_eth_dev_close(rp.port_id);
            rte_ring_free(rp.ring);
        }
        rte_mempool_free(g_pool);
    }
};

} // namespace

int main(int argc, char** argv) {
    return run_dp_tests(argc, argv, new ports_env);
}
