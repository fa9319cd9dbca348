// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (every call and every callback on the control io_context)
//
// The Consul backend: Consul's HTTP API (`/v1/...`) over HTTP/1.1
// keep-alive through Beast (http_client) on the control thread's io_context.
//
//  - URL: `consul://HOST[:PORT][/PREFIX]` (port 8500 by default) or
//    `consul+https://HOST[:PORT][/PREFIX]` (TLS, port 8501 by default: Consul's HTTPS
//    port). PREFIX is prepended to every key sent and stripped from every key received,
//    like etcd's namespace. TLS verifies the server against consul_store_options::ca_file
//    (or the system trust store) and the host name (see http_client.hpp); no client
//    certificate yet (a Consul with verify_incoming on its HTTPS port refuses us).
//  - ACL token: consul_store_options::token, sent as `X-Consul-Token` on every request.
//    make_store() takes it from the token file or $CONSUL_HTTP_TOKEN, never from the URL.
//    Beware: Consul filters list results by ACL instead of refusing them, so a missing
//    or too weak token shows up as an empty prefix on reads; writes fail with an error
//    that says "Permission denied".
//  - Keys: only [A-Za-z0-9,-_./], no leading '/', no "../" (Consul's validateKVKey);
//    checked before anything is sent. Consul also rejects keys ending in file-extension
//    look-alikes (".json", ".com", ...): that 400 comes back as store_error.
//  - list = `GET /v1/kv/<prefix>?recurse` (404 = empty); revision = X-Consul-Index,
//    create_rev = CreateIndex, mod_rev = ModifyIndex.
//  - txn = `PUT /v1/txn`: create = `cas` Index 0; ephemeral create = `check-not-exists` +
//    `lock` with the session; remove = `delete`; guarded remove = `check-index` +
//    `delete-cas` (delete-cas alone succeeds on an absent key). 409 = not applied:
//    succeeded=false and failed_key from Errors[0].OpIndex (lock-delay included), except
//    for ACL denials and invalid sessions, which throw store_error. At most 64 Consul ops
//    per txn (std::invalid_argument above). txn_result::revision is the highest
//    ModifyIndex the reply names, 0 when the txn only deleted (Consul does not say).
//  - Liveness = session {TTL clamped to 10s..86400s, Behavior=delete, LockDelay,
//    Checks=[]}, renewed every TTL/3, adopting a larger TTL from the server; renew 404 =
//    lost. Consul expires a session up to 2 x TTL late, so a dead host's keys may live
//    20 s with the minimum TTL. After expiry or release, the session's keys cannot be
//    re-claimed with an ephemeral create for LockDelay (a failed create, failed_key set).
//  - Watch = blocking queries `?recurse&index=I&wait=W` following the documented rules
//    (index backwards -> reset and full snapshot; index < 1 -> 1; same index -> spurious
//    wakeup, nothing delivered), deltas from a diff of full listings, a token bucket
//    (burst 2) before every request, exponential back-off with jitter on errors, and
//    rate-limited on_error.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "control/store/store.hpp"

namespace overpass::ctl {

struct consul_store_options {
    /// ACL token sent as X-Consul-Token; empty: none (Consul's anonymous token).
    std::string token;
    /// HTTPS (from_url sets it for consul+https://).
    bool tls = false;
    /// With tls: PEM file of the CAs that may sign Consul's certificate. Empty: the
    /// system trust store.
    std::string ca_file;
    /// Deadline of one ordinary request, connection set-up included.
    std::chrono::milliseconds request_timeout{5000};
    /// `?wait=` of the watch's blocking queries. Their read deadline is
    /// wait + wait/16 (Consul's jitter) + watch_timeout_margin.
    std::chrono::milliseconds watch_wait{60000};
    std::chrono::milliseconds watch_timeout_margin{10000};
    /// Token bucket in front of every watch request: `watch_burst` requests back to back,
    /// then one per `watch_refill` (so a storm of changes degrades to polling).
    unsigned watch_burst = 2;
    std::chrono::milliseconds watch_refill{3000};
    /// Back-off after a failed watch request (exponential, with jitter, reset on success).
    std::chrono::milliseconds watch_backoff_min{250};
    std::chrono::milliseconds watch_backoff_max{4000};
    /// At most one on_error report per interval (the first one immediately).
    std::chrono::milliseconds error_report_interval{10000};
    /// LockDelay of the sessions: after a session ends, its keys cannot be locked
    /// (ephemerally created) again for this long. Consul's default is 15 s, max 60 s.
    std::chrono::seconds lock_delay{1};
    /// Test hook: false leaves sessions unrenewed (renew() still works).
    bool renew_sessions = true;
};

class consul_store final : public store {
public:
    /// `prefix` is the URL prefix without slashes around it ("" for none).
    /// Throws std::invalid_argument (bad token, lock delay, unreadable CA file).
    consul_store(boost::asio::io_context& io, std::string host, uint16_t port, std::string prefix,
                 consul_store_options opts = {});
    ~consul_store() override;

    /// Parses `consul://HOST[:PORT][/PREFIX]` or `consul+https://...` (sets opts.tls).
    /// Throws std::invalid_argument (credentials or a query in the URL, unreadable CA file).
    static std::unique_ptr<consul_store> from_url(boost::asio::io_context& io, const std::string& url,
                                                  consul_store_options opts = {});

    boost::asio::awaitable<kv_snapshot> list(std::string prefix) override;
    boost::asio::awaitable<txn_result> txn(std::vector<txn_op> ops) override;
    boost::asio::awaitable<std::unique_ptr<liveness>> open_liveness(std::string owner,
                                                                    std::chrono::seconds ttl) override;
    std::unique_ptr<watch_handle> watch(std::string prefix, watch_callbacks cbs) override;
    std::string url() const override;

    /// Consul's limit of operations in one /v1/txn (64 up to 1.11; later versions allow 128).
    static constexpr size_t max_txn_ops = 64;

    struct core;   // shared with sessions and watches, which may outlive calls

private:
    std::shared_ptr<core> core_;
};

} // namespace overpass::ctl
