// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/metrics/snapshot.hpp"

#include <chrono>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip.h>

#include "control/addressing.hpp"

namespace overpass::ctl {

namespace {

double unix_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// A steady_clock instant as Unix time (epoch = never).
std::optional<double> to_unix(std::chrono::steady_clock::time_point t, double now_unix) {
    if (t == std::chrono::steady_clock::time_point{})
        return std::nullopt;
    return now_unix - std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string ip_string(rte_be32_t be) { return format_ipv4(rte_be_to_cpu_32(be)); }

void read_workers(const worker_pool& workers, stats_snapshot& s) {
    for (unsigned w = 0; w < workers.size(); w++) {
        const lcore_stats& st = workers.at(w).stats;
        for (std::size_t r = 0; r < drop_reason_count; r++)
            s.drops[r] += st.drops[r].get();
        worker_sample ws;
        ws.lcore = workers.at(w).lcore_id;
#define OVP_WORKER_COUNTER(id, unit, family, help) ws.id = st.id.get();
#include "overpass/counters.def"
        s.workers.push_back(ws);
    }
}

void read_ports(const worker_pool& workers, const port_manager& ports, stats_snapshot& s) {
    for (const auto& [id, info] : ports.ports()) {
        port_sample p;
        p.port_id = id;
        p.name = info.name;
        p.kind = info.kind;
        p.endpoint = info.endpoint;
        p.detail = info.detail;
        for (unsigned w = 0; w < workers.size(); w++) {
            const port_counters& c = workers.at(w).stats.ports[id];
#define OVP_PORT_COUNTER(x, unit, help) p.x += c.x.get();
#include "overpass/counters.def"
        }
        if (rte_eth_stats es; rte_eth_stats_get(id, &es) == 0) {
#define OVP_PORT_DEVICE(x, field, help) p.x = es.field;
#include "overpass/counters.def"
        }
        s.ports.push_back(std::move(p));
    }
}

void read_tables(const worker_pool* workers, const table_writer& writer, const agent* ag, stats_snapshot& s) {
    const table_writer::sizes sz = writer.size();
    const table_limits& lim = writer.limits();
    s.tables = {{"endpoints", sz.endpoints, lim.max_endpoints},
                {"addresses", sz.addresses, lim.max_endpoints},
                {"networks", sz.networks, lim.max_networks},
                {"vteps", sz.vteps, lim.max_vteps},
                {"ports", sz.ports, RTE_MAX_ETHPORTS - 1}};   // container ports: the uplink takes one id
    s.retire_backlog = sz.retire_backlog;

    const std::map<uint32_t, std::string>* names = ag != nullptr ? &ag->sync().network_names() : nullptr;
    for (const table_writer::network_view& n : writer.networks()) {
        network_sample ns;
        ns.vni = n.vni;
        if (names != nullptr)
            if (auto it = names->find(n.vni); it != names->end())
                ns.name = it->second;
        if (workers != nullptr)
            for (unsigned w = 0; w < workers->size(); w++) {
                const network_counters& c = workers->at(w).stats.networks[n.slot];
#define OVP_NETWORK_COUNTER(id, unit, help) ns.id += c.id.get();
#include "overpass/counters.def"
            }
        s.networks.push_back(std::move(ns));
    }

    const uint64_t now_tsc = rte_rdtsc();
    for (const table_writer::vtep_view& v : writer.vteps()) {
        vtep_sample vs;
        vs.ip = ip_string(v.ip_be);
        vs.resolved = v.resolved;
        uint64_t last_tsc = 0;
        if (workers != nullptr)
            for (unsigned w = 0; w < workers->size(); w++) {
                const vtep_counters& c = workers->at(w).stats.vteps[v.slot];
#define OVP_VTEP_COUNTER(id, unit, help) vs.id += c.id.get();
#include "overpass/counters.def"
                last_tsc = std::max(last_tsc, c.last_seen_tsc.get());
            }
        if (last_tsc != 0 && s.tsc_hz != 0 && last_tsc <= now_tsc)
            vs.last_seen_unix = s.now_unix - static_cast<double>(now_tsc - last_tsc) / static_cast<double>(s.tsc_hz);
        s.vteps.push_back(std::move(vs));
    }
}

control_sample read_control(const agent& ag, double now_unix) {
    control_sample c;
    const nlohmann::json st = ag.status();
    c.host = st.value("host", "");
    c.vtep = st.value("vtep", "");
    c.store_url = st.value("store", "");
    const sync_engine& sync = ag.sync();
    const sync_counters& sc = sync.counters();
    c.store_up = sync.store_up();
    c.applied_revision = sc.applied_revision;
    c.store_errors = sc.store_errors;
    c.table_errors = sc.table_errors;
    c.skipped_records = sc.skipped_records;
    c.snapshots = sc.snapshots;
    c.batches = sc.batches;
    c.last_sync_unix = to_unix(sync.last_sync(), now_unix);
    const agent::liveness_status ls = ag.liveness_state();
    c.registered = ls.registered;
    c.liveness_losses = ls.losses;
    c.renewals = ls.renewals.renewals;
    c.renew_failures = ls.renewals.renew_failures;
    c.last_renewal_unix = to_unix(ls.renewals.last_renewal, now_unix);
    c.local_endpoints = ag.local_endpoint_count();
    c.remote_endpoints = sync.applied().endpoints.size();
    return c;
}

/// `row` with every counter of `fields` added under its name.
template <typename Sample, std::size_t N>
nlohmann::json with_counters(nlohmann::json row, const Sample& x, const counter_field<Sample> (&fields)[N]) {
    for (const counter_field<Sample>& f : fields)
        row[f.name] = x.*f.value;
    return row;
}

nlohmann::json optional_age(const std::optional<double>& t, double now) {
    return t ? nlohmann::json(std::max(0.0, now - *t)) : nlohmann::json(nullptr);
}

} // namespace

stats_snapshot take_snapshot(const stats_sources& src) {
    stats_snapshot s;
    s.now_unix = unix_now();
    s.start_unix = src.start_unix;
    s.tsc_hz = rte_get_tsc_hz();
    if (src.workers != nullptr)
        read_workers(*src.workers, s);
    if (src.workers != nullptr && src.ports != nullptr)
        read_ports(*src.workers, *src.ports, s);
    if (src.writer != nullptr)
        read_tables(src.workers, *src.writer, src.cluster, s);
    if (src.pool != nullptr) {
        s.mbufs_in_use = rte_mempool_in_use_count(src.pool);
        s.mbufs_available = rte_mempool_avail_count(src.pool);
    }
    if (src.slow != nullptr)
        s.slow = src.slow->stats();
    if (src.cluster != nullptr)
        s.control = read_control(*src.cluster, s.now_unix);
    return s;
}

nlohmann::json to_json(const stats_snapshot& s) {
    nlohmann::json j;
    nlohmann::json drops = nlohmann::json::object();
    for (std::size_t r = 0; r < drop_reason_count; r++)
        drops[drop_reason_names[r]] = s.drops[r];
    j["drops"] = std::move(drops);

    nlohmann::json ports = nlohmann::json::array();
    for (const port_sample& p : s.ports)
        ports.push_back(with_counters({{"port", p.port_id}, {"name", p.name}, {"kind", p.kind},
                                       {"endpoint", p.endpoint}, {"detail", p.detail}},
                                      p, port_fields));
    j["ports"] = std::move(ports);

    nlohmann::json workers = nlohmann::json::array();
    for (const worker_sample& w : s.workers)
        workers.push_back(with_counters({{"lcore", w.lcore}}, w, worker_fields));
    j["workers"] = std::move(workers);

    nlohmann::json nets = nlohmann::json::array();
    for (const network_sample& n : s.networks)
        nets.push_back(with_counters({{"network", n.name}, {"vni", n.vni}}, n, network_fields));
    j["networks"] = std::move(nets);

    nlohmann::json vteps = nlohmann::json::array();
    for (const vtep_sample& v : s.vteps)
        vteps.push_back(with_counters({{"vtep", v.ip},
                                       {"resolved", v.resolved},
                                       {"last_seen_seconds", optional_age(v.last_seen_unix, s.now_unix)}},
                                      v, vtep_fields));
    j["vteps"] = std::move(vteps);

    nlohmann::json tables = nlohmann::json::object();
    for (const table_sample& t : s.tables)
        tables[t.name] = t.entries;
    tables["retire_backlog"] = s.retire_backlog;
    j["tables"] = std::move(tables);
    j["mbufs"] = {{"in_use", s.mbufs_in_use}, {"available", s.mbufs_available}};

    if (s.slow) {
        const slow_path::counters& c = *s.slow;
        nlohmann::json& sp = j["slow_path"];
        for (const auto& field : slow_path::counter_fields)
            sp[field.name] = c.*field.member;
    }
    if (s.control) {
        const control_sample& c = *s.control;
        j["store"] = {{"up", c.store_up},
                      {"renewals", c.renewals},
                      {"renew_failures", c.renew_failures},
                      {"last_sync_seconds", optional_age(c.last_sync_unix, s.now_unix)},
                      {"last_renewal_seconds", optional_age(c.last_renewal_unix, s.now_unix)}};
    }
    j["uptime_seconds"] = s.start_unix > 0 ? s.now_unix - s.start_unix : 0.0;
    return j;
}

} // namespace overpass::ctl
