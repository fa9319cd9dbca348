// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The part of a liveness handle that is the same for every backend: the alive/lost
// state with its callbacks, the TTL/3 renewal loop with its counters, stopping on
// destruction. A backend derives its state from liveness_state, its handle from
// liveness_base<State>, and supplies the protocol: renew_now (one renewal) and release.
#pragma once

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>   // std::exchange, used but not included by Boost 1.74's awaitable.hpp
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "control/store/store.hpp"

namespace overpass::ctl {

struct liveness_state {
    liveness_state(const boost::asio::any_io_executor& ex, std::string i, std::chrono::milliseconds t)
        : id(std::move(i)), ttl(t), timer(ex) {}

    std::string id;
    std::chrono::milliseconds ttl;   ///< renewed every ttl / 3 (Consul may raise it)
    bool alive = true;
    bool stopped = false;
    std::vector<std::function<void()>> lost_cbs;
    liveness_counters counters;
    boost::asio::steady_timer timer;

    /// The store no longer has it: alive() turns false and the callbacks run, once.
    void lose() {
        if (!alive)
            return;
        alive = false;
        auto cbs = lost_cbs;   // a callback may register new ones
        for (auto& cb : cbs)
            cb();
    }
    void stop() {
        stopped = true;
        timer.cancel();
    }
};

/// Renews every ttl/3 (at least 100 ms) until stopped or lost, counting the renewals.
/// renew_now(s) is the protocol's renewal: true = renewed, false = lost (it has called
/// lose()); it throws when the store gave no usable answer, which is retried next period
/// (if the handle expires meanwhile, the next answered renewal reports it lost).
template <typename State, typename RenewNow>
boost::asio::awaitable<void> renew_loop(std::shared_ptr<State> s, RenewNow renew_now) {
    while (!s->stopped && s->alive) {
        s->timer.expires_after(std::max<std::chrono::milliseconds>(s->ttl / 3, std::chrono::milliseconds(100)));
        boost::system::error_code ec;
        co_await s->timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
        if (s->stopped)
            break;
        try {
            if (co_await renew_now(s)) {
                s->counters.renewals++;
                s->counters.last_renewal = std::chrono::steady_clock::now();
            }
        } catch (const std::exception&) {
            s->counters.renew_failures++;
        }
    }
}

template <typename State>
class liveness_base : public liveness {
public:
    ~liveness_base() override { st_->stop(); }
    const std::string& id() const noexcept override { return st_->id; }
    bool alive() const noexcept override { return st_->alive; }
    void on_lost(std::function<void()> cb) override { st_->lost_cbs.push_back(std::move(cb)); }
    liveness_counters counters() const noexcept override { return st_->counters; }

protected:
    explicit liveness_base(std::shared_ptr<State> st) : st_(std::move(st)) {}
    std::shared_ptr<State> st_;
};

/// The checks every backend makes on a transaction before it runs: each key passes the
/// backend's rule (`check_key` throws std::invalid_argument), and a lease is bound only to
/// a create, belongs to this store (`Handle::core()` equals `core`) and is still alive.
template <typename Handle, typename Core, typename CheckKey>
void check_txn_ops(const std::vector<txn_op>& ops, const Core& core, CheckKey check_key) {
    for (const txn_op& op : ops) {
        check_key(op.key);
        if (op.lease == nullptr)
            continue;
        if (op.what != txn_op::kind::create)
            throw std::invalid_argument("only a create can be bound to a liveness handle (key \"" + op.key + "\")");
        const auto* h = dynamic_cast<const Handle*>(op.lease);
        if (h == nullptr || h->core() != core)
            throw std::invalid_argument("liveness handle does not belong to this store");
        if (!h->alive())
            throw store_error("liveness handle " + h->id() + " has expired");
    }
}

} // namespace overpass::ctl
