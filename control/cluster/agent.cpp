// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/log.hpp"
#include "control/cluster/agent.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <iostream>
#include <set>
#include <tuple>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <rte_byteorder.h>

namespace overpass::ctl {

namespace asio = boost::asio;

namespace {

// The default subnet pool: 10.0.N.0/24 inside 10.0.0.0/16.
constexpr uint32_t pool_base = 0x0a000000;
constexpr int max_txn_attempts = 5;
// Passes over an address pool whose free addresses were all claimed by someone else
// meanwhile or held back by the store; 5 passes 400 ms apart outlast overpassd's default
// Consul lock-delay (1 s).
constexpr int alloc_rounds = 5;
constexpr std::chrono::milliseconds alloc_retry_pause{400};

network_spec spec_of(const net_meta& m) {
    return network_spec{m.vni, m.mtu, rte_cpu_to_be_32(m.subnet.addr), rte_cpu_to_be_32(m.subnet.mask()),
                        rte_cpu_to_be_32(m.gateway)};
}

// Every readable network meta in a listing (a broken record must not block the others).
std::vector<net_meta> metas_of(const kv_snapshot& snap) {
    std::vector<net_meta> out;
    for (const auto& item : snap.items) {
        const keys::parsed k = keys::parse(item.key);
        if (k.what != keys::parsed::kind::net_meta)
            continue;
        try {
            out.push_back(net_meta_from_value(k.id, item.value));
        } catch (const std::exception&) {
        }
    }
    return out;
}

std::string last_component(const std::string& key) { return key.substr(key.rfind('/') + 1); }

// What one listing of the store shows as taken: the keys, and every subnet and VNI that
// a claim or a network record holds.
struct network_claims {
    std::set<std::string> present;
    std::vector<std::pair<ipv4_prefix, std::string>> subnets;   // taken, with owner (id or name)
    std::set<uint32_t> vnis;
    std::vector<net_meta> metas;

    std::string owner_name(const std::string& owner) const {
        for (const net_meta& o : metas)
            if (o.id == owner || o.name == owner)
                return o.name;
        return owner;
    }
};

network_claims claims_of(const kv_snapshot& all) {
    network_claims c;
    for (const auto& item : all.items) {
        c.present.insert(item.key);
        const keys::parsed k = keys::parse(item.key);
        if (k.what == keys::parsed::kind::subnet) {
            std::string cidr = k.id;
            std::replace(cidr.begin(), cidr.end(), '_', '/');
            try {
                c.subnets.emplace_back(parse_prefix(cidr), item.value);
            } catch (const std::invalid_argument&) {
            }
        } else if (k.what == keys::parsed::kind::vni) {
            try {
                c.vnis.insert(static_cast<uint32_t>(std::stoul(k.id)));
            } catch (const std::exception&) {
            }
        }
    }
    c.metas = metas_of(all);
    for (const net_meta& other : c.metas) {
        c.subnets.emplace_back(other.subnet, other.name);
        c.vnis.insert(other.vni);
    }
    return c;
}

// The subnet asked for, if it overlaps no other network's (or may: allow_overlap), else
// the first free /24 of the default pool.
ipv4_prefix choose_subnet(const std::optional<ipv4_prefix>& want, bool allow_overlap, const network_claims& taken) {
    if (want) {
        for (const auto& [p, owner] : taken.subnets)
            if (!allow_overlap && p.overlaps(*want))
                throw cluster_error(error_kind::conflict, "subnet " + want->str() + " overlaps " + p.str() +
                                                              " of network \"" + taken.owner_name(owner) + "\"");
        return *want;
    }
    for (uint32_t n = 0; n < 256; n++) {
        const ipv4_prefix cand{pool_base | n << 8, 24};
        if (std::none_of(taken.subnets.begin(), taken.subnets.end(),
                         [&](const auto& s) { return s.first.overlaps(cand); }))
            return cand;
    }
    throw cluster_error(error_kind::exhausted, "no free subnet left in the default pool 10.0.0.0/16; pass --subnet");
}

// The gateway asked for (`text` as given, `want` read by validate()), if it is a host
// address of the subnet, else the subnet's first host address.
uint32_t choose_gateway(const std::optional<uint32_t>& want, const std::optional<std::string>& text,
                        const ipv4_prefix& subnet) {
    if (!want)
        return subnet.addr + 1;
    if (!subnet.contains(*want) || *want == subnet.addr || *want == subnet.broadcast())
        throw cluster_error(error_kind::invalid, "gateway " + *text + " is not a host address of " + subnet.str());
    return *want;
}

// The VNI asked for if it is free, else the lowest free one from first_auto_vni.
uint32_t choose_vni(const std::optional<uint32_t>& want, const network_claims& taken) {
    if (want) {
        if (taken.vnis.contains(*want))
            throw cluster_error(error_kind::conflict,
                                "vni " + std::to_string(*want) + " is already used by another network");
        return *want;
    }
    uint32_t vni = first_auto_vni;
    while (taken.vnis.contains(vni))
        vni++;
    if (vni > max_vni)
        throw cluster_error(error_kind::exhausted, "no free VNI left");
    return vni;
}

// A claim transaction for `m` failed on `r.failed_key`: another host was faster. When the
// user asked for the value that was lost, say so; otherwise return, to pick again.
void explain_lost_race(const txn_result& r, const net_meta& m, const network_request& req) {
    if (r.failed_key == keys::name(m.name))
        throw cluster_error(error_kind::conflict, "network \"" + m.name + "\" already exists");
    if (req.vni && r.failed_key == keys::vni(m.vni))
        throw cluster_error(error_kind::conflict,
                            "vni " + std::to_string(m.vni) + " is already used by another network");
    if (req.subnet && r.failed_key == keys::subnet(m.subnet))
        throw cluster_error(error_kind::conflict,
                            "subnet " + m.subnet.str() + " is already used by another network");
}

} // namespace

agent::agent(asio::io_context& io, store& st, table_writer& tw, port_ops& ports, agent_config cfg, agent_hooks hooks)
    : io_(io), store_(st), tw_(tw), ports_(ports), cfg_(std::move(cfg)), hooks_(std::move(hooks)),
      sync_(tw, sync_identity{cfg_.host_id, cfg_.vtep_be}, hooks_.on_vtep_added,
            [this](uint32_t vni) { reprogram_local_endpoints(vni); }) {}

agent::~agent() { *alive_token_ = false; }

// ---- host registration and liveness ----

asio::awaitable<void> agent::start() {
    if (!valid_key(keys::host(cfg_.host_id)) || cfg_.host_id.find('/') != std::string::npos)
        throw std::invalid_argument("invalid host id \"" + cfg_.host_id + "\" (allowed: A-Z a-z 0-9 , - _ .)");
    co_await register_host();
    sync_.start(store_);
    asio::co_spawn(io_, retry_loop(), asio::detached);
}

// Table updates that failed (a full table, a grace period still pending) are retried
// once a second until they succeed; a store change retries them sooner.
asio::awaitable<void> agent::retry_loop() {
    std::weak_ptr<bool> token = alive_token_;
    asio::steady_timer timer(io_);
    for (;;) {
        timer.expires_after(std::chrono::seconds(1));
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        auto t = token.lock();
        if (ec || !t || !*t)
            co_return;
        if (sync_.retry_pending())
            sync_.retry();
    }
}

void agent::retire_lease() noexcept {
    if (!lease_)
        return;
    const liveness_counters c = lease_->counters();
    past_renewals_.renewals += c.renewals;
    past_renewals_.renew_failures += c.renew_failures;
    if (c.last_renewal > past_renewals_.last_renewal)
        past_renewals_.last_renewal = c.last_renewal;
    lease_.reset();
}

agent::liveness_status agent::liveness_state() const noexcept {
    liveness_status s;
    s.registered = lease_ != nullptr && lease_->alive();
    s.losses = liveness_losses_;
    s.renewals = past_renewals_;
    if (lease_) {
        const liveness_counters c = lease_->counters();
        s.renewals.renewals += c.renewals;
        s.renewals.renew_failures += c.renew_failures;
        if (c.last_renewal > s.renewals.last_renewal)
            s.renewals.last_renewal = c.last_renewal;
    }
    return s;
}

asio::awaitable<void> agent::register_host() {
    retire_lease();
    lease_ = co_await store_.open_liveness(cfg_.host_id, cfg_.liveness_ttl);
    std::weak_ptr<bool> token = alive_token_;
    lease_->on_lost([this, token] {
        if (auto t = token.lock(); t && *t)
            on_liveness_lost();
    });
    const std::string key = keys::host(cfg_.host_id);
    const std::string value = to_value(host_record{cfg_.vtep_ip, cfg_.vxlan_port});
    if (!co_await store_.create(key, value, lease_.get())) {
        // Held by a session that has not expired: an earlier run of this host (same VTEP,
        // killed before it could release it), or another daemon started with our id.
        const kv_snapshot held = co_await store_.list(key);
        for (const kv_item& item : held.items) {
            if (item.key != key)
                continue;
            std::string other;
            try {
                other = host_record_from_value(item.value).vtep;
            } catch (const std::exception&) {
                other = "(unreadable record)";
            }
            if (other != cfg_.vtep_ip && !cfg_.replace)
                throw store_error("host id \"" + cfg_.host_id + "\" is held by a live daemon with VTEP " + other +
                                  " (this one is " + cfg_.vtep_ip + "); give each host its own id, or stop that " +
                                  "daemon, or start with --replace to take the id over");
        }
        OVP_LOG(WARNING, "replacing existing %s (earlier run of this host, or --replace)", key.c_str());
        co_await store_.remove(key);
        if (!co_await store_.create(key, value, lease_.get()))
            throw store_error("cannot register " + key + ": another process keeps creating it");
    }
}

void agent::reprogram_local_endpoints(uint32_t vni) noexcept {
    for (const auto& [key, ep] : local_) {
        if (ep.vni != vni)
            continue;
        const auto mac = parse_mac(ep.info.mac);
        const int rc = mac ? tw_.upsert_local_endpoint(vni, rte_cpu_to_be_32(ep.info.ip), to_ether(*mac), ep.port_id)
                           : -EINVAL;
        if (rc < 0)
            OVP_LOG(WARNING, "endpoint %s: cannot bind it to its port again in network %s: %s", ep.info.name.c_str(),
                    ep.info.network.c_str(), std::strerror(-rc));
    }
}

void agent::on_liveness_lost() {
    liveness_losses_++;
    OVP_LOG(WARNING, "store session lost; re-registering host %s", cfg_.host_id.c_str());
    if (recovering_)
        return;
    recovering_ = true;
    std::weak_ptr<bool> token = alive_token_;
    asio::co_spawn(io_, recover_liveness(), [this, token](std::exception_ptr e) {
        if (auto t = token.lock(); !t || !*t)
            return;
        recovering_ = false;
        if (!e) {
            recover_backoff_ = std::chrono::milliseconds(0);
            return;
        }
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            OVP_LOG(WARNING, "re-registration failed: %s", ex.what());
        }
        recover_backoff_ = std::min<std::chrono::milliseconds>(
            std::chrono::seconds(10), std::max<std::chrono::milliseconds>(std::chrono::milliseconds(250), 2 * recover_backoff_));
        on_liveness_lost();
    });
}

asio::awaitable<void> agent::recover_liveness() {
    if (recover_backoff_.count() > 0) {
        asio::steady_timer timer(io_);
        timer.expires_after(recover_backoff_);
        co_await timer.async_wait(asio::use_awaitable);
    }
    co_await register_host();
    for (auto& [k, ep] : local_) {
        std::vector<txn_op> ops;
        ops.push_back(txn_op::create(ep.key, ep.value, lease_.get()));
        ops.push_back(txn_op::create(ep.name_key, format_ipv4(ep.info.ip), lease_.get()));
        const txn_result r = co_await store_.txn(std::move(ops));
        if (!r.succeeded)
            OVP_LOG(WARNING, "address %s or name of endpoint %s was claimed by another host while this host's session was lost",
                    format_ipv4(ep.info.ip).c_str(), ep.info.name.c_str());
    }
}

asio::awaitable<void> agent::shutdown() {
    *alive_token_ = false;   // no liveness recovery from here on
    for (auto& [k, ep] : local_) {
        tw_.remove_endpoint(ep.vni, to_ether(*parse_mac(ep.info.mac)));
        ports_.detach(ep.port_id);
    }
    local_.clear();
    sync_.stop();
    if (lease_) {
        try {
            co_await lease_->release();   // deletes the host key and the endpoint keys
        } catch (const std::exception& e) {
            OVP_LOG(WARNING, "releasing the store session: %s", e.what());
        }
        retire_lease();
    }
}

// ---- networks ----

asio::awaitable<net_meta> agent::find_network(const std::string& name) {
    if (!valid_name(name))
        throw cluster_error(error_kind::invalid, "invalid network name \"" + name + "\"");
    const kv_snapshot claim = co_await store_.list(keys::name(name));
    for (const auto& item : claim.items) {
        if (item.key != keys::name(name))
            continue;
        const kv_snapshot meta = co_await store_.list(keys::net_meta(item.value));
        for (const auto& m : meta.items)
            if (m.key == keys::net_meta(item.value))
                co_return net_meta_from_value(item.value, m.value);
    }
    throw cluster_error(error_kind::not_found, "network \"" + name + "\" not found");
}

asio::awaitable<net_meta> agent::create_network(network_request req) {
    const network_request_values want = validate(req);
    net_meta m;
    m.name = req.name;
    m.created_by = cfg_.host_id;
    m.mtu = network_mtu(req.mtu);
    for (int attempt = 0; attempt < max_txn_attempts; attempt++) {
        const kv_snapshot all = co_await store_.list(std::string(keys::root));
        const network_claims taken = claims_of(all);
        if (taken.present.contains(keys::name(req.name)))
            throw cluster_error(error_kind::conflict, "network \"" + req.name + "\" already exists");
        m.subnet = choose_subnet(want.subnet, req.allow_overlap, taken);
        m.gateway = choose_gateway(want.gateway, req.gateway, m.subnet);
        m.vni = choose_vni(req.vni, taken);
        m.id = random_id();
        const txn_result r = co_await claim_network(m, req.allow_overlap);
        if (r.succeeded)
            co_return m;
        explain_lost_race(r, m, req);
    }
    throw cluster_error(error_kind::conflict,
                        "could not create network \"" + req.name + "\": too many concurrent changes, try again");
}

uint16_t agent::network_mtu(const std::optional<uint32_t>& want) const {
    const uint32_t max_mtu = cfg_.uplink_mtu > vxlan_overhead ? cfg_.uplink_mtu - vxlan_overhead : 0;
    if (!want)
        return static_cast<uint16_t>(std::min<uint32_t>(cfg_.default_mtu, max_mtu));
    if (*want < min_network_mtu || *want > max_mtu)
        throw cluster_error(error_kind::invalid, "invalid mtu " + std::to_string(*want) + ": must be between " +
                                                     std::to_string(min_network_mtu) + " and " + std::to_string(max_mtu) +
                                                     " (uplink MTU " + std::to_string(cfg_.uplink_mtu) +
                                                     " minus VXLAN overhead)");
    return static_cast<uint16_t>(*want);
}

// The network's claims (name, VNI, subnet unless it may overlap) and its record, in one
// transaction of create-only operations: all of them or none.
asio::awaitable<txn_result> agent::claim_network(const net_meta& m, bool allow_overlap) {
    std::vector<txn_op> ops;
    ops.push_back(txn_op::create(keys::name(m.name), m.id));
    ops.push_back(txn_op::create(keys::vni(m.vni), m.id));
    if (!allow_overlap)
        ops.push_back(txn_op::create(keys::subnet(m.subnet), m.id));
    ops.push_back(txn_op::create(keys::net_meta(m.id), to_value(m)));
    const txn_result r = co_await store_.txn(std::move(ops));
    co_return r;
}

asio::awaitable<std::vector<net_meta>> agent::list_networks() {
    const kv_snapshot snap = co_await store_.list(keys::nets_prefix());
    std::vector<net_meta> nets = metas_of(snap);
    std::sort(nets.begin(), nets.end(), [](const net_meta& a, const net_meta& b) { return a.name < b.name; });
    co_return nets;
}

asio::awaitable<network_details> agent::inspect_network(std::string name) {
    network_details d;
    d.network = co_await find_network(name);
    const std::vector<endpoint_info> all = co_await list_endpoints();
    for (const auto& e : all)
        if (e.network_id == d.network.id)
            d.endpoints.push_back(e);
    co_return d;
}

asio::awaitable<void> agent::remove_network(std::string name) {
    const net_meta m = co_await find_network(name);
    // One listing of the network: its endpoints, its record and its cursor at one
    // revision. An attach after it moves the cursor on, which fails the check below, so
    // a removal and an attach never both succeed.
    const kv_snapshot net = co_await store_.list(keys::net_prefix(m.id));
    std::size_t n_eps = 0;
    uint64_t meta_rev = 0;
    uint64_t cursor_rev = 0;
    for (const auto& item : net.items) {
        if (keys::parse(item.key).what == keys::parsed::kind::endpoint)
            n_eps++;
        else if (item.key == keys::net_meta(m.id))
            meta_rev = item.mod_rev;
        else if (item.key == keys::alloc_cursor(m.id))
            cursor_rev = item.mod_rev;
    }
    if (n_eps != 0)
        throw cluster_error(error_kind::conflict, "network \"" + name + "\" has " + std::to_string(n_eps) +
                                                      " endpoint(s) attached; detach them first");
    std::vector<txn_op> ops;
    ops.push_back(txn_op::remove(keys::net_meta(m.id), meta_rev));
    ops.push_back(txn_op::check(keys::alloc_cursor(m.id), cursor_rev));
    ops.push_back(txn_op::remove(keys::alloc_cursor(m.id)));
    // Release only the claims this network holds.
    for (const std::string& claim : {keys::name(m.name), keys::vni(m.vni), keys::subnet(m.subnet)}) {
        const kv_snapshot found = co_await store_.list(claim);
        for (const auto& item : found.items)
            if (item.key == claim && item.value == m.id)
                ops.push_back(txn_op::remove(claim, item.mod_rev));
    }
    const txn_result removed = co_await store_.txn(std::move(ops));
    if (!removed.succeeded)
        throw cluster_error(error_kind::conflict, "network \"" + name + "\" changed while removing it; try again");
}

// ---- endpoints ----

asio::awaitable<endpoint_info> agent::attach_endpoint(attach_request req) {
    validate(req);
    if (!lease_ || !lease_->alive())
        throw cluster_error(error_kind::unavailable, "not registered in the store (session lost); try again shortly");
    const net_meta m = co_await find_network(req.network);

    endpoint_info info{m.name, m.id, req.name, 0, m.subnet.len, {}, cfg_.host_id, cfg_.vtep_ip,
                       req.netns.empty() ? "vhost" : "tap"};
    const address_claim claim = co_await claim_address(m, info);
    info.ip = claim.ip;
    info.mac = format_mac(mac_for_ip(claim.ip));
    local_endpoint ep;
    ep.info = info;
    ep.vni = m.vni;
    ep.key = claim.key;
    ep.name_key = claim.name_key;
    ep.value = claim.value;
    std::optional<cluster_error> failure;
    try {
        ep.port_id = bring_up(m, req, info);
    } catch (const cluster_error& e) {
        failure = e;
    }
    if (failure) {
        co_await release_address(claim);
        throw *failure;
    }
    local_[{m.id, req.name}] = ep;
    co_return info;
}

asio::awaitable<agent::address_claim> agent::claim_address(const net_meta& m, const endpoint_info& info) {
    address_claim c;
    // Names resolve case-insensitively (DNS): "e1" and "E1" are one name, claimed once.
    c.name_key = keys::endpoint_name(m.id, fold_case(info.name));
    c.cursor_key = keys::alloc_cursor(m.id);
    // Addresses are handed out in turn, after the one handed out last (the network's
    // cursor) and wrapping around, so that a freed address comes back only after the rest
    // of the pool: a host that stalls past its TTL finds its addresses still free. A claim
    // that fails although the listing showed the address free lost a race with another
    // host, or the store holds the address back for a moment (Consul refuses to lock a key
    // for the lock-delay after the session that held it ended): when a pass claimed
    // nothing for that reason, read the pool again and retry.
    bool claimed = false;
    for (int round = 0; round < alloc_rounds && !claimed; round++) {
        if (round > 0) {
            asio::steady_timer pause(io_, alloc_retry_pause);
            co_await pause.async_wait(asio::use_awaitable);
        }
        const kv_snapshot pool = co_await store_.list(keys::net_prefix(m.id));
        std::set<uint32_t> taken;
        uint32_t cursor = m.gateway;
        uint64_t meta_rev = 0;
        c.prev_cursor.reset();
        for (const auto& item : pool.items) {
            if (item.key == keys::net_meta(m.id))
                meta_rev = item.mod_rev;
            if (item.key == c.cursor_key) {
                c.prev_cursor = item.value;
                if (const auto ip = parse_ipv4(item.value); ip && m.subnet.contains(*ip))
                    cursor = *ip;
                continue;
            }
            const keys::parsed k = keys::parse(item.key);
            if (k.what != keys::parsed::kind::endpoint)
                continue;
            taken.insert(k.ip);
            std::optional<endpoint_record> rec;
            try {
                rec = endpoint_record_from_value(item.value);
            } catch (const std::exception&) {
            }
            if (rec && fold_case(rec->name) == fold_case(info.name))
                throw cluster_error(error_kind::conflict, "endpoint name \"" + info.name +
                                                              "\" is already taken in network \"" + m.name + "\"");
        }
        if (meta_rev == 0)
            throw cluster_error(error_kind::not_found, "network \"" + m.name + "\" not found");
        const uint32_t first = m.subnet.addr + 1;
        const uint32_t last = m.subnet.broadcast() - 1;
        const uint32_t span = last >= first ? last - first + 1 : 0;
        const uint32_t after = cursor >= first && cursor <= last ? cursor : first;
        bool contended = false;
        for (uint32_t i = 0; i < span && !claimed; i++) {
            const uint32_t ip = first + (after - first + 1 + i) % span;
            if (ip == m.gateway || taken.contains(ip))
                continue;
            c.ip = ip;
            c.key = keys::endpoint(m.id, ip);
            c.value = to_value(endpoint_record{info.name, format_mac(mac_for_ip(ip)), info.host, info.vtep, info.kind});
            // Address, name and cursor in one transaction, while the network is as listed:
            // the listing above only saw the past, another host may attach the same name at
            // this very moment, and the network may be removed meanwhile (remove_network()
            // in turn checks the cursor, which this transaction moves on).
            std::vector<txn_op> ops;
            ops.push_back(txn_op::check(keys::net_meta(m.id), meta_rev));
            ops.push_back(txn_op::create(c.key, c.value, lease_.get()));
            ops.push_back(txn_op::create(c.name_key, format_ipv4(ip), lease_.get()));
            ops.push_back(txn_op::put(c.cursor_key, format_ipv4(ip)));
            const txn_result r = co_await store_.txn(std::move(ops));
            if (!r.succeeded && r.failed_key == keys::net_meta(m.id))
                throw cluster_error(error_kind::not_found, "network \"" + m.name + "\" was removed meanwhile");
            if (!r.succeeded && r.failed_key == c.name_key)
                throw cluster_error(error_kind::conflict, "endpoint name \"" + info.name +
                                                              "\" is already taken in network \"" + m.name + "\"");
            claimed = r.succeeded;
            contended |= !r.succeeded;
        }
        if (!contended)
            break;
        if (!claimed && round + 1 < alloc_rounds)
            OVP_LOG(INFO, "attach %s: every free address of network \"%s\" was claimed meanwhile or is held back "
                          "by the store; reading the pool again (pass %d of %d)",
                    info.name.c_str(), m.name.c_str(), round + 2, alloc_rounds);
    }
    if (!claimed)
        throw cluster_error(error_kind::exhausted,
                            "address pool of network \"" + m.name + "\" (" + m.subnet.str() + ") is exhausted");
    co_return c;
}

asio::awaitable<void> agent::release_address(const address_claim& c) {
    try {
        std::vector<txn_op> undo;
        undo.push_back(txn_op::remove(c.key));
        undo.push_back(txn_op::remove(c.name_key));
        // The address was never used: the next attach may take it again.
        undo.push_back(c.prev_cursor ? txn_op::put(c.cursor_key, *c.prev_cursor) : txn_op::remove(c.cursor_key));
        co_await store_.txn(std::move(undo));
    } catch (const std::exception& e) {
        OVP_LOG(WARNING, "rollback of %s: %s", c.key.c_str(), e.what());
    }
}

uint16_t agent::bring_up(const net_meta& m, const attach_request& req, const endpoint_info& info) {
    const rte_ether_addr mac = to_ether(mac_for_ip(info.ip));
    std::optional<cluster_error> failure;
    bool port_up = false;
    uint16_t port_id = 0;
    try {
        if (!req.netns.empty()) {
            container_iface iface;
            iface.netns = req.netns;
            iface.mac = mac;
            iface.ip_cidr = format_ipv4(info.ip) + "/" + std::to_string(info.prefix_len);
            iface.gateway = format_ipv4(m.gateway);
            iface.mtu = m.mtu;
            iface.dns_server = format_ipv4(m.gateway);
            port_id = ports_.attach_tap(req.name, iface);
        } else {
            port_id = ports_.attach_vhost(req.name, req.vhost_user);
        }
        port_up = true;
        // The sync engine may not have seen a network created a moment ago; the upsert
        // is idempotent.
        if (int rc = tw_.upsert_network(spec_of(m)); rc < 0)
            failure = cluster_error(error_kind::internal,
                                    "cannot program network \"" + m.name + "\": " + std::strerror(-rc));
        else if (rc = tw_.upsert_local_endpoint(m.vni, rte_cpu_to_be_32(info.ip), mac, port_id); rc < 0)
            failure = cluster_error(error_kind::internal,
                                    "cannot program endpoint \"" + req.name + "\": " + std::strerror(-rc));
    } catch (const std::exception& e) {   // port_error, or anything else on the way
        failure = cluster_error(error_kind::internal,
                                std::string("cannot attach endpoint \"") + req.name + "\": " + e.what());
    }
    if (failure) {
        if (port_up)
            ports_.detach(port_id);
        throw *failure;
    }
    return port_id;
}

asio::awaitable<void> agent::detach_endpoint(std::string name, std::string network) {
    std::vector<decltype(local_)::iterator> matches;
    for (auto it = local_.begin(); it != local_.end(); ++it)
        if (it->second.info.name == name && (network.empty() || it->second.info.network == network))
            matches.push_back(it);
    if (matches.empty())
        throw cluster_error(error_kind::not_found, "endpoint \"" + name + "\" not found on this host");
    if (matches.size() > 1)
        throw cluster_error(error_kind::conflict,
                            "endpoint name \"" + name + "\" is attached to several networks; give the network");
    const local_endpoint ep = matches.front()->second;
    local_.erase(matches.front());
    tw_.remove_endpoint(ep.vni, to_ether(*parse_mac(ep.info.mac)));
    ports_.detach(ep.port_id);
    std::vector<txn_op> ops;
    ops.push_back(txn_op::remove(ep.key));
    ops.push_back(txn_op::remove(ep.name_key));
    co_await store_.txn(std::move(ops));
}

asio::awaitable<std::vector<endpoint_info>> agent::list_endpoints() {
    const kv_snapshot all = co_await store_.list(keys::nets_prefix());
    std::map<std::string, net_meta> nets;
    for (auto& m : metas_of(all))
        nets[m.id] = m;
    std::vector<endpoint_info> out;
    for (const auto& item : all.items) {
        const keys::parsed k = keys::parse(item.key);
        auto net = nets.find(k.id);
        if (k.what != keys::parsed::kind::endpoint || net == nets.end())
            continue;
        try {
            const endpoint_record r = endpoint_record_from_value(item.value);
            out.push_back({net->second.name, k.id, r.name, k.ip, net->second.subnet.len, r.mac, r.host, r.vtep, r.kind});
        } catch (const std::exception&) {
        }
    }
    std::sort(out.begin(), out.end(), [](const endpoint_info& a, const endpoint_info& b) {
        return std::tie(a.network, a.ip) < std::tie(b.network, b.ip);
    });
    co_return out;
}

asio::awaitable<std::vector<host_info>> agent::list_hosts() {
    std::vector<host_info> out;
    const kv_snapshot hosts = co_await store_.list(keys::hosts_prefix());
    for (const auto& item : hosts.items) {
        try {
            const host_record h = host_record_from_value(item.value);
            out.push_back({last_component(item.key), h.vtep, h.vxlan_port});
        } catch (const std::exception&) {
        }
    }
    co_return out;
}

nlohmann::json agent::status() const {
    const sync_counters& c = sync_.counters();
    return {{"host", cfg_.host_id},
            {"vtep", cfg_.vtep_ip},
            {"store", store_.url()},
            {"registered", lease_ != nullptr && lease_->alive()},
            {"liveness_losses", liveness_losses_},
            {"local_endpoints", local_.size()},
            {"sync",
             {{"applied_revision", c.applied_revision},
              {"store_errors", c.store_errors},
              {"table_errors", c.table_errors},
              {"skipped_records", c.skipped_records},
              {"snapshots", c.snapshots},
              {"batches", c.batches},
              {"networks", sync_.applied().networks.size()},
              {"remote_vteps", sync_.applied().vteps.size()},
              {"remote_endpoints", sync_.applied().endpoints.size()}}}};
}

} // namespace overpass::ctl
