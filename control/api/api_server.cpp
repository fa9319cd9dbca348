// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/log.hpp"
#include "control/api/api_server.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace overpass::ctl {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using local = asio::local::stream_protocol;

namespace {

constexpr size_t max_body = 64 * 1024;

api_response error(unsigned status, const std::string& msg) { return {status, {{"error", msg}}}; }

// With GCC 12, `co_return api_response{status, json}` (a braced aggregate in the co_return
// statement) crashed the server at -O2 while serialising the response: build responses
// in an ordinary function instead.
api_response respond(unsigned status, nlohmann::json body) {
    api_response r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

// Body fields, with a 400 naming the field on a wrong type.
const nlohmann::json* field(const nlohmann::json& j, const char* name) {
    auto it = j.find(name);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<std::string> opt_string(const nlohmann::json& j, const char* name) {
    const auto* f = field(j, name);
    if (f == nullptr)
        return std::nullopt;
    if (!f->is_string())
        throw api_error(400, std::string("field \"") + name + "\" must be a string");
    return f->get<std::string>();
}

std::string req_string(const nlohmann::json& j, const char* name) {
    auto s = opt_string(j, name);
    if (!s || s->empty())
        throw api_error(400, std::string("missing field \"") + name + "\"");
    return *s;
}

std::optional<uint32_t> opt_uint(const nlohmann::json& j, const char* name) {
    const auto* f = field(j, name);
    if (f == nullptr)
        return std::nullopt;
    if (!f->is_number_unsigned() || f->get<uint64_t>() > UINT32_MAX)
        throw api_error(400, std::string("field \"") + name + "\" must be a non-negative integer");
    return f->get<uint32_t>();
}

nlohmann::json parse_body(const std::string& body, std::initializer_list<const char*> allowed) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(body);
    } catch (const nlohmann::json::parse_error&) {
        throw api_error(400, "request body is not valid JSON");
    }
    if (!j.is_object())
        throw api_error(400, "request body must be a JSON object");
    for (const auto& [k, v] : j.items())
        if (std::find_if(allowed.begin(), allowed.end(), [&k](const char* a) { return k == a; }) == allowed.end())
            throw api_error(400, "unknown field \"" + k + "\"");
    return j;
}

} // namespace

api_server::api_server(asio::io_context& io, agent& a, std::string socket_path, std::function<nlohmann::json()> stats)
    : io_(io), agent_(a), path_(std::move(socket_path)), stats_(std::move(stats)), acceptor_(io) {}

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
    while (*running) {
        boost::system::error_code ec;
        local::socket sock = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
        if (!*running || ec == asio::error::operation_aborted)
            co_return;
        if (ec) {
            OVP_LOG(WARNING, "API accept: %s", ec.message().c_str());
            continue;
        }
        asio::co_spawn(io_, serve(std::move(sock)), asio::detached);
    }
}

asio::awaitable<void> api_server::serve(local::socket sock) {
    boost::beast::flat_buffer buf;
    try {
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.body_limit(max_body);
            boost::system::error_code ec;
            co_await http::async_read(sock, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
            if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset)
                break;
            http::response<http::string_body> res;
            bool keep_alive = false;
            if (ec) {
                res.result(ec == http::error::body_limit ? http::status::payload_too_large : http::status::bad_request);
                res.body() = nlohmann::json{{"error", "bad request: " + ec.message()}}.dump();
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
    } catch (const api_error& e) {
        result = error(static_cast<unsigned>(e.status), e.what());
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
    if (!path.starts_with("/v1/"))
        throw api_error(404, "no such API path " + path);
    std::string rest = path.substr(4);
    std::string collection = rest.substr(0, rest.find('/'));
    std::optional<std::string> item;
    if (const size_t slash = rest.find('/'); slash != std::string::npos) {
        item = rest.substr(slash + 1);
        if (item->empty() || item->find('/') != std::string::npos)
            throw api_error(404, "no such API path " + path);
    }
    auto bad_method = [&]() { return api_error(405, "method " + method + " not allowed on " + path); };

    if (collection == "networks") {
        if (!item && method == "GET") {
            nlohmann::json out = nlohmann::json::array();
            const std::vector<net_meta> nets = co_await agent_.list_networks();
            for (const auto& m : nets)
                out.push_back(to_json(m));
            co_return respond(200, out);
        }
        if (!item && method == "POST") {
            const auto j = parse_body(body, {"name", "subnet", "gateway", "vni", "mtu", "allow_overlap"});
            network_request req{req_string(j, "name"), opt_string(j, "subnet"), opt_string(j, "gateway"),
                                opt_uint(j, "vni"), opt_uint(j, "mtu"), false};
            if (auto it = j.find("allow_overlap"); it != j.end()) {
                if (!it->is_boolean())
                    throw api_error(400, "allow_overlap must be true or false");
                req.allow_overlap = it->get<bool>();
            }
            const net_meta created = co_await agent_.create_network(std::move(req));
            co_return respond(201, to_json(created));
        }
        if (item && method == "GET") {
            nlohmann::json j = co_await agent_.inspect_network(*item);
            co_return respond(200, std::move(j));
        }
        if (item && method == "DELETE") {
            co_await agent_.remove_network(*item);
            co_return respond(204, nullptr);
        }
        throw bad_method();
    }
    if (collection == "endpoints") {
        if (!item && method == "GET") {
            nlohmann::json out = nlohmann::json::array();
            const std::vector<endpoint_info> eps = co_await agent_.list_endpoints();
            for (const auto& e : eps)
                out.push_back(to_json(e));
            co_return respond(200, out);
        }
        if (!item && method == "POST") {
            const auto j = parse_body(body, {"network", "name", "netns", "vhost_user"});
            attach_request req{req_string(j, "network"), req_string(j, "name"), opt_string(j, "netns").value_or(""),
                               opt_string(j, "vhost_user").value_or("")};
            const endpoint_info attached = co_await agent_.attach_endpoint(std::move(req));
            co_return respond(201, to_json(attached));
        }
        if (item && method == "DELETE") {
            std::string network;
            if (query.starts_with("network="))
                network = query.substr(8);
            else if (!query.empty())
                throw api_error(400, "unknown query \"" + query + "\"");
            co_await agent_.detach_endpoint(*item, network);
            co_return respond(204, nullptr);
        }
        throw bad_method();
    }
    if (collection == "hosts" && !item) {
        if (method != "GET")
            throw bad_method();
        nlohmann::json out = nlohmann::json::array();
        const std::vector<host_info> hosts = co_await agent_.list_hosts();
        for (const auto& h : hosts)
            out.push_back(to_json(h));
        co_return respond(200, out);
    }
    if (collection == "stats" && !item) {
        if (method != "GET")
            throw bad_method();
        nlohmann::json out = stats_ ? stats_() : nlohmann::json::object();
        if (out.is_object())
            out["control"] = agent_.status();
        co_return respond(200, out);
    }
    throw api_error(404, "no such API path " + path);
}

} // namespace overpass::ctl
