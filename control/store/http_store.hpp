// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// What the two HTTP backends (etcd_store, consul_store) share: the reading of JSON
// replies, the state every request needs (the server, the key namespace, the HTTP
// client), the liveness handle around a server-side lease or session, and the watch's
// rate-limited error reports and back-off. Internal to control/store/.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>   // std::exchange, used but not included by Boost 1.74's awaitable.hpp

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "control/store/http_client.hpp"
#include "control/store/liveness_base.hpp"
#include "control/store/store.hpp"

namespace overpass::ctl::http_store {

using json = nlohmann::json;

// ---- JSON replies: absent fields read as zero/empty, wrong types throw ----

/// obj[field], or a null value when obj is not an object or lacks the field.
inline const json& member(const json& obj, const char* field) {
    static const json none;
    if (!obj.is_object())
        return none;
    const auto it = obj.find(field);
    return it == obj.end() ? none : *it;
}

/// An unsigned number; etcd's proto3 JSON sends 64-bit numbers as decimal strings. Absent
/// or null: 0; negative: 0; anything else throws std::invalid_argument.
inline uint64_t u64(const json& obj, const char* field) {
    const json& v = member(obj, field);
    if (v.is_null())
        return 0;
    if (v.is_string()) {
        const std::string& s = v.get_ref<const std::string&>();
        if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos)
            throw std::invalid_argument(std::string("field \"") + field + "\" is not a number");
        return std::stoull(s);
    }
    if (v.is_number_unsigned())
        return v.get<uint64_t>();
    if (v.is_number_integer()) {
        const int64_t n = v.get<int64_t>();
        return n < 0 ? 0 : static_cast<uint64_t>(n);
    }
    throw std::invalid_argument(std::string("field \"") + field + "\" is not a number");
}

/// A string field; empty when absent or not a string.
inline std::string str(const json& obj, const char* field) {
    const json& v = member(obj, field);
    return v.is_string() ? v.get<std::string>() : std::string{};
}

/// A boolean field; false when absent or not a boolean.
inline bool flag(const json& obj, const char* field) {
    const json& v = member(obj, field);
    return v.is_boolean() && v.get<bool>();
}

/// Runs `fn`, which decodes a reply: a malformed value (any exception but store_error)
/// becomes store_error "<where>: malformed reply to <what>: ...".
template <class Fn>
auto decode(const std::string& where, const std::string& what, Fn&& fn) {
    try {
        return fn();
    } catch (const store_error&) {
        throw;
    } catch (const std::exception& e) {
        throw store_error(where + ": malformed reply to " + what + ": " + e.what());
    }
}

// ---- the state every request needs ----

struct server {
    server(boost::asio::io_context& i, std::string name, std::string host, uint16_t port, std::string n,
           std::chrono::milliseconds request_timeout, http_tls_options tls = {})
        : io(i), ns(std::move(n)), where(name + " at " + host_port(host, port)),
          http(i, std::move(host), port, where, request_timeout, std::move(tls)) {}

    boost::asio::io_context& io;
    std::string ns;      ///< "" or "<namespace>/", put before every key
    std::string where;   ///< "etcd at HOST:PORT": the head of every error message
    http_client http;

    std::string full_key(std::string_view key) const { return ns + std::string(key); }
    /// The key without the namespace; nullopt outside it (never for what we asked for).
    std::optional<std::string> user_key(const std::string& key) const {
        if (!key.starts_with(ns))
            return std::nullopt;
        return key.substr(ns.size());
    }
    /// The store's URL: "<scheme>://HOST:PORT[/NAMESPACE]".
    std::string url(const std::string& scheme) const {
        std::string u = scheme + "://" + host_port(http.host(), http.port());
        if (!ns.empty())
            u += "/" + ns.substr(0, ns.size() - 1);
        return u;
    }
};

// ---- liveness: a lease or session the server holds ----

template <class Core>
struct lease_state : liveness_state {
    lease_state(std::shared_ptr<Core> c, std::string lease_id, std::chrono::milliseconds ttl)
        : liveness_state(c->io.get_executor(), std::move(lease_id), ttl), core(std::move(c)) {}
    std::shared_ptr<Core> core;
};

/// A liveness handle whose protocol is Derived's: `static awaitable<bool>
/// renew_now(std::shared_ptr<state>)` (true: renewed; false: lost, after calling lose())
/// and release(). Renewed every TTL/3 on the io_context while `renew` is set.
template <class Core, class Derived>
class lease : public liveness_base<lease_state<Core>> {
public:
    using state = lease_state<Core>;

    lease(std::shared_ptr<Core> c, std::string id, std::chrono::milliseconds ttl, bool renew)
        : liveness_base<state>(std::make_shared<state>(std::move(c), std::move(id), ttl)) {
        if (renew)
            boost::asio::co_spawn(this->st_->core->io, renew_loop(this->st_, &Derived::renew_now),
                                  boost::asio::detached);
    }

    boost::asio::awaitable<bool> renew() override {
        const bool ok = co_await Derived::renew_now(this->st_);
        co_return ok;
    }

    const std::shared_ptr<Core>& core() const { return this->st_->core; }
};

// ---- the watch's error reports and back-off ----

/// Passes the first error to on_error at once, then at most one per interval, saying how
/// many were suppressed in between.
class error_reporter {
public:
    explicit error_reporter(std::chrono::milliseconds interval) : interval_(interval) {}

    void report(const watch_callbacks& cbs, const std::string& msg) {
        if (!cbs.on_error)
            return;
        const auto now = std::chrono::steady_clock::now();
        if (reported_ && now - last_ < interval_) {
            suppressed_++;
            return;
        }
        std::string text = msg;
        if (suppressed_ > 0)
            text += " (" + std::to_string(suppressed_) + " similar reports suppressed)";
        suppressed_ = 0;
        reported_ = true;
        last_ = now;
        cbs.on_error(text);
    }

private:
    std::chrono::milliseconds interval_;
    bool reported_ = false;
    std::chrono::steady_clock::time_point last_{};
    unsigned suppressed_ = 0;
};

/// Exponential back-off between `min` and `max`, each wait jittered to [d/2, 3d/2].
class backoff {
public:
    backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) : min_(min), max_(max), next_(min) {}
    void reset() noexcept { next_ = min_; }
    /// The next wait (jittered by `http`), doubling the one after it.
    std::chrono::milliseconds next(http_client& http) {
        const std::chrono::milliseconds d = http.jitter(next_);
        next_ = std::min(next_ * 2, max_);
        return d;
    }

private:
    std::chrono::milliseconds min_;
    std::chrono::milliseconds max_;
    std::chrono::milliseconds next_;
};

/// What a watch of either backend keeps while it runs. Backends derive their own state.
template <class Core>
struct watch_state {
    watch_state(std::shared_ptr<Core> c, std::string p, watch_callbacks w)
        : core(std::move(c)), prefix(std::move(p)), cbs(std::move(w)), timer(core->io),
          errors(core->opts.error_report_interval) {}
    std::shared_ptr<Core> core;
    std::string prefix;
    watch_callbacks cbs;
    boost::asio::steady_timer timer;           ///< back-off and rate-limit waits
    std::unique_ptr<http_connection> conn;     ///< the current request's connection
    bool cancelled = false;
    error_reporter errors;
};

/// A watch run by Derived's `static awaitable<void> loop(std::shared_ptr<State>)` on the
/// io_context. Destruction cancels it and aborts a pending read by closing the socket
/// only: the connection (stream and read buffer) stays in the state, which the coroutine
/// keeps alive, until the aborted read has completed (freeing the buffer under that
/// read is a heap-use-after-free in Beast's flat_buffer).
template <class State, class Derived>
class watch : public watch_handle {
public:
    explicit watch(std::shared_ptr<State> st) : st_(std::move(st)) {
        boost::asio::co_spawn(st_->core->io, Derived::loop(st_), boost::asio::detached);
    }
    ~watch() override {
        st_->cancelled = true;
        st_->timer.cancel();
        if (st_->conn) {
            boost::system::error_code ec;
            st_->conn->stream.socket().close(ec);
        }
    }

protected:
    std::shared_ptr<State> st_;
};

} // namespace overpass::ctl::http_store
