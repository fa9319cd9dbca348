// SPDX-License-Identifier: Apache-2.0
// runs on: any thread
#include "control/metrics/exposition.hpp"

#include <algorithm>
#include <deque>
#include <iterator>
#include <sstream>
#include <string_view>
#include <utility>

#include <prometheus/text_serializer.h>

namespace overpass::ctl {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using labels = std::vector<ClientMetric::Label>;

/// Builds the families in order. References to them stay valid while more are added.
class builder {
public:
    MetricFamily& family(std::string name, std::string help, MetricType type) {
        out_.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
        return out_.back();
    }
    /// The family `name` if it exists (of counters declared to share it), else a new one.
    MetricFamily& family_once(const std::string& name, const char* help, MetricType type) {
        for (MetricFamily& f : out_)
            if (f.name == name)
                return f;
        return family(name, help, type);
    }
    static void add(MetricFamily& f, labels l, double v) {
        ClientMetric m;
        m.label = std::move(l);
        if (f.type == MetricType::Counter)
            m.counter.value = v;
        else
            m.gauge.value = v;
        f.metric.push_back(std::move(m));
    }
    /// A family with a single unlabelled sample.
    void single(std::string name, std::string help, MetricType type, double v) {
        add(family(std::move(name), std::move(help), type), {}, v);
    }
    std::vector<MetricFamily> take() {
        std::vector<MetricFamily> v(std::make_move_iterator(out_.begin()), std::make_move_iterator(out_.end()));
        out_.clear();
        return v;
    }

private:
    std::deque<MetricFamily> out_;   // a deque: push_back leaves references to the others valid
};

constexpr MetricType counter = MetricType::Counter;
constexpr MetricType gauge = MetricType::Gauge;

double d(uint64_t v) { return static_cast<double>(v); }

/// A counter_field's Prometheus family, split: "polls{result=busy}" is the family
/// "polls" and the label result="busy"; "packets" has no label.
struct family_name {
    std::string_view stem, label, value;
};

constexpr family_name split(std::string_view f) {
    const std::size_t open = f.find('{');
    if (open == std::string_view::npos)
        return {f, {}, {}};
    const std::size_t eq = f.find('=', open);
    return {f.substr(0, open), f.substr(open + 1, eq - open - 1), f.substr(eq + 1, f.size() - eq - 2)};
}

/// counters.def's rules for a family: a name, at most one {label=value}, and a name in
/// _seconds exactly when the unit is TSC cycles.
template <typename Sample>
constexpr bool well_formed(const counter_field<Sample>& f) {
    const std::string_view fam = f.family;
    const std::size_t open = fam.find('{');
    if (open != std::string_view::npos) {
        const std::size_t eq = fam.find('=', open);
        if (open == 0 || eq == std::string_view::npos || eq == open + 1 || fam.back() != '}' ||
            eq + 2 >= fam.size() || fam.find_first_of("{=", eq + 1) != std::string_view::npos)
            return false;
    }
    const std::string_view stem = split(fam).stem;
    return !stem.empty() && stem.find_first_of("}=\" \t") == std::string_view::npos &&
           (f.unit == counter_unit::cycles) == stem.ends_with("_seconds") && !stem.ends_with("_total");
}

template <typename Sample, std::size_t N>
constexpr bool all_well_formed(const counter_field<Sample> (&fields)[N]) {
    return std::all_of(std::begin(fields), std::end(fields), [](const auto& f) { return well_formed(f); });
}
static_assert(all_well_formed(port_fields) && all_well_formed(worker_fields) && all_well_formed(network_fields) &&
                  all_well_formed(vtep_fields),
              "a Prometheus family in counters.def breaks its rules");

/// One counter family per counters.def entry of the scope (entries that name the same
/// family share it), one series per item labelled by `labels_of`.
template <typename Sample, std::size_t N, typename LabelsOf>
void counter_families(builder& b, const stats_snapshot& s, const char* scope,
                      const counter_field<Sample> (&fields)[N], const std::vector<Sample>& items,
                      LabelsOf labels_of) {
    const double hz = s.tsc_hz != 0 ? static_cast<double>(s.tsc_hz) : 1.0;
    for (const counter_field<Sample>& f : fields) {
        const family_name fn = split(f.family);
        MetricFamily& fam =
            b.family_once("overpass_" + std::string(scope) + "_" + std::string(fn.stem) + "_total", f.help, counter);
        for (const Sample& x : items) {
            labels l = labels_of(x);
            if (!fn.label.empty())
                l.push_back({std::string(fn.label), std::string(fn.value)});
            const double v = d(x.*f.value);
            builder::add(fam, std::move(l), f.unit == counter_unit::cycles ? v / hz : v);
        }
    }
}

void port_families(builder& b, const stats_snapshot& s) {
    // Labels identify the port (ethdev name), its endpoint (empty for the uplink) and kind
    // (uplink, tap, vhost).
    counter_families(b, s, "port", port_fields, s.ports, [](const port_sample& p) {
        return labels{{"port", p.name}, {"endpoint", p.endpoint}, {"kind", p.kind}};
    });
}

void worker_families(builder& b, const stats_snapshot& s) {
    counter_families(b, s, "worker", worker_fields, s.workers,
                     [](const worker_sample& w) { return labels{{"lcore", std::to_string(w.lcore)}}; });
}

void drop_families(builder& b, const stats_snapshot& s) {
    MetricFamily& f = b.family("overpass_dropped_packets_total",
                               "Packets dropped by the data plane, by reason (docs/metrics.md lists the reasons).",
                               counter);
    for (std::size_t r = 0; r < drop_reason_count; r++)
        builder::add(f, {{"reason", drop_reason_names[r]}}, d(s.drops[r]));
}

void network_families(builder& b, const stats_snapshot& s) {
    counter_families(b, s, "network", network_fields, s.networks, [](const network_sample& n) {
        return labels{{"network", n.name}, {"vni", std::to_string(n.vni)}};
    });
}

void vtep_families(builder& b, const stats_snapshot& s) {
    counter_families(b, s, "vtep", vtep_fields, s.vteps, [](const vtep_sample& v) { return labels{{"vtep", v.ip}}; });
    MetricFamily& res = b.family("overpass_vtep_resolved", "1 when the VTEP's next-hop MAC is known (ARP answered).",
                                 gauge);
    MetricFamily& seen = b.family("overpass_vtep_last_seen_timestamp_seconds",
                                  "Unix time of the last packet received from the VTEP (absent: none yet).", gauge);
    for (const vtep_sample& v : s.vteps) {
        builder::add(res, {{"vtep", v.ip}}, v.resolved ? 1 : 0);
        if (v.last_seen_unix)
            builder::add(seen, {{"vtep", v.ip}}, *v.last_seen_unix);
    }
}

void table_families(builder& b, const stats_snapshot& s) {
    MetricFamily& e = b.family("overpass_table_entries", "Entries in a data-plane table.", gauge);
    MetricFamily& c = b.family("overpass_table_capacity", "Entries a data-plane table can hold.", gauge);
    for (const table_sample& t : s.tables) {
        builder::add(e, {{"table", t.name}}, d(t.entries));
        builder::add(c, {{"table", t.name}}, d(t.capacity));
    }
    b.single("overpass_rcu_retire_backlog", "Replaced table values waiting for an RCU grace period before being freed.",
             gauge, d(s.retire_backlog));
    MetricFamily& m = b.family("overpass_mbufs", "Packet buffers of the mbuf pool, by state.", gauge);
    builder::add(m, {{"state", "in_use"}}, d(s.mbufs_in_use));
    builder::add(m, {{"state", "available"}}, d(s.mbufs_available));
}

void slow_path_families(builder& b, const stats_snapshot& s) {
    if (!s.slow)
        return;
    const slow_path::counters& c = *s.slow;
    MetricFamily& f = b.family("overpass_slowpath_events_total",
                               "Control-thread packet handling: VTEP ARP and the embedded DNS resolver.", counter);
    for (const auto& field : slow_path::counter_fields)
        builder::add(f, {{"event", field.event}}, d(c.*field.member));
}

void control_families(builder& b, const stats_snapshot& s) {
    if (!s.control)
        return;
    const control_sample& c = *s.control;
    b.single("overpass_store_up", "1 when the store watch has a view and its last read succeeded.", gauge,
             c.store_up ? 1 : 0);
    b.single("overpass_store_registered", "1 while this host's session/lease in the store is alive.", gauge,
             c.registered ? 1 : 0);
    b.single("overpass_store_applied_revision", "Store revision (etcd) or index (Consul) applied to the tables.",
             gauge, d(c.applied_revision));
    MetricFamily& err = b.family("overpass_sync_errors_total",
                                 "Sync problems by kind: store (a watch read failed), table (a table update failed, "
                                 "retried), record (an unparseable store record was skipped).",
                                 counter);
    builder::add(err, {{"kind", "store"}}, d(c.store_errors));
    builder::add(err, {{"kind", "table"}}, d(c.table_errors));
    builder::add(err, {{"kind", "record"}}, d(c.skipped_records));
    MetricFamily& upd = b.family("overpass_sync_updates_total",
                                 "Store views applied: full snapshots and incremental change batches.", counter);
    builder::add(upd, {{"kind", "snapshot"}}, d(c.snapshots));
    builder::add(upd, {{"kind", "batch"}}, d(c.batches));
    if (c.last_sync_unix) {
        b.single("overpass_sync_last_success_timestamp_seconds",
                 "Unix time at which the last store snapshot or change batch was applied.", gauge, *c.last_sync_unix);
    }
    // Time since the store last proved this host's view current: a watch event or a
    // confirmed renewal (the watch is idle when nothing changes).
    std::optional<double> last = c.last_sync_unix;
    if (c.last_renewal_unix && (!last || *c.last_renewal_unix > *last))
        last = c.last_renewal_unix;
    if (last)
        b.single("overpass_sync_age_seconds",
                 "Seconds since the store last answered this host (watch event applied or liveness renewal confirmed).",
                 gauge, std::max(0.0, s.now_unix - *last));
    b.single("overpass_store_liveness_renewals_total", "Session (Consul) / lease (etcd) renewals the store confirmed.",
             counter, d(c.renewals));
    b.single("overpass_store_liveness_renewal_failures_total",
             "Session/lease renewals that got no usable answer (store unreachable or erroring).", counter,
             d(c.renew_failures));
    b.single("overpass_store_liveness_losses_total",
             "Times the store expired this host's session/lease (its endpoints were then re-registered).", counter,
             d(c.liveness_losses));
    MetricFamily& ep = b.family("overpass_endpoints", "Endpoints known to this host, by placement.", gauge);
    builder::add(ep, {{"placement", "local"}}, d(c.local_endpoints));
    builder::add(ep, {{"placement", "remote"}}, d(c.remote_endpoints));
}

} // namespace

std::vector<MetricFamily> to_families(const stats_snapshot& s, const build_info& bi) {
    builder b;
    b.add(b.family("overpass_build_info", "overpass and DPDK versions of this process (value 1).", gauge),
          {{"version", bi.version}, {"dpdk_version", bi.dpdk_version}}, 1);
    b.single("overpass_start_time_seconds", "Unix time at which overpassd started.", gauge, s.start_unix);
    port_families(b, s);
    worker_families(b, s);
    drop_families(b, s);
    network_families(b, s);
    vtep_families(b, s);
    table_families(b, s);
    slow_path_families(b, s);
    control_families(b, s);
    return b.take();
}

std::string to_text(const std::vector<MetricFamily>& families) {
    std::ostringstream out;
    prometheus::TextSerializer{}.Serialize(out, families);
    return out.str();
}

} // namespace overpass::ctl
