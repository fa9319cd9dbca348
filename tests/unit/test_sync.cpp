// SPDX-License-Identifier: Apache-2.0
// runs on: unit tests (no EAL)
#include <gtest/gtest.h>

#include "control/store/keys.hpp"
#include "control/sync/sync.hpp"
#include "tests/unit/test_support.hpp"

using namespace overpass::ctl;
using overpass::test::fake_table_writer;

namespace {

const std::string self_host = "hostA";
const rte_be32_t self_vtep = rte_cpu_to_be_32(0xc6120001);   // 198.18.0.1

kv_item net(const std::string& id, uint32_t vni, const std::string& cidr, uint16_t mtu = 1450) {
    const ipv4_prefix p = parse_prefix(cidr);
    return {keys::net_meta(id), to_value(net_meta{id, "n" + id, vni, p, p.addr + 1, mtu, "x"}), 1, 1};
}
kv_item host(const std::string& id, const std::string& vtep) {
    return {keys::host(id), to_value(host_record{vtep, 4789}), 1, 1};
}
kv_item ep(const std::string& net_id, const std::string& ip, const std::string& host_id, const std::string& vtep) {
    const uint32_t a = *parse_ipv4(ip);
    return {keys::endpoint(net_id, a), to_value(endpoint_record{"e" + ip, format_mac(mac_for_ip(a)), host_id, vtep, "tap"}), 1, 1};
}

struct sync_test : ::testing::Test {
    fake_table_writer tw;
    std::vector<std::string> vteps_added;
    sync_engine engine{tw, sync_identity{self_host, self_vtep},
                       [this](rte_be32_t v) { vteps_added.push_back(overpass::test::ip_str(v)); }};
};

} // namespace

TEST_F(sync_test, snapshot_applies_in_dependency_order_and_skips_own_endpoints) {
    engine.on_snapshot(kv_snapshot{{ep("n1", "10.0.2.3", "hostB", "198.18.0.2"), net("n1", 4096, "10.0.2.0/24"),
                                    host("hostA", "198.18.0.1"), host("hostB", "198.18.0.2"),
                                    ep("n1", "10.0.2.2", self_host, "198.18.0.1")},
                                   7});
    EXPECT_EQ(tw.calls, (std::vector<std::string>{
                            "upsert_vtep 198.18.0.2",
                            "upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1450",
                            "upsert_remote_endpoint 4096 10.0.2.3 02:42:0a:00:02:03 via 198.18.0.2",
                        }));
    EXPECT_EQ(vteps_added, std::vector<std::string>{"198.18.0.2"});
    EXPECT_EQ(engine.counters().applied_revision, 7u);
    EXPECT_EQ(engine.counters().table_errors, 0u);
    EXPECT_EQ(engine.counters().store_errors, 0u);
}

TEST_F(sync_test, store_state_follows_the_watch) {
    EXPECT_FALSE(engine.store_up());   // nothing read yet
    EXPECT_EQ(engine.last_sync(), std::chrono::steady_clock::time_point{});
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24")}, 3});
    EXPECT_TRUE(engine.store_up());
    EXPECT_EQ(engine.network_names().at(4096), "nn1");   // net() names network "n1" "nn1"
    const auto synced = engine.last_sync();
    EXPECT_NE(synced, std::chrono::steady_clock::time_point{});
    engine.on_error("connection refused");
    engine.on_error("connection refused");
    EXPECT_FALSE(engine.store_up());
    EXPECT_EQ(engine.counters().store_errors, 2u);
    EXPECT_EQ(engine.counters().table_errors, 0u);
    EXPECT_EQ(engine.last_sync(), synced);   // an error is not a sync
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24")}, 4});
    EXPECT_TRUE(engine.store_up());
    EXPECT_EQ(engine.counters().applied_revision, 4u);
    // A watch that recovers without a snapshot (a blocking query answers again, an etcd
    // stream is re-established from its revision) delivers changes: the store is up.
    engine.on_error("HTTP 500");
    EXPECT_FALSE(engine.store_up());
    engine.on_changes({}, 5);
    EXPECT_TRUE(engine.store_up());
}

TEST_F(sync_test, removals_go_endpoints_then_network_then_vtep) {
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24"), host("hostB", "198.18.0.2"),
                                    ep("n1", "10.0.2.3", "hostB", "198.18.0.2")},
                                   3});
    tw.calls.clear();
    // hostB died (its session took the host key and the endpoint) and n1 was removed.
    std::vector<kv_delta> d{{kv_delta::kind::del, host("hostB", "198.18.0.2")},
                            {kv_delta::kind::del, net("n1", 4096, "10.0.2.0/24")},
                            {kv_delta::kind::del, ep("n1", "10.0.2.3", "hostB", "198.18.0.2")}};
    engine.on_changes(d, 4);
    EXPECT_EQ(tw.calls, (std::vector<std::string>{"remove_endpoint 4096 02:42:0a:00:02:03", "remove_network 4096",
                                                  "remove_vtep 198.18.0.2"}));
    EXPECT_TRUE(engine.applied().networks.empty());
    EXPECT_EQ(engine.counters().applied_revision, 4u);
}

TEST_F(sync_test, changed_records_are_replaced_and_unchanged_ones_left_alone) {
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24"), ep("n1", "10.0.2.3", "hostB", "198.18.0.2")}, 1});
    tw.calls.clear();
    std::vector<kv_delta> d{{kv_delta::kind::put, net("n1", 4096, "10.0.2.0/24", 1400)},
                            {kv_delta::kind::put, ep("n1", "10.0.2.3", "hostC", "198.18.0.3")}};
    engine.on_changes(d, 2);
    EXPECT_EQ(tw.calls, (std::vector<std::string>{
                            "remove_endpoint 4096 02:42:0a:00:02:03",
                            "remove_vtep 198.18.0.2",
                            "upsert_vtep 198.18.0.3",
                            "upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1400",
                            "upsert_remote_endpoint 4096 10.0.2.3 02:42:0a:00:02:03 via 198.18.0.3",
                        }));
    tw.calls.clear();
    engine.on_changes({}, 3);
    EXPECT_TRUE(tw.calls.empty());
}

TEST_F(sync_test, bad_records_are_skipped_and_counted_once) {
    kv_item garbage{keys::net_meta("bad"), "{not json", 1, 1};
    kv_item bad_ep{keys::endpoint("n1", 0x0a000209), R"({"name":"x","mac":"nope","host":"hostB","vtep":"198.18.0.2"})", 1, 1};
    engine.on_snapshot(kv_snapshot{{garbage, bad_ep, net("n1", 4096, "10.0.2.0/24")}, 1});
    EXPECT_EQ(tw.calls, std::vector<std::string>{"upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1450"});
    EXPECT_EQ(engine.counters().skipped_records, 2u);
    engine.on_changes({}, 2);   // same bad records: not counted again
    EXPECT_EQ(engine.counters().skipped_records, 2u);
}

TEST_F(sync_test, failed_table_updates_are_counted_and_retried) {
    tw.fail_next = "upsert_network";
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24"), ep("n1", "10.0.2.3", "hostB", "198.18.0.2")}, 1});
    // The endpoint must not be programmed without its network.
    EXPECT_EQ(tw.calls, (std::vector<std::string>{"upsert_vtep 198.18.0.2",
                                                  "FAILED upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1450"}));
    EXPECT_EQ(engine.counters().table_errors, 2u);
    EXPECT_TRUE(engine.retry_pending());   // the agent's timer calls retry() while this holds
    tw.calls.clear();
    engine.retry();
    EXPECT_EQ(tw.calls, (std::vector<std::string>{
                            "upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1450",
                            "upsert_remote_endpoint 4096 10.0.2.3 02:42:0a:00:02:03 via 198.18.0.2",
                        }));
    EXPECT_FALSE(engine.retry_pending());
}

// The embedded DNS answers from this index: every endpoint of a network, this host's
// included, by name (case-insensitive), never across networks.
TEST_F(sync_test, names_resolve_within_their_network) {
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24"), net("n2", 4097, "10.0.3.0/24"),
                                    ep("n1", "10.0.2.3", "hostB", "198.18.0.2"),
                                    ep("n1", "10.0.2.2", self_host, "198.18.0.1"),
                                    ep("n2", "10.0.3.2", "hostB", "198.18.0.2")},
                       1});
    auto a = engine.resolve(4096, "e10.0.2.3");
    ASSERT_TRUE(a);
    EXPECT_EQ(overpass::test::ip_str(*a), "10.0.2.3");
    a = engine.resolve(4096, "E10.0.2.2");   // this host's own endpoint, other case
    ASSERT_TRUE(a);
    EXPECT_EQ(overpass::test::ip_str(*a), "10.0.2.2");
    EXPECT_FALSE(engine.resolve(4096, "e10.0.3.2"));   // lives in n2
    EXPECT_FALSE(engine.resolve(4097, "e10.0.2.3"));
    EXPECT_FALSE(engine.resolve(4096, "nobody"));
    // Gone from the store: gone from DNS.
    std::vector<kv_delta> d{{kv_delta::kind::del, ep("n1", "10.0.2.3", "hostB", "198.18.0.2")}};
    engine.on_changes(d, 2);
    EXPECT_FALSE(engine.resolve(4096, "e10.0.2.3"));
}

TEST_F(sync_test, resync_snapshot_replaces_the_view) {
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24"), net("n2", 4097, "10.0.3.0/24")}, 5});
    tw.calls.clear();
    engine.on_snapshot(kv_snapshot{{net("n2", 4097, "10.0.3.0/24")}, 9});
    EXPECT_EQ(tw.calls, std::vector<std::string>{"remove_network 4096"});
    EXPECT_EQ(engine.counters().snapshots, 2u);
}

// A network record that asks for a VNI another network holds is refused in favour of the
// one created first, whatever the ids' order; removing it leaves the first one as it was.
TEST_F(sync_test, a_vni_belongs_to_the_network_created_first) {
    kv_item first = net("n9", 4096, "10.0.2.0/24");
    first.create_rev = first.mod_rev = 3;
    kv_item late = net("n0", 4096, "10.0.7.0/24");   // its id sorts first
    late.create_rev = late.mod_rev = 8;
    engine.on_snapshot(kv_snapshot{{first, ep("n9", "10.0.2.3", "hostB", "198.18.0.2"), late,
                                    ep("n0", "10.0.7.3", "hostB", "198.18.0.2")},
                                   8});
    EXPECT_EQ(tw.calls, (std::vector<std::string>{
                            "upsert_vtep 198.18.0.2",
                            "upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1450",
                            "upsert_remote_endpoint 4096 10.0.2.3 02:42:0a:00:02:03 via 198.18.0.2",
                        }));
    EXPECT_EQ(engine.counters().skipped_records, 1u);
    EXPECT_EQ(engine.network_names().at(4096), "nn9");
    EXPECT_EQ(engine.resolve(4096, "e10.0.2.3"), rte_cpu_to_be_32(0x0a000203));
    EXPECT_FALSE(engine.resolve(4096, "e10.0.7.3").has_value());

    tw.calls.clear();
    const std::vector<kv_delta> gone{{kv_delta::kind::del, late}};
    engine.on_changes(gone, 9);
    EXPECT_TRUE(tw.calls.empty()) << "removing the refused record changes nothing";
}

// A record with the MAC of this host's endpoint, or of an endpoint created before it in
// the same network, is refused: it neither unbinds the endpoint nor, once deleted, takes
// the endpoint's table entry with it.
TEST_F(sync_test, a_mac_belongs_to_this_hosts_endpoint_or_the_first_one) {
    kv_item mine = ep("n1", "10.0.2.2", self_host, "198.18.0.1");
    mine.create_rev = mine.mod_rev = 9;   // younger than the impostor: ours wins anyway
    kv_item impostor{keys::endpoint("n1", 0x0a000209),
                     to_value(endpoint_record{"evil", "02:42:0a:00:02:02", "hostB", "198.18.0.2", "tap"}), 5, 5};
    kv_item older = ep("n1", "10.0.2.3", "hostC", "198.18.0.3");
    older.create_rev = older.mod_rev = 2;
    kv_item copy{keys::endpoint("n1", 0x0a000201 + 0x10),   // 10.0.2.17, sorts before 10.0.2.3
                 to_value(endpoint_record{"copy", "02:42:0a:00:02:03", "hostB", "198.18.0.2", "tap"}), 6, 6};
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24"), mine, impostor, older, copy,
                                    host("hostB", "198.18.0.2"), host("hostC", "198.18.0.3")},
                                   9});
    EXPECT_EQ(tw.calls, (std::vector<std::string>{
                            "upsert_vtep 198.18.0.2",
                            "upsert_vtep 198.18.0.3",
                            "upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1450",
                            "upsert_remote_endpoint 4096 10.0.2.3 02:42:0a:00:02:03 via 198.18.0.3",
                        }));
    EXPECT_EQ(engine.counters().skipped_records, 2u);
    EXPECT_FALSE(engine.resolve(4096, "evil").has_value());
    EXPECT_FALSE(engine.resolve(4096, "copy").has_value());

    tw.calls.clear();
    const std::vector<kv_delta> gone{{kv_delta::kind::del, impostor}, {kv_delta::kind::del, copy}};
    engine.on_changes(gone, 10);
    EXPECT_TRUE(tw.calls.empty()) << "the refused records leave nothing to remove";
}

// Store values are range-checked: an MTU that does not fit (70000 was cut to 4464) or
// cannot work (0), a VNI or port beyond its width, an endpoint address outside its
// network or on its gateway, and a host reusing another host's VTEP are skipped.
TEST_F(sync_test, out_of_range_records_are_skipped) {
    kv_item mtu_big{keys::net_meta("n2"),
                    R"({"name":"big","vni":4097,"subnet":"10.0.3.0/24","gateway":"10.0.3.1","mtu":70000})", 1, 1};
    kv_item mtu_zero{keys::net_meta("n3"),
                     R"({"name":"zero","vni":4098,"subnet":"10.0.4.0/24","gateway":"10.0.4.1","mtu":0})", 1, 1};
    kv_item vni_wide{keys::net_meta("n4"),
                     R"({"name":"wide","vni":4294971392,"subnet":"10.0.5.0/24","gateway":"10.0.5.1","mtu":1450})", 1, 1};
    kv_item outside = ep("n1", "10.0.9.3", "hostB", "198.18.0.2");          // not in 10.0.2.0/24
    kv_item on_gateway = ep("n1", "10.0.2.1", "hostB", "198.18.0.2");
    kv_item thief = host("hostC", "198.18.0.2");                            // hostB's VTEP
    thief.create_rev = thief.mod_rev = 5;
    kv_item thiefs_ep = ep("n1", "10.0.2.7", "hostC", "198.18.0.2");
    engine.on_snapshot(kv_snapshot{{net("n1", 4096, "10.0.2.0/24"), mtu_big, mtu_zero, vni_wide, host("hostB", "198.18.0.2"),
                                    thief, ep("n1", "10.0.2.3", "hostB", "198.18.0.2"), outside, on_gateway, thiefs_ep},
                                   5});
    EXPECT_EQ(tw.calls, (std::vector<std::string>{
                            "upsert_vtep 198.18.0.2",
                            "upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1450",
                            "upsert_remote_endpoint 4096 10.0.2.3 02:42:0a:00:02:03 via 198.18.0.2",
                        }));
    EXPECT_EQ(engine.counters().skipped_records, 7u);
}

// Binary bytes from the store (a key written behind overpass's back, a value quoted in
// an error) are logged escaped, not raw.
TEST_F(sync_test, binary_records_are_logged_escaped) {
    const std::string id("bin\x1b[2J\xff", 8);
    kv_item binary{keys::net_meta(id), std::string("\x1b[2J\xff\x00zz", 7), 1, 1};
    kv_item bad_mac{keys::endpoint("n1", 0x0a000209),
                    to_value(endpoint_record{"x", std::string("\x1b[31m", 5), "hostB", "198.18.0.2", "tap"}), 1, 1};
    ::testing::internal::CaptureStderr();
    engine.on_snapshot(kv_snapshot{{binary, net("n1", 4096, "10.0.2.0/24"), bad_mac}, 1});
    const std::string logged = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(logged.find("skipping record overpass/v1/nets/bin\\x1b[2J\\xff/meta"), std::string::npos) << logged;
    for (const char c : logged)
        EXPECT_TRUE(c == '\n' || (c >= 0x20 && c < 0x7f)) << "raw byte " << int(static_cast<unsigned char>(c)) << " in: " << logged;
    EXPECT_EQ(engine.counters().skipped_records, 2u);
}
