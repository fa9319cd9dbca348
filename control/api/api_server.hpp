// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The local API: HTTP/1.1 + JSON on a unix socket, one coroutine per connection, every
// request answered (errors as {"error": "..."} with a status code), nothing a client
// sends can end the daemon. Requests are routed by a table (method + path pattern ->
// handler, api_server.cpp); bodies and answers are control/api/schema.hpp's; the cluster's
// error kinds become statuses here: invalid 400, not_found 404, conflict 409,
// exhausted 507, unavailable 503, internal 500; a store that cannot be reached 503, a
// path the table lacks 404, a method it lacks for a known path 405.
//
//   GET    /v1/networks                 [network]
//   POST   /v1/networks                 {name, subnet?, gateway?, vni?, mtu?, allow_overlap?} -> 201 network
//   GET    /v1/networks/<name>          network + endpoints
//   DELETE /v1/networks/<name>          204
//   GET    /v1/endpoints                [endpoint]
//   POST   /v1/endpoints                {network, name, netns? | vhost_user?} -> 201 endpoint
//   DELETE /v1/endpoints/<name>[?network=<net>]   204
//   GET    /v1/hosts                    [host]
//   GET    /v1/stats                    stats() with "control": agent status
#pragma once

#include <chrono>
#include <cstddef>

#include <functional>
#include <memory>
#include <string>
#include <utility>   // std::exchange, used but not included by Boost 1.74's awaitable.hpp

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <nlohmann/json.hpp>

#include "control/cluster/agent.hpp"

namespace overpass::ctl {

struct api_response {
    unsigned status = 200;
    nlohmann::json body;     ///< null: no body (204)
};

/// Limits that keep clients from starving the daemon of descriptors or connections.
struct api_limits {
    /// Connections open at once; one more is accepted and closed at once.
    std::size_t max_connections = 128;
    /// A connection that sends nothing for this long is closed.
    std::chrono::milliseconds idle_timeout{15000};
};

class api_server {
public:
    api_server(boost::asio::io_context& io, agent& a, std::string socket_path,
               std::function<nlohmann::json()> stats = {}, api_limits limits = {});
    ~api_server();
    api_server(const api_server&) = delete;
    api_server& operator=(const api_server&) = delete;

    /// Binds the socket (replacing a stale one, refusing if a live daemon answers on it),
    /// chmod 0660, starts accepting. Throws std::runtime_error naming the path.
    void start();
    /// Stops accepting and removes the socket file. Open connections finish their request.
    void stop();

    /// One request, routed (public for tests). Never throws.
    boost::asio::awaitable<api_response> handle(std::string method, std::string target, std::string body);

private:
    boost::asio::awaitable<void> accept_loop();
    boost::asio::awaitable<void> serve(boost::asio::local::stream_protocol::socket sock);
    boost::asio::awaitable<api_response> route(const std::string& method, const std::string& target,
                                               const std::string& body);

    boost::asio::io_context& io_;
    agent& agent_;
    std::string path_;
    std::function<nlohmann::json()> stats_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    api_limits limits_;
    std::shared_ptr<bool> running_ = std::make_shared<bool>(false);
    /// Connections being served (shared with them: they may outlive a stop()).
    std::shared_ptr<std::size_t> open_ = std::make_shared<std::size_t>(0);
};

} // namespace overpass::ctl
