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
    up.rx_missed_packets = 3;
    port_sample tap;
    tap.port_id = 1;
    tap.name = "net_tap0";
    tap.kind = "tap";
    tap.endpoint = "app1";
    tap.rx_packets = 5;
    tap.rx_bytes = 5 * 142;
    tap.dropped_packets = 7;
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

/// Gives counter i of `fields` the value base + i in every item.
template <typename Sample, std::size_t N>
void number_counters(std::vector<Sample>& items, const counter_field<Sample> (&fields)[N], uint64_t base) {
    for (Sample& x : items)
        for (std::size_t i = 0; i < N; i++)
            x.*fields[i].value = base + i;
}

/// Every counter of `fields` is in each JSON row under its name, and in Prometheus as
/// overpass_<scope>_<family>_total (with the family's label, in seconds for TSC cycles),
/// and the JSON rows hold nothing else but `identity`.
template <typename Sample, std::size_t N, typename LabelsOf>
void expect_one_name(const stats_snapshot& s, const nlohmann::json& rows, const std::string& scope,
                     const counter_field<Sample> (&fields)[N], const std::vector<Sample>& items,
                     std::size_t identity, LabelsOf labels_of) {
    const auto fams = to_families(s, info);
    ASSERT_EQ(rows.size(), items.size());
    for (std::size_t i = 0; i < items.size(); i++) {
        EXPECT_EQ(rows[i].size(), identity + N) << rows[i].dump();
        for (const counter_field<Sample>& f : fields) {
            const uint64_t v = items[i].*f.value;
            EXPECT_EQ(rows[i][f.name], v) << scope << " " << f.name;
            std::string family = f.family;
            label_set l = labels_of(items[i]);
            if (const auto open = family.find('{'); open != std::string::npos) {
                const auto eq = family.find('=', open);
                l[family.substr(open + 1, eq - open - 1)] = family.substr(eq + 1, family.size() - eq - 2);
                family.resize(open);
            }
            const double want = f.unit == counter_unit::cycles ? static_cast<double>(v) / static_cast<double>(s.tsc_hz)
                                                               : static_cast<double>(v);
            EXPECT_EQ(value(fams, "overpass_" + scope + "_" + family + "_total", l), want) << scope << " " << f.name;
        }
    }
}

TEST(metrics, one_name_per_counter_in_json_and_prometheus) {
    stats_snapshot s = sample();
    number_counters(s.ports, port_fields, 100);
    number_counters(s.workers, worker_fields, 200);
    number_counters(s.networks, network_fields, 300);
    number_counters(s.vteps, vtep_fields, 400);
    const nlohmann::json j = to_json(s);
    expect_one_name(s, j["ports"], "port", port_fields, s.ports, 5, [](const port_sample& p) {
        return label_set{{"port", p.name}, {"endpoint", p.endpoint}, {"kind", p.kind}};
    });
    expect_one_name(s, j["workers"], "worker", worker_fields, s.workers, 1,
                    [](const worker_sample& w) { return label_set{{"lcore", std::to_string(w.lcore)}}; });
    expect_one_name(s, j["networks"], "network", network_fields, s.networks, 2, [](const network_sample& n) {
        return label_set{{"network", n.name}, {"vni", std::to_string(n.vni)}};
    });
    expect_one_name(s, j["vteps"], "vtep", vtep_fields, s.vteps, 3,
                    [](const vtep_sample& v) { return label_set{{"vtep", v.ip}}; });
}

TEST(metrics, families_shared_by_counters_agree) {
    // Worker counters that name one family (polls{result=busy}, polls{result=idle}) are
    // of one unit and differ by the value of one label.
    struct family {
        std::set<std::string> label_keys, members;
        std::set<counter_unit> units;
    };
    std::map<std::string, family> fams;
    for (const auto& f : worker_fields) {
        const std::string name = f.family;
        const auto open = name.find('{');
        family& fam = fams[name.substr(0, open)];
        fam.label_keys.insert(open == std::string::npos ? "" : name.substr(open + 1, name.find('=') - open - 1));
        EXPECT_TRUE(fam.members.insert(name).second) << name << " twice";
        fam.units.insert(f.unit);
    }
    for (const auto& [stem, fam] : fams) {
        EXPECT_EQ(fam.units.size(), 1u) << stem;
        EXPECT_EQ(fam.label_keys.size(), 1u) << stem;
        EXPECT_TRUE(fam.members.size() == 1 || *fam.label_keys.begin() != "") << stem << ": shared without a label";
    }
}

TEST(metrics, every_counter_is_documented) {
    std::ifstream in(OVERPASS_SOURCE_ROOT "/docs/metrics.md");
    ASSERT_TRUE(in) << "docs/metrics.md missing";
    std::stringstream doc;
    doc << in.rdbuf();
    // Its name, as /v1/stats, telemetry and `overpass stats` show it, is in the names table.
    auto documented = [&](const char* scope, const char* name) {
        EXPECT_NE(doc.str().find(std::string("| ") + scope + " | `" + name + "` |"), std::string::npos)
            << scope << " counter " << name << " is not in the names table of docs/metrics.md";
    };
    for (const auto& f : port_fields)
        documented("port", f.name);
    for (const auto& f : worker_fields)
        documented("worker", f.name);
    for (const auto& f : network_fields)
        documented("network", f.name);
    for (const auto& f : vtep_fields)
        documented("vtep", f.name);
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
