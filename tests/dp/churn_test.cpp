// SPDX-License-Identifier: Apache-2.0
// runs on: init only (test binary: the main lcore plays the control thread, lcore 1 runs
// the real worker_main)
//
// RCU churn: while the worker forwards traffic between ring-backed ports, the control
// side overwrites and removes endpoints, networks, VTEPs, the config snapshot and port
// bindings as fast as it can. Entries that stay (A -> B local, A -> R remote) must not
// lose a packet. Values live on the C++ heap, so a missing grace period shows up as
// heap-use-after-free under ASan (meson setup build-asan -Db_sanitize=address,undefined).
#include <algorithm>
#include <cerrno>
#include <memory>
#include <new>

#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_pause.h>

#include "control/publish/table_writer.hpp"
#include "overpass/dataplane.hpp"
#include "tests/dp/dp_support.hpp"

using namespace overpass;
using namespace overpass::test;

namespace {

constexpr uint32_t vni = 100;
constexpr uint32_t vni_other = 200;
constexpr int iterations = 200000;
constexpr unsigned churn_macs = 16;

const rte_ether_addr vtep_mac = mac(0x02, 0, 0, 0, 0, 0x01);
const rte_be32_t vtep_ip = ip4(198, 18, 0, 1);
const rte_be32_t v1_ip = ip4(198, 18, 0, 2);
const rte_ether_addr v1_mac = mac(0x02, 0, 0, 0, 0, 0x02);
const rte_be32_t a_ip = ip4(10, 0, 1, 2);
const rte_ether_addr a_mac = mac(0x02, 0x42, 10, 0, 1, 2);
const rte_be32_t b_ip = ip4(10, 0, 1, 3);
const rte_ether_addr b_mac = mac(0x02, 0x42, 10, 0, 1, 3);
const rte_be32_t r_ip = ip4(10, 0, 1, 10);
const rte_ether_addr r_mac = mac(0x02, 0x42, 10, 0, 1, 10);

rte_ether_addr churn_mac(unsigned k) { return mac(0x02, 0x42, 10, 0, 2, static_cast<uint8_t>(k)); }
rte_be32_t churn_ip(unsigned k) { return ip4(10, 0, 2, static_cast<uint8_t>(k)); }
rte_be32_t churn_vtep(unsigned k) { return ip4(198, 18, 1, static_cast<uint8_t>(k % 4)); }

bool same_mac(const bytes& f, size_t off, const rte_ether_addr& m) {
    return f.size() >= off + 6 && std::equal(m.addr_bytes, m.addr_bytes + 6, f.begin() + static_cast<long>(off));
}

TEST(dp_churn, stable_entries_lose_nothing_while_tables_churn) {
    ASSERT_GE(rte_lcore_count(), 2u) << "needs -l 0-1";
    const unsigned worker_lcore = rte_get_next_lcore(rte_lcore_id(), 1, 0);
    rte_mempool* pool = make_pool("churn", 8191);
    const ring_port uplink = make_ring_port("ch_up", 4096, pool);
    const ring_port c1 = make_ring_port("ch_c1", 4096, pool);
    const ring_port c2 = make_ring_port("ch_c2", 4096, pool);

    ctl::table_limits lim;
    lim.max_endpoints = 128;
    lim.max_networks = 8;
    lim.max_vteps = 16;
    auto tw = ctl::table_writer::create("churn", lim);
    ASSERT_NE(tw, nullptr);
    config_snapshot cfg{};
    cfg.uplink_port = uplink.port_id;
    cfg.vtep_mac = vtep_mac;
    cfg.vtep_ip_be = vtep_ip;
    cfg.vxlan_port_be = rte_cpu_to_be_16(default_vxlan_port);
    cfg.uplink_mtu = 1500;
    const ctl::network_spec net{vni, 1450, ip4(10, 0, 1, 0), ip4(255, 255, 255, 0), ip4(10, 0, 1, 1)};
    const ctl::network_spec other{vni_other, 1450, ip4(10, 0, 1, 0), ip4(255, 255, 255, 0), ip4(10, 0, 1, 1)};
    ASSERT_EQ(tw->set_config(cfg), 0);
    ASSERT_EQ(tw->upsert_network(net), 0);
    ASSERT_EQ(tw->upsert_local_endpoint(vni, a_ip, a_mac, c1.port_id), 0);
    ASSERT_EQ(tw->upsert_local_endpoint(vni, b_ip, b_mac, c2.port_id), 0);
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, r_ip, r_mac, v1_ip), 0);
    ASSERT_EQ(tw->resolve_vtep(v1_ip, v1_mac), 0);

    void* mem = rte_zmalloc("churn_worker", sizeof(worker), RTE_CACHE_LINE_SIZE);
    ASSERT_NE(mem, nullptr);
    auto* w = new (mem) worker;
    w->lcore_id = worker_lcore;
    w->tables = &tw->tables();
    w->pool = pool;
    w->idle_polls_before_sleep = 64;
    w->idle_sleep_us = 20;
    w->rxqs[w->n_rxqs++] = rxq_ref{c1.port_id, 0};   // only A's port: outputs stay in their rings
    ASSERT_EQ(rte_eal_remote_launch(dp::worker_main, w, worker_lcore), 0);

    const bytes to_b = eth(b_mac, a_mac, 0x0800, ipv4(a_ip, b_ip, 17, udp(1000, 80, pattern(64))));
    const bytes to_r = eth(r_mac, a_mac, 0x0800, ipv4(a_ip, r_ip, 17, udp(1001, 80, pattern(64))));
    const bytes bcast_frame = eth(bcast, a_mac, 0x0800, ipv4(a_ip, ip4(10, 0, 1, 255), 17, udp(1002, 80, pattern(32))));
    uint64_t sent_b = 0, sent_r = 0, got_b = 0, got_r = 0;

    auto drain = [&] {
        void* objs[64];
        unsigned n;
        while ((n = rte_ring_dequeue_burst(c2.ring, objs, 64, nullptr)) != 0) {
            for (unsigned i = 0; i < n; i++) {
                auto* m = static_cast<rte_mbuf*>(objs[i]);
                const bytes f = from_mbuf(m);
                got_b += same_mac(f, 0, b_mac) && f.size() == to_b.size();
                rte_pktmbuf_free(m);
            }
        }
        while ((n = rte_ring_dequeue_burst(uplink.ring, objs, 64, nullptr)) != 0) {
            for (unsigned i = 0; i < n; i++) {
                auto* m = static_cast<rte_mbuf*>(objs[i]);
                const bytes f = from_mbuf(m);
                got_r += same_mac(f, 0, v1_mac) && same_mac(f, 50, r_mac);
                rte_pktmbuf_free(m);
            }
        }
    };

    for (int it = 0; it < iterations; it++) {
        const unsigned k = static_cast<unsigned>(it) % churn_macs;
        // Traffic: stable flows, churning destinations and broadcast.
        if ((sent_b - got_b) + (sent_r - got_r) < 512) {
            const bytes to_churn = eth(churn_mac(k), a_mac, 0x0800, ipv4(a_ip, churn_ip(k), 17, udp(1003, 80, pattern(16))));
            const bytes* frames[] = {&to_b, &to_r, &to_b, &to_churn, &to_r, &bcast_frame};
            rte_mbuf* pkts[6];
            unsigned made = 0;
            while (made < 6 && (pkts[made] = to_mbuf(pool, *frames[made])) != nullptr)
                made++;
            if (made == 6 && rte_ring_enqueue_bulk(c1.ring, reinterpret_cast<void**>(pkts), 6, nullptr) == 6) {
                sent_b += 2;
                sent_r += 2;
            } else {
                rte_pktmbuf_free_bulk(pkts, made);
            }
        }
        drain();

        // Churn: every kind of replace and delete the writer does.
        switch (it % 8) {
        case 0:
            EXPECT_EQ(tw->upsert_remote_endpoint(vni, churn_ip(k), churn_mac(k), churn_vtep(k)), 0);
            break;
        case 1:
            // The VTEP may be gone with its last endpoint: -ENOENT is the writer's answer.
            if (int rc = tw->resolve_vtep(churn_vtep(k), mac(0x02, 0, 0, 1, 0, static_cast<uint8_t>(it)));
                rc != 0 && rc != -ENOENT)
                ADD_FAILURE() << "resolve_vtep: " << rc;
            break;
        case 2:
            if (int rc = tw->remove_endpoint(vni, churn_mac((k + 8) % churn_macs)); rc != 0 && rc != -ENOENT)
                ADD_FAILURE() << "remove_endpoint: " << rc;
            break;
        case 3:
            EXPECT_EQ(tw->upsert_network(net), 0);
            if ((it / 8) % 2 == 0) {
                EXPECT_EQ(tw->upsert_network(other), 0);
                EXPECT_EQ(tw->upsert_remote_endpoint(vni_other, churn_ip(k), churn_mac(k), churn_vtep(k + 1)), 0);
            } else {
                EXPECT_EQ(tw->remove_network(vni_other), 0);
            }
            break;
        case 4:
            EXPECT_EQ(tw->set_config(cfg), 0);
            break;
        case 5:
            EXPECT_EQ(tw->upsert_local_endpoint(vni, b_ip, b_mac, c2.port_id), 0);
            break;
        case 6:
            EXPECT_EQ(tw->upsert_remote_endpoint(vni, r_ip, r_mac, v1_ip), 0);
            EXPECT_EQ(tw->resolve_vtep(v1_ip, v1_mac), 0);
            break;
        case 7:
            EXPECT_EQ(tw->upsert_local_endpoint(vni, a_ip, a_mac, c1.port_id), 0);
            break;
        }
        tw->reclaim();   // what the control thread's timer does
    }

    // Let the worker finish what is queued, then stop it.
    for (uint64_t spins = 0; spins < 200000000 && (got_b < sent_b || got_r < sent_r); spins++) {
        drain();
        rte_pause();
    }
    w->stop.store(true, std::memory_order_relaxed);
    ASSERT_EQ(rte_eal_wait_lcore(worker_lcore), 0);
    drain();

    EXPECT_EQ(got_b, sent_b) << "local frames lost for a stable endpoint";
    EXPECT_EQ(got_r, sent_r) << "encapsulated frames lost for a stable remote endpoint";
    EXPECT_GT(sent_b, 1000u);
    EXPECT_EQ(w->stats.drops[static_cast<size_t>(drop_reason::tx_full)].get(), 0u);
    EXPECT_EQ(w->stats.drops[static_cast<size_t>(drop_reason::port_unbound)].get(), 0u);
    EXPECT_EQ(w->stats.drops[static_cast<size_t>(drop_reason::no_network)].get(), 0u);
    EXPECT_EQ(w->stats.drops[static_cast<size_t>(drop_reason::replication_failed)].get(), 0u);
    std::printf("sent %lu+%lu, busy polls %lu, idle polls %lu, sleeps %lu, retire backlog %u\n",
                static_cast<unsigned long>(sent_b), static_cast<unsigned long>(sent_r),
                static_cast<unsigned long>(w->stats.busy_polls.get()),
                static_cast<unsigned long>(w->stats.idle_polls.get()),
                static_cast<unsigned long>(w->stats.sleeps.get()), tw->size().retire_backlog);

    tw->synchronize();
    EXPECT_EQ(tw->size().retire_backlog, 0u);
    w->~worker();
    rte_free(w);
    tw.reset();
    for (const ring_port& rp : {uplink, c1, c2}) {
        rte_eth_dev_stop(rp.port_id);
        rte_eth_dev_close(rp.port_id);
        rte_ring_free(rp.ring);
    }
    EXPECT_TRUE(rte_mempool_full(pool)) << "mbuf leak";
    rte_mempool_free(pool);
}

} // namespace

int main(int argc, char** argv) { return run_dp_tests(argc, argv); }
