// SPDX-License-Identifier: Apache-2.0
// runs on: init only (test binary: the main thread plays the control thread; a plain
// thread plays a worker registered on the QSBR variable)
//
// table_writer against EAL --no-huge, without ports: the endpoint records it reads back
// from its own tables (it keeps no copy of them), and the bounded defer queues of the
// endpoints and addresses tables under more deletes than they hold.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <rte_hash.h>
#include <rte_log.h>
#include <rte_rcu_qsbr.h>

#include "control/publish/table_writer.hpp"
#include "tests/dp/dp_support.hpp"

using namespace overpass;
using namespace overpass::test;

namespace {

constexpr uint32_t vni = 100;
const rte_be32_t vtep_a = ip4(198, 18, 0, 1);
const rte_be32_t vtep_b = ip4(198, 18, 0, 2);

rte_ether_addr nth_mac(uint32_t i) {
    return mac(0x02, 0x42, 0, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i));
}
rte_be32_t nth_ip(uint32_t i) {
    return ip4(10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i));
}

ctl::network_spec net_spec() {
    ctl::network_spec n{};
    n.vni = vni;
    n.mtu = 1450;
    n.subnet_be = ip4(10, 0, 0, 0);
    n.mask_be = ip4(255, 0, 0, 0);
    n.gateway_be = ip4(10, 0, 0, 1);
    return n;
}

/// The MAC the addresses table maps (vni, ip) to, or nothing.
bool address_owner(ctl::table_writer& tw, rte_be32_t ip, rte_ether_addr& owner) {
    const vni_ip_key k{vni_to_wire(vni), ip};
    void* data = nullptr;
    if (rte_hash_lookup_data(tw.tables().addresses, &k, &data) < 0)
        return false;
    owner = mac_from_data(data);
    return true;
}

std::unique_ptr<ctl::table_writer> make_writer(const char* name, uint32_t max_endpoints) {
    ctl::table_limits lim;
    lim.max_endpoints = max_endpoints;
    lim.max_networks = 4;
    lim.max_vteps = 4;
    return ctl::table_writer::create(name, lim);
}

endpoint_value endpoint_of(ctl::table_writer& tw, const rte_ether_addr& m) {
    const int slot = tw.network_slot(vni);
    EXPECT_GE(slot, 0);
    const uint64_t key = endpoint_key(static_cast<uint16_t>(slot), m);
    const uint32_t value = endpoint_lookup(tw.tables().endpoints, key, endpoint_hash(key));
    EXPECT_NE(value, 0u);
    return endpoint_value::from_word(value);
}

TEST(table_writer, endpoint_value_round_trips_through_its_word) {
    for (const auto where : {endpoint_value::location::local, endpoint_value::location::remote}) {
        for (const uint16_t index : {0, 1, 0xbeef, 0xffff}) {
            const endpoint_value v{where, index};
            ASSERT_NE(v.word(), 0u) << "0 is the table's 'not there'";
            ASSERT_LT(v.word(), 1u << endpoint_value::bits);
            const endpoint_value back = endpoint_value::from_word(v.word());
            EXPECT_EQ(back.where, v.where);
            EXPECT_EQ(back.index, v.index);
        }
    }
}

TEST(table_writer, records_are_read_back_from_the_tables) {
    auto tw = make_writer("tw_rec", 64);
    ASSERT_NE(tw, nullptr);
    ASSERT_EQ(tw->upsert_network(net_spec()), 0);
    const rte_ether_addr a = nth_mac(1), b = nth_mac(2);
    const rte_be32_t ip_a = nth_ip(1), ip_x = nth_ip(9);

    // Local, then moved behind a VTEP (implicitly created), then back: the VTEP goes.
    ASSERT_EQ(tw->upsert_local_endpoint(vni, ip_a, a, 3), 0);
    EXPECT_EQ(tw->upsert_local_endpoint(vni, nth_ip(2), b, 3), -EBUSY);   // one endpoint per port
    EXPECT_TRUE(endpoint_of(*tw, a).is_local());
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, ip_a, a, vtep_a), 0);
    EXPECT_EQ(tw->tables().ports[3].load(), nullptr);
    ASSERT_EQ(tw->vteps().size(), 1u);
    EXPECT_EQ(endpoint_of(*tw, a).index, tw->vtep_slot(vtep_a));
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, ip_a, a, vtep_b), 0);   // to another VTEP
    ASSERT_EQ(tw->vteps().size(), 1u);
    EXPECT_EQ(tw->vteps()[0].ip_be, vtep_b);
    ASSERT_EQ(tw->upsert_local_endpoint(vni, ip_a, a, 4), 0);
    EXPECT_TRUE(tw->vteps().empty());
    EXPECT_EQ(tw->size().endpoints, 1u);
    EXPECT_EQ(tw->size().addresses, 1u);

    // A new address in place: the old one goes.
    ASSERT_EQ(tw->upsert_local_endpoint(vni, ip_x, a, 4), 0);
    rte_ether_addr owner;
    EXPECT_FALSE(address_owner(*tw, ip_a, owner));
    ASSERT_TRUE(address_owner(*tw, ip_x, owner));
    EXPECT_TRUE(rte_is_same_ether_addr(&owner, &a));

    // The address moves to b; removing a leaves it to b.
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, ip_x, b, vtep_a), 0);
    EXPECT_EQ(tw->size().addresses, 1u);
    EXPECT_EQ(tw->size().endpoints, 2u);
    ASSERT_EQ(tw->remove_endpoint(vni, a), 0);
    EXPECT_EQ(tw->remove_endpoint(vni, a), -ENOENT);
    ASSERT_TRUE(address_owner(*tw, ip_x, owner));
    EXPECT_TRUE(rte_is_same_ether_addr(&owner, &b));
    EXPECT_EQ(tw->size().addresses, 1u);
    EXPECT_EQ(tw->tables().ports[4].load(), nullptr);

    // remove_vtep takes the endpoints behind it; an explicit VTEP stays until removed.
    ASSERT_EQ(tw->upsert_vtep(vtep_b), 0);
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(3), nth_mac(3), vtep_b), 0);
    ASSERT_EQ(tw->upsert_local_endpoint(vni, nth_ip(4), nth_mac(4), 5), 0);
    EXPECT_EQ(tw->size().endpoints, 3u);
    ASSERT_EQ(tw->remove_vtep(vtep_a), 0);
    EXPECT_EQ(tw->remove_endpoint(vni, b), -ENOENT);
    EXPECT_FALSE(address_owner(*tw, ip_x, owner));
    EXPECT_EQ(tw->size().endpoints, 2u);
    EXPECT_EQ(tw->size().vteps, 1u);
    ASSERT_EQ(tw->remove_endpoint(vni, nth_mac(3)), 0);
    EXPECT_EQ(tw->size().vteps, 1u);   // explicit: kept
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(3), nth_mac(3), vtep_b), 0);

    // remove_network takes every endpoint in it, and the implicit VTEPs with them.
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(5), nth_mac(5), vtep_a), 0);
    ASSERT_EQ(tw->remove_network(vni), 0);
    EXPECT_EQ(tw->size().endpoints, 0u);
    EXPECT_EQ(tw->size().addresses, 0u);
    EXPECT_EQ(tw->size().ports, 0u);
    EXPECT_EQ(tw->size().vteps, 1u);   // vtep_b is explicit
    EXPECT_EQ(tw->vtep_slot(vtep_a), -ENOENT);
}

/// A worker stand-in that reports quiescent only while the writer makes no progress
/// (that is, waits in rte_rcu_qsbr_synchronize()): grace periods then end only when the
/// writer asks for one, and whatever it deletes in between piles up in the defer queues.
class stalled_reader {
public:
    static constexpr unsigned thread_id = 1;

    stalled_reader(rte_rcu_qsbr* v, const std::atomic<uint64_t>& progress) : v_(v), progress_(progress) {
        rte_rcu_qsbr_thread_register(v_, thread_id);
        rte_rcu_qsbr_thread_online(v_, thread_id);
        t_ = std::thread([this] { run(); });
    }
    ~stalled_reader() {
        stop_.store(true);
        t_.join();
        rte_rcu_qsbr_thread_offline(v_, thread_id);
        rte_rcu_qsbr_thread_unregister(v_, thread_id);
    }

private:
    void run() {
        uint64_t seen = progress_.load();
        while (!stop_.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            const uint64_t now = progress_.load();
            if (now == seen)
                rte_rcu_qsbr_quiescent(v_, thread_id);
            seen = now;
        }
    }

    rte_rcu_qsbr* v_;
    const std::atomic<uint64_t>& progress_;
    std::atomic<bool> stop_{false};
    std::thread t_;
};

/// Captures the DPDK log (where rte_hash reports a defer queue overflow).
class log_capture {
public:
    log_capture() : f_(open_memstream(&buf_, &len_)) { rte_openlog_stream(f_); }
    ~log_capture() {
        rte_openlog_stream(nullptr);
        std::fclose(f_);
        std::free(buf_);
    }
    std::string text() {
        std::fflush(f_);
        return std::string(buf_, len_);
    }

private:
    char* buf_ = nullptr;
    size_t len_ = 0;
    FILE* f_;
};

// The workers' endpoint caches trust an entry only while dp_tables::endpoints_gen is
// the one it was cached under: every change of an existing endpoint must move it, a new
// endpoint need not (the caches hold hits only).
TEST(table_writer, endpoints_generation_moves_with_every_change_of_an_endpoint) {
    auto tw = make_writer("tw_gen", 64);
    ASSERT_NE(tw, nullptr);
    const auto gen = [&] { return tw->tables().endpoints_gen.load(std::memory_order_relaxed); };
    EXPECT_EQ(gen(), 1u) << "starts at 1: a zeroed cache entry (generation 0) is empty";
    ASSERT_EQ(tw->upsert_network(net_spec()), 0);
    const rte_ether_addr m = nth_mac(7);

    uint64_t g = gen();
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(7), m, vtep_a), 0);
    EXPECT_EQ(gen(), g) << "a new endpoint";
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(7), m, vtep_a), 0);
    EXPECT_EQ(gen(), g) << "the same record again";

    ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(8), m, vtep_a), 0);
    EXPECT_EQ(gen(), g) << "only its address changed, which workers do not read";
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(8), m, vtep_b), 0);
    EXPECT_GT(gen(), g) << "moved to another VTEP";
    g = gen();
    ASSERT_EQ(tw->upsert_local_endpoint(vni, nth_ip(8), m, 3), 0);
    EXPECT_GT(gen(), g) << "moved to a local port";
    g = gen();
    ASSERT_EQ(tw->remove_endpoint(vni, m), 0);
    EXPECT_GT(gen(), g) << "removed";
    g = gen();
    ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(9), nth_mac(9), vtep_a), 0);
    ASSERT_EQ(tw->remove_network(vni), 0);
    EXPECT_GT(gen(), g) << "its network removed";
    // The workers' endpoint caches key by network slot: a network given a slot ends
    // the generation, whatever was cached under the slot before.
    g = gen();
    ASSERT_EQ(tw->upsert_network(net_spec()), 0);
    EXPECT_GT(gen(), g) << "a network took a slot";
    g = gen();
    ASSERT_EQ(tw->upsert_network(net_spec()), 0);
    EXPECT_EQ(gen(), g) << "the same network again (same slot)";
}

// Endpoints whose MACs share one home bucket of the endpoints table fill it and the 32
// after it; the next one is refused with -ENOSPC, at once (no deleted entry to wait
// for), and leaves nothing behind: no entry, no address, counts unchanged.
TEST(table_writer, endpoints_crafted_for_one_bucket_are_refused_cleanly) {
    auto tw = make_writer("tw_far", 400);
    ASSERT_NE(tw, nullptr);
    ASSERT_EQ(tw->upsert_network(net_spec()), 0);
    const endpoint_table& t = tw->tables().endpoints;
    const auto slot = static_cast<uint16_t>(tw->network_slot(vni));
    constexpr uint32_t reach = (endpoint_table::max_displacement + 1) * endpoint_table::ways;
    std::vector<uint32_t> crafted;   // indexes i of nth_mac(i) homed at bucket 7
    for (uint32_t i = 1; crafted.size() < reach + 1; i++)
        if (endpoint_home_index(t, endpoint_hash(endpoint_key(slot, nth_mac(i)))) == 7)
            crafted.push_back(i);
    for (uint32_t k = 0; k < reach; k++)
        ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(crafted[k]), nth_mac(crafted[k]), vtep_a), 0) << k;
    const uint32_t last = crafted[reach];
    EXPECT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(last), nth_mac(last), vtep_a), -ENOSPC);
    EXPECT_EQ(tw->size().endpoints, reach);
    EXPECT_EQ(tw->size().addresses, reach);
    rte_ether_addr owner;
    EXPECT_FALSE(address_owner(*tw, nth_ip(last), owner));
    EXPECT_EQ(tw->remove_endpoint(vni, nth_mac(last)), -ENOENT);
    // Room made near home: it fits (after the deleted entry's grace period, which
    // no registered reader delays here).
    ASSERT_EQ(tw->remove_endpoint(vni, nth_mac(crafted[0])), 0);
    EXPECT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(last), nth_mac(last), vtep_a), 0);
    EXPECT_EQ(endpoint_of(*tw, nth_mac(last)).index, tw->vtep_slot(vtep_a));
}

TEST(table_writer, more_deletes_than_the_defer_queue_holds_lose_no_slot) {
    // 100k endpoints: tables of 125k entries, defer queues capped at 65535 entries.
    constexpr uint32_t n = 100000;
    auto tw = make_writer("tw_dq", n);
    ASSERT_NE(tw, nullptr);
    log_capture log;
    std::atomic<uint64_t> progress{0};
    stalled_reader reader(tw->tables().qsbr, progress);

    auto add_all = [&] {
        for (uint32_t i = 0; i < n; i++) {
            ASSERT_EQ(tw->upsert_remote_endpoint(vni, nth_ip(i), nth_mac(i), vtep_a), 0) << i;
            progress.fetch_add(1);
        }
        EXPECT_EQ(tw->size().endpoints, n);
        EXPECT_EQ(tw->size().addresses, n);
    };
    ASSERT_EQ(tw->upsert_network(net_spec()), 0);
    add_all();
    // 200k deletes (endpoints and addresses) one by one, then the table full again.
    for (uint32_t i = 0; i < n; i++) {
        ASSERT_EQ(tw->remove_endpoint(vni, nth_mac(i)), 0) << i;
        progress.fetch_add(1);
    }
    EXPECT_EQ(tw->size().endpoints, 0u);
    EXPECT_EQ(tw->size().addresses, 0u);
    add_all();
    // The same through remove_network (collected, then deleted in a row).
    ASSERT_EQ(tw->remove_network(vni), 0);
    EXPECT_EQ(tw->size().endpoints, 0u);
    ASSERT_EQ(tw->upsert_network(net_spec()), 0);
    add_all();
    EXPECT_EQ(log.text().find("Failed to push"), std::string::npos) << log.text();
}

} // namespace

int main(int argc, char** argv) { return run_dp_tests(argc, argv); }
