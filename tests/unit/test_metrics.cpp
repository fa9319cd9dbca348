// SPDX-License-Identifier: Apache-2.0
// The Prometheus exposition and the JSON built from a hand-made snapshot (no EAL), the
// documentation of every family, and the cross-thread snapshot source.
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "control/metrics/exporter.hpp"
#include "control/metrics/exposition.hpp"

namespace overpass::ctl {
namespace {

stats_snapshot sample() {
    stats_snapshot s;
    s.now_unix = 1'800'000'000.0;
    s.start_unix = 1'799'999'000.0;
    s.tsc_hz = 2'000'000'000;
    s.drops[static_cast<std::size_t>(drop_reason::spoofed_ip)] = 7;
    port_sample up;
    up.port_id = 0;
    up.name = "net_af_packet0";
    up.kind = "uplink";
    up.rx_packets = 11;
    up.tx_packets = 12;
    up.rx_missed = 3;
    port_sample tap;
    tap.port_id = 1;
    tap.name = "net_tap0";
    tap.kind = "tap";
    tap.endpoint = "app1";
    tap.rx_packets = 5;
    tap.rx_bytes = 5 * 142;
    tap.drops = 7;
    s.ports = {up, tap};
    worker_sample w;
    w.lcore = 1;
    w.packets = 16;
    w.busy_polls = 4;
    w.idle_polls = 100;
    w.busy_cycles = 1'000'000'000;   // 0.5 s at 2 GHz
    w.idle_cycles = 3'000'000'000;
    w.endpoint_cache_hits = 900;
    w.endpoint_cache_misses = 7;
    s.workers = {w};
    network_sample n;
    n.name = "overlay-net";
    n.vni = 4096;
    n.encap_packets = 5;
    n.encap_bytes = 710;
    s.networks = {n};
    vtep_sample seen;
    seen.ip = "198.18.0.2";
    seen.resolved = true;
    seen.tx_packets = 5;
    seen.last_seen_unix = 1'799'999'990.0;
    vtep_sample never;
    never.ip = "198.18.0.3";
    s.vteps = {seen, never};
    s.tables = {{"endpoints", 3, 65536}, {"vteps", 2, 1024}};
    s.retire_backlog = 1;
    s.mbufs_in_use = 600;
    s.mbufs_available = 15784;
    control_sample c;
    c.store_up = true;
    c.registered = true;
    c.applied_revision = 42;
    c.store_errors = 2;
    c.renewals = 9;
    c.last_sync_unix = 1'799'999'980.0;
    c.last_renewal_unix = 1'799'999'997.0;
    c.local_endpoints = 1;
    c.remote_endpoints = 1;
    s.control = c;
    s.slow = slow_path::counters{};
    return s;
}

const build_info info{"0.1.0", "DPDK 22.11.11"};

using label_set = std::map<std::string, std::string>;

label_set labels_of(const prometheus::ClientMetric& m) {
    label_set l;
    for (const auto& x : m.label)
        l[x.name] = x.value;
    return l;
}

/// The value of family `name` at exactly `labels`; nullopt if there is no such series.
std::optional<double> value(const std::vector<prometheus::MetricFamily>& fams, const std::string& name,
                            const label_set& labels = {}) {
    for (const auto& f : fams) {
        if (f.name != name)
            continue;
        for (const auto& m : f.metric)
            if (labels_of(m) == labels)
                return f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
    return std::nullopt;
}

TEST(metrics, families_follow_prometheus_conventions) {
    const auto fams = to_families(sample(), info);
    std::set<std::string> names;
    for (const auto& f : fams) {
        EXPECT_TRUE(names.insert(f.name).second) << "family twice: " << f.name;
        EXPECT_EQ(f.name.rfind("overpass_", 0), 0u) << f.name;
        EXPECT_FALSE(f.help.empty()) << f.name;
        const bool total = f.name.size() > 6 && f.name.compare(f.name.size() - 6, 6, "_total") == 0;
        EXPECT_EQ(total, f.type == prometheus::MetricType::Counter) << f.name << ": _total iff counter";
        std::set<label_set> seen;
        for (const auto& m : f.metric)
            EXPECT_TRUE(seen.insert(labels_of(m)).second) << f.name << ": duplicate series";
    }
}

TEST(metrics, values_come_from_the_snapshot) {
    const auto fams = to_families(sample(), info);
    const label_set app1{{"port", "net_tap0"}, {"endpoint", "app1"}, {"kind", "tap"}};
    EXPECT_EQ(value(fams, "overpass_port_rx_packets_total", app1), 5);
    EXPECT_EQ(value(fams, "overpass_port_rx_bytes_total", app1), 710);
    EXPECT_EQ(value(fams, "overpass_port_dropped_packets_total", app1), 7);
    EXPECT_EQ(value(fams, "overpass_port_rx_missed_packets_total",
                    {{"port", "net_af_packet0"}, {"endpoint", ""}, {"kind", "uplink"}}),
              3);
    EXPECT_EQ(value(fams, "overpass_dropped_packets_total", {{"reason", "spoofed_ip"}}), 7);
    EXPECT_EQ(value(fams, "overpass_dropped_packets_total", {{"reason", "tx_full"}}), 0);   // every reason, always
    EXPECT_EQ(value(fams, "overpass_worker_busy_seconds_total", {{"lcore", "1"}}), 0.5);
    EXPECT_EQ(value(fams, "overpass_worker_idle_seconds_total", {{"lcore", "1"}}), 1.5);
    EXPECT_EQ(value(fams, "overpass_worker_polls_total", {{"lcore", "1"}, {"result", "idle"}}), 100);
    EXPECT_EQ(value(fams, "overpass_worker_endpoint_cache_lookups_total", {{"lcore", "1"}, {"result", "hit"}}), 900);
    EXPECT_EQ(value(fams, "overpass_worker_endpoint_cache_lookups_total", {{"lcore", "1"}, {"result", "miss"}}), 7);
    EXPECT_EQ(value(fams, "overpass_network_encap_bytes_total", {{"network", "overlay-net"}, {"vni", "4096"}}), 710);
    EXPECT_EQ(value(fams, "overpass_vtep_tx_packets_total", {{"vtep", "198.18.0.2"}}), 5);
    EXPECT_EQ(value(fams, "overpass_vtep_resolved", {{"vtep", "198.18.0.3"}}), 0);
    EXPECT_EQ(value(fams, "overpass_vtep_last_seen_timestamp_seconds", {{"vtep", "198.18.0.2"}}), 1'799'999'990.0);
    EXPECT_FALSE(value(fams, "overpass_vtep_last_seen_timestamp_seconds", {{"vtep", "198.18.0.3"}}))
        << "a VTEP never heard from has no last-seen series";
    EXPECT_EQ(value(fams, "overpass_table_capacity", {{"table", "vteps"}}), 1024);
    EXPECT_EQ(value(fams, "overpass_store_applied_revision"), 42);
    EXPECT_EQ(value(fams, "overpass_sync_errors_total", {{"kind", "store"}}), 2);
    // The newer of the last sync (20 s ago) and the last renewal (3 s ago).
    EXPECT_EQ(value(fams, "overpass_sync_age_seconds"), 3);
    EXPECT_EQ(value(fams, "overpass_build_info", {{"version", "0.1.0"}, {"dpdk_version", "DPDK 22.11.11"}}), 1);
}

TEST(metrics, a_removed_port_has_no_series) {
    stats_snapshot s = sample();
    EXPECT_NE(to_text(to_families(s, info)).find("endpoint=\"app1\""), std::string::npos);
    s.ports.pop_back();   // app1's port detached
    s.vteps.pop_back();
    const std::string text = to_text(to_families(s, info));
    EXPECT_EQ(text.find("endpoint=\"app1\""), std::string::npos) << text;
    EXPECT_EQ(text.find("198.18.0.3"), std::string::npos);
    EXPECT_NE(text.find("overpass_port_rx_packets_total{port=\"net_af_packet0\",endpoint=\"\",kind=\"uplink\"} 11"),
              std::string::npos)
        << text;
}

TEST(metrics, every_family_is_documented) {
    std::ifstream in(OVERPASS_SOURCE_ROOT "/docs/metrics.md");
    ASSERT_TRUE(in) << "docs/metrics.md missing";
    std::stringstream doc;
    doc << in.rdbuf();
    for (const auto& f : to_families(sample(), info))
        EXPECT_NE(doc.str().find("`" + f.name + "`"), std::string::npos) << f.name << " is not in docs/metrics.md";
}

TEST(metrics, json_has_every_section) {
    const nlohmann::json j = to_json(sample());
    EXPECT_EQ(j["drops"]["spoofed_ip"], 7);
    EXPECT_EQ(j["ports"][1]["endpoint"], "app1");
    EXPECT_EQ(j["workers"][0]["busy_cycles"], 1'000'000'000u);
    EXPECT_EQ(j["networks"][0]["vni"], 4096);
    EXPECT_EQ(j["vteps"][0]["last_seen_seconds"], 10.0);
    EXPECT_TRUE(j["vteps"][1]["last_seen_seconds"].is_null());
    EXPECT_EQ(j["tables"]["endpoints"], 3);
    EXPECT_EQ(j["store"]["up"], true);
    EXPECT_EQ(j["uptime_seconds"], 1000.0);
}

TEST(snapshot_source, reads_on_the_io_thread_and_stops_when_closed) {
    boost::asio::io_context io;
    auto guard = boost::asio::make_work_guard(io);
    std::thread control([&] { io.run(); });
    std::thread::id taken_on;
    snapshot_source src(io, [&] {
        taken_on = std::this_thread::get_id();
        return sample();
    });
    const auto s = src.fetch(std::chrono::seconds(5));
    ASSERT_TRUE(s);
    EXPECT_EQ(s->ports.size(), 2u);
    EXPECT_EQ(taken_on, control.get_id());
    src.close();
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(src.fetch(std::chrono::seconds(5)));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1)) << "closed: answers at once";
    guard.reset();
    io.stop();
    control.join();
}

TEST(snapshot_source, times_out_when_the_control_thread_does_not_run) {
    boost::asio::io_context io;   // never run
    snapshot_source src(io, [] { return sample(); });
    EXPECT_FALSE(src.fetch(std::chrono::milliseconds(50)));
    src.close();
}

} // namespace
} // namespace overpass::ctl
