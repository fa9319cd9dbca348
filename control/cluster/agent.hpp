// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The cluster agent: this host's member of the overlay. It registers the host (an
// ephemeral hosts/<id> key bound to a liveness handle), creates and removes networks
// (one atomic transaction of create-only claims), allocates addresses and attaches
// endpoints (ephemeral IP claim + port + tables, rolled back as a whole on failure), and
// runs the sync engine that programs everything other hosts publish.
// Every operation is an awaitable on the control io_context; failures that the caller
// should show to a user are cluster_error{kind, one-line message} (errors.hpp), and a
// store that cannot be reached is store_error. Requests and answers: requests.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>   // std::exchange, used but not included by Boost 1.74's awaitable.hpp
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "control/cluster/errors.hpp"
#include "control/cluster/requests.hpp"
#include "control/ports/port_ops.hpp"
#include "control/publish/table_writer.hpp"
#include "control/store/keys.hpp"
#include "control/store/store.hpp"
#include "control/sync/sync.hpp"

namespace overpass::ctl {

struct agent_config {
    std::string host_id;
    std::string vtep_ip;              ///< dotted quad
    rte_be32_t vtep_be = 0;           ///< the same address, network order
    uint16_t vxlan_port = default_vxlan_port;
    uint16_t default_mtu = default_network_mtu;
    uint16_t uplink_mtu = 1500;
    std::chrono::seconds liveness_ttl{10};
    /// Take the host id over even while a live daemon with another VTEP holds it.
    bool replace = false;
};

struct agent_hooks {
    /// A remote VTEP entered the tables: resolve its next-hop MAC (ARP).
    std::function<void(rte_be32_t)> on_vtep_added;
};

class agent {
public:
    agent(boost::asio::io_context& io, store& st, table_writer& tw, port_ops& ports, agent_config cfg,
          agent_hooks hooks = {});
    ~agent();
    agent(const agent&) = delete;
    agent& operator=(const agent&) = delete;

    /// Opens the liveness handle, publishes hosts/<id>, starts the sync engine.
    /// Throws store_error / std::runtime_error (init zone: the caller exits).
    boost::asio::awaitable<void> start();
    /// Detaches every local endpoint, releases the liveness handle (its keys go with
    /// it), stops syncing. Never throws.
    boost::asio::awaitable<void> shutdown();

    boost::asio::awaitable<net_meta> create_network(network_request req);
    boost::asio::awaitable<std::vector<net_meta>> list_networks();
    /// The network plus its endpoints (on every host).
    boost::asio::awaitable<network_details> inspect_network(std::string name);
    boost::asio::awaitable<void> remove_network(std::string name);

    boost::asio::awaitable<endpoint_info> attach_endpoint(attach_request req);
    /// `network` may be empty unless the name is attached to several networks here.
    boost::asio::awaitable<void> detach_endpoint(std::string name, std::string network = {});
    boost::asio::awaitable<std::vector<endpoint_info>> list_endpoints();
    boost::asio::awaitable<std::vector<host_info>> list_hosts();

    /// Sync state and local counts (for /v1/stats and metrics).
    nlohmann::json status() const;

    /// This host's registration: alive, and renewals over every liveness handle it held.
    struct liveness_status {
        bool registered = false;
        uint64_t losses = 0;
        liveness_counters renewals;
    };
    liveness_status liveness_state() const noexcept;
    std::size_t local_endpoint_count() const noexcept { return local_.size(); }
    const sync_engine& sync() const noexcept { return sync_; }

private:
    struct local_endpoint {
        endpoint_info info;
        uint32_t vni = 0;
        uint16_t port_id = 0;
        std::string key;
        std::string name_key;   ///< the name claim, bound to the same session
        std::string value;
    };

    /// An address claimed for a new endpoint, and what it takes to give it back.
    struct address_claim {
        uint32_t ip = 0;
        std::string key;                          ///< nets/<id>/eps/<ip>, bound to the session
        std::string value;                        ///< its endpoint_record
        std::string name_key;                     ///< the name claim, bound to the same session
        std::string cursor_key;                   ///< nets/<id>/alloc: the address handed out last
        std::optional<std::string> prev_cursor;   ///< the cursor's value before our claim (none: absent)
    };

    boost::asio::awaitable<net_meta> find_network(const std::string& name);
    /// The MTU asked for if the uplink carries it, else the configured default (at most
    /// what the uplink carries).
    uint16_t network_mtu(const std::optional<uint32_t>& want) const;
    /// The network's claims and record in one transaction.
    boost::asio::awaitable<txn_result> claim_network(const net_meta& m, bool allow_overlap);
    /// The next free address of `m` after its cursor, claimed together with the name of
    /// the endpoint `info` (all but its ip and mac) and the cursor. Throws conflict (the
    /// name is taken) or exhausted.
    boost::asio::awaitable<address_claim> claim_address(const net_meta& m, const endpoint_info& info);
    /// Gives back a claim whose endpoint never came up, the cursor included. Never throws.
    boost::asio::awaitable<void> release_address(const address_claim& c);
    /// Creates the endpoint's port and programs its network and address; returns the port
    /// id. On failure the port is gone again and cluster_error{internal} is thrown.
    uint16_t bring_up(const net_meta& m, const attach_request& req, const endpoint_info& info);
    boost::asio::awaitable<void> register_host();
    boost::asio::awaitable<void> recover_liveness();
    boost::asio::awaitable<void> retry_loop();
    void on_liveness_lost();
    /// Folds the current handle's renewal counters into past_renewals_ and drops it.
    void retire_lease() noexcept;
    /// Network `vni` entered the tables again (its record came back after it went away,
    /// e.g. a store file removed and restored): its endpoints on this host are bound to
    /// their ports again, without detach and attach.
    void reprogram_local_endpoints(uint32_t vni) noexcept;

    boost::asio::io_context& io_;
    store& store_;
    table_writer& tw_;
    port_ops& ports_;
    agent_config cfg_;
    agent_hooks hooks_;
    sync_engine sync_;
    std::unique_ptr<liveness> lease_;
    std::map<std::pair<std::string, std::string>, local_endpoint> local_;   ///< by (network id, name)
    std::shared_ptr<bool> alive_token_ = std::make_shared<bool>(true);
    uint64_t liveness_losses_ = 0;
    liveness_counters past_renewals_;   ///< of handles already replaced
    bool recovering_ = false;
    std::chrono::milliseconds recover_backoff_{0};   ///< grows while re-registration keeps failing
};

} // namespace overpass::ctl
