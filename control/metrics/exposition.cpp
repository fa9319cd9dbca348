// SPDX-License-Identifier: Apache-2.0
// runs on: any thread
#include "control/metrics/exposition.hpp"

#include <sstream>
#include <utility>

#include <prometheus/text_serializer.h>

namespace overpass::ctl {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using labels = std::vector<ClientMetric::Label>;

/// Builds one family at a time: fam(name, help, type) then add(labels, value)...
class builder {
public:
    MetricFamily& family(std::string name, std::string help, MetricType type) {
        out_.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
        return out_.back();
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
    std::vector<MetricFamily> take() { return std::move(out_); }

private:
    std::vector<MetricFamily> out_;
};

constexpr MetricType counter = MetricType::Counter;
constexpr MetricType gauge = MetricType::Gauge;

double d(uint64_t v) { return static_cast<double>(v); }

/// A counter family per field of Sample, one series per item labelled by `labels_of`.
template <typename Sample>
struct field {
    const char* name;
    const char* help;
    uint64_t Sample::*value;
};

template <typename Sample, std::size_t N, typename LabelsOf>
void counter_families(builder& b, const field<Sample> (&fields)[N], const std::vector<Sample>& items,
                      LabelsOf labels_of) {
    for (const field<Sample>& f : fields) {
        MetricFamily& fam = b.family(f.name, f.help, counter);
        for (const Sample& x : items)
            builder::add(fam, labels_of(x), d(x.*f.value));
    }
}

void port_families(builder& b, const stats_snapshot& s) {
    // One family per quantity; labels identify the port (ethdev name), its endpoint
    // (empty for the uplink) and kind (uplink, tap, vhost).
    static constexpr field<port_sample> fields[] = {
        {"overpass_port_rx_packets_total", "Packets received from the port (from the wire or the container).",
         &port_sample::rx_packets},
        {"overpass_port_rx_bytes_total", "Bytes received from the port (Ethernet frames without FCS).",
         &port_sample::rx_bytes},
        {"overpass_port_tx_packets_total", "Packets sent on the port.", &port_sample::tx_packets},
        {"overpass_port_tx_bytes_total", "Bytes sent on the port (Ethernet frames without FCS).",
         &port_sample::tx_bytes},
        {"overpass_port_dropped_packets_total",
         "Packets dropped that were received on the port (for any reason in overpass_dropped_packets_total) "
         "or could not be sent on it (TX queue full).",
         &port_sample::drops},
        {"overpass_port_rx_missed_packets_total",
         "Packets the device dropped because its RX ring was full (the worker fell behind).",
         &port_sample::rx_missed},
    };
    counter_families(b, fields, s.ports, [](const port_sample& p) {
        return labels{{"port", p.name}, {"endpoint", p.endpoint}, {"kind", p.kind}};
    });
}

void worker_families(builder& b, const stats_snapshot& s) {
    const double hz = s.tsc_hz != 0 ? static_cast<double>(s.tsc_hz) : 1.0;
    MetricFamily& pk = b.family("overpass_worker_packets_total", "Packets received by the worker from all its queues.",
                                counter);
    MetricFamily& polls = b.family("overpass_worker_polls_total",
                                   "Poll loop iterations, by whether they received packets (busy) or not (idle).",
                                   counter);
    MetricFamily& busy = b.family("overpass_worker_busy_seconds_total",
                                  "Time the worker spent in iterations that received packets (TSC). "
                                  "Busy ratio: rate(busy) / (rate(busy) + rate(idle)).",
                                  counter);
    MetricFamily& idle = b.family("overpass_worker_idle_seconds_total",
                                  "Time the worker spent in empty iterations and idle sleeps (TSC).", counter);
    MetricFamily& sleeps = b.family("overpass_worker_sleeps_total", "Idle back-off sleeps.", counter);
    MetricFamily& flush = b.family("overpass_worker_tx_bursts_total", "TX bursts issued (buffer flushes).", counter);
    MetricFamily& exc = b.family("overpass_worker_exceptions_total",
                                 "Packets handed to the control thread (ARP for the VTEP, DNS, ...).", counter);
    MetricFamily& cache = b.family("overpass_worker_endpoint_cache_lookups_total",
                                   "Encap's endpoint lookups, by whether the worker's endpoint cache answered (hit) "
                                   "or the endpoints table did (miss).",
                                   counter);
    for (const worker_sample& w : s.workers) {
        const std::string lc = std::to_string(w.lcore);
        builder::add(pk, {{"lcore", lc}}, d(w.packets));
        builder::add(polls, {{"lcore", lc}, {"result", "busy"}}, d(w.busy_polls));
        builder::add(polls, {{"lcore", lc}, {"result", "idle"}}, d(w.idle_polls));
        builder::add(busy, {{"lcore", lc}}, d(w.busy_cycles) / hz);
        builder::add(idle, {{"lcore", lc}}, d(w.idle_cycles) / hz);
        builder::add(sleeps, {{"lcore", lc}}, d(w.sleeps));
        builder::add(flush, {{"lcore", lc}}, d(w.tx_flushes));
        builder::add(exc, {{"lcore", lc}}, d(w.exceptions));
        builder::add(cache, {{"lcore", lc}, {"result", "hit"}}, d(w.endpoint_cache_hits));
        builder::add(cache, {{"lcore", lc}, {"result", "miss"}}, d(w.endpoint_cache_misses));
    }
}

void drop_families(builder& b, const stats_snapshot& s) {
    MetricFamily& f = b.family("overpass_dropped_packets_total",
                               "Packets dropped by the data plane, by reason (docs/metrics.md lists the reasons).",
                               counter);
    for (std::size_t r = 0; r < drop_reason_count; r++)
        builder::add(f, {{"reason", drop_reason_names[r]}}, d(s.drops[r]));
}

void network_families(builder& b, const stats_snapshot& s) {
    static constexpr field<network_sample> fields[] = {
        {"overpass_network_encap_packets_total", "Packets of the network encapsulated towards remote VTEPs.",
         &network_sample::encap_packets},
        {"overpass_network_encap_bytes_total", "Inner frame bytes of the network encapsulated.",
         &network_sample::encap_bytes},
        {"overpass_network_decap_packets_total", "VXLAN packets of the network decapsulated.",
         &network_sample::decap_packets},
        {"overpass_network_decap_bytes_total", "Inner frame bytes of the network decapsulated.",
         &network_sample::decap_bytes},
        {"overpass_network_flood_packets_total",
         "Broadcast/unknown-unicast/multicast frames of the network flooded by head-end replication "
         "(one per frame, however many copies it took).",
         &network_sample::flood_packets},
    };
    counter_families(b, fields, s.networks, [](const network_sample& n) {
        return labels{{"network", n.name}, {"vni", std::to_string(n.vni)}};
    });
}

void vtep_families(builder& b, const stats_snapshot& s) {
    static constexpr field<vtep_sample> fields[] = {
        {"overpass_vtep_tx_packets_total", "VXLAN packets sent to the remote VTEP.", &vtep_sample::tx_packets},
        {"overpass_vtep_tx_bytes_total", "Bytes sent to the remote VTEP (outer frames).", &vtep_sample::tx_bytes},
        {"overpass_vtep_rx_packets_total", "VXLAN packets received from the remote VTEP.", &vtep_sample::rx_packets},
        {"overpass_vtep_rx_bytes_total", "Bytes received from the remote VTEP (outer frames).",
         &vtep_sample::rx_bytes},
    };
    counter_families(b, fields, s.vteps, [](const vtep_sample& v) { return labels{{"vtep", v.ip}}; });
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
    const std::pair<const char*, uint64_t> events[] = {
        {"arp_request_sent", c.arp_requests_sent}, {"arp_reply_learned", c.arp_replies_learned},
        {"exception", c.exceptions},               {"ignored", c.ignored},
        {"dns_query", c.dns_queries},              {"dns_answer", c.dns_answers},
        {"dns_nxdomain", c.dns_nxdomain},          {"dns_malformed", c.dns_malformed},
    };
    for (const auto& [name, v] : events)
        builder::add(f, {{"event", name}}, d(v));
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
