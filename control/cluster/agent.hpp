// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The cluster agent: this host's member of the overlay. It registers the host (an
// ephemeral hosts/<id> key bound to a liveness handle), creates and removes networks
// (one atomic transaction of create-only claims), allocates addresses and attaches
// endpoints (ephemeral IP claim + port + tables, rolled back as a whole on failure), and
// runs the sync engine that programs everything other hosts publish.
// Every operation is an awaitable on the control io_context; failures that the caller
// should show to a user are api_error{HTTP status, one-line message}.
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

#include "control/ports/port_ops.hpp"
#include "control/publish/table_writer.hpp"
#include "control/store/keys.hpp"
#include "control/store/store.hpp"
#include "control/sync/sync.hpp"

namespace overpass::ctl {

/// An error meant for the API client: HTTP status + one line.
struct api_error : std::runtime_error {
    int status;
    api_error(int http_status, const std::string& message) : std::runtime_error(message), status(http_status) {}
};

struct agent_config {
    std::string host_id;
    std::string vtep_ip;              ///< dotted quad
    rte_be32_t vtep_be = 0;           ///< the same address, network order
    uint16_t vxlan_port = default_vxlan_port;
    uint16_t default_mtu = default_network_mtu;
    uint16_t uplink_mtu = 1500;
    std::chrono::seconds liveness_ttl{10};
};

struct agent_hooks {
    /// A remote VTEP entered the tables: resolve its next-hop MAC (ARP).
    std::function<void(rte_be32_t)> on_vtep_added;
};

struct network_request {
    std::string name;
    std::optional<std::string> subnet;    ///< CIDR; default: first free 10.0.N.0/24
    std::optional<std::string> gateway;   ///< default: first host address
    std::optional<uint32_t> vni;          ///< default: lowest free >= 4096
    std::optional<uint32_t> mtu;          ///< default: config default_mtu
    /// Let the subnet overlap other networks' (isolated by VNI; needs an explicit subnet).
    /// Such a network claims no subnets/ key, and ordinary networks still refuse to
    /// overlap it.
    bool allow_overlap = false;
};

struct attach_request {
    std::string network;
    std::string name;
    std::string netns;        ///< TAP into this namespace, or
    std::string vhost_user;   ///< a vhost-user socket path (exactly one of the two)
};

struct endpoint_info {
    std::string network;      ///< network name
    std::string network_id;
    std::string name;
    uint32_t ip = 0;          ///< host order
    uint8_t prefix_len = 0;
    std::string mac;
    std::string host;
    std::string vtep;
    std::string kind;
};
nlohmann::json to_json(const endpoint_info& e);

struct host_info {
    std::string id;
    std::string vtep;
    uint16_t vxlan_port = 0;
};
nlohmann::json to_json(const host_info& h);

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
    /// The network plus its endpoints: {"id","name",...,"endpoints":[...]}.
    boost::asio::awaitable<nlohmann::json> inspect_network(std::string name);
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

    boost::asio::awaitable<net_meta> find_network(const std::string& name);
    boost::asio::awaitable<void> register_host();
    boost::asio::awaitable<void> recover_liveness();
    boost::asio::awaitable<void> retry_loop();
    void on_liveness_lost();
    /// Folds the current handle's renewal counters into past_renewals_ and drops it.
    void retire_lease() noexcept;

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
