// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (every call and every callback on the control io_context)
//
// The backend-neutral store interface. Backends: file://
// (file_store), etcd:// (etcd_store, the v3 JSON gateway over HTTP through Beast on the
// same io_context, which is why every operation is an awaitable) and consul:// /
// consul+https:// (consul_store).
//
// Revisions are opaque per-backend numbers that only grow within one backend's history;
// a watcher that cannot follow them (Consul index reset, etcd compaction, unreadable
// file) delivers a fresh snapshot instead of deltas.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>   // std::exchange, used but not included by Boost 1.74's awaitable.hpp
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

namespace overpass::ctl {

struct kv_item {
    std::string key;
    std::string value;
    uint64_t create_rev = 0;
    uint64_t mod_rev = 0;
};

struct kv_snapshot {
    std::vector<kv_item> items;   ///< sorted by key
    uint64_t revision = 0;
};

struct kv_delta {
    enum class kind { put, del } what;
    kv_item item;                 ///< for del: key only (and the last known value)
};

/// The store could not be read or written (I/O error, corrupt contents, unreachable
/// server). Callers keep their last good state and retry.
struct store_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Renewal history of a liveness handle (for metrics).
struct liveness_counters {
    uint64_t renewals = 0;         ///< renewals the store confirmed
    uint64_t renew_failures = 0;   ///< renewals that got no usable answer (store unreachable)
    std::chrono::steady_clock::time_point last_renewal{};   ///< of the last confirmed one
};

/// A Consul session / etcd lease / file-store session. Keys created with it vanish when
/// it is released or expires. The backend renews it every TTL/3 on the io_context; when
/// a renewal finds it gone, alive() turns false and the on_lost callbacks run (once).
class liveness {
public:
    virtual ~liveness() = default;
    virtual const std::string& id() const noexcept = 0;
    virtual bool alive() const noexcept = 0;
    virtual void on_lost(std::function<void()> cb) = 0;
    /// Renew now. false: the handle is lost (on_lost callbacks have run).
    virtual boost::asio::awaitable<bool> renew() = 0;
    /// Graceful release: deletes every key bound to it. Idempotent.
    virtual boost::asio::awaitable<void> release() = 0;
    /// Renewals done by the backend's TTL/3 loop.
    virtual liveness_counters counters() const noexcept = 0;
};

/// One operation of an atomic transaction.
struct txn_op {
    enum class kind {
        create,   ///< put only if the key is absent; bound to `lease` if non-null
        remove,   ///< delete; if mod_rev != 0, only if the key's mod_rev equals it
        put,      ///< write whether or not the key exists (never bound to a lease)
        check,    ///< change nothing; the key's mod_rev must equal mod_rev (0: the key is absent)
    } what = kind::create;
    std::string key;
    std::string value;
    uint64_t mod_rev = 0;
    const liveness* lease = nullptr;

    static txn_op create(std::string k, std::string v, const liveness* l = nullptr) {
        return {kind::create, std::move(k), std::move(v), 0, l};
    }
    static txn_op remove(std::string k, uint64_t rev = 0) { return {kind::remove, std::move(k), {}, rev, nullptr}; }
    static txn_op put(std::string k, std::string v) { return {kind::put, std::move(k), std::move(v), 0, nullptr}; }
    /// Holds when `k` was not changed since `rev` (its mod_rev), or is absent for rev 0.
    static txn_op check(std::string k, uint64_t rev) { return {kind::check, std::move(k), {}, rev, nullptr}; }
};

struct txn_result {
    bool succeeded = false;
    uint64_t revision = 0;
    std::string failed_key;       ///< first op whose condition did not hold
};

/// Cancels the watch when destroyed. Callbacks never run after that.
class watch_handle {
public:
    virtual ~watch_handle() = default;
};

struct watch_callbacks {
    /// Full state: first delivery, and after any resync. Replace, don't merge.
    std::function<void(const kv_snapshot&)> on_snapshot;
    /// Changes leading to `revision`, in order.
    std::function<void(std::span<const kv_delta>, uint64_t revision)> on_changes;
    /// The watch could not read the store (it keeps retrying). Optional.
    std::function<void(const std::string&)> on_error;
};

class store {
public:
    virtual ~store() = default;

    /// Every key starting with `prefix`.
    virtual boost::asio::awaitable<kv_snapshot> list(std::string prefix) = 0;

    /// All ops or none. A create on an existing key, or a remove whose mod_rev does not
    /// match, fails the whole transaction (succeeded=false, failed_key set); a remove of
    /// an absent key without mod_rev is not a failure, and a put has no condition. Throws
    /// store_error / invalid_argument (also for a put with a lease).
    virtual boost::asio::awaitable<txn_result> txn(std::vector<txn_op> ops) = 0;

    /// Opens a liveness handle for `owner` (the host id) with the given TTL.
    virtual boost::asio::awaitable<std::unique_ptr<liveness>> open_liveness(std::string owner,
                                                                            std::chrono::seconds ttl) = 0;

    /// Watches `prefix`: an initial snapshot, then change batches.
    virtual std::unique_ptr<watch_handle> watch(std::string prefix, watch_callbacks cbs) = 0;

    /// The URL this store was opened with (for logs and `overpass stats`).
    virtual std::string url() const = 0;

    // Conveniences over txn().
    boost::asio::awaitable<bool> create(std::string key, std::string value, const liveness* lease = nullptr);
    boost::asio::awaitable<bool> remove(std::string key, uint64_t mod_rev = 0);
};

/// What make_store() needs besides the URL.
struct store_options {
    /// consul:// only: a file holding the ACL token (surrounding whitespace ignored).
    /// Empty: $CONSUL_HTTP_TOKEN if set, else no token. Tokens never come from the URL.
    std::string token_file;
    /// consul+https:// only: PEM file of the CAs that may sign the server's certificate.
    /// Empty: the system trust store. (The initializer keeps `store_options{token_file}`
    /// free of -Wmissing-field-initializers.)
    std::string ca_file{};
};

/// `file:///path/store.json` (default file:///var/lib/overpass/store.json),
/// `etcd://HOST[:PORT][/NAMESPACE]`, `consul://HOST[:PORT][/PREFIX]` or
/// `consul+https://HOST[:PORT][/PREFIX]`. A token file with a non-Consul scheme, a CA file
/// without consul+https://, an unreadable or empty token file, an unreadable CA file, and
/// anything else throw std::invalid_argument naming the URL (or file) and the accepted
/// forms.
std::unique_ptr<store> make_store(boost::asio::io_context& io, const std::string& url, const store_options& opts = {});

} // namespace overpass::ctl
