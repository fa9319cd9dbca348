// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/store/consul_store.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <stdexcept>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "control/store/http_client.hpp"
#include "control/store/http_store.hpp"
#include "control/store/keys.hpp"
#include "control/store/liveness_base.hpp"

namespace overpass::ctl {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;
using http_store::decode;
using http_store::member;
using http_store::str;
using http_store::u64;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// [docs session] "TTL must be between 10s and 86400s".
constexpr seconds min_session_ttl{10};
constexpr seconds max_session_ttl{86400};
// [docs session] lock-delay is clamped to 60 s by the server.
constexpr seconds max_lock_delay{60};

bool key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ',' || c == '-' ||
           c == '_' || c == '.' || c == '/';
}

// A list/watch prefix: "" or Consul's key alphabet without a leading '/' or "../".
bool valid_prefix(std::string_view p) {
    if (p.empty())
        return true;
    if (p.front() == '/' || p.find("../") != std::string_view::npos)
        return false;
    return std::all_of(p.begin(), p.end(), key_char);
}

void check_key(std::string_view key) {
    if (!valid_key(key) || key.find("../") != std::string_view::npos)
        throw std::invalid_argument("invalid store key \"" + std::string(key) +
                                    "\": Consul keys use only [A-Za-z0-9,-_./], with no leading '/', "
                                    "empty component or \"../\"");
}

void check_prefix(std::string_view p) {
    if (!valid_prefix(p))
        throw std::invalid_argument("invalid store prefix \"" + std::string(p) +
                                    "\": Consul keys use only [A-Za-z0-9,-_./], with no leading '/' or \"../\"");
}

// Go's time.Duration text ("15s", "1m0s", "1h0m0s", "1.5s", "250ms"). nullopt if unparsable.
std::optional<milliseconds> parse_go_duration(std::string_view s) {
    if (s == "0")
        return milliseconds(0);
    double total_ms = 0;
    size_t i = 0;
    if (s.empty())
        return std::nullopt;
    while (i < s.size()) {
        const size_t start = i;
        while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
            i++;
        if (i == start)
            return std::nullopt;
        double v = 0;
        try {
            v = std::stod(std::string(s.substr(start, i - start)));
        } catch (const std::exception&) {
            return std::nullopt;
        }
        const size_t ustart = i;
        while (i < s.size() && !((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
            i++;
        const std::string_view unit = s.substr(ustart, i - ustart);
        if (unit == "h")
            total_ms += v * 3600e3;
        else if (unit == "m")
            total_ms += v * 60e3;
        else if (unit == "s")
            total_ms += v * 1e3;
        else if (unit == "ms")
            total_ms += v;
        else if (unit == "us" || unit == "\u00b5s")
            total_ms += v / 1e3;
        else if (unit == "ns")
            total_ms += v / 1e6;
        else
            return std::nullopt;
    }
    return milliseconds(static_cast<int64_t>(total_ms));
}

std::string trimmed(std::string_view s) {
    const size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos)
        return {};
    const size_t e = s.find_last_not_of(" \t\r\n");
    std::string out(s.substr(b, e - b + 1));
    if (out.size() > 300)
        out = out.substr(0, 300) + "...";
    return out;
}

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

// Consul refuses, on every KV read, a key that ends in something like a file name
// extension (".json", ".js", ".sh" ...; validateKVKey), though a transaction writes it:
// a network named "web.json" could be created and then never read. Such a key is stored
// with a ',' appended, and so is a key that already ends in ',' (overpass's own keys
// never do), which keeps the mapping one to one.

/// The last component ends in '.' and letters or digits, at least one a letter (so an
/// address such as "10.0.2.3" does not).
bool ends_like_a_file_name(std::string_view key) {
    const size_t dot = key.rfind('.');
    const size_t slash = key.rfind('/');
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
        return false;
    const std::string_view ext = key.substr(dot + 1);
    const auto alnum = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    return !ext.empty() && std::all_of(ext.begin(), ext.end(), alnum) && std::any_of(ext.begin(), ext.end(), alpha);
}

std::string consul_key(std::string_view key) {
    std::string k(key);
    if (ends_like_a_file_name(key) || key.ends_with(','))
        k += ',';
    return k;
}

std::string key_from_consul(std::string key) {
    if (key.ends_with(','))
        key.pop_back();
    return key;
}

/// A prefix Consul reads: one that ends like a file name is cut back to its last '.';
/// the listing is then filtered by the prefix itself.
std::string consul_prefix(std::string_view prefix) {
    return std::string(ends_like_a_file_name(prefix) ? prefix.substr(0, prefix.rfind('.') + 1) : prefix);
}

} // namespace

struct consul_store::core : http_store::server {
    core(asio::io_context& i, std::string h, uint16_t p, std::string n, consul_store_options o)
        : server(i, "consul", std::move(h), p, std::move(n), o.request_timeout, http_tls_options{o.tls, o.ca_file}),
          opts(std::move(o)) {}
    consul_store_options opts;

    // The server's, with Consul's key mapping (consul_key()).
    std::string full_key(std::string_view key) const { return ns + consul_key(key); }
    std::optional<std::string> user_key(const std::string& key) const {
        std::optional<std::string> k = server::user_key(key);
        if (k)
            *k = key_from_consul(std::move(*k));
        return k;
    }

    http_request request(http::verb verb, std::string target, std::string body = {}) const {
        http_request req = http.make_request(verb, std::move(target));
        if (!opts.token.empty())
            req.set("X-Consul-Token", opts.token);
        if (!body.empty()) {
            req.set(http::field::content_type, "application/json");
            req.body() = std::move(body);
        }
        return req;
    }

    [[noreturn]] void throw_status(const http_request& req, const http_response& res) const {
        std::string target(req.target());
        target = target.substr(0, target.find('?'));
        std::string msg = where + ": " + std::string(req.method_string()) + " " + target + ": HTTP " +
                          std::to_string(res.result_int());
        const std::string text = trimmed(res.body());
        if (!text.empty())
            msg += ": " + text;
        if (res.result_int() == 403)
            msg += opts.token.empty() ? " (no ACL token configured: set --store-token-file or CONSUL_HTTP_TOKEN)"
                                      : " (the configured ACL token was refused or lacks permission)";
        throw store_error(msg);
    }
};

namespace {

using consul_core = consul_store::core;
using core_ptr = std::shared_ptr<consul_core>;

json parse_body(const consul_core& c, const std::string& what, const http_response& res) {
    try {
        return json::parse(res.body());
    } catch (const std::exception& e) {
        throw store_error(c.where + ": malformed reply to " + what + " (HTTP " + std::to_string(res.result_int()) +
                          "): " + e.what());
    }
}

// X-Consul-Index of a KV read; store_error when absent (not a Consul answer).
uint64_t consul_index(const consul_core& c, const std::string& what, const http_response& res) {
    const auto it = res.find("X-Consul-Index");
    if (it == res.end())
        throw store_error(c.where + ": reply to " + what + " has no X-Consul-Index (HTTP " +
                          std::to_string(res.result_int()) + ")");
    const std::string text(it->value());
    if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
        throw store_error(c.where + ": reply to " + what + " has a malformed X-Consul-Index \"" + text + "\"");
    return std::stoull(text);
}

struct listing {
    std::vector<kv_item> items;   // sorted by key
    uint64_t index = 0;
};

std::string list_target(const consul_core& c, const std::string& prefix) {
    return "/v1/kv/" + c.ns + consul_prefix(prefix) + "?recurse";
}

// Decodes a 200/404 reply of a recursive KV read of `prefix` (list_target()); other
// statuses throw.
listing decode_listing(const consul_core& c, const std::string& prefix, const http_request& req,
                       const http_response& res) {
    const std::string what = "GET /v1/kv/" + c.ns + "...";
    if (res.result_int() != 200 && res.result_int() != 404)
        c.throw_status(req, res);
    listing out;
    out.index = consul_index(c, what, res);
    if (res.result_int() == 404)   // empty prefix; the index is still valid
        return out;
    const json body = parse_body(c, what, res);
    return decode(c.where, what, [&] {
        if (!body.is_array())
            throw std::invalid_argument("not a JSON array");
        listing l;
        l.index = out.index;
        for (const json& e : body) {
            std::optional<std::string> key = c.user_key(str(e, "Key"));
            if (!key || !key->starts_with(prefix))
                continue;
            kv_item item;
            item.key = std::move(*key);
            const json& v = member(e, "Value");
            if (v.is_string())
                item.value = b64_decode(v.get<std::string>());
            item.create_rev = u64(e, "CreateIndex");
            item.mod_rev = u64(e, "ModifyIndex");
            l.items.push_back(std::move(item));
        }
        std::sort(l.items.begin(), l.items.end(), [](const kv_item& a, const kv_item& b) { return a.key < b.key; });
        return l;
    });
}

asio::awaitable<listing> list_impl(core_ptr c, std::string prefix) {
    check_prefix(prefix);
    http_request req = c->request(http::verb::get, list_target(*c, prefix));
    const http_response res = co_await c->http.send(req);
    listing l = decode_listing(*c, prefix, req, res);
    co_return l;
}

// ---- liveness = session ----

class consul_liveness final : public http_store::lease<consul_core, consul_liveness> {
public:
    consul_liveness(core_ptr c, std::string id, milliseconds ttl) : lease(c, std::move(id), ttl, c->opts.renew_sessions) {}

    asio::awaitable<void> release() override {
        std::shared_ptr<state> s = st_;
        s->stop();
        if (!s->alive)
            co_return;
        // [docs session] destroy is idempotent: an unknown or expired id answers 200 too.
        http_request req = s->core->request(http::verb::put, "/v1/session/destroy/" + s->id);
        const http_response res = co_await s->core->http.send(req);
        if (res.result_int() != 200)
            s->core->throw_status(req, res);
        s->alive = false;
    }

    static asio::awaitable<bool> renew_now(std::shared_ptr<state> s) {
        if (!s->alive)
            co_return false;
        http_request req = s->core->request(http::verb::put, "/v1/session/renew/" + s->id);
        const http_response res = co_await s->core->http.send(req);
        if (!s->alive)
            co_return false;
        if (res.result_int() == 404) {   // [docs session] the session is gone
            s->lose();
            co_return false;
        }
        if (res.result_int() != 200)
            s->core->throw_status(req, res);
        const json body = parse_body(*s->core, "PUT /v1/session/renew", res);
        // [docs session] "the returned TTL may be larger than requested": honour it.
        const std::optional<milliseconds> ttl = decode(s->core->where, "PUT /v1/session/renew", [&] {
            if (!body.is_array() || body.empty())
                throw std::invalid_argument("not a one-session array");
            return parse_go_duration(str(body[0], "TTL"));
        });
        if (ttl && *ttl > s->ttl)
            s->ttl = *ttl;
        co_return true;
    }
};

// ---- watch = blocking queries ----

struct consul_watch_state : http_store::watch_state<consul_core> {
    consul_watch_state(core_ptr c, std::string p, watch_callbacks w)
        : watch_state(std::move(c), std::move(p), std::move(w)),
          tokens(static_cast<double>(std::max(1u, core->opts.watch_burst))), refilled(std::chrono::steady_clock::now()) {}
    uint64_t index = 0;                      // I of the next blocking query (0: none)
    bool have_state = false;                 // `known` matches what was delivered
    std::map<std::string, kv_item> known;
    double tokens;                           // token bucket
    std::chrono::steady_clock::time_point refilled;
    bool recovering = false;                 // a request failed since the last answer
};

class consul_watch final : public http_store::watch<consul_watch_state, consul_watch> {
    friend watch;

public:
    using state = consul_watch_state;

    consul_watch(core_ptr c, std::string prefix, watch_callbacks cbs)
        : watch(std::make_shared<state>(std::move(c), std::move(prefix), std::move(cbs))) {}

private:
    static void close(state& s) {
        if (s.conn) {
            beast::error_code ec;
            s.conn->stream.socket().close(ec);
            s.conn.reset();
        }
    }

    // [docs features/blocking] "rate limit, don't sleep": a token bucket with a small
    // burst lets successive changes through quickly and degrades to polling under churn.
    static asio::awaitable<void> take_token(std::shared_ptr<state> s) {
        const auto& o = s->core->opts;
        const double burst = static_cast<double>(std::max(1u, o.watch_burst));
        const double refill_ms = static_cast<double>(std::max<int64_t>(1, o.watch_refill.count()));
        const auto now = std::chrono::steady_clock::now();
        const double elapsed_ms = std::chrono::duration<double, std::milli>(now - s->refilled).count();
        s->tokens = std::min(burst, s->tokens + elapsed_ms / refill_ms);
        s->refilled = now;
        if (s->tokens >= 1.0) {
            s->tokens -= 1.0;
            co_return;
        }
        s->timer.expires_after(milliseconds(static_cast<int64_t>((1.0 - s->tokens) * refill_ms) + 1));
        boost::system::error_code ec;
        co_await s->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        s->tokens = 0;
        s->refilled = std::chrono::steady_clock::now();
    }

    static void deliver_snapshot(state& s, listing&& l, uint64_t revision) {
        s.have_state = false;   // stays false if the callback throws: resync next time
        s.known.clear();
        for (const auto& item : l.items)
            s.known.emplace(item.key, item);
        kv_snapshot snap;
        snap.items = std::move(l.items);
        snap.revision = revision;
        s.cbs.on_snapshot(snap);
        s.have_state = true;
    }

    // Consul answers with the full state, not events: the deltas are the difference
    // between two listings. Puts in ModifyIndex order, then deletes in key order (a
    // delete's index is not visible in the listing).
    // Whether it delivered anything.
    static bool deliver_diff(state& s, listing&& l, uint64_t revision) {
        std::vector<kv_delta> puts;
        std::vector<kv_delta> dels;
        std::map<std::string, kv_item> next;
        for (auto& item : l.items) {
            const auto old = s.known.find(item.key);
            if (old == s.known.end() || old->second.mod_rev != item.mod_rev ||
                old->second.create_rev != item.create_rev || old->second.value != item.value)
                puts.push_back(kv_delta{kv_delta::kind::put, item});
            next.emplace(item.key, std::move(item));
        }
        for (auto& [key, item] : s.known)
            if (!next.contains(key))
                dels.push_back(kv_delta{kv_delta::kind::del, item});
        std::stable_sort(puts.begin(), puts.end(),
                         [](const kv_delta& a, const kv_delta& b) { return a.item.mod_rev < b.item.mod_rev; });
        for (auto& d : dels)
            puts.push_back(std::move(d));
        s.known = std::move(next);
        if (puts.empty())
            return false;
        s.have_state = false;   // stays false if the callback throws: resync next time
        s.cbs.on_changes(puts, revision);
        s.have_state = true;
        return true;
    }

    // One blocking query and its handling, per the docs' "Implementation Details".
    static asio::awaitable<void> poll_once(std::shared_ptr<state> s) {
        const core_ptr c = s->core;
        const auto& o = c->opts;
        if (!s->conn) {
            std::unique_ptr<http_connection> fresh = co_await c->http.connect();
            if (s->cancelled)
                co_return;
            s->conn = std::move(fresh);
        }
        // After an error, read at once instead of blocking: the answer tells the callbacks
        // that the store is back even when nothing changed meanwhile.
        const bool blocking = s->have_state && s->index > 0 && !s->recovering;
        std::string target = list_target(*c, s->prefix);
        milliseconds timeout = o.request_timeout;
        if (blocking) {
            target += "&index=" + std::to_string(s->index) + "&wait=" + std::to_string(o.watch_wait.count()) + "ms";
            // [docs features/blocking] the server adds up to wait/16 of jitter.
            timeout = o.watch_wait + o.watch_wait / 16 + o.watch_timeout_margin;
        }
        http_request req = c->request(http::verb::get, std::move(target));
        const http_response res = co_await c->http.exchange(*s->conn, req, timeout);
        if (s->cancelled)
            co_return;
        if (!res.keep_alive())
            close(*s);
        listing l = decode_listing(*c, s->prefix, req, res);
        // [docs features/blocking] "sanity check index is greater than zero".
        const uint64_t n = std::max<uint64_t>(l.index, 1);
        const bool recovered = std::exchange(s->recovering, false);
        if (!s->have_state) {
            s->index = n;
            deliver_snapshot(*s, std::move(l), n);
            co_return;
        }
        if (n < s->index) {
            // [docs features/blocking] "reset the index if it goes backwards": the next
            // query starts over without index, and this answer is a full resync.
            deliver_snapshot(*s, std::move(l), n);
            s->index = 0;
            co_return;
        }
        if (blocking && n == s->index)
            co_return;   // a wake-up without change (timeout, idempotent write, ...)
        s->index = n;
        if (!deliver_diff(*s, std::move(l), n) && recovered)
            s->cbs.on_changes({}, n);   // nothing changed, but the store answers again
    }

    static asio::awaitable<void> loop(std::shared_ptr<state> s) {
        const auto& o = s->core->opts;
        http_store::backoff backoff(o.watch_backoff_min, o.watch_backoff_max);
        while (!s->cancelled) {
            co_await take_token(s);
            if (s->cancelled)
                break;
            std::string error;
            try {
                co_await poll_once(s);
            } catch (const std::exception& e) {
                error = e.what();
            }
            if (s->cancelled)
                break;
            if (error.empty()) {
                backoff.reset();
                continue;
            }
            close(*s);
            s->recovering = true;
            if (!s->have_state)
                s->index = 0;
            s->errors.report(s->cbs, error);
            s->timer.expires_after(backoff.next(s->core->http));
            boost::system::error_code ec;
            co_await s->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }
};

/// A transaction in Consul's terms: its KV operations, and for each the index of the
/// txn_op it came from.
struct consul_txn {
    json body = json::array();
    std::vector<size_t> origin;
};

consul_txn to_consul_txn(const consul_core& c, const std::vector<txn_op>& ops) {
    // [docs txn] KV verbs; values are base64 in the request.
    consul_txn t;
    const auto add = [&](size_t i, json kv) {
        json op = json::object();
        op["KV"] = std::move(kv);
        t.body.push_back(std::move(op));
        t.origin.push_back(i);
    };
    for (size_t i = 0; i < ops.size(); i++) {
        const txn_op& op = ops[i];
        const std::string key = c.full_key(op.key);
        if (op.what == txn_op::kind::create) {
            if (op.lease == nullptr) {
                add(i, json{{"Verb", "cas"}, {"Key", key}, {"Value", b64_encode(op.value)}, {"Index", 0}});
            } else {
                // A bare lock would also take an existing unlocked key: check absence first.
                add(i, json{{"Verb", "check-not-exists"}, {"Key", key}});
                add(i, json{{"Verb", "lock"}, {"Key", key}, {"Value", b64_encode(op.value)}, {"Session", op.lease->id()}});
            }
        } else if (op.what == txn_op::kind::put) {
            add(i, json{{"Verb", "set"}, {"Key", key}, {"Value", b64_encode(op.value)}});
        } else if (op.what == txn_op::kind::check) {
            if (op.mod_rev == 0)
                add(i, json{{"Verb", "check-not-exists"}, {"Key", key}});
            else
                add(i, json{{"Verb", "check-index"}, {"Key", key}, {"Index", op.mod_rev}});
        } else if (op.mod_rev == 0) {
            add(i, json{{"Verb", "delete"}, {"Key", key}});
        } else {
            // delete-cas succeeds on an absent key ([src] kvsDeleteCASTxn): check it exists.
            add(i, json{{"Verb", "check-index"}, {"Key", key}, {"Index", op.mod_rev}});
            add(i, json{{"Verb", "delete-cas"}, {"Key", key}, {"Index", op.mod_rev}});
        }
    }
    return t;
}

/// A 200 or 409 reply to a transaction: its result, or the error to throw.
struct txn_outcome {
    txn_result result;
    std::string error;   // non-empty: throw store_error
};

txn_outcome read_txn_reply(const consul_core& c, const std::vector<txn_op>& ops, const consul_txn& t, unsigned status,
                           const json& reply) {
    txn_outcome o;
    if (status == 200) {
        o.result.succeeded = true;
        for (const json& r : member(reply, "Results"))
            o.result.revision = std::max(o.result.revision, u64(member(r, "KV"), "ModifyIndex"));
        return o;
    }
    const json& errors = member(reply, "Errors");
    if (!errors.is_array() || errors.empty())
        throw std::invalid_argument("HTTP 409 without Errors");
    const json& first = errors[0];
    const uint64_t at = u64(first, "OpIndex");
    const std::string what = str(first, "What");
    if (at >= t.body.size())
        throw std::invalid_argument("Errors[0].OpIndex " + std::to_string(at) + " out of range");
    const std::string verb = t.body[at]["KV"]["Verb"].get<std::string>();
    const bool denied = contains(what, "Permission denied") || contains(what, "ACL");
    const bool condition = verb == "check-not-exists" || verb == "check-index" || verb == "cas" ||
                           verb == "delete-cas" ||
                           (verb == "lock" && (contains(what, "already held") || contains(what, "lock delay")));
    if (denied || !condition) {
        o.error = c.where + ": PUT /v1/txn: operation " + std::to_string(at) + " (" + verb + " " +
                  ops[t.origin[at]].key + ") failed: " + what;
        if (denied)
            o.error += c.opts.token.empty()
                           ? " (no ACL token configured: set --store-token-file or CONSUL_HTTP_TOKEN)"
                           : " (the configured ACL token lacks write permission)";
        return o;
    }
    o.result.failed_key = ops[t.origin[at]].key;
    return o;
}

} // namespace

// ---- consul_store ----

consul_store::consul_store(asio::io_context& io, std::string host, uint16_t port, std::string prefix,
                           consul_store_options opts)
    : core_(std::make_shared<core>(io, std::move(host), port, prefix.empty() ? std::string{} : prefix + "/",
                                   std::move(opts))) {
    for (const char ch : core_->opts.token)
        if (static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7e)
            throw std::invalid_argument("the Consul ACL token contains a space or a control character");
    if (core_->opts.lock_delay > max_lock_delay)
        throw std::invalid_argument("Consul lock-delay above 60 s is clamped by the server; choose <= 60 s");
}

consul_store::~consul_store() = default;

std::unique_ptr<consul_store> consul_store::from_url(asio::io_context& io, const std::string& url,
                                                     consul_store_options opts) {
    opts.tls = url.starts_with("consul+https://");
    store_url u = opts.tls ? parse_store_url(url, "consul+https", 8501, "consul+https://host:port[/prefix]")
                           : parse_store_url(url, "consul", 8500, "consul://host:port[/prefix]");
    return std::make_unique<consul_store>(io, std::move(u.host), u.port, std::move(u.prefix), std::move(opts));
}

std::string consul_store::url() const { return core_->url(core_->http.tls() ? "consul+https" : "consul"); }

asio::awaitable<kv_snapshot> consul_store::list(std::string prefix) {
    listing l = co_await list_impl(core_, std::move(prefix));
    kv_snapshot snap;
    snap.items = std::move(l.items);
    snap.revision = l.index;
    co_return snap;
}

asio::awaitable<txn_result> consul_store::txn(std::vector<txn_op> ops) {
    const core_ptr c = core_;
    check_txn_ops<consul_liveness>(ops, c, check_key);
    const consul_txn t = to_consul_txn(*c, ops);
    if (t.body.size() > max_txn_ops)
        throw std::invalid_argument("transaction of " + std::to_string(ops.size()) + " operations needs " +
                                    std::to_string(t.body.size()) + " Consul txn operations, more than Consul's limit of " +
                                    std::to_string(max_txn_ops) + "; split it");
    if (t.body.empty()) {
        txn_result none;
        none.succeeded = true;
        co_return none;
    }
    http_request req = c->request(http::verb::put, "/v1/txn", t.body.dump());
    const http_response res = co_await c->http.send(req);
    const unsigned status = res.result_int();
    if (status != 200 && status != 409)
        c->throw_status(req, res);
    const json reply = parse_body(*c, "PUT /v1/txn", res);
    const txn_outcome out =
        decode(c->where, "PUT /v1/txn", [&] { return read_txn_reply(*c, ops, t, status, reply); });
    if (!out.error.empty())
        throw store_error(out.error);
    co_return out.result;
}

asio::awaitable<std::unique_ptr<liveness>> consul_store::open_liveness(std::string owner, seconds ttl) {
    if (ttl.count() <= 0)
        throw std::invalid_argument("liveness TTL must be positive");
    const core_ptr c = core_;
    const seconds asked = std::clamp(ttl, min_session_ttl, max_session_ttl);
    json req_body = json::object();
    req_body["Name"] = "overpass-" + owner;
    req_body["TTL"] = std::to_string(asked.count()) + "s";
    req_body["Behavior"] = "delete";
    req_body["LockDelay"] = std::to_string(c->opts.lock_delay.count()) + "s";
    // No serfHealth check: liveness depends on our TTL heartbeat only (api CreateNoChecks).
    req_body["Checks"] = json::array();
    http_request req = c->request(http::verb::put, "/v1/session/create", req_body.dump());
    const http_response res = co_await c->http.send(req);
    if (res.result_int() != 200)
        c->throw_status(req, res);
    const json body = parse_body(*c, "PUT /v1/session/create", res);
    std::string id = decode(c->where, "PUT /v1/session/create", [&] {
        std::string v = str(body, "ID");
        if (v.empty())
            throw std::invalid_argument("no session ID");
        return v;
    });
    std::unique_ptr<liveness> handle = std::make_unique<consul_liveness>(c, std::move(id), milliseconds(asked));
    co_return handle;
}

std::unique_ptr<watch_handle> consul_store::watch(std::string prefix, watch_callbacks cbs) {
    if (!cbs.on_snapshot || !cbs.on_changes)
        throw std::invalid_argument("watch needs on_snapshot and on_changes");
    check_prefix(prefix);
    return std::make_unique<consul_watch>(core_, std::move(prefix), std::move(cbs));
}

} // namespace overpass::ctl
