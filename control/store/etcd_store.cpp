// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/store/etcd_store.hpp"

#include "control/store/http_client.hpp"
#include "control/store/http_store.hpp"
#include "control/store/keys.hpp"
#include "control/store/liveness_base.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace overpass::ctl {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using http_store::decode;
using http_store::flag;
using http_store::member;
using http_store::u64;

namespace {

constexpr std::chrono::seconds min_lease_ttl{2};     // etcd's floor (election timeout based)

// ---- proto3 JSON: int64 as strings, zero/false/empty fields omitted ----

std::string b64_field(const json& obj, const char* field) { return b64_decode(http_store::str(obj, field)); }

// The smallest key greater than every key starting with `prefix` ("\0" = no end).
std::string prefix_end(std::string prefix) {
    while (!prefix.empty() && static_cast<uint8_t>(prefix.back()) == 0xff)
        prefix.pop_back();
    if (prefix.empty())
        return std::string(1, '\0');
    prefix.back() = static_cast<char>(static_cast<uint8_t>(prefix.back()) + 1);
    return prefix;
}

struct reply {
    unsigned status = 0;
    json body;
};

} // namespace

struct etcd_store::core : http_store::server {
    core(asio::io_context& i, std::string h, uint16_t p, std::string n, etcd_store_options o)
        : server(i, "etcd", std::move(h), p, std::move(n), o.request_timeout), opts(std::move(o)) {}
    etcd_store_options opts;
};

namespace {

using etcd_core = etcd_store::core;
using core_ptr = std::shared_ptr<etcd_core>;

http_request make_request(const etcd_core& c, const std::string& target, std::string body) {
    http_request req = c.http.make_request(http::verb::post, target);
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    return req;
}

// One POST on a pooled keep-alive connection (http_client: deadline, stale-connection
// retry). Transport failures throw store_error.
asio::awaitable<reply> post(core_ptr c, std::string target, json body) {
    http_response res = co_await c->http.send(make_request(*c, target, body.dump()));
    reply r;
    r.status = res.result_int();
    try {
        r.body = json::parse(res.body());
    } catch (const std::exception& e) {
        throw store_error(c->where + ": malformed reply to POST " + target + " (HTTP " + std::to_string(r.status) +
                          "): " + e.what());
    }
    co_return r;
}

std::string error_text(const json& body) {
    if (body.is_object()) {
        if (body.contains("message") && body["message"].is_string())
            return body["message"].get<std::string>();
        if (body.contains("error") && body["error"].is_string())
            return body["error"].get<std::string>();
        if (body.contains("error") && body["error"].is_object())
            return error_text(body["error"]);
    }
    return body.dump();
}

[[noreturn]] void throw_status(const etcd_core& c, const std::string& target, const reply& r) {
    throw store_error(c.where + ": POST " + target + ": HTTP " + std::to_string(r.status) + ": " + error_text(r.body));
}

// POST that must answer 200; returns the parsed body.
asio::awaitable<json> call(core_ptr c, std::string target, json body) {
    reply r = co_await post(c, target, std::move(body));
    if (r.status != 200)
        throw_status(*c, target, r);
    co_return std::move(r.body);
}

json range_request(const etcd_core& c, const std::string& prefix) {
    const std::string key = c.full_key(prefix);
    return json{{"key", b64_encode(key.empty() ? std::string(1, '\0') : key)}, {"range_end", b64_encode(prefix_end(key))}};
}

asio::awaitable<kv_snapshot> list_impl(core_ptr c, std::string prefix) {
    const json body = co_await call(c, "/v3/kv/range", range_request(*c, prefix));
    co_return decode(c->where, "range", [&] {
        kv_snapshot snap;
        snap.revision = u64(member(body, "header"), "revision");
        for (const json& kv : member(body, "kvs")) {
            std::optional<std::string> key = c->user_key(b64_field(kv, "key"));
            if (!key)
                continue;
            kv_item item;
            item.key = std::move(*key);
            item.value = b64_field(kv, "value");
            item.create_rev = u64(kv, "create_revision");
            item.mod_rev = u64(kv, "mod_revision");
            snap.items.push_back(std::move(item));
        }
        std::sort(snap.items.begin(), snap.items.end(), [](const kv_item& a, const kv_item& b) { return a.key < b.key; });
        return snap;
    });
}

// ---- liveness = lease ----

class etcd_liveness final : public http_store::lease<etcd_core, etcd_liveness> {
public:
    etcd_liveness(core_ptr c, std::string id, std::chrono::seconds ttl)
        : lease(c, std::move(id), ttl, c->opts.renew_leases) {}

    asio::awaitable<void> release() override {
        std::shared_ptr<state> s = st_;
        s->stop();
        if (!s->alive)
            co_return;
        json req = json::object();   // GCC 12: no braced initialiser inside a co_await expression
        req["ID"] = s->id;
        const reply r = co_await post(s->core, "/v3/lease/revoke", std::move(req));
        if (r.status != 200 && r.status != 404)   // 404: already gone, which is what we want
            throw_status(*s->core, "/v3/lease/revoke", r);
        s->alive = false;
    }

    static asio::awaitable<bool> renew_now(std::shared_ptr<state> s) {
        if (!s->alive)
            co_return false;
        json req = json::object();
        req["ID"] = s->id;
        const reply r = co_await post(s->core, "/v3/lease/keepalive", std::move(req));
        if (s->stopped && !s->alive)
            co_return false;
        if (r.status == 404) {
            s->lose();
            co_return false;
        }
        if (r.status != 200)
            throw_status(*s->core, "/v3/lease/keepalive", r);
        // A stream reply: {"result":{...,"TTL":"N"}} or {"error":{"grpc_code":5,...}}.
        const json& err = member(r.body, "error");
        if (!err.is_null()) {
            if (u64(err, "grpc_code") == 5 || u64(err, "http_code") == 404) {
                s->lose();
                co_return false;
            }
            throw store_error(s->core->where + ": lease keepalive failed: " + error_text(err));
        }
        const uint64_t ttl = decode(s->core->where, "lease keepalive", [&] { return u64(member(r.body, "result"), "TTL"); });
        if (ttl == 0) {   // expired or unknown lease: etcd answers 200 without TTL
            s->lose();
            co_return false;
        }
        co_return true;
    }
};

// ---- watch ----

struct etcd_watch_state : http_store::watch_state<etcd_core> {
    using watch_state::watch_state;
    bool created = false;    // the current stream was accepted by etcd
    std::string pending;     // bytes after the last complete message
};

class etcd_watch final : public http_store::watch<etcd_watch_state, etcd_watch> {
    friend watch;

public:
    using state = etcd_watch_state;

    etcd_watch(core_ptr c, std::string prefix, watch_callbacks cbs)
        : watch(std::make_shared<state>(std::move(c), std::move(prefix), std::move(cbs))) {}

private:
    // Handles one message of the stream. Returns false when etcd cancelled the watch
    // because of compaction (resync), throws on any other cancellation or error.
    static bool handle_message(state& s, const std::string& line) {
        const etcd_core& c = *s.core;
        json msg;
        try {
            msg = json::parse(line);
        } catch (const std::exception& e) {
            throw store_error(c.where + ": malformed watch message: " + e.what());
        }
        const json& err = member(msg, "error");
        if (!err.is_null())
            throw store_error(c.where + ": watch failed: " + error_text(err));
        const json& res = member(msg, "result");
        struct parsed {
            bool compacted = false;
            std::vector<kv_delta> deltas;
            uint64_t revision = 0;
        };
        parsed m = decode(c.where, "watch", [&] {
            parsed out;
            if (flag(res, "created"))
                s.created = true;
            if (flag(res, "canceled")) {
                if (u64(res, "compact_revision") != 0) {
                    out.compacted = true;
                    return out;
                }
                const json& reason = member(res, "cancel_reason");
                throw store_error(c.where + ": watch cancelled by etcd" +
                                  (reason.is_string() ? ": " + reason.get<std::string>() : std::string{}));
            }
            for (const json& ev : member(res, "events")) {
                const json& kv = member(ev, "kv");
                const json& prev = member(ev, "prev_kv");
                std::optional<std::string> key = c.user_key(b64_field(kv, "key"));
                out.revision = std::max(out.revision, u64(kv, "mod_revision"));
                if (!key)
                    continue;
                const bool del = member(ev, "type").is_string() && member(ev, "type").get<std::string>() == "DELETE";
                kv_delta d{del ? kv_delta::kind::del : kv_delta::kind::put, {}};
                d.item.key = std::move(*key);
                const json& src = del && !prev.is_null() ? prev : kv;   // del: the last known item
                d.item.value = b64_field(src, "value");
                d.item.create_rev = u64(src, "create_revision");
                d.item.mod_rev = u64(src, "mod_revision");
                out.deltas.push_back(std::move(d));
            }
            return out;
        });
        if (m.compacted)
            return false;
        // Outside decode(): a throwing callback is reported as itself, then resyncs.
        if (!m.deltas.empty() && !s.cancelled)
            s.cbs.on_changes(m.deltas, m.revision);
        return true;
    }

    // One cycle: range, snapshot, then follow the stream until it ends. Returns normally
    // on a compaction cancel; throws on errors (EOF included).
    static asio::awaitable<void> run_once(std::shared_ptr<state> s) {
        const core_ptr c = s->core;
        const kv_snapshot snap = co_await list_impl(c, s->prefix);
        if (s->cancelled)
            co_return;
        s->cbs.on_snapshot(snap);
        if (c->opts.before_watch)
            c->opts.before_watch(snap.revision);
        if (s->cancelled)
            co_return;

        std::unique_ptr<http_connection> fresh = co_await c->http.connect();
        if (s->cancelled)
            co_return;
        s->conn = std::move(fresh);
        s->created = false;
        s->pending.clear();
        http_connection& conn = *s->conn;

        json create = range_request(*c, s->prefix);
        create["start_revision"] = std::to_string(snap.revision + 1);
        create["prev_kv"] = true;
        create["progress_notify"] = true;
        http_request req = make_request(*c, "/v3/watch", json{{"create_request", create}}.dump());
        beast::error_code ec;
        conn.stream.expires_after(c->opts.request_timeout);
        co_await http::async_write(conn.stream, req, asio::redirect_error(asio::use_awaitable, ec));
        if (ec)
            throw c->http.transport_error("POST /v3/watch", ec);

        http::response_parser<http::buffer_body> parser;
        parser.body_limit(boost::none);   // a stream, not a document
        co_await http::async_read_header(conn.stream, conn.buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
        if (ec)
            throw c->http.transport_error("POST /v3/watch", ec);
        if (parser.get().result_int() != 200)
            throw store_error(c->where + ": POST /v3/watch: HTTP " + std::to_string(parser.get().result_int()));

        std::vector<char> chunk(16384);
        while (!s->cancelled) {
            parser.get().body().data = chunk.data();
            parser.get().body().size = chunk.size();
            conn.stream.expires_after(c->opts.watch_idle_timeout);
            co_await http::async_read_some(conn.stream, conn.buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
            if (s->cancelled)
                co_return;
            if (ec == http::error::need_buffer)
                ec = {};
            if (ec) {
                if (ec == beast::error::timeout)
                    throw store_error(c->where + ": watch stream silent for " +
                                      std::to_string(c->opts.watch_idle_timeout.count()) + " ms");
                throw c->http.transport_error("watch stream", ec);
            }
            s->pending.append(chunk.data(), chunk.size() - parser.get().body().size);
            size_t start = 0;
            for (size_t nl; (nl = s->pending.find('\n', start)) != std::string::npos; start = nl + 1) {
                const std::string line = s->pending.substr(start, nl - start);
                if (line.find_first_not_of(" \r\t") == std::string::npos)
                    continue;
                if (!handle_message(*s, line))
                    co_return;   // compacted: resync
                if (s->cancelled)
                    co_return;
            }
            s->pending.erase(0, start);
            if (parser.is_done()) {
                if (!s->pending.empty() && s->pending.find_first_not_of(" \r\t") != std::string::npos &&
                    !handle_message(*s, s->pending))
                    co_return;
                throw store_error(c->where + ": watch stream ended");
            }
        }
    }

    static asio::awaitable<void> loop(std::shared_ptr<state> s) {
        const auto& opts = s->core->opts;
        http_store::backoff backoff(opts.watch_backoff_min, opts.watch_backoff_max);
        while (!s->cancelled) {
            std::string error;
            s->created = false;   // set again only if this attempt's stream is established
            try {
                co_await run_once(s);
            } catch (const std::exception& e) {
                error = e.what();
            }
            if (s->conn) {
                beast::error_code ec;
                s->conn->stream.socket().close(ec);
                s->conn.reset();
            }
            if (s->cancelled)
                break;
            if (s->created)
                backoff.reset();   // the stream worked: start over gently
            if (!error.empty())
                s->errors.report(s->cbs, error);
            s->timer.expires_after(backoff.next(s->core->http));
            boost::system::error_code ec;
            co_await s->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }
};

} // namespace

// ---- etcd_store ----

etcd_store::etcd_store(asio::io_context& io, std::string host, uint16_t port, std::string ns, etcd_store_options opts)
    : core_(std::make_shared<core>(io, std::move(host), port, ns.empty() ? std::string{} : ns + "/", std::move(opts))) {}

etcd_store::~etcd_store() = default;

std::unique_ptr<etcd_store> etcd_store::from_url(asio::io_context& io, const std::string& url, etcd_store_options opts) {
    store_url u = parse_store_url(url, "etcd", 2379, "etcd://host:port[/namespace]");
    return std::make_unique<etcd_store>(io, std::move(u.host), u.port, std::move(u.prefix), std::move(opts));
}

std::string etcd_store::url() const { return core_->url("etcd"); }

asio::awaitable<kv_snapshot> etcd_store::list(std::string prefix) {
    kv_snapshot snap = co_await list_impl(core_, std::move(prefix));
    co_return snap;
}

asio::awaitable<txn_result> etcd_store::txn(std::vector<txn_op> ops) {
    const core_ptr c = core_;
    check_txn_ops<etcd_liveness>(ops, c, check_store_key);
    // Compares for the conditional ops; on failure etcd runs one range per compared key
    // in the same revision, which tells which condition failed.
    json compare = json::array();
    json success = json::array();
    json failure = json::array();
    std::vector<const txn_op*> compared;
    for (const auto& op : ops) {
        const std::string key = b64_encode(c->full_key(op.key));
        if (op.what == txn_op::kind::create) {
            compare.push_back({{"key", key}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}});
            json put{{"key", key}, {"value", b64_encode(op.value)}};
            if (op.lease != nullptr)
                put["lease"] = op.lease->id();
            success.push_back({{"request_put", std::move(put)}});
        } else if (op.what == txn_op::kind::put) {
            success.push_back({{"request_put", {{"key", key}, {"value", b64_encode(op.value)}}}});
            continue;
        } else if (op.what == txn_op::kind::check) {
            // An absent key's mod_revision compares as 0.
            compare.push_back(
                {{"key", key}, {"target", "MOD"}, {"result", "EQUAL"}, {"mod_revision", std::to_string(op.mod_rev)}});
            compared.push_back(&op);
            failure.push_back({{"request_range", {{"key", key}, {"keys_only", true}}}});
            continue;
        } else {
            if (op.mod_rev != 0)
                compare.push_back(
                    {{"key", key}, {"target", "MOD"}, {"result", "EQUAL"}, {"mod_revision", std::to_string(op.mod_rev)}});
            success.push_back({{"request_delete_range", {{"key", key}}}});
        }
        if (op.what == txn_op::kind::create || op.mod_rev != 0) {
            compared.push_back(&op);
            failure.push_back({{"request_range", {{"key", key}, {"keys_only", true}}}});
        }
    }
    json request{{"compare", std::move(compare)}, {"success", std::move(success)}, {"failure", std::move(failure)}};
    const reply r = co_await post(c, "/v3/kv/txn", std::move(request));
    if (r.status == 404)   // put with a lease etcd no longer has
        throw store_error(c->where + ": liveness lease has expired (" + error_text(r.body) + ")");
    if (r.status != 200)
        throw_status(*c, "/v3/kv/txn", r);
    txn_result result = decode(c->where, "txn", [&] {
        txn_result t;
        t.revision = u64(member(r.body, "header"), "revision");
        t.succeeded = flag(r.body, "succeeded");
        if (t.succeeded)
            return t;
        const json& responses = member(r.body, "responses");
        for (size_t i = 0; i < compared.size(); i++) {
            const json& kvs = i < responses.size() ? member(member(responses[i], "response_range"), "kvs") : json();
            const bool exists = kvs.is_array() && !kvs.empty();
            const txn_op& op = *compared[i];
            const uint64_t mod = exists ? u64(kvs[0], "mod_revision") : 0;
            const bool fails = op.what == txn_op::kind::create ? exists : mod != op.mod_rev;
            if (fails) {
                t.failed_key = op.key;
                return t;
            }
        }
        // Every condition holds now although it did not when the txn ran: cannot happen
        // within one revision; name the first compared key rather than nothing.
        if (!compared.empty())
            t.failed_key = compared.front()->key;
        return t;
    });
    co_return result;
}

asio::awaitable<std::unique_ptr<liveness>> etcd_store::open_liveness(std::string owner, std::chrono::seconds ttl) {
    (void)owner;   // etcd leases carry no name; the keys bound to them name the host
    if (ttl.count() <= 0)
        throw std::invalid_argument("liveness TTL must be positive");
    const core_ptr c = core_;
    const std::chrono::seconds asked = std::max(ttl, min_lease_ttl);
    json req = json::object();
    req["TTL"] = std::to_string(asked.count());
    const json body = co_await call(c, "/v3/lease/grant", std::move(req));
    std::string id = decode(c->where, "lease grant", [&] {
        const uint64_t v = u64(body, "ID");
        if (v == 0)
            throw std::invalid_argument("no lease ID" + (body.contains("error") ? ": " + error_text(body) : std::string{}));
        return std::to_string(v);
    });
    const uint64_t granted = decode(c->where, "lease grant", [&] { return u64(body, "TTL"); });
    const std::chrono::seconds effective = granted > 0 ? std::chrono::seconds(granted) : asked;
    std::unique_ptr<liveness> handle = std::make_unique<etcd_liveness>(c, std::move(id), effective);
    co_return handle;
}

std::unique_ptr<watch_handle> etcd_store::watch(std::string prefix, watch_callbacks cbs) {
    if (!cbs.on_snapshot || !cbs.on_changes)
        throw std::invalid_argument("watch needs on_snapshot and on_changes");
    return std::make_unique<etcd_watch>(core_, std::move(prefix), std::move(cbs));
}

} // namespace overpass::ctl
