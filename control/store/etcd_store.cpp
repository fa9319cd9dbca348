// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/store/etcd_store.hpp"

#include "control/store/http_client.hpp"
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

namespace {

constexpr std::chrono::seconds min_lease_ttl{2};     // etcd's floor (election timeout based)

// ---- proto3 JSON: int64 as strings, zero/false/empty fields omitted ----

uint64_t u64(const json& obj, const char* field) {
    if (!obj.is_object())
        return 0;
    const auto it = obj.find(field);
    if (it == obj.end() || it->is_null())
        return 0;
    if (it->is_string())
        return std::stoull(it->get<std::string>());
    if (it->is_number_unsigned())
        return it->get<uint64_t>();
    if (it->is_number_integer()) {
        const int64_t v = it->get<int64_t>();
        return v < 0 ? 0 : static_cast<uint64_t>(v);
    }
    throw std::invalid_argument(std::string("field \"") + field + "\" is not a number");
}

bool flag(const json& obj, const char* field) {
    if (!obj.is_object())
        return false;
    const auto it = obj.find(field);
    return it != obj.end() && it->is_boolean() && it->get<bool>();
}

std::string b64_field(const json& obj, const char* field) {
    if (!obj.is_object())
        return {};
    const auto it = obj.find(field);
    if (it == obj.end() || !it->is_string())
        return {};
    return b64_decode(it->get<std::string>());
}

const json& member(const json& obj, const char* field) {
    static const json none;
    if (!obj.is_object())
        return none;
    const auto it = obj.find(field);
    return it == obj.end() ? none : *it;
}

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

struct etcd_store::core {
    asio::io_context& io;
    std::string ns;      // "" or "<namespace>/"
    etcd_store_options opts;
    std::string where;   // "etcd at HOST:PORT", the head of every error message
    http_client http;

    core(asio::io_context& i, std::string h, uint16_t p, std::string n, etcd_store_options o)
        : io(i), ns(std::move(n)), opts(std::move(o)), where("etcd at " + host_port(h, p)),
          http(i, std::move(h), p, where, opts.request_timeout) {}

    std::string full_key(std::string_view key) const { return ns + std::string(key); }

    // nullopt: outside our namespace (cannot happen for ranges we asked for).
    std::optional<std::string> user_key(const std::string& key) const {
        if (!key.starts_with(ns))
            return std::nullopt;
        return key.substr(ns.size());
    }
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

// Wraps reply decoding so that a malformed value becomes store_error.
template <class Fn>
auto decode(const etcd_core& c, const std::string& what, Fn&& fn) {
    try {
        return fn();
    } catch (const store_error&) {
        throw;
    } catch (const std::exception& e) {
        throw store_error(c.where + ": malformed reply to " + what + ": " + e.what());
    }
}

json range_request(const etcd_core& c, const std::string& prefix) {
    const std::string key = c.full_key(prefix);
    return json{{"key", b64_encode(key.empty() ? std::string(1, '\0') : key)}, {"range_end", b64_encode(prefix_end(key))}};
}

asio::awaitable<kv_snapshot> list_impl(core_ptr c, std::string prefix) {
    const json body = co_await call(c, "/v3/kv/range", range_request(*c, prefix));
    co_return decode(*c, "range", [&] {
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

struct etcd_lease_state : liveness_state {
    etcd_lease_state(core_ptr c, std::string lease_id, std::chrono::seconds ttl)
        : liveness_state(c->io.get_executor(), std::move(lease_id), ttl), core(std::move(c)) {}
    core_ptr core;   // id: the decimal lease ID
};

class etcd_liveness final : public liveness_base<etcd_lease_state> {
public:
    using state = etcd_lease_state;

    etcd_liveness(core_ptr c, std::string id, std::chrono::seconds ttl)
        : liveness_base(std::make_shared<state>(std::move(c), std::move(id), ttl)) {
        if (st_->core->opts.renew_leases)
            asio::co_spawn(st_->core->io, renew_loop(st_, &etcd_liveness::renew_now), asio::detached);
    }

    asio::awaitable<bool> renew() override {
        const bool ok = co_await renew_now(st_);
        co_return ok;
    }

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

    const core_ptr& core() const { return st_->core; }

private:
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
        const uint64_t ttl = decode(*s->core, "lease keepalive", [&] { return u64(member(r.body, "result"), "TTL"); });
        if (ttl == 0) {   // expired or unknown lease: etcd answers 200 without TTL
            s->lose();
            co_return false;
        }
        co_return true;
    }
};

// ---- watch ----

class etcd_watch final : public watch_handle {
public:
    struct state {
        core_ptr core;
        std::string prefix;
        watch_callbacks cbs;
        asio::steady_timer timer;
        std::unique_ptr<http_connection> conn;   // the current stream
        bool cancelled = false;
        bool created = false;               // the current stream was accepted by etcd
        bool reported = false;
        std::chrono::steady_clock::time_point last_report;
        unsigned suppressed = 0;
        std::string pending;                // bytes after the last complete message
        state(core_ptr c, std::string p, watch_callbacks w)
            : core(std::move(c)), prefix(std::move(p)), cbs(std::move(w)), timer(core->io) {}
    };

    etcd_watch(core_ptr c, std::string prefix, watch_callbacks cbs)
        : st_(std::make_shared<state>(std::move(c), std::move(prefix), std::move(cbs))) {
        asio::co_spawn(st_->core->io, loop(st_), asio::detached);
    }
    ~etcd_watch() override {
        st_->cancelled = true;
        st_->timer.cancel();
        if (st_->conn) {
            beast::error_code ec;
            st_->conn->stream.socket().close(ec);   // aborts the pending read
        }
    }

private:
    static void report(state& s, const std::string& msg) {
        if (!s.cbs.on_error || s.cancelled)
            return;
        const auto now = std::chrono::steady_clock::now();
        if (s.reported && now - s.last_report < s.core->opts.error_report_interval) {
            s.suppressed++;
            return;
        }
        std::string text = msg;
        if (s.suppressed > 0)
            text += " (" + std::to_string(s.suppressed) + " similar reports suppressed)";
        s.suppressed = 0;
        s.reported = true;
        s.last_report = now;
        s.cbs.on_error(text);
    }

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
        parsed m = decode(c, "watch", [&] {
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
        std::chrono::milliseconds backoff = opts.watch_backoff_min;
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
                backoff = opts.watch_backoff_min;   // the stream worked: start over gently
            if (!error.empty())
                report(*s, error);
            s->timer.expires_after(s->core->http.jitter(backoff));
            backoff = std::min(backoff * 2, opts.watch_backoff_max);
            boost::system::error_code ec;
            co_await s->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    std::shared_ptr<state> st_;
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

std::string etcd_store::url() const {
    std::string u = "etcd://" + host_port(core_->http.host(), core_->http.port());
    if (!core_->ns.empty())
        u += "/" + core_->ns.substr(0, core_->ns.size() - 1);
    return u;
}

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
    txn_result result = decode(*c, "txn", [&] {
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
            const bool fails = op.what == txn_op::kind::create ? exists
                                                               : !exists || u64(kvs[0], "mod_revision") != op.mod_rev;
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
    std::string id = decode(*c, "lease grant", [&] {
        const uint64_t v = u64(body, "ID");
        if (v == 0)
            throw std::invalid_argument("no lease ID" + (body.contains("error") ? ": " + error_text(body) : std::string{}));
        return std::to_string(v);
    });
    const uint64_t granted = decode(*c, "lease grant", [&] { return u64(body, "TTL"); });
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
