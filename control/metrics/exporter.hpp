// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (construction, close) and reader threads (fetch)
//
// How readers on other threads (the Prometheus exposer's civetweb threads, DPDK's
// telemetry thread) get a snapshot: fetch() posts take_snapshot to the control thread's
// io_context and waits for it, so everything is read by the thread that owns it and the
// workers see nothing but their own relaxed counter stores. After close() nothing more
// runs on the control thread and fetch() answers nullopt at once.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "control/metrics/exposition.hpp"
#include "control/metrics/snapshot.hpp"

namespace prometheus {
class Exposer;
}

namespace overpass::ctl {

class snapshot_source {
public:
    snapshot_source(boost::asio::io_context& io, std::function<stats_snapshot()> take);
    /// A fresh snapshot, or nullopt when closed or the control thread did not answer in
    /// time. Must not be called on the control thread itself.
    std::optional<stats_snapshot> fetch(std::chrono::milliseconds timeout) const;
    void close();

private:
    struct state {
        state(boost::asio::io_context& i, std::function<stats_snapshot()> t) : io(i), take(std::move(t)) {}
        std::mutex mu;
        bool closed = false;
        boost::asio::io_context& io;
        std::function<stats_snapshot()> take;
    };
    std::shared_ptr<state> st_;
};

/// GET /metrics on `listen` ("ADDR:PORT"), served by prometheus-cpp's exposer.
class metrics_server {
public:
    /// Throws std::runtime_error when `listen` cannot be bound.
    metrics_server(const std::string& listen, std::shared_ptr<const snapshot_source> source, build_info info);
    ~metrics_server();
    metrics_server(const metrics_server&) = delete;
    metrics_server& operator=(const metrics_server&) = delete;
    /// The bound port (useful with port 0).
    uint16_t port() const;

private:
    class collectable;
    std::shared_ptr<collectable> collectable_;
    std::unique_ptr<prometheus::Exposer> exposer_;
};

/// Registers the /overpass/... commands with DPDK's telemetry socket (once per process;
/// DPDK cannot unregister them) and points them at `source` (null: they answer an error).
void telemetry_attach(std::shared_ptr<const snapshot_source> source, build_info info);

} // namespace overpass::ctl
