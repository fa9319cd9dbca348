// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/log.hpp"
#include "control/api/api_server.hpp"
#include "control/api/schema.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace overpass::ctl {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t max_body = 64 * 1024;

/// A refusal of the API's own (no such path, method or query): status + one line.
struct http_error : std::runtime_error {
    unsigned status;
    http_error(unsigned s, const std::string& message) : std::runtime_error(message), status(s) {}
};

/// The one place where the cluster's error kinds become HTTP statuses.
unsigned status_of(error_kind k) {
    switch (k) {
    case error_kind::invalid:
        return 400;
    case error_kind::not_found:
        return 404;
    case error_kind::conflict:
        return 409;
    case error_kind::exhausted:
        return 507;
    case error_kind::unavailable:
        return 503;
    case error_kind::internal:
        return 500;
    }
    return 500;
}

api_response error(unsigned status, const std::string& msg) { return {status, {{api::field::error, msg}}}; }

// With GCC 12, `co_return api_response{status, json}` (a braced aggregate in the co_return
// statement) crashed the server at -O2 while serialising the response: build responses
// in an ordinary function instead.
api_response respond(unsigned status, nlohmann::json body) {
    api_response r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

template <class T>
nlohmann::json encode_all(const std::vector<T>& items) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& i : items)
        out.push_back(api::encode(i));
    return out;
}

// ---- the handlers: one per route ----

/// One routed request, as its handler sees it.
struct call {
    agent& ag;
    const std::function<nlohmann::json()>& stats;
    const std::string& body;
    const std::string& query;   ///< after '?', undecoded
    std::string name;           ///< the path's {name}, if the route has one
};

asio::awaitable<api_response> list_networks(const call& c) {
    const std::vector<net_meta> nets = co_await c.ag.list_networks();
    co_return respond(200, encode_all(nets));
}

asio::awaitable<api_response> create_network(const call& c) {
    network_request req = api::decode<network_request>(api::parse_object(c.body));
    const net_meta created = co_await c.ag.create_network(std::move(req));
    co_return respond(201, api::encode(created));
}

asio::awaitable<api_response> inspect_network(const call& c) {
    const network_details d = co_await c.ag.inspect_network(c.name);
    co_return respond(200, api::encode(d));
}

asio::awaitable<api_response> remove_network(const call& c) {
    co_await c.ag.remove_network(c.name);
    co_return respond(204, nullptr);
}

asio::awaitable<api_response> list_endpoints(const call& c) {
    const std::vector<endpoint_info> eps = co_await c.ag.list_endpoints();
    co_return respond(200, encode_all(eps));
}

asio::awaitable<api_response> attach_endpoint(const call& c) {
    attach_request req = api::decode<attach_request>(api::parse_object(c.body));
    const endpoint_info attached = co_await c.ag.attach_endpoint(std::move(req));
    co_return respond(201, api::encode(attached));
}

asio::awaitable<api_response> detach_endpoint(const call& c) {
    const std::string network_eq = std::string(api::field::network) + "=";
    std::string network;
    if (c.query.starts_with(network_eq))
        network = c.query.substr(network_eq.size());
    else if (!c.query.empty())
        throw http_error(400, "unknown query \"" + c.query + "\"");
    co_await c.ag.detach_endpoint(c.name, network);
    co_return respond(204, nullptr);
}

asio::awaitable<api_response> list_hosts(const call& c) {
    const std::vector<host_info> hosts = co_await c.ag.list_hosts();
    co_return respond(200, encode_all(hosts));
}

asio::awaitable<api_response> stats(const call& c) {
    nlohmann::json out = c.stats ? c.stats() : nlohmann::json::object();
    if (out.is_object())
        out[api::field::control] = c.ag.status();
    co_return respond(200, std::move(out));
}

// ---- the route table ----

struct route_entry {
    std::string_view method;
    std::string pattern;   ///< "/v1/networks/{name}": {name} takes one non-empty segment
    asio::awaitable<api_response> (*handler)(const call&);
};

const std::vector<route_entry>& routes() {
    static const std::string item = "/{name}";
    static const std::vector<route_entry> table{
        {"GET", std::string(api::path::networks), list_networks},
        {"POST", std::string(api::path::networks), create_network},
        {"GET", std::string(api::path::networks) + item, inspect_network},
        {"DELETE", std::string(api::path::networks) + item, remove_network},
        {"GET", std::string(api::path::endpoints), list_endpoints},
        {"POST", std::string(api::path::endpoints), attach_endpoint},
        {"DELETE", std::string(api::path::endpoints) + item, detach_endpoint},
        {"GET", std::string(api::path::hosts), list_hosts},
        {"GET", std::string(api::path::stats), stats},
    };
    return table;
}

/// Whether `path` has the shape of `pattern`, segment by segment; sets `name` to what
/// {name} matched.
bool matches(std::string_view pattern, std::string_view path, std::string& name) {
    for (;;) {
        const size_t ps = pattern.find('/');
        const size_t qs = path.find('/');
        const std::string_view want = pattern.substr(0, ps);
        const std::string_view got = path.substr(0, qs);
        if (want == "{name}") {
            if (got.empty())
                return false;
            name = got;
        } else if (want != got) {
            return false;
        }
        if (ps == std::string_view::npos || qs == std::string_view::npos)
            return ps == qs;
        pattern.remove_prefix(ps + 1);
        path.remove_prefix(qs + 1);
    }
}

} // namespace

api_server::api_server(asio::io_context& io, agent& a, std::string socket_path, std::function<nlohmann::json()> stats,
                       api_limits limits)
    : io_(io), agent_(a), path_(std::move(socket_path)), stats_(std::move(stats)), acceptor_(io), limits_(limits) {}

api_server::~api_server() { stop(); }

void api_server::start() {
    if (path_.size() >= sizeof(sockaddr_un::sun_path))
        throw std::runtime_error("API socket path " + path_ + " is too long (max " +
                                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)");
    std::error_code fec;
    const auto dir = std::filesystem::path(path_).parent_path();
    if (!dir.empty())
        std::filesystem::create_directories(dir, fec);
    struct stat sb {};
    if (::lstat(path_.c_str(), &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode))
            throw std::runtime_error("API socket path " + path_ + " exists and is not a socket");
        local::socket probe(io_);
        boost::system::error_code ec;
        probe.connect(local::endpoint(path_), ec);
        if (!ec)
            throw std::runtime_error("another daemon is already listening on " + path_);
        ::unlink(path_.c_str());   // stale: left by a daemon that did not exit cleanly
    }
    boost::system::error_code ec;
    acceptor_.open(local(), ec);
    if (!ec)
        acceptor_.bind(local::endpoint(path_), ec);
    if (!ec)
        acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
        throw std::runtime_error("cannot listen on " + path_ + ": " + ec.message());
    if (::chmod(path_.c_str(), 0660) != 0)
        throw std::runtime_error("cannot chmod " + path_ + ": " + std::strerror(errno));
    *running_ = true;
    asio::co_spawn(io_, accept_loop(), asio::detached);
}

void api_server::stop() {
    if (!*running_)
        return;
    *running_ = false;
    boost::system::error_code ec;
    acceptor_.close(ec);
    ::unlink(path_.c_str());
}

asio::awaitable<void> api_server::accept_loop() {
    auto running = running_;
    // An accept that fails (out of descriptors: EMFILE, ENFILE) fails again at once: wait,
    // longer each time, and say so at most once every 10 s.
    std::chrono::milliseconds backoff{0};
    uint64_t failures = 0;
    std::chrono::steady_clock::time_point logged{};
    uint64_t refused = 0;   // connections closed at the cap, logged likewise
    std::chrono::steady_clock::time_point refused_logged{};
    asio::steady_timer pause(io_);
    while (*running) {
        boost::system::error_code ec;
        local::socket sock = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
        if (!*running || ec == asio::error::operation_aborted)
            co_return;
        const auto now = std::chrono::steady_clock::now();
        if (ec) {
            failures++;
            if (now - logged >= std::chrono::seconds(10)) {
                OVP_LOG(WARNING, "API accept: %s (%" PRIu64 " failures so far; backing off)", ec.message().c_str(),
                        failures);
                logged = now;
            }
            backoff = std::clamp(backoff * 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
            pause.expires_after(backoff);
            co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            continue;
        }
        backoff = std::chrono::milliseconds(0);
        if (*open_ >= limits_.max_connections) {
            refused++;
            if (now - refused_logged >= std::chrono::seconds(10)) {
                OVP_LOG(WARNING, "API: %zu connections open, the most allowed; closing new ones (%" PRIu64 " so far)",
                        *open_, refused);
                refused_logged = now;
            }
            continue;   // `sock` closes here
        }
        asio::co_spawn(io_, serve(std::move(sock)), asio::detached);
    }
}

namespace {

/// Closes `sock` once `deadline` passes without being moved on; ends when `done` is set.
asio::awaitable<void> close_when_idle(local::socket& sock, asio::steady_timer& deadline, std::shared_ptr<bool> done) {
    while (!*done) {
        boost::system::error_code ec;
        co_await deadline.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (*done)
            break;
        if (deadline.expiry() <= std::chrono::steady_clock::now()) {
            sock.close(ec);   // the pending read ends with an error
            break;
        }
    }
}

} // namespace

asio::awaitable<void> api_server::serve(local::socket sock) {
    // This coroutine may outlive the server (stopped and destroyed while a client still
    // holds its connection): what it needs of it is copied here, and it touches the
    // server again (handle()) only while the server runs.
    const auto running = running_;
    const std::chrono::milliseconds idle_timeout = limits_.idle_timeout;
    struct count {
        std::shared_ptr<std::size_t> n;
        explicit count(std::shared_ptr<std::size_t> c) : n(std::move(c)) { ++*n; }
        ~count() { --*n; }
    } counted{open_};
    boost::beast::flat_buffer buf;
    asio::steady_timer deadline(io_);
    auto done = std::make_shared<bool>(false);
    deadline.expires_after(idle_timeout);
    asio::co_spawn(sock.get_executor(), close_when_idle(sock, deadline, done), asio::detached);
    struct stop_watch {
        std::shared_ptr<bool> done;
        asio::steady_timer& t;
        ~stop_watch() {
            *done = true;
            t.cancel();
        }
    } stop{done, deadline};
    try {
        while (*running) {
            http::request_parser<http::string_body> parser;
            parser.body_limit(max_body);
            boost::system::error_code ec;
            deadline.expires_after(idle_timeout);
            co_await http::async_read(sock, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
            if (!sock.is_open() || !*running)
                break;   // idle for too long, or the server stopped meanwhile
            deadline.expires_at(std::chrono::steady_clock::time_point::max());   // busy: no timeout while we answer
            if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset)
                break;
            http::response<http::string_body> res;
            bool keep_alive = false;
            if (ec) {
                res.result(ec == http::error::body_limit ? http::status::payload_too_large : http::status::bad_request);
                res.body() = nlohmann::json{{api::field::error, "bad request: " + ec.message()}}.dump();
            } else {
                const auto& req = parser.get();
                keep_alive = req.keep_alive();
                std::string method(req.method_string());
                std::string target(req.target());
                std::string body = req.body();
                api_response r = co_await handle(std::move(method), std::move(target), std::move(body));
                res.result(r.status);
                if (!r.body.is_null())
                    res.body() = r.body.dump() + "\n";
            }
            if (!res.body().empty())
                res.set(http::field::content_type, "application/json");
            res.set(http::field::server, "overpassd");
            res.keep_alive(keep_alive);
            res.prepare_payload();
            co_await http::async_write(sock, res, asio::use_awaitable);
            if (!keep_alive)
                break;
        }
        boost::system::error_code ignored;
        sock.shutdown(local::socket::shutdown_send, ignored);
    } catch (const std::exception& e) {
        OVP_LOG(WARNING, "API connection: %s", e.what());
    }
}

asio::awaitable<api_response> api_server::handle(std::string method, std::string target, std::string body) {
    // C++20 forbids co_await inside a handler, so the result is carried out of the try.
    std::optional<api_response> result;
    try {
        api_response r = co_await route(method, target, body);
        result = std::move(r);
    } catch (const http_error& e) {
        result = error(e.status, e.what());
    } catch (const api::schema_error& e) {
        result = error(400, e.what());
    } catch (const cluster_error& e) {
        result = error(status_of(e.kind), e.what());
    } catch (const store_error& e) {
        result = error(503, std::string("store unavailable: ") + e.what());
    } catch (const std::exception& e) {
        result = error(500, std::string("internal error: ") + e.what());
    }
    co_return std::move(*result);
}

asio::awaitable<api_response> api_server::route(const std::string& method, const std::string& target,
                                                const std::string& body) {
    std::string path = target;
    std::string query;
    if (const size_t q = target.find('?'); q != std::string::npos) {
        path = target.substr(0, q);
        query = target.substr(q + 1);
    }
    bool path_known = false;
    for (const route_entry& r : routes()) {
        std::string name;
        if (!matches(r.pattern, path, name))
            continue;
        path_known = true;
        if (r.method != method)
            continue;
        const call c{agent_, stats_, body, query, std::move(name)};
        api_response res = co_await r.handler(c);
        co_return res;
    }
    if (path_known)
        throw http_error(405, "method " + method + " not allowed on " + path);
    throw http_error(404, "no such API path " + path);
}

} // namespace overpass::ctl
