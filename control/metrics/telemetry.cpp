// SPDX-License-Identifier: Apache-2.0
// runs on: DPDK's telemetry thread (the callbacks) and the control thread (attach)
//
// /overpass/... commands on DPDK's telemetry socket, rendered from the same snapshot as
// /metrics. Try them with `dpdk-telemetry.py -f <file-prefix>` (overpassd's file prefix
// is overpass-<host id>), e.g. `/overpass/ports` or `/overpass/ports,net_tap0`.
//
// DPDK 22.11 accepts dict keys of letters, digits, '_' and '/' only and silently drops
// other entries, so keys are sanitised (198.18.0.2 -> 198_18_0_2) and each entry also
// carries its real name; the optional parameter matches either form. Counters carry
// their names from include/overpass/counters.def, as in /v1/stats.
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <string>

#include <rte_telemetry.h>

#include "control/log.hpp"
#include "control/metrics/exporter.hpp"

namespace overpass::ctl {

namespace {

std::mutex g_mu;
std::shared_ptr<const snapshot_source> g_source;
build_info g_info;
bool g_registered = false;

// DPDK 22.11 limits: names < RTE_TEL_MAX_STRING_LEN, <= RTE_TEL_MAX_DICT_ENTRIES per dict.
constexpr unsigned max_entries = RTE_TEL_MAX_DICT_ENTRIES - 1;   // one left for "truncated"

std::optional<stats_snapshot> fetch(build_info& info) {
    std::shared_ptr<const snapshot_source> src;
    {
        std::lock_guard lock(g_mu);
        src = g_source;
        info = g_info;
    }
    if (!src)
        return std::nullopt;
    return src->fetch(std::chrono::seconds(2));
}

std::string clip(const std::string& s) { return s.substr(0, RTE_TEL_MAX_STRING_LEN - 1); }

/// A dict key telemetry accepts: [A-Za-z0-9_/], others become '_'.
std::string key_of(const std::string& s) {
    std::string k = clip(s);
    for (char& c : k)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '/'))
            c = '_';
    return k;
}

void add_u64(rte_tel_data* d, const char* name, uint64_t v) { rte_tel_data_add_dict_u64(d, name, v); }
void add_str(rte_tel_data* d, const char* name, const std::string& v) {
    rte_tel_data_add_dict_string(d, name, clip(v).c_str());
}

/// Every counter of `fields` under its name.
template <typename Sample, std::size_t N>
void add_counters(rte_tel_data* d, const Sample& x, const counter_field<Sample> (&fields)[N]) {
    for (const counter_field<Sample>& f : fields)
        add_u64(d, f.name, x.*f.value);
}

/// Seconds as a string with millisecond precision (22.11's telemetry has no float type).
std::string seconds(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return buf;
}

/// A dict of dicts keyed by `key(item)`; `params` (if not empty) selects one key.
/// Returns -1 (telemetry answers null) when the selected key does not exist.
template <typename Items, typename Key, typename Fill>
int dict_of(rte_tel_data* d, const Items& items, const char* params, Key key, Fill fill) {
    const std::string want = params != nullptr ? params : "";
    rte_tel_data_start_dict(d);
    unsigned n = 0;
    bool found = false;
    for (const auto& it : items) {
        const std::string name = key(it);
        const std::string k = key_of(name);
        if (!want.empty() && name != want && k != want)
            continue;
        if (n == max_entries) {
            add_u64(d, "truncated", items.size() - n);
            break;
        }
        rte_tel_data* c = rte_tel_data_alloc();
        if (c == nullptr)
            return -ENOMEM;
        rte_tel_data_start_dict(c);
        add_str(c, "name", name);
        fill(c, it);
        if (rte_tel_data_add_dict_container(d, k.c_str(), c, 0) != 0) {
            rte_tel_data_free(c);
            return -ENOSPC;
        }
        n++;
        found = true;
    }
    return want.empty() || found ? 0 : -1;
}

/// Renders a fresh snapshot with `render(snapshot*, build_info)`; without one (closed,
/// or the control thread did not answer) telemetry answers null.
template <typename Render>
int with_snapshot(Render render) {
    build_info bi;
    const auto s = fetch(bi);
    return s ? render(&*s, bi) : -1;
}

int cmd_info(const char*, const char*, rte_tel_data* d) {
    return with_snapshot([&](const stats_snapshot* s, const build_info& bi) -> int {
        rte_tel_data_start_dict(d);
        add_str(d, "version", bi.version);
        add_str(d, "dpdk_version", bi.dpdk_version);
        add_str(d, "uptime_seconds", seconds(s->now_unix - s->start_unix));
        if (s->control) {
            add_str(d, "host", s->control->host);
            add_str(d, "vtep", s->control->vtep);
            add_str(d, "store", s->control->store_url);
        }
        add_u64(d, "workers", s->workers.size());
        add_u64(d, "ports", s->ports.size());
        return 0;
    });
}

int cmd_ports(const char*, const char* params, rte_tel_data* d) {
    return with_snapshot([&](const stats_snapshot* s, const build_info&) -> int {
        return dict_of(d, s->ports, params, [](const port_sample& p) { return p.name; },
                       [](rte_tel_data* c, const port_sample& p) {
                           add_u64(c, "port_id", p.port_id);
                           add_str(c, "kind", p.kind);
                           add_str(c, "endpoint", p.endpoint);
                           add_str(c, "detail", p.detail);
                           add_counters(c, p, port_fields);
                       });
    });
}

int cmd_workers(const char*, const char* params, rte_tel_data* d) {
    return with_snapshot([&](const stats_snapshot* s, const build_info&) -> int {
        return dict_of(d, s->workers, params, [](const worker_sample& w) { return std::to_string(w.lcore); },
                       [](rte_tel_data* c, const worker_sample& w) { add_counters(c, w, worker_fields); });
    });
}

int cmd_drops(const char*, const char*, rte_tel_data* d) {
    return with_snapshot([&](const stats_snapshot* s, const build_info&) -> int {
        rte_tel_data_start_dict(d);
        for (std::size_t r = 0; r < drop_reason_count; r++)
            add_u64(d, drop_reason_names[r], s->drops[r]);
        return 0;
    });
}

int cmd_networks(const char*, const char* params, rte_tel_data* d) {
    return with_snapshot([&](const stats_snapshot* s, const build_info&) -> int {
        return dict_of(d, s->networks, params, [](const network_sample& n) { return std::to_string(n.vni); },
                       [](rte_tel_data* c, const network_sample& n) {
                           add_str(c, "network", n.name);
                           add_counters(c, n, network_fields);
                       });
    });
}

int cmd_vteps(const char*, const char* params, rte_tel_data* d) {
    return with_snapshot([&](const stats_snapshot* s, const build_info&) -> int {
        const double now = s->now_unix;
        return dict_of(d, s->vteps, params, [](const vtep_sample& v) { return v.ip; },
                       [now](rte_tel_data* c, const vtep_sample& v) {
                           add_u64(c, "resolved", v.resolved ? 1 : 0);
                           add_counters(c, v, vtep_fields);
                           if (v.last_seen_unix)
                               add_str(c, "last_seen_seconds_ago", seconds(now - *v.last_seen_unix));
                       });
    });
}

int cmd_tables(const char*, const char*, rte_tel_data* d) {
    return with_snapshot([&](const stats_snapshot* s, const build_info&) -> int {
        rte_tel_data_start_dict(d);
        for (const table_sample& t : s->tables)
            add_u64(d, t.name, t.entries);
        add_u64(d, "retire_backlog", s->retire_backlog);
        add_u64(d, "mbufs_in_use", s->mbufs_in_use);
        add_u64(d, "mbufs_available", s->mbufs_available);
        return 0;
    });
}

int cmd_store(const char*, const char*, rte_tel_data* d) {
    return with_snapshot([&](const stats_snapshot* s, const build_info&) -> int {
        if (!s->control)
            return -1;
        const control_sample& c = *s->control;
        rte_tel_data_start_dict(d);
        add_str(d, "store", c.store_url);
        add_u64(d, "up", c.store_up ? 1 : 0);
        add_u64(d, "registered", c.registered ? 1 : 0);
        add_u64(d, "applied_revision", c.applied_revision);
        add_u64(d, "store_errors", c.store_errors);
        add_u64(d, "table_errors", c.table_errors);
        add_u64(d, "skipped_records", c.skipped_records);
        add_u64(d, "renewals", c.renewals);
        add_u64(d, "renew_failures", c.renew_failures);
        add_u64(d, "liveness_losses", c.liveness_losses);
        if (c.last_sync_unix)
            add_str(d, "last_sync_seconds_ago", seconds(s->now_unix - *c.last_sync_unix));
        add_u64(d, "local_endpoints", c.local_endpoints);
        add_u64(d, "remote_endpoints", c.remote_endpoints);
        return 0;
    });
}

} // namespace

void telemetry_attach(std::shared_ptr<const snapshot_source> source, build_info info) {
    std::lock_guard lock(g_mu);
    g_source = std::move(source);
    g_info = std::move(info);
    if (g_registered)
        return;
    g_registered = true;
    struct command {
        const char* name;
        telemetry_cb fn;
        const char* help;
    };
    static constexpr command commands[] = {
        {"/overpass/info", cmd_info, "overpassd version, host, VTEP, store. No parameters"},
        {"/overpass/ports", cmd_ports, "Per-port counters. Parameter: port name (optional)"},
        {"/overpass/workers", cmd_workers, "Per-worker counters. Parameter: lcore id (optional)"},
        {"/overpass/drops", cmd_drops, "Dropped packets by reason. No parameters"},
        {"/overpass/networks", cmd_networks, "Per-network counters. Parameter: VNI (optional)"},
        {"/overpass/vteps", cmd_vteps, "Per-remote-VTEP counters. Parameter: VTEP address (optional)"},
        {"/overpass/tables", cmd_tables, "Table entries, RCU backlog, mbufs. No parameters"},
        {"/overpass/store", cmd_store, "Store sync and liveness state. No parameters"},
    };
    for (const command& c : commands)
        if (int rc = rte_telemetry_register_cmd(c.name, c.fn, c.help); rc != 0)
            OVP_LOG(WARNING, "telemetry: cannot register %s: %d", c.name, rc);
}

} // namespace overpass::ctl
