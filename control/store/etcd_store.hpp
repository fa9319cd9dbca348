// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (every call and every callback on the control io_context)
//
// The etcd v3 backend: HTTP/1.1 to the JSON gateway (`/v3/...`,
// etcd >= 3.4) through Beast on the control thread's io_context.
//
//  - URL: `etcd://HOST:PORT[/NAMESPACE]`. NAMESPACE is an optional extra key prefix that
//    the backend prepends to every key it sends and strips from every key it receives,
//    so several clusters can share one etcd: `etcd://127.0.0.1:2379/clusterA` stores
//    the agent's `overpass/v1/hosts/h1` as `clusterA/overpass/v1/hosts/h1`. Without a
//    path the agent's keys are stored as they are.
//  - Unary calls (range, txn, lease grant/keepalive/revoke) use a small pool of
//    keep-alive connections; each watch has its own streaming connection.
//  - Every unary request has a deadline (connect + write + read), so a hung etcd shows
//    up as store_error and never parks the control loop's logic forever.
//  - Liveness = lease (TTL >= 2 s, etcd's minimum), renewed every TTL/3 through
//    `/v3/lease/keepalive`; a reply without TTL, or 404, means the lease is gone.
//  - Watch = range (snapshot at revision R) then `/v3/watch` from R+1. Cancellation
//    (compaction), EOF or any error: back off with jitter, re-list, deliver a fresh
//    snapshot. Errors reach on_error rate-limited.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "control/store/store.hpp"

namespace overpass::ctl {

struct etcd_store_options {
    /// Deadline of one unary request, connection set-up included.
    std::chrono::milliseconds request_timeout{5000};
    /// A watch stream that stays silent this long is dropped and re-established. The
    /// watch asks for progress notifications, which etcd 3.4 sends every 10 minutes.
    std::chrono::milliseconds watch_idle_timeout{std::chrono::minutes(11)};
    /// Watch re-establishment back-off (exponential, with jitter, reset after a stream
    /// was created successfully).
    std::chrono::milliseconds watch_backoff_min{100};
    std::chrono::milliseconds watch_backoff_max{4000};
    /// At most one on_error report per interval (the first one immediately).
    std::chrono::milliseconds error_report_interval{10000};
    /// Test hook: false leaves leases unrenewed (renew() still works), so tests can let
    /// them expire.
    bool renew_leases = true;
    /// Test hook: runs after a watch's initial range (with its revision), before the
    /// watch stream is created. Lets tests compact in exactly that window.
    std::function<void(uint64_t)> before_watch;
};

class etcd_store final : public store {
public:
    /// `ns` is the namespace without slashes around it ("" for none).
    etcd_store(boost::asio::io_context& io, std::string host, uint16_t port, std::string ns,
               etcd_store_options opts = {});
    ~etcd_store() override;

    /// Parses `etcd://HOST:PORT[/NAMESPACE]`. Throws std::invalid_argument.
    static std::unique_ptr<etcd_store> from_url(boost::asio::io_context& io, const std::string& url,
                                                etcd_store_options opts = {});

    boost::asio::awaitable<kv_snapshot> list(std::string prefix) override;
    boost::asio::awaitable<txn_result> txn(std::vector<txn_op> ops) override;
    boost::asio::awaitable<std::unique_ptr<liveness>> open_liveness(std::string owner,
                                                                    std::chrono::seconds ttl) override;
    std::unique_ptr<watch_handle> watch(std::string prefix, watch_callbacks cbs) override;
    std::string url() const override;

    struct core;   // shared with liveness handles and watches, which may outlive calls

private:
    std::shared_ptr<core> core_;
};

} // namespace overpass::ctl
