// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/store/http_client.hpp"

#include <cctype>
#include <memory>
#include <stdexcept>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "control/store/keys.hpp"

namespace overpass::ctl {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// ---- base64 ----

namespace {

constexpr std::string_view b64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string lower_first(std::string s) {
    if (!s.empty())
        s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
    return s;
}

} // namespace

std::string b64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        out += b64_alphabet[v >> 18 & 63];
        out += b64_alphabet[v >> 12 & 63];
        out += b64_alphabet[v >> 6 & 63];
        out += b64_alphabet[v & 63];
    }
    if (i + 1 == in.size()) {
        const uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        out += b64_alphabet[v >> 18 & 63];
        out += b64_alphabet[v >> 12 & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8;
        out += b64_alphabet[v >> 18 & 63];
        out += b64_alphabet[v >> 12 & 63];
        out += b64_alphabet[v >> 6 & 63];
        out += '=';
    }
    return out;
}

std::string b64_decode(std::string_view in) {
    std::string out;
    out.reserve(in.size() / 4 * 3);
    uint32_t acc = 0;
    int bits = 0;
    for (const char ch : in) {
        if (ch == '=')
            break;
        const size_t pos = b64_alphabet.find(ch);
        if (pos == std::string_view::npos)
            throw std::invalid_argument("bad base64");
        acc = acc << 6 | static_cast<uint32_t>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>(acc >> bits & 0xff);
        }
    }
    return out;
}

// ---- URLs ----

std::string host_port(const std::string& host, uint16_t port) {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

store_url parse_store_url(const std::string& url, std::string_view scheme, uint16_t default_port,
                          const std::string& expected) {
    const auto bad = [&](const std::string& why) {
        return std::invalid_argument("invalid store URL \"" + url + "\": " + why + " (expected " + expected + ")");
    };
    const std::string head = std::string(scheme) + "://";
    if (!url.starts_with(head))
        throw bad("not a " + std::string(scheme) + " URL");
    const std::string rest = url.substr(head.size());
    if (rest.find('?') != std::string::npos || rest.find('#') != std::string::npos)
        throw bad("no query allowed (a token belongs in a token file or the environment, never in the URL)");
    const size_t slash = rest.find('/');
    const std::string authority = rest.substr(0, slash);
    if (authority.find('@') != std::string::npos)
        throw bad("no credentials allowed in the URL");
    store_url out;
    out.prefix = slash == std::string::npos ? std::string{} : rest.substr(slash + 1);
    while (!out.prefix.empty() && out.prefix.back() == '/')
        out.prefix.pop_back();
    if (!out.prefix.empty() && !valid_key(out.prefix))
        throw bad("the prefix must use [A-Za-z0-9,-_./] without empty components");
    std::string port_text;
    if (authority.starts_with("[")) {   // [v6]:port
        const size_t close = authority.find(']');
        if (close == std::string::npos)
            throw bad("unterminated IPv6 address");
        out.host = authority.substr(1, close - 1);
        if (close + 1 < authority.size()) {
            if (authority[close + 1] != ':')
                throw bad("junk after the IPv6 address");
            port_text = authority.substr(close + 2);
        }
    } else {
        const size_t colon = authority.rfind(':');
        out.host = authority.substr(0, colon);
        if (colon != std::string::npos)
            port_text = authority.substr(colon + 1);
    }
    if (out.host.empty())
        throw bad("missing host");
    unsigned long port = default_port;
    if (!port_text.empty()) {
        if (port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5)
            throw bad("bad port \"" + port_text + "\"");
        port = std::stoul(port_text);
        if (port == 0 || port > 65535)
            throw bad("bad port \"" + port_text + "\"");
    }
    out.port = static_cast<uint16_t>(port);
    return out;
}

// ---- http_client ----

http_client::http_client(asio::io_context& io, std::string host, uint16_t port, std::string where,
                         std::chrono::milliseconds request_timeout, const http_tls_options& tls)
    : io_(io), host_(std::move(host)), port_(port), where_(std::move(where)), request_timeout_(request_timeout) {
    if (!tls.enabled)
        return;
    tls_ctx_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(tls_ctx_->native_handle(), TLS1_2_VERSION);
    boost::system::error_code ec;
    if (tls.ca_file.empty())
        tls_ctx_->set_default_verify_paths(ec);
    else
        tls_ctx_->load_verify_file(tls.ca_file, ec);
    if (ec)
        throw std::invalid_argument("cannot load the CA certificates " +
                                    (tls.ca_file.empty() ? std::string("of the system trust store")
                                                         : "from \"" + tls.ca_file + "\"") +
                                    ": " + lower_first(ec.message()));
    tls_ctx_->set_verify_mode(asio::ssl::verify_peer);
}

store_error http_client::transport_error(const std::string& what, const beast::error_code& ec,
                                         std::chrono::milliseconds timeout) const {
    if (ec == beast::error::timeout) {
        const auto t = timeout.count() > 0 ? timeout : request_timeout_;
        return store_error(where_ + ": no answer within " + std::to_string(t.count()) + " ms (" + what + ")");
    }
    return store_error(where_ + ": " + lower_first(ec.message()) + " (" + what + ")");
}

std::chrono::milliseconds http_client::jitter(std::chrono::milliseconds base) {
    std::uniform_int_distribution<int64_t> d(base.count() / 2, base.count() * 3 / 2);
    return std::chrono::milliseconds(d(rng_));
}

http_request http_client::make_request(http::verb verb, std::string target) const {
    http_request req{verb, std::move(target), 11};
    req.set(http::field::host, host_port(host_, port_));
    req.keep_alive(true);
    return req;
}

namespace {

// The cause of a failed TLS handshake: OpenSSL's reason, the certificate check's verdict
// when that is what failed, and a hint when the peer does not speak TLS at all.
std::string tls_cause(const beast::error_code& ec, SSL* ssl) {
    std::string msg = lower_first(ec.message());
    if (ec.category() != asio::error::get_ssl_category())
        return msg;
    if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK)
        msg += std::string(" (") + X509_verify_cert_error_string(v) + ")";
    if (ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_WRONG_VERSION_NUMBER)
        msg += " (the server does not seem to speak TLS)";
    return msg;
}

} // namespace

asio::awaitable<std::unique_ptr<http_connection>> http_client::connect() {
    beast::error_code ec;
    // An address needs no resolver (whose first use starts a thread, and which runs
    // getaddrinfo on it): its one endpoint is connected to directly.
    boost::system::error_code not_ip;
    const asio::ip::address literal = asio::ip::make_address(host_, not_ip);
    std::vector<tcp::endpoint> endpoints;
    if (!not_ip) {
        endpoints.emplace_back(literal, port_);
    } else {
        // Name resolution honours neither the tcp_stream deadline nor cancel() once it
        // has started: asio runs getaddrinfo to its end on a thread of its own, which
        // takes the resolver's own timeout (seconds per attempt) when the DNS server
        // does not answer. So the request waits on a timer instead, which the resolve's
        // completion cancels; a resolve that outlives the deadline finishes on its own,
        // its state shared with its handler, not with this frame.
        struct pending_resolve {
            explicit pending_resolve(asio::io_context& io) : resolver(io), deadline(io) {}
            tcp::resolver resolver;
            asio::steady_timer deadline;
            tcp::resolver::results_type results;
            beast::error_code ec;
            bool done = false;
        };
        auto pr = std::make_shared<pending_resolve>(io_);
        pr->deadline.expires_after(request_timeout_);
        pr->resolver.async_resolve(host_, std::to_string(port_),
                                   [pr](const beast::error_code& e, tcp::resolver::results_type r) {
                                       pr->ec = e;
                                       pr->results = std::move(r);
                                       pr->done = true;
                                       pr->deadline.cancel();
                                   });
        beast::error_code waited;
        co_await pr->deadline.async_wait(asio::redirect_error(asio::use_awaitable, waited));
        if (!pr->done) {
            pr->resolver.cancel();   // spares getaddrinfo if it has not started yet
            throw transport_error("resolve", beast::error::timeout);
        }
        if (pr->ec)
            throw transport_error("resolve", pr->ec);
        for (const auto& r : pr->results)
            endpoints.push_back(r.endpoint());
    }
    auto conn = std::make_unique<http_connection>(io_);
    conn->stream.expires_after(request_timeout_);
    co_await conn->stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
        throw transport_error("connect", ec);
    if (!tls_ctx_)
        co_return conn;
    // Same deadline: connect and handshake together stay within request_timeout.
    conn->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream&>>(conn->stream, *tls_ctx_);
    SSL* ssl = conn->tls->native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int named = not_ip ? X509_VERIFY_PARAM_set1_host(param, host_.c_str(), 0)
                             : X509_VERIFY_PARAM_set1_ip_asc(param, host_.c_str());
    if (named != 1 || (not_ip && SSL_set_tlsext_host_name(ssl, host_.c_str()) != 1))
        throw store_error(where_ + ": TLS set-up failed for host \"" + host_ + "\"");
    co_await conn->tls->async_handshake(asio::ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout)
        throw transport_error("TLS handshake", ec);
    if (ec)
        throw store_error(where_ + ": TLS handshake failed: " + tls_cause(ec, ssl));
    co_return conn;
}

asio::awaitable<void> http_client::shutdown(http_connection& conn, std::chrono::milliseconds timeout) {
    // close_notify, then wait (bounded) for the server's; its errors change nothing.
    beast::error_code ec;
    conn.stream.expires_after(timeout);
    co_await conn.tls->async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
    conn.stream.socket().close(ec);
}

namespace {

// A reused keep-alive connection that the server closed in the meantime fails like this.
bool stale_connection(const beast::error_code& ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated;
}

using response_parser = http::response_parser<http::string_body>;

// Writes `req` and reads the reply into `parser` on `s` (the tcp_stream, or the TLS stream
// over it). false: the write failed; true: written (ec is then the read's outcome).
template <class Stream>
asio::awaitable<bool> round_trip(Stream& s, beast::flat_buffer& buffer, http_request& req, response_parser& parser,
                                 beast::error_code& ec) {
    co_await http::async_write(s, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
        co_return false;
    co_await http::async_read(s, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    co_return true;
}

asio::awaitable<bool> round_trip(http_connection& conn, http_request& req, response_parser& parser,
                                 beast::error_code& ec) {
    if (conn.tls) {
        const bool wrote = co_await round_trip(*conn.tls, conn.buffer, req, parser, ec);
        co_return wrote;
    }
    const bool wrote = co_await round_trip(conn.stream, conn.buffer, req, parser, ec);
    co_return wrote;
}

std::string describe(const http_request& req) {
    std::string target(req.target());
    const size_t q = target.find('?');
    return std::string(req.method_string()) + " " + target.substr(0, q);
}

} // namespace

asio::awaitable<http_response> http_client::exchange(http_connection& conn, http_request& req,
                                                     std::chrono::milliseconds timeout, uint64_t body_limit) {
    const auto t = timeout.count() > 0 ? timeout : request_timeout_;
    beast::error_code ec;
    req.prepare_payload();
    conn.stream.expires_after(t);
    response_parser parser;
    parser.body_limit(body_limit);
    co_await round_trip(conn, req, parser, ec);
    if (ec)
        throw transport_error(describe(req), ec, t);
    conn.stream.expires_never();
    co_return parser.release();
}

asio::awaitable<http_response> http_client::send(http_request req, std::chrono::milliseconds timeout,
                                                 uint64_t body_limit) {
    for (int attempt = 0;; attempt++) {
        std::unique_ptr<http_connection> conn;
        const bool reused = !idle_.empty();
        if (reused) {
            conn = std::move(idle_.back());
            idle_.pop_back();
        } else {
            std::unique_ptr<http_connection> fresh = co_await connect();
            conn = std::move(fresh);
        }
        const auto t = timeout.count() > 0 ? timeout : request_timeout_;
        beast::error_code ec;
        req.prepare_payload();
        conn->stream.expires_after(t);
        response_parser parser;
        parser.body_limit(body_limit);
        const bool wrote = co_await round_trip(*conn, req, parser, ec);
        if (ec && !wrote) {
            if (reused && attempt == 0)
                continue;
            throw transport_error(describe(req), ec, t);
        }
        if (ec) {
            // Retry only when nothing of the response arrived: a reply cut mid-body may
            // belong to a request the server has already applied.
            if (reused && attempt == 0 && stale_connection(ec) && !parser.got_some())
                continue;
            throw transport_error(describe(req), ec, t);
        }
        http_response res = parser.release();
        if (res.keep_alive() && idle_.size() < max_idle_connections) {
            conn->stream.expires_never();
            idle_.push_back(std::move(conn));
        } else if (conn->tls) {
            co_await shutdown(*conn, t);
        }
        co_return res;
    }
}

} // namespace overpass::ctl
