// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (every call on the control io_context)
//
// The HTTP/1.1 plumbing shared by the network store backends (etcd_store, consul_store):
// name resolution with a deadline, a small pool of keep-alive connections, one deadline
// per request (connect + write + read), a single retry when a pooled connection turns out
// to have been closed by the server, and error texts that name the server and the cause.
// Backends add only their protocol (paths, JSON, headers) on top.
//
// Optional TLS (http_tls_options): an OpenSSL stream layered over the same tcp_stream, so
// deadlines (expires_after) and aborts (stream.socket().close()) work alike for both, and
// the pool does not care which it holds. The server certificate must chain to the CA file
// (or the system trust store) and name the host (DNS name, or IP address SAN for a
// literal); SNI is sent for DNS names (RFC 6066 forbids it for literals). TLS 1.2 at least.
//
// Also here because both backends need them: base64 and the `scheme://HOST[:PORT][/PREFIX]`
// URL parser.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "control/store/store.hpp"

namespace overpass::ctl {

std::string b64_encode(std::string_view in);
/// Throws std::invalid_argument on characters outside the standard alphabet.
std::string b64_decode(std::string_view in);

/// `scheme://HOST[:PORT][/PREFIX]` split into its parts. PREFIX has no slash at either
/// end ("" for none) and must satisfy valid_key(). Credentials (`user@`) and queries
/// (`?...`) are rejected: tokens never travel in URLs. Throws std::invalid_argument
/// naming the URL and `expected` (e.g. "etcd://host:port[/namespace]").
struct store_url {
    std::string host;
    uint16_t port = 0;
    std::string prefix;
};
store_url parse_store_url(const std::string& url, std::string_view scheme, uint16_t default_port,
                          const std::string& expected);
/// "HOST:PORT", with brackets around an IPv6 host.
std::string host_port(const std::string& host, uint16_t port);

/// TLS settings of an http_client. Disabled: plain HTTP.
struct http_tls_options {
    bool enabled = false;
    /// PEM file of the CA certificates that may sign the server's certificate. Empty: the
    /// system trust store.
    std::string ca_file;
};

/// One connection with its read buffer (bytes after a response stay for the next).
struct http_connection {
    /// The TCP layer: deadlines (expires_after) and aborts (socket().close()) act here,
    /// for TLS connections too.
    boost::beast::tcp_stream stream;
    /// The TLS layer over `stream`; null for plain HTTP. Declared after `stream`, so it
    /// goes first.
    std::unique_ptr<boost::beast::ssl_stream<boost::beast::tcp_stream&>> tls;
    boost::beast::flat_buffer buffer;
    explicit http_connection(boost::asio::io_context& io) : stream(io) {}
};

using http_request = boost::beast::http::request<boost::beast::http::string_body>;
using http_response = boost::beast::http::response<boost::beast::http::string_body>;

class http_client {
public:
    /// `where` heads every error message, e.g. "etcd at 127.0.0.1:2379". With TLS, an
    /// unreadable CA file throws std::invalid_argument naming it.
    http_client(boost::asio::io_context& io, std::string host, uint16_t port, std::string where,
                std::chrono::milliseconds request_timeout, const http_tls_options& tls = {});

    boost::asio::io_context& io() const noexcept { return io_; }
    const std::string& host() const noexcept { return host_; }
    uint16_t port() const noexcept { return port_; }
    const std::string& where() const noexcept { return where_; }
    std::chrono::milliseconds request_timeout() const noexcept { return request_timeout_; }
    bool tls() const noexcept { return tls_ctx_ != nullptr; }

    /// A keep-alive request with Host set; the caller adds headers and the body
    /// (prepare_payload() is called by send()).
    http_request make_request(boost::beast::http::verb verb, std::string target) const;

    /// Sends `req` on a pooled connection and reads the whole response. `timeout` (0 =
    /// request_timeout) covers connect, write and read. Transport failures throw
    /// store_error naming the server, the request and the cause; any HTTP status is
    /// returned as it is.
    boost::asio::awaitable<http_response> send(http_request req, std::chrono::milliseconds timeout = {},
                                               uint64_t body_limit = default_body_limit);

    /// A fresh, connected (and, with TLS, handshaken) unpooled connection (watch streams,
    /// blocking queries that must be cancellable by closing their socket). Throws
    /// store_error; a TLS failure reads "WHERE: TLS handshake failed: CAUSE".
    boost::asio::awaitable<std::unique_ptr<http_connection>> connect();

    /// One request/response on `conn`. Throws store_error; `conn` is unusable after a throw.
    boost::asio::awaitable<http_response> exchange(http_connection& conn, http_request& req,
                                                   std::chrono::milliseconds timeout,
                                                   uint64_t body_limit = default_body_limit);

    /// The store_error for a transport failure of `what` ("POST /v3/kv/range").
    store_error transport_error(const std::string& what, const boost::beast::error_code& ec,
                                std::chrono::milliseconds timeout = {}) const;

    /// A random duration in [base/2, 3*base/2] (back-off jitter).
    std::chrono::milliseconds jitter(std::chrono::milliseconds base);

    static constexpr uint64_t default_body_limit = 256ull << 20;   // a whole-prefix listing
    static constexpr size_t max_idle_connections = 4;

private:
    boost::asio::awaitable<void> shutdown(http_connection& conn, std::chrono::milliseconds timeout);

    boost::asio::io_context& io_;
    std::string host_;
    uint16_t port_;
    std::string where_;
    std::chrono::milliseconds request_timeout_;
    std::unique_ptr<boost::asio::ssl::context> tls_ctx_;   // null: plain HTTP
    std::vector<std::unique_ptr<http_connection>> idle_;
    std::mt19937_64 rng_{std::random_device{}()};
};

} // namespace overpass::ctl
