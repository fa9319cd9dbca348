// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/log.hpp"
#include "control/sync/sync.hpp"

#include <array>
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

namespace {

/// Who holds a network's VNI, or an endpoint's MAC within its network.
struct holder {
    bool own = false;          ///< an endpoint of this host (always kept)
    uint64_t create_rev = 0;
    std::string key;
    /// Whether a record `b` created at `rev` (own: of this host) must yield to this holder:
    /// this host's endpoints first, then the one created first (key order on a tie).
    bool keeps_over(bool b_own, uint64_t rev, const std::string& b_key) const noexcept {
        if (own != b_own)
            return own;
        return create_rev != rev ? create_rev < rev : key < b_key;
    }
};

} // namespace

desired_state build_desired(const store_view& kv, const sync_identity& self, std::vector<std::string>& problems) {
    desired_state want;
    std::map<std::string, uint32_t> vni_of;   // network id -> VNI
    // Pass 1: networks and hosts (endpoints need their network's VNI). A VNI belongs to
    // the network created first; a later record asking for it is skipped, whatever its id.
    std::map<uint32_t, holder> vni_holder;
    std::map<uint32_t, std::string> vni_net_id;
    std::map<rte_be32_t, holder> vtep_holder;   // a VTEP address belongs to the host registered first
    std::map<std::string, rte_be32_t> vtep_of;  // host id -> its VTEP, for the hosts kept
    std::set<std::string> refused_hosts;        // whose VTEP another host holds
    for (const auto& [key, item] : kv) {
        const keys::parsed k = keys::parse(key);
        try {
            if (k.what == keys::parsed::kind::net_meta) {
                const net_meta m = net_meta_from_value(k.id, item.value);
                if (auto h = vni_holder.find(m.vni); h != vni_holder.end()) {
                    if (h->second.keeps_over(false, item.create_rev, key)) {
                        problems.push_back(key + ": VNI " + std::to_string(m.vni) + " is already used by network \"" +
                                           want.network_names[m.vni] + "\" (" + h->second.key + ", created first)");
                        continue;
                    }
                    problems.push_back(h->second.key + ": VNI " + std::to_string(m.vni) + " is already used by network \"" +
                                       m.name + "\" (" + key + ", created first)");
                    vni_of.erase(vni_net_id[m.vni]);
                }
                vni_holder[m.vni] = holder{false, item.create_rev, key};
                vni_net_id[m.vni] = k.id;
                want.network_names[m.vni] = m.name;
                want.networks[m.vni] = network_spec{m.vni, m.mtu, rte_cpu_to_be_32(m.subnet.addr),
                                                    rte_cpu_to_be_32(m.subnet.mask()), rte_cpu_to_be_32(m.gateway)};
                vni_of[k.id] = m.vni;
            } else if (k.what == keys::parsed::kind::host) {
                const host_record h = host_record_from_value(item.value);
                const rte_be32_t vtep = rte_cpu_to_be_32(*parse_ipv4(h.vtep));
                const bool own = k.id == self.host_id;
                if (auto [it, fresh] = vtep_holder.try_emplace(vtep, holder{own, item.create_rev, key}); !fresh) {
                    const bool keep = it->second.keeps_over(own, item.create_rev, key);
                    problems.push_back((keep ? key : it->second.key) + ": VTEP " + h.vtep + " is already registered by " +
                                       (keep ? it->second.key : key) + " (created first)");
                    if (!keep) {
                        const std::string loser(keys::parse(it->second.key).id);
                        vtep_of.erase(loser);
                        refused_hosts.insert(loser);
                        it->second = holder{own, item.create_rev, key};
                        vtep_of[k.id] = vtep;
                    } else {
                        refused_hosts.insert(k.id);
                    }
                    continue;   // one record of the two was enough to know the VTEP
                }
                vtep_of[k.id] = vtep;
                if (!own && vtep != self.vtep_be)
                    want.vteps.insert(vtep);
            }
        } catch (const std::exception& e) {
            problems.push_back(key + ": " + e.what());
        }
    }
    // Pass 2: endpoints. A MAC within a network belongs to this host's endpoint, else to
    // the endpoint created first: a later record with the same MAC is skipped (and so
    // leaves nothing behind when it is deleted). This host's endpoints are programmed by
    // the agent with their ports; they count here for their MACs and names only.
    struct accepted {
        holder who;
        rte_be32_t ip_be;
        std::string name;   ///< lower case
        remote_endpoint ep;
    };
    std::map<std::pair<uint32_t, std::array<uint8_t, 6>>, accepted> by_mac;
    for (const auto& [key, item] : kv) {
        const keys::parsed k = keys::parse(key);
        if (k.what != keys::parsed::kind::endpoint)
            continue;
        try {
            const endpoint_record e = endpoint_record_from_value(item.value);
            auto net = vni_of.find(k.id);
            if (net == vni_of.end())
                continue;   // network meta not (yet) visible, or skipped above
            const auto mac = parse_mac(e.mac);
            if (!mac)
                throw std::invalid_argument("invalid MAC \"" + e.mac + "\"");
            const network_spec& n = want.networks.at(net->second);
            const rte_be32_t ip_be = rte_cpu_to_be_32(k.ip);
            if ((ip_be & n.mask_be) != n.subnet_be || ip_be == n.subnet_be || ip_be == (n.subnet_be | ~n.mask_be) ||
                ip_be == n.gateway_be)
                throw std::invalid_argument("address " + format_ipv4(k.ip) + " is not a host address of the network");
            const bool own = e.host == self.host_id;
            rte_be32_t vtep = 0;
            if (!own) {
                vtep = rte_cpu_to_be_32(*parse_ipv4(e.vtep));
                if (vtep == self.vtep_be) {
                    problems.push_back(key + ": host " + e.host + " claims this host's VTEP " + e.vtep);
                    continue;
                }
                // An endpoint lives behind its host's registered VTEP, and nowhere else.
                const auto h = vtep_of.find(e.host);
                if (refused_hosts.contains(e.host) || (h != vtep_of.end() && h->second != vtep)) {
                    problems.push_back(key + ": VTEP " + e.vtep + " is not the registered VTEP of host " + e.host);
                    continue;
                }
            }
            accepted a{holder{own, item.create_rev, key}, rte_cpu_to_be_32(k.ip), fold_case(e.name),
                       remote_endpoint{to_ether(*mac), vtep}};
            auto [it, fresh] = by_mac.try_emplace({net->second, *mac}, a);
            if (!fresh) {
                const bool keep = it->second.who.keeps_over(own, item.create_rev, key);
                const accepted& loser = keep ? a : it->second;
                const accepted& winner = keep ? it->second : a;
                problems.push_back(loser.who.key + ": MAC " + e.mac + " is already used by endpoint \"" + winner.name +
                                   "\" (" + winner.who.key + (winner.who.own ? ", on this host)" : ", created first)"));
                if (!keep)
                    it->second = a;
            }
        } catch (const std::exception& ex) {
            problems.push_back(key + ": " + ex.what());
        }
    }
    for (const auto& [vni_mac, a] : by_mac) {
        const uint32_t vni = vni_mac.first;
        want.names[{vni, a.name}] = a.ip_be;
        if (a.who.own)
            continue;
        want.vteps.insert(a.ep.vtep_be);
        want.endpoints[{vni, a.ip_be}] = a.ep;
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

sync_engine::sync_engine(table_writer& tw, sync_identity self, std::function<void(rte_be32_t)> on_vtep_added,
                         std::function<void(uint32_t)> on_network_added)
    : tw_(tw), self_(std::move(self)), on_vtep_added_(std::move(on_vtep_added)),
      on_network_added_(std::move(on_network_added)) {}

void sync_engine::retry() { reconcile(revision_); }

std::optional<rte_be32_t> sync_engine::resolve(uint32_t vni, const std::string& name) const {
    auto it = names_.find({vni, fold_case(name)});
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
        view_[item.key] = item;
    counters_.snapshots++;
    reconcile(snap.revision);
}

void sync_engine::on_changes(std::span<const kv_delta> deltas, uint64_t revision) {
    if (store_failing_) {
        // Changes arrive: the watch reads the store again, with or without a snapshot.
        OVP_LOG(NOTICE, "store sync: store reachable again, changes applied up to revision %" PRIu64, revision);
        store_failing_ = false;
    }
    for (const auto& d : deltas) {
        if (d.what == kv_delta::kind::put)
            view_[d.item.key] = d.item;
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
    std::set<uint32_t> networks_before;
    for (const auto& [vni, spec] : applied_.networks)
        networks_before.insert(vni);
    const unsigned failed = apply_diff(applied_, want, tw_);
    if (on_vtep_added_)
        for (rte_be32_t v : applied_.vteps)
            if (!vteps_before.contains(v))
                on_vtep_added_(v);
    if (on_network_added_)
        for (const auto& [vni, spec] : applied_.networks)
            if (!networks_before.contains(vni))
                on_network_added_(vni);
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
        OVP_LOG(WARNING, "%s", printable(line).c_str());
}

} // namespace overpass::ctl
