// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/log.hpp"
#include "control/sync/sync.hpp"

#include <cctype>
#include <chrono>
#include <cstring>
#include <iostream>

#include <rte_byteorder.h>

#include "control/store/keys.hpp"

namespace overpass::ctl {

namespace {

// A remove of something the writer no longer has is done, not failed.
bool removed(int rc) { return rc == 0 || rc == -ENOENT; }

} // namespace

bool remote_endpoint::operator==(const remote_endpoint& o) const noexcept {
    return vtep_be == o.vtep_be && std::memcmp(mac.addr_bytes, o.mac.addr_bytes, RTE_ETHER_ADDR_LEN) == 0;
}

bool operator==(const network_spec& a, const network_spec& b) noexcept {
    return a.vni == b.vni && a.mtu == b.mtu && a.subnet_be == b.subnet_be && a.mask_be == b.mask_be &&
           a.gateway_be == b.gateway_be;
}

desired_state build_desired(const std::map<std::string, std::string>& kv, const sync_identity& self,
                            std::vector<std::string>& problems) {
    desired_state want;
    std::map<std::string, uint32_t> vni_of;   // network id -> VNI
    // Pass 1: networks and hosts (endpoints need their network's VNI).
    for (const auto& [key, value] : kv) {
        const keys::parsed k = keys::parse(key);
        try {
            if (k.what == keys::parsed::kind::net_meta) {
                const net_meta m = net_meta_from_value(k.id, value);
                if (want.networks.contains(m.vni)) {
                    problems.push_back(key + ": VNI " + std::to_string(m.vni) + " already used by another network");
                    continue;
                }
                want.network_names[m.vni] = m.name;
                want.networks[m.vni] = network_spec{m.vni, m.mtu, rte_cpu_to_be_32(m.subnet.addr),
                                                    rte_cpu_to_be_32(m.subnet.mask()), rte_cpu_to_be_32(m.gateway)};
                vni_of[k.id] = m.vni;
            } else if (k.what == keys::parsed::kind::host) {
                const host_record h = host_record_from_value(value);
                const rte_be32_t vtep = rte_cpu_to_be_32(*parse_ipv4(h.vtep));
                if (k.id != self.host_id && vtep != self.vtep_be)
                    want.vteps.insert(vtep);
            }
        } catch (const std::exception& e) {
            problems.push_back(key + ": " + e.what());
        }
    }
    // Pass 2: remote endpoints.
    for (const auto& [key, value] : kv) {
        const keys::parsed k = keys::parse(key);
        if (k.what != keys::parsed::kind::endpoint)
            continue;
        try {
            const endpoint_record e = endpoint_record_from_value(value);
            auto net = vni_of.find(k.id);
            if (net == vni_of.end())
                continue;   // network meta not (yet) visible
            std::string name = e.name;
            for (char& c : name)
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            want.names[{net->second, std::move(name)}] = rte_cpu_to_be_32(k.ip);
            if (e.host == self.host_id)
                continue;   // ours: the agent programs it with its port
            const rte_be32_t vtep = rte_cpu_to_be_32(*parse_ipv4(e.vtep));
            if (vtep == self.vtep_be) {
                problems.push_back(key + ": host " + e.host + " claims this host's VTEP " + e.vtep);
                continue;
            }
            want.vteps.insert(vtep);
            want.endpoints[{net->second, rte_cpu_to_be_32(k.ip)}] = remote_endpoint{to_ether(*parse_mac(e.mac)), vtep};
        } catch (const std::exception& e) {
            problems.push_back(key + ": " + e.what());
        }
    }
    return want;
}

unsigned apply_diff(desired_state& applied, const desired_state& want, table_writer& tw) {
    unsigned failed = 0;
    // 1. Endpoints that went away or changed.
    for (auto it = applied.endpoints.begin(); it != applied.endpoints.end();) {
        auto w = want.endpoints.find(it->first);
        if (w != want.endpoints.end() && w->second == it->second) {
            ++it;
            continue;
        }
        if (removed(tw.remove_endpoint(it->first.first, it->second.mac))) {
            it = applied.endpoints.erase(it);
        } else {
            failed++;
            ++it;
        }
    }
    // 2. Networks that went away (the writer drops what is still in them).
    for (auto it = applied.networks.begin(); it != applied.networks.end();) {
        if (want.networks.contains(it->first)) {
            ++it;
            continue;
        }
        if (removed(tw.remove_network(it->first))) {
            std::erase_if(applied.endpoints, [vni = it->first](const auto& e) { return e.first.first == vni; });
            it = applied.networks.erase(it);
        } else {
            failed++;
            ++it;
        }
    }
    // 3. VTEPs that went away (the writer drops the endpoints behind them).
    for (auto it = applied.vteps.begin(); it != applied.vteps.end();) {
        if (want.vteps.contains(*it)) {
            ++it;
            continue;
        }
        if (removed(tw.remove_vtep(*it))) {
            std::erase_if(applied.endpoints, [v = *it](const auto& e) { return e.second.vtep_be == v; });
            it = applied.vteps.erase(it);
        } else {
            failed++;
            ++it;
        }
    }
    // 4. New VTEPs.
    for (rte_be32_t v : want.vteps) {
        if (applied.vteps.contains(v))
            continue;
        if (tw.upsert_vtep(v) == 0)
            applied.vteps.insert(v);
        else
            failed++;
    }
    // 5. New or changed networks.
    for (const auto& [vni, spec] : want.networks) {
        auto a = applied.networks.find(vni);
        if (a != applied.networks.end() && a->second == spec)
            continue;
        if (tw.upsert_network(spec) == 0)
            applied.networks[vni] = spec;
        else
            failed++;
    }
    // 6. New or changed endpoints, once their network and VTEP are in place.
    for (const auto& [key, ep] : want.endpoints) {
        auto a = applied.endpoints.find(key);
        if (a != applied.endpoints.end() && a->second == ep)
            continue;
        if (!applied.networks.contains(key.first) || !applied.vteps.contains(ep.vtep_be)) {
            failed++;
            continue;
        }
        if (tw.upsert_remote_endpoint(key.first, key.second, ep.mac, ep.vtep_be) == 0)
            applied.endpoints[key] = ep;
        else
            failed++;
    }
    return failed;
}

sync_engine::sync_engine(table_writer& tw, sync_identity self, std::function<void(rte_be32_t)> on_vtep_added)
    : tw_(tw), self_(std::move(self)), on_vtep_added_(std::move(on_vtep_added)) {}

void sync_engine::retry() { reconcile(revision_); }

std::optional<rte_be32_t> sync_engine::resolve(uint32_t vni, const std::string& name) const {
    std::string lower = name;
    for (char& c : lower)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto it = names_.find({vni, lower});
    if (it == names_.end())
        return std::nullopt;
    return it->second;
}

std::string_view sync_engine::keys_root() { return keys::root; }

void sync_engine::start(store& st, std::string prefix) {
    watch_ = st.watch(std::move(prefix),
                      watch_callbacks{[this](const kv_snapshot& s) { on_snapshot(s); },
                                      [this](std::span<const kv_delta> d, uint64_t rev) { on_changes(d, rev); },
                                      [this](const std::string& what) { on_error(what); }});
}

void sync_engine::stop() { watch_.reset(); }

void sync_engine::on_snapshot(const kv_snapshot& snap) {
    if (store_failing_) {
        // Said once per outage, so that an operator reading the log sees it ended.
        OVP_LOG(NOTICE, "store sync: store reachable again, resynced at revision %" PRIu64, snap.revision);
        store_failing_ = false;
    }
    last_sync_ = std::chrono::steady_clock::now();
    view_.clear();
    for (const auto& item : snap.items)
        view_[item.key] = item.value;
    counters_.snapshots++;
    reconcile(snap.revision);
}

void sync_engine::on_changes(std::span<const kv_delta> deltas, uint64_t revision) {
    for (const auto& d : deltas) {
        if (d.what == kv_delta::kind::put)
            view_[d.item.key] = d.item.value;
        else
            view_.erase(d.item.key);
    }
    counters_.batches++;
    last_sync_ = std::chrono::steady_clock::now();
    reconcile(revision);
}

void sync_engine::on_error(const std::string& what) {
    // Keep forwarding on the last good tables; the watch retries by itself.
    counters_.store_errors++;
    store_failing_ = true;
    log_limited("store sync: " + what);
}

void sync_engine::reconcile(uint64_t revision) {
    std::vector<std::string> problems;
    desired_state want = build_desired(view_, self_, problems);
    names_ = std::move(want.names);
    network_names_ = std::move(want.network_names);
    std::set<std::string> now_reported;
    for (const auto& p : problems) {
        if (!reported_.contains(p)) {
            counters_.skipped_records++;
            log_limited("store sync: skipping record " + p);
        }
        now_reported.insert(p);
    }
    reported_ = std::move(now_reported);
    const std::set<rte_be32_t> vteps_before = applied_.vteps;
    const unsigned failed = apply_diff(applied_, want, tw_);
    if (on_vtep_added_)
        for (rte_be32_t v : applied_.vteps)
            if (!vteps_before.contains(v))
                on_vtep_added_(v);
    counters_.table_errors += failed;
    retry_pending_ = failed != 0;
    if (failed != 0)
        log_limited("store sync: " + std::to_string(failed) + " table updates failed at revision " +
                    std::to_string(revision) + "; retrying");
    counters_.applied_revision = revision;
    revision_ = revision;
}

void sync_engine::log_limited(const std::string& line) {
    const int64_t window = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::steady_clock::now().time_since_epoch()).count() / 10;
    if (window != log_window_) {
        log_window_ = window;
        logged_in_window_ = 0;
    }
    if (++logged_in_window_ <= 10)
        OVP_LOG(WARNING, "%s", line.c_str());
}

} // namespace overpass::ctl
