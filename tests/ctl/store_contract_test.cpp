// SPDX-License-Identifier: Apache-2.0
// runs on: ctl test binary (no EAL, no root; loopback only)
//
// The store contract (store.hpp), run identically against every backend:
//  - file:  a file_store in a temp dir with an injected clock;
//  - etcd:  a real etcd (/usr/bin/etcd, or $OVERPASS_ETCD) started once per binary on
//           free loopback ports, on first use, and stopped by PID at exit (data dir removed);
//  - consul: the in-tree fake Consul (tests/ctl/fake_consul/fake_consul.py, python3),
//           started once per binary with --port 0 --port-file, stopped by PID at exit.
//           A pass here is a pass against the fake, not against a real Consul.
//  - consul_tls: the same fake over HTTPS (consul+https://), with a throwaway CA and
//           server certificate (IP SAN 127.0.0.1) made by the openssl CLI at test time.
// Each test works under its own key prefix; nothing waits longer than a deadline.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <nlohmann/json.hpp>

#include "control/store/consul_store.hpp"
#include "control/store/etcd_store.hpp"
#include "control/store/file_store.hpp"
#include "control/store/store.hpp"

using namespace overpass::ctl;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

// ---------------------------------------------------------------- running awaitables

template <class T>
T run(asio::io_context& io, asio::awaitable<T> a, std::chrono::milliseconds limit = 20s) {
    struct result_state {
        std::optional<T> value;
        std::exception_ptr error;
        bool done = false;
    };
    auto st = std::make_shared<result_state>();
    asio::co_spawn(io, std::move(a), [st](std::exception_ptr e, T v) {
        st->error = e;
        if (!e)
            st->value = std::move(v);
        st->done = true;
    });
    const auto deadline = std::chrono::steady_clock::now() + limit;
    io.restart();
    while (!st->done) {
        if (io.run_one_for(10ms) == 0) {
            if (std::chrono::steady_clock::now() >= deadline)
                throw std::runtime_error("operation did not complete within the test deadline");
            if (io.stopped())
                io.restart();
        }
    }
    if (st->error)
        std::rethrow_exception(st->error);
    return std::move(*st->value);
}

void run(asio::io_context& io, asio::awaitable<void> a, std::chrono::milliseconds limit = 20s) {
    auto wrap = [](asio::awaitable<void> inner) -> asio::awaitable<bool> {
        co_await std::move(inner);
        co_return true;
    };
    (void)run(io, wrap(std::move(a)), limit);
}

/// Runs the io_context until pred() holds or the deadline passes.
template <class Pred>
bool eventually(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        io.restart();
        if (io.run_for(5ms) == 0)
            std::this_thread::sleep_for(2ms);
    }
    return true;
}

void run_for(asio::io_context& io, std::chrono::milliseconds d) {
    io.restart();
    io.run_for(d);
}

struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "overpass-ctl-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

std::string b64(const std::string& in) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        out += {tbl[v >> 18 & 63], tbl[v >> 12 & 63], tbl[v >> 6 & 63], tbl[v & 63]};
    }
    if (i + 1 == in.size()) {
        const uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        out += {tbl[v >> 18 & 63], tbl[v >> 12 & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8;
        out += {tbl[v >> 18 & 63], tbl[v >> 12 & 63], tbl[v >> 6 & 63], '='};
    }
    return out;
}

// A loopback port nobody listens on right now (bind port 0, read it, close).
uint16_t free_port() {
    asio::io_context io;
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return acc.local_endpoint().port();
}

// ---------------------------------------------------------------- raw HTTP (test side)

struct raw_reply {
    unsigned status = 0;
    std::string body;
};

asio::awaitable<void> raw_post_co(asio::io_context& io, uint16_t port, std::string target, std::string body,
                                  std::chrono::milliseconds timeout, raw_reply& out) {
    beast::tcp_stream s(io);
    s.expires_after(timeout);
    co_await s.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), asio::use_awaitable);
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    co_await http::async_write(s, req, asio::use_awaitable);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    co_await http::async_read(s, buf, res, asio::use_awaitable);
    out.status = res.result_int();
    out.body = res.body();
}

/// A synchronous POST on a private io_context (usable from inside callbacks).
raw_reply raw_post(uint16_t port, const std::string& target, const json& body, std::chrono::milliseconds timeout = 3s) {
    asio::io_context io;
    raw_reply out;
    std::exception_ptr err;
    asio::co_spawn(io, raw_post_co(io, port, target, body.dump(), timeout, out), [&](std::exception_ptr e) { err = e; });
    io.run();
    if (err)
        std::rethrow_exception(err);
    return out;
}

// ---------------------------------------------------------------- etcd process

// One etcd per test binary, started on first use, stopped at exit by the Environment.
class etcd_server {
public:
    static etcd_server& instance() {
        static etcd_server s;
        return s;
    }

    /// Starts etcd if needed. Returns an error text, empty when it is up.
    const std::string& ensure_started() {
        if (started_ || !error_.empty())
            return error_;
        for (int attempt = 0; attempt < 3 && !started_; attempt++)
            error_ = try_start();
        return error_;
    }

    uint16_t client_port() const { return client_port_; }

    void stop() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            const auto deadline = std::chrono::steady_clock::now() + 5s;
            int status = 0;
            while (::waitpid(pid_, &status, WNOHANG) == 0) {
                if (std::chrono::steady_clock::now() >= deadline) {
                    ::kill(pid_, SIGKILL);
                    ::waitpid(pid_, &status, 0);
                    break;
                }
                std::this_thread::sleep_for(20ms);
            }
            pid_ = -1;
        }
        if (!dir_.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(dir_, ec);
            dir_.clear();
        }
        started_ = false;
    }

private:
    std::string try_start() {
        const char* bin_env = std::getenv("OVERPASS_ETCD");
        const std::string bin = bin_env != nullptr ? bin_env : "/usr/bin/etcd";
        if (::access(bin.c_str(), X_OK) != 0)
            return "etcd not found at " + bin + " (install etcd-server or set OVERPASS_ETCD)";
        std::string tmpl = (std::filesystem::temp_directory_path() / "overpass-ctl-etcd-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr)
            return "mkdtemp failed";
        dir_ = tmpl;
        const uint16_t cp = free_port();
        uint16_t pp = free_port();
        while (pp == cp)
            pp = free_port();
        const std::string curl = "http://127.0.0.1:" + std::to_string(cp);
        const std::string purl = "http://127.0.0.1:" + std::to_string(pp);
        std::vector<std::string> args{bin,
                                      "--name", "t",
                                      "--data-dir", dir_ + "/data",
                                      "--listen-client-urls", curl,
                                      "--advertise-client-urls", curl,
                                      "--listen-peer-urls", purl,
                                      "--initial-advertise-peer-urls", purl,
                                      "--initial-cluster", "t=" + purl,
                                      "--log-level", "warn"};
        const std::string log = dir_ + "/etcd.log";
        const pid_t pid = ::fork();
        if (pid < 0) {
            stop();
            return "fork failed";
        }
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);   // no orphan if the test binary dies
            const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            std::vector<char*> argv;
            for (auto& a : args)
                argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(bin.c_str(), argv.data());
            ::_exit(127);
        }
        pid_ = pid;
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                std::ifstream f(log);
                std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
                stop();
                return "etcd exited during start-up: " + text.substr(0, 2000);
            }
            try {
                if (raw_post(cp, "/v3/kv/range", json{{"key", "AA=="}}, 500ms).status == 200) {
                    client_port_ = cp;
                    started_ = true;
                    return {};
                }
            } catch (const std::exception&) {
                // not listening yet
            }
            std::this_thread::sleep_for(40ms);
        }
        stop();
        return "etcd did not answer /v3/kv/range within 15 s";
    }

    bool started_ = false;
    std::string error_;
    pid_t pid_ = -1;
    std::string dir_;
    uint16_t client_port_ = 0;
};

struct etcd_environment : ::testing::Environment {
    void TearDown() override { etcd_server::instance().stop(); }
};
[[maybe_unused]] ::testing::Environment* const etcd_env = ::testing::AddGlobalTestEnvironment(new etcd_environment);

// ---------------------------------------------------------------- backends

/// What the contract tests need from a backend beyond the store interface.
struct backend {
    virtual ~backend() = default;
    /// Empty when the backend can run; otherwise why not (the test fails with it).
    virtual std::string unavailable() { return {}; }
    /// A new client instance on the same data (as a second host would have).
    virtual std::unique_ptr<store> open(asio::io_context& io) = 0;
    /// Same, but liveness handles opened through it are not renewed automatically.
    virtual std::unique_ptr<store> open_unrenewed(asio::io_context& io) = 0;
    /// Lets `d` pass for unrenewed handles: the file store moves its injected clock;
    /// a real server does nothing (the test then waits up to expiry_bound()).
    virtual void advance(std::chrono::seconds d) = 0;
    /// How long an unrenewed handle of `ttl` may survive after advance(ttl + 1 s).
    virtual std::chrono::milliseconds expiry_bound(std::chrono::seconds ttl) = 0;
    /// Makes the server drop the handle behind its owner's back.
    virtual void revoke(asio::io_context& io, const liveness& l) = 0;
    /// Stores whose server is unreachable, hung, or answers garbage.
    virtual std::vector<std::unique_ptr<store>> broken(asio::io_context& io) = 0;
};

double wall_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class file_backend final : public backend {
public:
    std::unique_ptr<store> open(asio::io_context& io) override {
        file_store_options o;
        o.clock = [off = offset_] { return wall_seconds() + *off; };
        o.poll_interval = 10ms;
        return std::make_unique<file_store>(io, (dir_.path / "store.json").string(), o);
    }
    // Renewal cannot rescue a file session once the injected clock passed its expiry:
    // every mutation (the renewal included) purges expired sessions first.
    std::unique_ptr<store> open_unrenewed(asio::io_context& io) override { return open(io); }
    void advance(std::chrono::seconds d) override { *offset_ += static_cast<double>(d.count()); }
    std::chrono::milliseconds expiry_bound(std::chrono::seconds) override { return 2s; }
    void revoke(asio::io_context& io, const liveness&) override {
        // File sessions end by expiry only: expire everything, and let another instance's
        // mutation purge it, as a peer host would.
        advance(std::chrono::hours(1));
        auto other = open(io);
        run(io, other->remove("purge-trigger"));
    }
    std::vector<std::unique_ptr<store>> broken(asio::io_context& io) override {
        const std::string path = (dir_.path / "garbage.json").string();
        std::ofstream(path) << "{\"format\": garbage";
        std::vector<std::unique_ptr<store>> out;
        out.push_back(std::make_unique<file_store>(io, path));
        return out;
    }

private:
    temp_dir dir_;
    std::shared_ptr<double> offset_ = std::make_shared<double>(0.0);
};

// A loopback TCP server that answers every request with `reply` (or never answers).
class fake_server {
public:
    fake_server(asio::io_context& io, std::string reply, bool hang)
        : acc_(std::make_shared<tcp::acceptor>(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0))),
          held_(std::make_shared<std::vector<std::shared_ptr<tcp::socket>>>()) {
        asio::co_spawn(io, serve(acc_, held_, std::move(reply), hang), asio::detached);
    }
    ~fake_server() {
        boost::system::error_code ec;
        acc_->close(ec);
        for (auto& s : *held_)
            s->close(ec);
    }
    uint16_t port() const { return acc_->local_endpoint().port(); }

private:
    static asio::awaitable<void> serve(std::shared_ptr<tcp::acceptor> acc,
                                       std::shared_ptr<std::vector<std::shared_ptr<tcp::socket>>> held, std::string reply,
                                       bool hang) {
        for (;;) {
            boost::system::error_code ec;
            tcp::socket sock = co_await acc->async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (ec)
                co_return;
            auto s = std::make_shared<tcp::socket>(std::move(sock));
            held->push_back(s);
            if (hang)
                continue;
            char buf[4096];
            co_await s->async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
            co_await asio::async_write(*s, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
            s->shutdown(tcp::socket::shutdown_both, ec);
            s->close(ec);
        }
    }

    std::shared_ptr<tcp::acceptor> acc_;
    std::shared_ptr<std::vector<std::shared_ptr<tcp::socket>>> held_;
};

class etcd_backend final : public backend {
public:
    // Every contract test goes through a URL namespace, so the prepend/strip path is
    // exercised everywhere; etcd_only tests below check the raw keys.
    static constexpr const char* ns = "contract";

    std::string unavailable() override { return etcd_server::instance().ensure_started(); }
    uint16_t port() const { return etcd_server::instance().client_port(); }

    std::unique_ptr<store> open(asio::io_context& io) override {
        return std::make_unique<etcd_store>(io, "127.0.0.1", port(), ns, etcd_store_options{});
    }
    std::unique_ptr<store> open_unrenewed(asio::io_context& io) override {
        etcd_store_options o;
        o.renew_leases = false;
        return std::make_unique<etcd_store>(io, "127.0.0.1", port(), ns, o);
    }
    void advance(std::chrono::seconds) override {}
    // Measured on this machine: keys go ~TTL + 0.5 s after the last keepalive.
    std::chrono::milliseconds expiry_bound(std::chrono::seconds ttl) override { return ttl + 4s; }
    void revoke(asio::io_context&, const liveness& l) override {
        const raw_reply r = raw_post(port(), "/v3/lease/revoke", json{{"ID", l.id()}});
        if (r.status != 200)
            throw std::runtime_error("revoke failed: " + r.body);
    }
    std::vector<std::unique_ptr<store>> broken(asio::io_context& io) override {
        servers_.push_back(std::make_unique<fake_server>(
            io, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\nnot json!", false));
        servers_.push_back(std::make_unique<fake_server>(io, std::string("\x00\xff garbage\r\n\r\n\x01", 16), false));
        servers_.push_back(std::make_unique<fake_server>(io, "", true));   // accepts, never answers
        etcd_store_options o;
        o.request_timeout = 300ms;
        std::vector<std::unique_ptr<store>> out;
        out.push_back(std::make_unique<etcd_store>(io, "127.0.0.1", free_port(), "", o));   // closed port
        for (const auto& s : servers_)
            out.push_back(std::make_unique<etcd_store>(io, "127.0.0.1", s->port(), "", o));
        return out;
    }

private:
    std::vector<std::unique_ptr<fake_server>> servers_;
};

// ---------------------------------------------------------------- fake Consul process

// A generic HTTP call on a private io_context (usable from inside callbacks).
// With `tls`, over HTTPS without verifying the server (admin calls to the TLS fake).
asio::awaitable<void> raw_call_co(asio::io_context& io, uint16_t port, http::verb verb, std::string target,
                                  std::string body, std::chrono::milliseconds timeout, bool tls, raw_reply& out) {
    beast::tcp_stream s(io);
    s.expires_after(timeout);
    co_await s.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), asio::use_awaitable);
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
    req.body() = std::move(body);
    req.prepare_payload();
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    if (tls) {
        asio::ssl::context ctx(asio::ssl::context::tls_client);
        beast::ssl_stream<beast::tcp_stream&> t(s, ctx);
        co_await t.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
        co_await http::async_write(t, req, asio::use_awaitable);
        co_await http::async_read(t, buf, res, asio::use_awaitable);
    } else {
        co_await http::async_write(s, req, asio::use_awaitable);
        co_await http::async_read(s, buf, res, asio::use_awaitable);
    }
    out.status = res.result_int();
    out.body = res.body();
}

raw_reply raw_call(uint16_t port, http::verb verb, const std::string& target, const std::string& body = {},
                   bool tls = false) {
    asio::io_context io;
    raw_reply out;
    std::exception_ptr err;
    asio::co_spawn(io, raw_call_co(io, port, verb, target, body, 3s, tls, out), [&](std::exception_ptr e) { err = e; });
    io.run();
    if (err)
        std::rethrow_exception(err);
    return out;
}

// tests/ctl/fake_consul/fake_consul.py as a child process: started with --port 0 and a
// port file (waited for, bounded), stopped by PID. Its /_fake/ admin endpoints move the
// clock and inject faults. It is a fake: passing against it is not a test against Consul.
class fake_consul_process {
public:
    fake_consul_process() = default;
    fake_consul_process(const fake_consul_process&) = delete;
    fake_consul_process& operator=(const fake_consul_process&) = delete;
    ~fake_consul_process() { stop(); }

    /// Starts the fake if needed. Returns an error text, empty when it is up. With `tls`,
    /// it serves HTTPS with a fresh certificate signed by ca_file().
    const std::string& ensure_started(const std::string& token = {}, bool tls = false) {
        if (pid_ < 0 && error_.empty())
            error_ = try_start(token, tls);
        return error_;
    }
    uint16_t port() const { return port_; }
    bool tls() const { return tls_; }
    /// With tls: the PEM of the CA that signed the fake's certificate.
    std::string ca_file() const { return dir_ + "/ca.pem"; }
    /// With tls: the PEM of an unrelated CA (a wrong --store-ca-file).
    std::string other_ca_file() const { return dir_ + "/other-ca.pem"; }

    void stop() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            const auto deadline = std::chrono::steady_clock::now() + 5s;
            int status = 0;
            while (::waitpid(pid_, &status, WNOHANG) == 0) {
                if (std::chrono::steady_clock::now() >= deadline) {
                    ::kill(pid_, SIGKILL);
                    ::waitpid(pid_, &status, 0);
                    break;
                }
                std::this_thread::sleep_for(10ms);
            }
            pid_ = -1;
        }
        if (!dir_.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(dir_, ec);
            dir_.clear();
        }
    }

    // ---- admin endpoints ----
    void admin(const std::string& path, const json& body = json::object()) const {
        const raw_reply r = raw_call(port_, http::verb::post, path, body.dump(), tls_);
        if (r.status != 200)
            throw std::runtime_error("fake Consul " + path + ": HTTP " + std::to_string(r.status) + ": " + r.body);
    }
    void advance(double seconds) const { admin("/_fake/clock/advance", json{{"seconds", seconds}}); }
    void fault(const json& spec) const { admin("/_fake/fault", spec); }
    /// The request log (method, path with query, status, token_source).
    json requests() const { return get_json("/_fake/requests"); }
    /// Blocking queries parked in the fake's wait right now.
    int blocking_waiters() const { return get_json("/_fake/state").at("blocking_waiters").get<int>(); }

private:
    json get_json(const std::string& path) const {
        const raw_reply r = raw_call(port_, http::verb::get, path, {}, tls_);
        if (r.status != 200)
            throw std::runtime_error("fake Consul " + path + ": HTTP " + std::to_string(r.status));
        return json::parse(r.body);
    }

    // A throwaway CA, an unrelated CA, and a server certificate for IP 127.0.0.1 signed by
    // the first (EC P-256, valid 2 days). Returns an error text, empty on success.
    std::string make_certificates() const {
        const std::string d = dir_;
        std::ofstream(d + "/server.ext") << "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                            "extendedKeyUsage=serverAuth\n";
        const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        const std::string cmd =
            "cd '" + d + "' && { openssl req -x509 " + key + " -keyout ca.key -out ca.pem -days 2 -subj /CN=overpass-test-ca"
            " && openssl req -x509 " + key + " -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other-ca"
            " && openssl req " + key + " -keyout server.key -out server.csr -subj /CN=fake-consul"
            " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2"
            " -extfile server.ext; } > openssl.log 2>&1";
        if (std::system(cmd.c_str()) != 0) {
            std::ifstream f(d + "/openssl.log");
            std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
            return "making test certificates with the openssl CLI failed: " + text.substr(0, 2000);
        }
        return {};
    }

    std::string try_start(const std::string& token, bool tls) {
        const std::string script = std::string(OVERPASS_SOURCE_DIR) + "/tests/ctl/fake_consul/fake_consul.py";
        if (::access(script.c_str(), R_OK) != 0)
            return "fake Consul not found at " + script;
        std::string tmpl = (std::filesystem::temp_directory_path() / "overpass-ctl-consul-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr)
            return "mkdtemp failed";
        dir_ = tmpl;
        const std::string port_file = dir_ + "/port";
        std::vector<std::string> args{"python3", script, "--port", "0", "--port-file", port_file, "--no-jitter"};
        if (!token.empty()) {
            args.push_back("--token");
            args.push_back(token);
        }
        if (tls) {
            if (std::string why = make_certificates(); !why.empty()) {
                stop();
                return why;
            }
            tls_ = true;
            for (const char* a : {"--tls-cert", "server.pem", "--tls-key", "server.key"})
                args.push_back(a[0] == '-' ? std::string(a) : dir_ + "/" + a);
        }
        const std::string log = dir_ + "/fake.log";
        const pid_t pid = ::fork();
        if (pid < 0)
            return "fork failed";
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);   // no orphan if the test binary dies
            const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            std::vector<char*> argv;
            for (auto& a : args)
                argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execvp("python3", argv.data());
            ::_exit(127);
        }
        pid_ = pid;
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                std::ifstream f(log);
                std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
                stop();
                return "fake Consul exited during start-up: " + text.substr(0, 2000);
            }
            std::ifstream f(port_file);   // written atomically (rename) by the fake
            unsigned p = 0;
            if (f >> p && p > 0 && p < 65536) {
                port_ = static_cast<uint16_t>(p);
                return {};
            }
            std::this_thread::sleep_for(20ms);
        }
        stop();
        return "fake Consul did not write its port file within 10 s";
    }

    std::string error_;
    pid_t pid_ = -1;
    std::string dir_;
    uint16_t port_ = 0;
    bool tls_ = false;
};

// The contract suite's fake Consul: one per binary, started on first use.
fake_consul_process& shared_fake_consul() {
    static fake_consul_process p;
    return p;
}

// The same over HTTPS (the consul_tls backend).
fake_consul_process& shared_fake_consul_tls() {
    static fake_consul_process p;
    return p;
}

struct fake_consul_environment : ::testing::Environment {
    void TearDown() override {
        shared_fake_consul().stop();
        shared_fake_consul_tls().stop();
    }
};
[[maybe_unused]] ::testing::Environment* const fake_consul_env =
    ::testing::AddGlobalTestEnvironment(new fake_consul_environment);

/// Options for tests: a fast token bucket and back-off so the contract's timing holds.
consul_store_options quick_consul_options() {
    consul_store_options o;
    o.watch_refill = 20ms;
    o.watch_backoff_min = 50ms;
    o.watch_backoff_max = 1s;
    return o;
}

class consul_backend final : public backend {
public:
    // Every contract test goes through a URL prefix, so the prepend/strip path is
    // exercised everywhere.
    static constexpr const char* ns = "contract";

    /// `tls`: the HTTPS fake, and clients verifying it against its CA.
    explicit consul_backend(bool tls = false) : tls_(tls) {}

    fake_consul_process& fake() const { return tls_ ? shared_fake_consul_tls() : shared_fake_consul(); }
    std::string unavailable() override { return fake().ensure_started({}, tls_); }
    uint16_t port() const { return fake().port(); }

    consul_store_options options() const {
        consul_store_options o = quick_consul_options();
        o.tls = tls_;
        if (tls_)
            o.ca_file = fake().ca_file();
        return o;
    }
    std::unique_ptr<store> open(asio::io_context& io) override {
        return std::make_unique<consul_store>(io, "127.0.0.1", port(), ns, options());
    }
    std::unique_ptr<store> open_unrenewed(asio::io_context& io) override {
        consul_store_options o = options();
        o.renew_sessions = false;
        return std::make_unique<consul_store>(io, "127.0.0.1", port(), ns, o);
    }
    // Consul raises TTLs below 10 s to 10 s and expires sessions at 2 x TTL: move the
    // fake's clock past that for any handle of TTL < d.
    void advance(std::chrono::seconds d) override {
        fake().advance(2.0 * static_cast<double>(std::max<int64_t>(d.count(), 10)) + 1.0);
    }
    std::chrono::milliseconds expiry_bound(std::chrono::seconds) override { return 2s; }
    void revoke(asio::io_context&, const liveness& l) override {
        fake().admin("/_fake/session/invalidate", json{{"id", l.id()}});
    }
    std::vector<std::unique_ptr<store>> broken(asio::io_context& io) override {
        servers_.push_back(std::make_unique<fake_server>(
            io, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\nnot json!", false));
        servers_.push_back(std::make_unique<fake_server>(io, std::string("\x00\xff garbage\r\n\r\n\x01", 16), false));
        servers_.push_back(std::make_unique<fake_server>(io, "", true));   // accepts, never answers
        // With TLS, these plain servers are also "a TLS client against a plain server".
        consul_store_options o;
        o.request_timeout = 300ms;
        o.tls = tls_;
        std::vector<std::unique_ptr<store>> out;
        out.push_back(std::make_unique<consul_store>(io, "127.0.0.1", free_port(), "", o));   // closed port
        for (const auto& s : servers_)
            out.push_back(std::make_unique<consul_store>(io, "127.0.0.1", s->port(), "", o));
        return out;
    }

private:
    bool tls_;
    std::vector<std::unique_ptr<fake_server>> servers_;
};

struct backend_param {
    std::string name;
    std::function<std::unique_ptr<backend>()> make;
};

// Add a backend here. "consul" runs against the in-tree fake Consul, not a real one.
std::vector<backend_param> all_backends() {
    return {
        {"file", [] { return std::make_unique<file_backend>(); }},
        {"etcd", [] { return std::make_unique<etcd_backend>(); }},
        {"consul", [] { return std::make_unique<consul_backend>(); }},
        {"consul_tls", [] { return std::make_unique<consul_backend>(true); }},
    };
}

// ---------------------------------------------------------------- fixture

std::string test_prefix() {
    static int counter = 0;
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& ch : name)
        if (ch == '/')
            ch = '-';
    return "ct/" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + name + "/";
}

std::vector<std::string> keys_of(const kv_snapshot& s) {
    std::vector<std::string> out;
    for (const auto& i : s.items)
        out.push_back(i.key);
    return out;
}

class store_contract : public ::testing::TestWithParam<backend_param> {
protected:
    void SetUp() override {
        be = GetParam().make();
        const std::string why = be->unavailable();
        ASSERT_TRUE(why.empty()) << why;
        a = be->open(io);
        b = be->open(io);
        p = test_prefix();
    }

    std::string k(const std::string& s) const { return p + s; }

    std::vector<std::string> keys(store& s) { return keys_of(run(io, s.list(p))); }

    // Polls until `key` is absent. Each round mutates through `s` first (the file store
    // purges expired sessions on writes, as a peer's write would).
    bool vanishes(store& s, const std::string& key, std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            run(io, s.remove(k("tick")));
            const kv_snapshot snap = run(io, s.list(key));
            if (snap.items.empty())
                return true;
            if (std::chrono::steady_clock::now() >= deadline)
                return false;
            run_for(io, 100ms);
        }
    }

    asio::io_context io;
    std::unique_ptr<backend> be;
    std::unique_ptr<store> a;
    std::unique_ptr<store> b;
    std::string p;
};

// Records watch deliveries as readable lines.
struct watch_log {
    std::vector<std::string> lines;
    std::vector<kv_snapshot> snapshots;
    std::vector<uint64_t> revisions;   // snapshot and batch revisions, in delivery order
    std::vector<std::string> errors;
    std::string strip;                 // prefix removed from keys in `lines`

    watch_callbacks callbacks() {
        return watch_callbacks{
            [this](const kv_snapshot& s) {
                snapshots.push_back(s);
                revisions.push_back(s.revision);
                lines.push_back("snapshot " + std::to_string(s.items.size()));
            },
            [this](std::span<const kv_delta> d, uint64_t rev) {
                revisions.push_back(rev);
                for (const auto& x : d) {
                    const std::string key = x.item.key.substr(x.item.key.starts_with(strip) ? strip.size() : 0);
                    lines.push_back(x.what == kv_delta::kind::put ? "put " + key + "=" + x.item.value : "del " + key);
                }
            },
            [this](const std::string& e) { errors.push_back(e); }};
    }
};

// ---------------------------------------------------------------- the contract

TEST_P(store_contract, list_empty_and_prefix_isolation) {
    const kv_snapshot empty = run(io, a->list(p));
    EXPECT_TRUE(empty.items.empty());
    ASSERT_TRUE(run(io, a->create(k("x/1"), "one")));
    ASSERT_TRUE(run(io, a->create(k("x/2"), "two")));
    ASSERT_TRUE(run(io, a->create(k("x0"), "sibling")));   // '0' = '/' + 1: the range end
    ASSERT_TRUE(run(io, a->create(k("xy/3"), "other")));
    const kv_snapshot s = run(io, b->list(k("x/")));
    EXPECT_EQ(keys_of(s), (std::vector<std::string>{k("x/1"), k("x/2")}));
    ASSERT_EQ(s.items.size(), 2u);
    EXPECT_EQ(s.items[0].value, "one");
    EXPECT_EQ(s.items[1].value, "two");
    EXPECT_GT(s.items[0].create_rev, 0u);
    EXPECT_EQ(s.items[0].create_rev, s.items[0].mod_rev);
    EXPECT_LT(s.items[0].mod_rev, s.items[1].mod_rev);
    EXPECT_GE(s.revision, s.items[1].mod_rev);
    EXPECT_EQ(keys(*b), (std::vector<std::string>{k("x/1"), k("x/2"), k("x0"), k("xy/3")}));
    EXPECT_TRUE(run(io, a->list(k("nothing/"))).items.empty());
}

TEST_P(store_contract, create_is_create_only) {
    EXPECT_TRUE(run(io, a->create(k("c"), "first")));
    std::vector<txn_op> again{txn_op::create(k("c"), "second")};
    const txn_result r = run(io, b->txn(again));
    EXPECT_FALSE(r.succeeded);
    EXPECT_EQ(r.failed_key, k("c"));
    const kv_snapshot s = run(io, a->list(k("c")));
    ASSERT_EQ(s.items.size(), 1u);
    EXPECT_EQ(s.items[0].value, "first");
    EXPECT_THROW(run(io, a->create(k("bad key"), "v")), std::invalid_argument);
}

TEST_P(store_contract, txn_is_all_or_nothing) {
    ASSERT_TRUE(run(io, a->create(k("taken"), "1")));
    const uint64_t rev = run(io, a->list(p)).revision;
    std::vector<txn_op> ops{txn_op::create(k("n1"), "x"), txn_op::create(k("taken"), "again"),
                            txn_op::create(k("n2"), "y")};
    const txn_result r = run(io, b->txn(ops));
    EXPECT_FALSE(r.succeeded);
    EXPECT_EQ(r.failed_key, k("taken"));
    EXPECT_EQ(keys(*a), std::vector<std::string>{k("taken")});
    EXPECT_EQ(run(io, a->list(p)).revision, rev) << "a failed txn must not change the store";

    std::vector<txn_op> ok{txn_op::create(k("n1"), "x"), txn_op::create(k("n2"), "y"), txn_op::remove(k("taken"))};
    const txn_result r2 = run(io, b->txn(ok));
    EXPECT_TRUE(r2.succeeded);
    EXPECT_TRUE(r2.failed_key.empty());
    EXPECT_GT(r2.revision, rev);
    const kv_snapshot after = run(io, a->list(p));
    EXPECT_EQ(keys_of(after), (std::vector<std::string>{k("n1"), k("n2")}));
    for (const auto& i : after.items)
        EXPECT_EQ(i.mod_rev, r2.revision) << "one transaction, one revision";
}

TEST_P(store_contract, guarded_remove_compares_mod_rev) {
    ASSERT_TRUE(run(io, a->create(k("g"), "v")));
    const uint64_t rev = run(io, a->list(k("g"))).items.at(0).mod_rev;
    std::vector<txn_op> stale{txn_op::remove(k("g"), rev + 7)};
    const txn_result r = run(io, b->txn(stale));
    EXPECT_FALSE(r.succeeded);
    EXPECT_EQ(r.failed_key, k("g"));
    EXPECT_EQ(keys(*a).size(), 1u);
    EXPECT_TRUE(run(io, b->remove(k("g"), rev)));
    EXPECT_TRUE(keys(*a).empty());
    EXPECT_FALSE(run(io, b->remove(k("g"), rev))) << "absent key with a mod_rev guard fails";

    // A failing guard in the middle names that key, and nothing is applied.
    ASSERT_TRUE(run(io, a->create(k("h1"), "1")));
    ASSERT_TRUE(run(io, a->create(k("h2"), "2")));
    const uint64_t rev1 = run(io, a->list(k("h1"))).items.at(0).mod_rev;
    std::vector<txn_op> mixed{txn_op::remove(k("h1"), rev1), txn_op::remove(k("h2"), rev1), txn_op::create(k("h3"), "3")};
    const txn_result m = run(io, b->txn(mixed));
    EXPECT_FALSE(m.succeeded);
    EXPECT_EQ(m.failed_key, k("h2"));
    EXPECT_EQ(keys(*a), (std::vector<std::string>{k("h1"), k("h2")}));
}

TEST_P(store_contract, remove_absent_without_mod_rev_is_not_a_failure) {
    EXPECT_TRUE(run(io, a->remove(k("never"))));
    std::vector<txn_op> ops{txn_op::remove(k("never")), txn_op::create(k("fresh"), "v")};
    EXPECT_TRUE(run(io, a->txn(ops)).succeeded);
    EXPECT_EQ(keys(*b), std::vector<std::string>{k("fresh")});
}

TEST_P(store_contract, put_writes_whether_or_not_the_key_exists) {
    std::vector<txn_op> first{txn_op::put(k("cur"), "1")};
    ASSERT_TRUE(run(io, a->txn(first)).succeeded) << "a put creates an absent key";
    const kv_item created = run(io, b->list(k("cur"))).items.at(0);
    EXPECT_EQ(created.value, "1");

    std::vector<txn_op> again{txn_op::put(k("cur"), "2"), txn_op::create(k("other"), "x")};
    const txn_result r = run(io, b->txn(again));
    ASSERT_TRUE(r.succeeded) << "a put has no condition";
    const kv_item overwritten = run(io, a->list(k("cur"))).items.at(0);
    EXPECT_EQ(overwritten.value, "2");
    EXPECT_EQ(overwritten.create_rev, created.create_rev) << "an overwrite keeps the key's create revision";
    EXPECT_EQ(overwritten.mod_rev, r.revision);

    // In a transaction that fails, the put is not applied either.
    std::vector<txn_op> failing{txn_op::put(k("cur"), "3"), txn_op::create(k("other"), "y")};
    const txn_result f = run(io, a->txn(failing));
    EXPECT_FALSE(f.succeeded);
    EXPECT_EQ(f.failed_key, k("other"));
    EXPECT_EQ(run(io, b->list(k("cur"))).items.at(0).value, "2");

    // Only a create may be bound to a liveness handle.
    auto lease = run(io, a->open_liveness("host-a", 5s));
    txn_op bound = txn_op::put(k("cur"), "4");
    bound.lease = lease.get();
    std::vector<txn_op> with_lease{bound};
    EXPECT_THROW(run(io, a->txn(with_lease)), std::invalid_argument);
    run(io, lease->release());
}

TEST_P(store_contract, check_holds_only_for_an_unchanged_or_absent_key) {
    ASSERT_TRUE(run(io, a->create(k("c"), "1")));
    const uint64_t rev = run(io, a->list(k("c"))).items.at(0).mod_rev;
    std::vector<txn_op> same{txn_op::check(k("c"), rev), txn_op::create(k("d"), "x")};
    ASSERT_TRUE(run(io, b->txn(same)).succeeded);
    std::vector<txn_op> absent{txn_op::check(k("never"), 0), txn_op::create(k("e"), "x")};
    ASSERT_TRUE(run(io, b->txn(absent)).succeeded) << "rev 0: the key must be absent";
    EXPECT_EQ(keys(*a), (std::vector<std::string>{k("c"), k("d"), k("e")})) << "a check writes nothing";

    std::vector<txn_op> bump{txn_op::put(k("c"), "2")};
    ASSERT_TRUE(run(io, a->txn(bump)).succeeded);
    std::vector<txn_op> stale{txn_op::check(k("c"), rev), txn_op::create(k("f"), "x")};
    const txn_result r = run(io, b->txn(stale));
    EXPECT_FALSE(r.succeeded) << "changed since rev";
    EXPECT_EQ(r.failed_key, k("c"));
    std::vector<txn_op> present{txn_op::check(k("c"), 0), txn_op::create(k("f"), "x")};
    EXPECT_FALSE(run(io, b->txn(present)).succeeded) << "rev 0 fails for a present key";
    std::vector<txn_op> gone{txn_op::check(k("zz"), rev), txn_op::create(k("f"), "x")};
    EXPECT_FALSE(run(io, b->txn(gone)).succeeded) << "an absent key fails a check with a revision";
    EXPECT_EQ(keys(*a), (std::vector<std::string>{k("c"), k("d"), k("e")}));
}

// Consul refuses to read a key that ends like a file name (".json", ".sh" ...), though
// it lets a transaction write one: every backend must read, watch and remove such keys.
TEST_P(store_contract, keys_that_end_like_file_names_work) {
    ASSERT_TRUE(run(io, a->create(k("names/web.json"), "1")));
    ASSERT_TRUE(run(io, a->create(k("names/app.v2"), "2")));
    ASSERT_TRUE(run(io, a->create(k("names/web.jso"), "3")));
    ASSERT_TRUE(run(io, a->create(k("names/10.0.2.3"), "4")));
    ASSERT_TRUE(run(io, a->create(k("names/comma,"), "5")));
    EXPECT_EQ(keys(*b), (std::vector<std::string>{k("names/10.0.2.3"), k("names/app.v2"), k("names/comma,"),
                                                  k("names/web.jso"), k("names/web.json")}));
    const kv_snapshot exact = run(io, b->list(k("names/web.json")));
    ASSERT_EQ(exact.items.size(), 1u) << "a listing by the whole key finds exactly that key";
    EXPECT_EQ(exact.items[0].key, k("names/web.json"));
    EXPECT_EQ(exact.items[0].value, "1");
    EXPECT_EQ(keys_of(run(io, b->list(k("names/web.js")))), (std::vector<std::string>{k("names/web.jso"), k("names/web.json")}));
    EXPECT_FALSE(run(io, b->create(k("names/web.json"), "again"))) << "create-only holds for such a key too";
    const uint64_t rev = exact.items[0].mod_rev;
    EXPECT_TRUE(run(io, b->remove(k("names/web.json"), rev)));
    EXPECT_TRUE(run(io, b->remove(k("names/comma,"))));
    EXPECT_EQ(keys(*a), (std::vector<std::string>{k("names/10.0.2.3"), k("names/app.v2"), k("names/web.jso")}));
}

TEST_P(store_contract, ephemeral_keys_vanish_on_release) {
    auto lease = run(io, a->open_liveness("host-a", 5s));
    ASSERT_TRUE(lease->alive());
    EXPECT_FALSE(lease->id().empty());
    ASSERT_TRUE(run(io, a->create(k("eph"), "x", lease.get())));
    ASSERT_TRUE(run(io, a->create(k("keep"), "y")));
    EXPECT_EQ(keys(*b), (std::vector<std::string>{k("eph"), k("keep")}));
    run(io, lease->release());
    EXPECT_EQ(keys(*b), std::vector<std::string>{k("keep")});
    EXPECT_FALSE(lease->alive());
    run(io, lease->release());   // idempotent
}

TEST_P(store_contract, ephemeral_keys_vanish_when_not_renewed) {
    auto s = be->open_unrenewed(io);
    auto lease = run(io, s->open_liveness("host-a", 2s));
    ASSERT_TRUE(run(io, s->create(k("eph"), "x", lease.get())));
    ASSERT_TRUE(run(io, s->create(k("keep"), "y")));
    be->advance(3s);
    EXPECT_TRUE(vanishes(*b, k("eph"), be->expiry_bound(2s)));
    EXPECT_EQ(keys(*b), std::vector<std::string>{k("keep")});
    EXPECT_FALSE(run(io, lease->renew()));
    EXPECT_FALSE(lease->alive());
}

TEST_P(store_contract, renewal_keeps_ephemeral_keys) {
    auto lease = run(io, a->open_liveness("host-a", 2s));
    ASSERT_TRUE(run(io, a->create(k("eph"), "x", lease.get())));
    EXPECT_TRUE(run(io, lease->renew()));
    run_for(io, 2500ms);   // longer than the TTL, renewed in the background meanwhile
    EXPECT_EQ(keys(*b), std::vector<std::string>{k("eph")});
    EXPECT_TRUE(lease->alive());
    // The background loop counts what it did (Consul's minimum TTL is 10 s: one renewal
    // per 3.3 s there); renew() called by hand is not counted.
    ASSERT_TRUE(eventually(io, [&] { return lease->counters().renewals >= 1; }, 5s));
    EXPECT_EQ(lease->counters().renew_failures, 0u);
    EXPECT_NE(lease->counters().last_renewal, std::chrono::steady_clock::time_point{});
}

TEST_P(store_contract, on_lost_fires_when_revoked_behind_the_handles_back) {
    auto lease = run(io, a->open_liveness("host-a", 2s));
    int lost = 0;
    lease->on_lost([&] { lost++; });
    ASSERT_TRUE(run(io, a->create(k("eph"), "x", lease.get())));
    be->revoke(io, *lease);
    // The next background renewal notices: every ttl/3, and Consul raises a 2 s TTL to
    // 10 s (one renewal per 3.3 s), so 5 s left only 1.7 s for a loaded machine.
    ASSERT_TRUE(eventually(io, [&] { return lost > 0; }, 10s)) << "the background renewal must notice";
    EXPECT_FALSE(lease->alive());
    EXPECT_FALSE(run(io, lease->renew()));
    EXPECT_EQ(lost, 1) << "on_lost runs once";
    EXPECT_TRUE(vanishes(*b, k("eph"), 2s));
    EXPECT_THROW(run(io, a->create(k("eph2"), "x", lease.get())), store_error);
}

TEST_P(store_contract, watch_delivers_snapshot_then_ordered_deltas) {
    ASSERT_TRUE(run(io, a->create(k("w/0"), "zero")));
    watch_log log;
    log.strip = p;
    auto w = a->watch(k("w/"), log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }));
    ASSERT_EQ(log.snapshots.size(), 1u);
    ASSERT_EQ(log.snapshots[0].items.size(), 1u);
    EXPECT_EQ(log.snapshots[0].items[0].key, k("w/0"));
    EXPECT_EQ(log.snapshots[0].items[0].value, "zero");

    ASSERT_TRUE(run(io, a->create(k("w/1"), "one")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 2; }));
    ASSERT_TRUE(run(io, a->create(k("outside"), "ignored")));
    ASSERT_TRUE(run(io, a->create(k("w/2"), "two")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 3; }));
    ASSERT_TRUE(run(io, a->remove(k("w/1"))));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 4; }));
    run_for(io, 100ms);   // nothing else may arrive
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 1", "put w/1=one", "put w/2=two", "del w/1"}));
    for (size_t i = 1; i < log.revisions.size(); i++)
        EXPECT_GT(log.revisions[i], log.revisions[i - 1]) << "revisions must increase";
    EXPECT_TRUE(log.errors.empty()) << log.errors.front();

    w.reset();   // cancelled: no more callbacks
    ASSERT_TRUE(run(io, a->create(k("w/3"), "three")));
    run_for(io, 200ms);
    EXPECT_EQ(log.lines.size(), 4u);
}

TEST_P(store_contract, watch_sees_changes_made_by_another_instance) {
    watch_log log;
    log.strip = p;
    auto w = b->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }));
    auto c = be->open(io);
    auto lease = run(io, c->open_liveness("host-c", 5s));
    ASSERT_TRUE(run(io, c->create(k("ep"), "from-c", lease.get())));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 2; }));
    run(io, lease->release());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 3; }));
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 0", "put ep=from-c", "del ep"}));
}

TEST_P(store_contract, concurrent_creates_of_one_key_have_one_winner) {
    constexpr int rounds = 20;
    int wins[2] = {0, 0};
    for (int i = 0; i < rounds; i++) {
        const std::string key = k("claim/" + std::to_string(i));
        int done = 0;
        bool won[2] = {false, false};
        store* stores[2] = {a.get(), b.get()};
        for (int who = 0; who < 2; who++)
            asio::co_spawn(io, stores[who]->create(key, "owner-" + std::to_string(who)),
                           [&, who](std::exception_ptr e, bool ok) {
                               won[who] = !e && ok;
                               done++;
                           });
        ASSERT_TRUE(eventually(io, [&] { return done == 2; }, 10s));
        ASSERT_NE(won[0], won[1]) << "exactly one create of " << key << " must win";
        wins[won[0] ? 0 : 1]++;
        const kv_snapshot s = run(io, a->list(key));
        ASSERT_EQ(s.items.size(), 1u);
        EXPECT_EQ(s.items[0].value, won[0] ? "owner-0" : "owner-1");
    }
    EXPECT_EQ(wins[0] + wins[1], rounds);
}

TEST_P(store_contract, broken_server_is_a_store_error_not_a_crash) {
    for (auto& s : be->broken(io)) {
        SCOPED_TRACE(s->url());
        try {
            run(io, s->list(p));
            ADD_FAILURE() << "list on a broken store succeeded";
        } catch (const store_error& e) {
            const std::string where = s->url().substr(s->url().find("://") + 3);
            EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << "the error names the store: " << e.what();
        }
        EXPECT_THROW(run(io, s->create(k("x"), "v")), store_error);
        EXPECT_THROW(run(io, s->open_liveness("h", 2s)), store_error);
        watch_log log;
        auto w = s->watch(p, log.callbacks());
        EXPECT_TRUE(eventually(io, [&] { return !log.errors.empty(); }, 3s));
        run_for(io, 300ms);
        EXPECT_TRUE(log.snapshots.empty());
        EXPECT_LE(log.errors.size(), 2u) << "on_error must be rate-limited";
    }
}

INSTANTIATE_TEST_SUITE_P(backends, store_contract, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<backend_param>& info) { return info.param.name; });

// ---------------------------------------------------------------- etcd only

class etcd_only : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string why = etcd_server::instance().ensure_started();
        ASSERT_TRUE(why.empty()) << why;
        port = etcd_server::instance().client_port();
        p = test_prefix();
    }
    std::string url(const std::string& ns = "") const {
        return "etcd://127.0.0.1:" + std::to_string(port) + (ns.empty() ? "" : "/" + ns);
    }
    // Puts through the raw gateway; returns the new revision.
    uint64_t raw_put(const std::string& key, const std::string& value) {
        const raw_reply r = raw_post(port, "/v3/kv/put", json{{"key", b64(key)}, {"value", b64(value)}});
        if (r.status != 200)
            throw std::runtime_error("put failed: " + r.body);
        return std::stoull(json::parse(r.body)["header"]["revision"].get<std::string>());
    }
    void compact(uint64_t rev) {
        const raw_reply r = raw_post(port, "/v3/kv/compaction", json{{"revision", std::to_string(rev)}, {"physical", true}});
        if (r.status != 200)
            throw std::runtime_error("compaction failed: " + r.body);
    }

    asio::io_context io;
    uint16_t port = 0;
    std::string p;
};

TEST_F(etcd_only, watch_resyncs_after_compaction) {
    ASSERT_TRUE(run(io, make_store(io, url())->create(p + "k0", "v0")));
    // Between the watch's initial range (revision R) and its stream creation, two writes
    // land and the history is compacted past R+1: etcd must cancel the stream with
    // compact_revision and the store must re-list and deliver a fresh snapshot.
    int hook_calls = 0;
    etcd_store_options o;
    o.before_watch = [&](uint64_t) {
        if (hook_calls++ > 0)
            return;
        raw_put(p + "k1", "v1");
        compact(raw_put(p + "k2", "v2"));
    };
    etcd_store s(io, "127.0.0.1", port, "", o);
    watch_log log;
    log.strip = p;
    auto w = s.watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.snapshots.size() == 2; }, 5s)) << ::testing::PrintToString(log.lines);
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 1", "snapshot 3"}));
    EXPECT_EQ(keys_of(log.snapshots[1]), (std::vector<std::string>{p + "k0", p + "k1", p + "k2"}));
    EXPECT_GT(log.snapshots[1].revision, log.snapshots[0].revision);
    EXPECT_TRUE(log.errors.empty()) << "compaction is not an error";

    // The new stream is live: a compaction now does not disturb it.
    compact(raw_put(p + "k3", "v3"));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 3; }));
    ASSERT_TRUE(run(io, s.remove(p + "k0")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 4; }));
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 1", "snapshot 3", "put k3=v3", "del k0"}));
    EXPECT_EQ(log.snapshots.size(), 2u);
}

TEST_F(etcd_only, url_namespace_is_prepended_and_stripped) {
    auto spaced = make_store(io, url("clusterA"));
    auto plain = make_store(io, url());
    EXPECT_EQ(spaced->url(), url("clusterA"));
    ASSERT_TRUE(run(io, spaced->create(p + "x", "in-a")));
    ASSERT_TRUE(run(io, plain->create(p + "x", "plain")));
    const kv_snapshot in_a = run(io, spaced->list(p));
    ASSERT_EQ(in_a.items.size(), 1u);
    EXPECT_EQ(in_a.items[0].key, p + "x");
    EXPECT_EQ(in_a.items[0].value, "in-a");
    EXPECT_EQ(keys_of(run(io, plain->list("clusterA/" + p))), std::vector<std::string>{"clusterA/" + p + "x"});
    EXPECT_EQ(keys_of(run(io, plain->list(p))), std::vector<std::string>{p + "x"});
    // An empty prefix lists the whole namespace, and nothing else.
    for (const auto& item : run(io, spaced->list("")).items)
        EXPECT_FALSE(item.key.starts_with("clusterA/")) << item.key;
}

TEST_F(etcd_only, errors_name_the_server_and_the_cause) {
    const uint16_t closed = free_port();
    auto s = make_store(io, "etcd://127.0.0.1:" + std::to_string(closed) + "/x");
    try {
        run(io, s->list("a/"));
        FAIL() << "no error";
    } catch (const store_error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("etcd at 127.0.0.1:" + std::to_string(closed) + ": connection refused"), std::string::npos)
            << msg;
    }
}

TEST_F(etcd_only, lease_ttl_is_at_least_two_seconds) {
    etcd_store s(io, "127.0.0.1", port, "", etcd_store_options{});
    auto lease = run(io, s.open_liveness("h", 1s));
    const raw_reply r = raw_post(port, "/v3/lease/timetolive", json{{"ID", lease->id()}});
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(json::parse(r.body)["grantedTTL"].get<std::string>(), "2");
    run(io, lease->release());
}

TEST(etcd_url, make_store_parses_etcd_urls) {
    asio::io_context io;
    EXPECT_EQ(make_store(io, "etcd://10.1.2.3:2379")->url(), "etcd://10.1.2.3:2379");
    EXPECT_EQ(make_store(io, "etcd://10.1.2.3")->url(), "etcd://10.1.2.3:2379");
    EXPECT_EQ(make_store(io, "etcd://store.example:1234/a/b/")->url(), "etcd://store.example:1234/a/b");
    EXPECT_EQ(make_store(io, "etcd://[::1]:2379/ns")->url(), "etcd://[::1]:2379/ns");
    EXPECT_THROW(make_store(io, "etcd://:2379"), std::invalid_argument);
    EXPECT_THROW(make_store(io, "etcd://h:99999"), std::invalid_argument);
    EXPECT_THROW(make_store(io, "etcd://h:12x"), std::invalid_argument);
    EXPECT_THROW(make_store(io, "etcd://h:1/bad ns"), std::invalid_argument);
    EXPECT_THROW(make_store(io, "etcd://user:pw@h:1"), std::invalid_argument);
}

// ---------------------------------------------------------------- consul only
//
// Against a fresh fake Consul per test (so injected faults cannot leak into another
// test's requests). These exercise the blocking-query rules, faults and ACLs; they are
// tests against the in-tree fake, not against a real Consul.

class consul_only : public ::testing::Test {
protected:
    void SetUp() override { start(); }

    void start(const std::string& token = {}) {
        fake = std::make_unique<fake_consul_process>();
        const std::string why = fake->ensure_started(token);
        ASSERT_TRUE(why.empty()) << why;
        p = "co/" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "/";
    }

    std::unique_ptr<consul_store> open(consul_store_options o = quick_consul_options()) {
        return std::make_unique<consul_store>(io, "127.0.0.1", fake->port(), "", std::move(o));
    }

    // True once the watch's blocking query is parked in the fake's wait. The one-shot
    // faults (index_backwards, spurious_wakeup) act on the next blocking query to arrive:
    // posting them before the current one is parked would hit that one instead, and a
    // write racing it would be answered by the fault rather than by the wait.
    bool watch_parked() {
        return eventually(io, [&] { return fake->blocking_waiters() == 1; });
    }

    // Blocking-query GETs of the watch on `prefix` in the fake's request log.
    std::vector<std::string> watch_gets(const std::string& prefix) {
        std::vector<std::string> out;
        for (const json& r : fake->requests()) {
            const std::string path = r["path"].get<std::string>();
            if (r["method"] == "GET" && path.starts_with("/v1/kv/" + prefix + "?recurse"))
                out.push_back(path);
        }
        return out;
    }

    asio::io_context io;
    std::unique_ptr<fake_consul_process> fake;
    std::string p;
};

TEST_F(consul_only, index_going_backwards_delivers_a_fresh_snapshot) {
    auto s = open();
    ASSERT_TRUE(run(io, s->create(p + "k0", "v0")));
    watch_log log;
    log.strip = p;
    auto w = s->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }));
    ASSERT_TRUE(watch_parked());
    // Acts on the next blocking query, i.e. the one after the change below.
    fake->fault(json{{"index_backwards", true}});
    ASSERT_TRUE(run(io, s->create(p + "k1", "v1")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 3; })) << ::testing::PrintToString(log.lines);
    run_for(io, 200ms);
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 1", "put k1=v1", "snapshot 2"}));
    ASSERT_EQ(log.revisions.size(), 3u);
    EXPECT_LT(log.revisions[2], log.revisions[1]) << "the resync carries the (lower) index Consul answered";
    EXPECT_EQ(keys_of(log.snapshots[1]), (std::vector<std::string>{p + "k0", p + "k1"}));
    // After the reset the next query goes without index, then blocking resumes.
    bool saw_reset = false;
    for (const auto& g : watch_gets(p))
        saw_reset = saw_reset || g == "/v1/kv/" + p + "?recurse";
    EXPECT_TRUE(saw_reset);
    ASSERT_TRUE(run(io, s->create(p + "k2", "v2")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 4; }));
    EXPECT_EQ(log.lines.back(), "put k2=v2");
    EXPECT_TRUE(log.errors.empty()) << log.errors.front();
}

TEST_F(consul_only, index_zero_is_treated_as_one) {
    auto s = open();
    // A write elsewhere moves the real index past 1, so waiting on 1 returns at once.
    ASSERT_TRUE(run(io, s->create("co/elsewhere/" + p + "x", "1")));
    fake->fault(json{{"index_zero", true}});   // the first answer says X-Consul-Index: 0
    watch_log log;
    log.strip = p;
    auto w = s->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }));
    // The query on index 1 is answered at once; the one after it (on the real index) is
    // the first to park. The fake logs a query once answered: wait for that, not a time.
    ASSERT_TRUE(eventually(io, [&] { return watch_gets(p).size() >= 2 && fake->blocking_waiters() == 1; }))
        << "no query parked after the index-0 answer: " << ::testing::PrintToString(watch_gets(p));
    run_for(io, 300ms);   // a busy loop on index 0 or 1 would show up as more queries here
    EXPECT_EQ(log.lines, std::vector<std::string>{"snapshot 0"});
    EXPECT_EQ(log.revisions.at(0), 1u);
    const auto gets = watch_gets(p);
    ASSERT_GE(gets.size(), 2u);
    EXPECT_NE(gets[1].find("&index=1&"), std::string::npos) << gets[1];
    EXPECT_LE(gets.size(), 4u) << "no busy loop on index 0";
    ASSERT_TRUE(run(io, s->create(p + "a", "1")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 2; }));
    EXPECT_EQ(log.lines.back(), "put a=1");
}

TEST_F(consul_only, spurious_wakeups_produce_no_callback) {
    auto s = open();
    watch_log log;
    log.strip = p;
    auto w = s->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }));
    // The parked query answers the write below; the three after it are answered at once.
    ASSERT_TRUE(watch_parked());
    fake->fault(json{{"spurious_wakeup", 3}});
    ASSERT_TRUE(run(io, s->create(p + "a", "1")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 2; }));
    ASSERT_TRUE(watch_parked()) << "the three spurious answers and their queries";
    // An unrelated write elsewhere, and a clock jump that ends the current wait early.
    ASSERT_TRUE(run(io, s->create("co/elsewhere/" + p + "x", "1")));
    fake->advance(120);
    // Six answered (the snapshot, the write, three spurious, the timeout), the 7th parked.
    EXPECT_TRUE(eventually(io, [&] { return watch_gets(p).size() >= 6 && fake->blocking_waiters() == 1; }))
        << "three spurious answers and a timeout were each followed by a new query: "
        << ::testing::PrintToString(watch_gets(p));
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 0", "put a=1"}));
    ASSERT_TRUE(run(io, s->remove(p + "a")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 3; }));
    EXPECT_EQ(log.lines.back(), "del a");
    EXPECT_TRUE(log.errors.empty()) << log.errors.front();
}

TEST_F(consul_only, server_errors_back_off_then_recover) {
    consul_store_options o = quick_consul_options();
    o.watch_backoff_min = 100ms;
    o.error_report_interval = 0ms;   // see every error
    auto s = open(o);
    fake->fault(json{{"status", 500}, {"body", "rpc error: boom"}, {"count", 2}, {"path", "/v1/kv/"}});
    fake->fault(json{{"preset", "no_leader"}, {"count", 2}, {"path", "/v1/kv/"}});
    // Plain calls surface the server's words.
    try {
        run(io, s->list(p));
        ADD_FAILURE() << "no error";
    } catch (const store_error& e) {
        EXPECT_NE(std::string(e.what()).find("consul at 127.0.0.1:" + std::to_string(fake->port())), std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("HTTP 500"), std::string::npos) << e.what();
    }
    watch_log log;
    log.strip = p;
    const auto start = std::chrono::steady_clock::now();
    auto w = s->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.snapshots.size() == 1; }, 10s)) << ::testing::PrintToString(log.errors);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_EQ(log.errors.size(), 3u) << ::testing::PrintToString(log.errors);
    EXPECT_NE(log.errors[2].find("No cluster leader"), std::string::npos) << log.errors[2];
    // Back-off bases 100, 200, 400 ms with jitter [1/2, 3/2]: at least 350 ms in total.
    EXPECT_GE(took, 350ms);
    ASSERT_TRUE(run(io, s->create(p + "a", "1")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 2; }));
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 0", "put a=1"}));
}

// After a failed blocking query the watch reads at once, and says the store is back
// (an empty change batch) even when nothing changed: the sync engine's store_up would
// otherwise stay down until the next change.
TEST_F(consul_only, watch_says_when_the_store_answers_again) {
    consul_store_options o = quick_consul_options();
    o.watch_wait = 60000ms;
    auto s = open(o);
    ASSERT_TRUE(run(io, s->create(p + "a", "1")));
    watch_log log;
    log.strip = p;
    auto w = s->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }));
    ASSERT_TRUE(watch_parked());
    fake->fault(json{{"status", 500}, {"body", "rpc error: boom"}, {"count", 1}, {"path", "/v1/kv/"}});
    // Wake the parked query with a write: the query after the waking one meets the fault,
    // and nothing changes after it.
    ASSERT_TRUE(run(io, s->create(p + "b", "2")));
    ASSERT_TRUE(eventually(io, [&] { return log.errors.size() == 1; }, 5s)) << ::testing::PrintToString(log.lines);
    const size_t batches = log.revisions.size();
    ASSERT_TRUE(eventually(io, [&] { return log.revisions.size() > batches; }, 5s))
        << "no callback after the error although the store answers: " << ::testing::PrintToString(log.lines);
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 1", "put b=2"}));
}

TEST_F(consul_only, connection_reset_mid_body_recovers) {
    auto s = open();
    ASSERT_TRUE(run(io, s->create(p + "0", "zero")));
    // A plain read cut mid-body is an error, never a truncated listing.
    fake->fault(json{{"reset_mid_body", 1}, {"path", "/v1/kv/"}});
    EXPECT_THROW(run(io, s->list(p)), store_error);
    watch_log log;
    log.strip = p;
    auto w = s->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }));
    fake->fault(json{{"reset_mid_body", 1}, {"path", "/v1/kv/"}});
    ASSERT_TRUE(run(io, s->create(p + "a", "1")));   // wakes the pending query (no fault)
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 2; }));
    ASSERT_TRUE(run(io, s->create(p + "b", "2")));   // this answer is cut mid-body
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 3; }, 5s)) << ::testing::PrintToString(log.lines);
    EXPECT_EQ(log.lines, (std::vector<std::string>{"snapshot 1", "put a=1", "put b=2"}));
    EXPECT_EQ(log.errors.size(), 1u);
}

TEST_F(consul_only, slow_answers_within_the_timeout_work) {
    consul_store_options o = quick_consul_options();
    o.request_timeout = 1500ms;
    auto s = open(o);
    fake->fault(json{{"delay_ms", 500}, {"count", 2}});
    ASSERT_TRUE(run(io, s->create(p + "a", "1")));
    EXPECT_EQ(run(io, s->list(p)).items.size(), 1u);
    fake->fault(json{{"delay_ms", 2500}});
    try {
        run(io, s->list(p));
        ADD_FAILURE() << "no timeout";
    } catch (const store_error& e) {
        EXPECT_NE(std::string(e.what()).find("no answer within 1500 ms"), std::string::npos) << e.what();
    }
    // The watch's blocking query may take its whole wait: the read deadline covers it.
    o.watch_wait = 1s;
    o.watch_timeout_margin = 500ms;
    auto ws = open(o);
    watch_log log;
    log.strip = p;
    auto w = ws->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }, 5s));
    run_for(io, 2500ms);   // two or three full waits, each answered at wait's end
    EXPECT_TRUE(log.errors.empty()) << log.errors.front();
    ASSERT_TRUE(run(io, s->create(p + "b", "2")));
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 2; }));
}

TEST_F(consul_only, watch_rate_limits_a_storm_of_changes) {
    consul_store_options o = quick_consul_options();
    o.watch_burst = 2;
    o.watch_refill = 400ms;
    auto s = open(o);
    watch_log log;
    log.strip = p;
    auto w = s->watch(p, log.callbacks());
    ASSERT_TRUE(eventually(io, [&] { return log.lines.size() == 1; }));
    // The snapshot's query is in the fake's log (it logs after answering) and the first
    // blocking query is parked, so `before` counts exactly the snapshot.
    ASSERT_TRUE(watch_parked());
    const size_t before = watch_gets(p).size();
    auto writer = open();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 30; i++) {
        ASSERT_TRUE(run(io, writer->create(p + "k" + std::to_string(i), "v")));
        run_for(io, 40ms);
    }
    const auto took = std::chrono::steady_clock::now() - start;
    const size_t queries = watch_gets(p).size() - before;
    // One token per 400 ms plus at most one left over: far fewer queries than changes.
    const auto allowed = 2 + std::chrono::duration_cast<std::chrono::milliseconds>(took).count() / 400 + 1;
    EXPECT_LE(static_cast<long>(queries), allowed) << "queries=" << queries;
    ASSERT_TRUE(eventually(io, [&] {
        size_t puts = 0;
        for (const auto& l : log.lines)
            puts += l.starts_with("put ");
        return puts == 30;
    }, 5s)) << ::testing::PrintToString(log.lines);
    EXPECT_EQ(log.snapshots.size(), 1u);
}

TEST_F(consul_only, acl_token_is_sent_and_missing_token_is_a_clear_error) {
    fake->stop();
    start("s3cret-token");
    consul_store_options good = quick_consul_options();
    good.token = "s3cret-token";
    auto s = open(good);
    ASSERT_TRUE(run(io, s->create(p + "a", "1")));
    EXPECT_EQ(run(io, s->list(p)).items.size(), 1u);
    auto lease = run(io, s->open_liveness("h", 10s));
    ASSERT_TRUE(run(io, s->create(p + "eph", "x", lease.get())));
    run(io, lease->release());

    // No token: writes and sessions fail and say why ...
    auto anon = open();
    try {
        run(io, anon->create(p + "b", "2"));
        ADD_FAILURE() << "anonymous create succeeded";
    } catch (const store_error& e) {
        EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("no ACL token configured"), std::string::npos) << e.what();
    }
    EXPECT_THROW(run(io, anon->remove(p + "a")), store_error);
    EXPECT_THROW(run(io, anon->open_liveness("h", 10s)), store_error);
    // ... but Consul filters listings instead of refusing them: an empty prefix.
    EXPECT_TRUE(run(io, anon->list(p)).items.empty());

    // A wrong token is refused outright.
    consul_store_options bad = quick_consul_options();
    bad.token = "wrong";
    auto wrong = open(bad);
    try {
        run(io, wrong->list(p));
        ADD_FAILURE() << "wrong token accepted";
    } catch (const store_error& e) {
        EXPECT_NE(std::string(e.what()).find("HTTP 403: ACL not found"), std::string::npos) << e.what();
    }

    // make_store: token file, then $CONSUL_HTTP_TOKEN; always as a header, never a query.
    temp_dir dir;
    const std::string file = (dir.path / "token").string();
    std::ofstream(file) << "s3cret-token\n";
    const std::string url = "consul://127.0.0.1:" + std::to_string(fake->port());
    store_options so;
    so.token_file = file;
    EXPECT_EQ(keys_of(run(io, make_store(io, url, so)->list(p))), std::vector<std::string>{p + "a"});
    ::setenv("CONSUL_HTTP_TOKEN", "s3cret-token", 1);
    auto from_env = make_store(io, url);
    ::unsetenv("CONSUL_HTTP_TOKEN");
    EXPECT_EQ(keys_of(run(io, from_env->list(p))), std::vector<std::string>{p + "a"});
    for (const json& r : fake->requests())
        EXPECT_NE(r["token_source"], "query") << r.dump();
}

TEST_F(consul_only, session_renew_404_means_lost) {
    auto s = open();
    auto lease = run(io, s->open_liveness("h", 10s));
    int lost = 0;
    lease->on_lost([&] { lost++; });
    EXPECT_TRUE(run(io, lease->renew()));
    fake->admin("/_fake/session/invalidate", json{{"id", lease->id()}});
    EXPECT_FALSE(run(io, lease->renew()));
    EXPECT_FALSE(run(io, lease->renew()));
    EXPECT_FALSE(lease->alive());
    EXPECT_EQ(lost, 1);
    EXPECT_THROW(run(io, s->create(p + "e", "x", lease.get())), store_error);

    // A larger TTL from the server is accepted (renewals continue to work).
    auto other = run(io, s->open_liveness("h2", 10s));
    fake->fault(json{{"renew_ttl", "60s"}});
    EXPECT_TRUE(run(io, other->renew()));
    EXPECT_TRUE(other->alive());
    run(io, other->release());
}

TEST_F(consul_only, behavior_delete_removes_keys_after_twice_the_ttl) {
    consul_store_options o = quick_consul_options();
    o.renew_sessions = false;
    o.lock_delay = 3s;
    auto s = open(o);
    auto lease = run(io, s->open_liveness("h", 10s));
    ASSERT_TRUE(run(io, s->create(p + "eph", "x", lease.get())));
    ASSERT_TRUE(run(io, s->create(p + "keep", "y")));
    fake->advance(15);   // past the TTL, within 2 x TTL: Consul may still keep it
    EXPECT_EQ(run(io, s->list(p)).items.size(), 2u);
    fake->advance(6);    // past 2 x TTL
    EXPECT_EQ(keys_of(run(io, s->list(p))), std::vector<std::string>{p + "keep"});
    EXPECT_FALSE(run(io, lease->renew()));

    // Lock-delay: the key cannot be claimed again right away; that is a failed create.
    auto again = run(io, s->open_liveness("h", 10s));
    std::vector<txn_op> claim{txn_op::create(p + "eph", "z", again.get())};
    const txn_result r = run(io, s->txn(claim));
    EXPECT_FALSE(r.succeeded);
    EXPECT_EQ(r.failed_key, p + "eph");
    fake->advance(4);
    EXPECT_TRUE(run(io, s->txn(claim)).succeeded);
    run(io, again->release());
}

TEST_F(consul_only, keys_and_transactions_are_validated_before_sending) {
    auto s = open();
    const auto api_requests = [&] {
        size_t n = 0;
        for (const json& r : fake->requests())
            n += r["path"].get<std::string>().starts_with("/v1/");
        return n;
    };
    const size_t before = api_requests();
    for (const std::string bad : {"a b", "/lead", "x/../y", "mac:01", "caf\xc3\xa9", "a//b", "tab\t"})
        EXPECT_THROW(run(io, s->create(p + bad, "v")), std::invalid_argument) << bad;
    EXPECT_THROW(run(io, s->create("/abs", "v")), std::invalid_argument);
    EXPECT_THROW(run(io, s->list("bad prefix")), std::invalid_argument);
    EXPECT_THROW(s->watch("x:y/", watch_log{}.callbacks()), std::invalid_argument);
    std::vector<txn_op> big;
    for (int i = 0; i < 65; i++)
        big.push_back(txn_op::create(p + "n" + std::to_string(i), "v"));
    EXPECT_THROW(run(io, s->txn(big)), std::invalid_argument);
    EXPECT_EQ(api_requests(), before) << "nothing invalid reaches the server";
    big.pop_back();
    EXPECT_TRUE(run(io, s->txn(big)).succeeded) << "64 operations are allowed";
    auto lease = run(io, s->open_liveness("h", 10s));
    std::vector<txn_op> eph;
    for (int i = 0; i < 33; i++)   // two Consul ops each
        eph.push_back(txn_op::create(p + "e" + std::to_string(i), "v", lease.get()));
    EXPECT_THROW(run(io, s->txn(eph)), std::invalid_argument);
    run(io, lease->release());
}

TEST(consul_url, make_store_parses_consul_urls) {
    asio::io_context io;
    EXPECT_EQ(make_store(io, "consul://10.1.2.3:8500")->url(), "consul://10.1.2.3:8500");
    EXPECT_EQ(make_store(io, "consul://10.1.2.3")->url(), "consul://10.1.2.3:8500");
    EXPECT_EQ(make_store(io, "consul://store.example:1234/a/b/")->url(), "consul://store.example:1234/a/b");
    EXPECT_EQ(make_store(io, "consul://[::1]:8500/ns")->url(), "consul://[::1]:8500/ns");
    EXPECT_THROW(make_store(io, "consul://:8500"), std::invalid_argument);
    EXPECT_THROW(make_store(io, "consul://h:1/bad ns"), std::invalid_argument);
    EXPECT_THROW(make_store(io, "consul://user:pw@h:1"), std::invalid_argument);
    EXPECT_THROW(make_store(io, "consul://h:1?token=abc"), std::invalid_argument);
    EXPECT_THROW(make_store(io, "consul://h:1/p?token=abc"), std::invalid_argument);
    EXPECT_EQ(make_store(io, "consul+https://10.1.2.3")->url(), "consul+https://10.1.2.3:8501");
    EXPECT_EQ(make_store(io, "consul+https://store.example:1234/a/")->url(), "consul+https://store.example:1234/a");
    EXPECT_THROW(make_store(io, "consul+https://u@h:1"), std::invalid_argument);
    store_options ca;
    ca.ca_file = "/nonexistent/overpass-ca.pem";
    try {
        make_store(io, "consul+https://h:1", ca);
        ADD_FAILURE() << "an unreadable CA file accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/overpass-ca.pem"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_store(io, "consul://h:1", ca), std::invalid_argument) << "a CA file without TLS is a mistake";
    store_options so;
    so.token_file = "/nonexistent/overpass-token";
    EXPECT_THROW(make_store(io, "consul://h:1", so), std::invalid_argument);
    EXPECT_THROW(make_store(io, "etcd://h:1", so), std::invalid_argument) << "a token file with etcd is a mistake";
}

TEST(consul_errors, errors_name_the_server_and_the_cause) {
    asio::io_context io;
    const uint16_t closed = free_port();
    auto s = make_store(io, "consul://127.0.0.1:" + std::to_string(closed) + "/x");
    try {
        run(io, s->list("a/"));
        FAIL() << "no error";
    } catch (const store_error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("consul at 127.0.0.1:" + std::to_string(closed) + ": connection refused"), std::string::npos)
            << msg;
    }
}

// ---------------------------------------------------------------- consul over TLS

// The TLS failure modes, against the HTTPS fake (and the plain one). Each must be a
// store_error naming the server and the cause, well within the request timeout.
class consul_tls : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string why = shared_fake_consul_tls().ensure_started({}, true);
        ASSERT_TRUE(why.empty()) << why;
    }

    // The error text of a list() through `s`; fails the test if it succeeds.
    std::string list_error(store& s) {
        try {
            run(io, s.list("tls/"), 5s);
            ADD_FAILURE() << "list succeeded";
        } catch (const store_error& e) {
            return e.what();
        }
        return {};
    }

    std::unique_ptr<store> open(const std::string& url, const std::string& ca_file) {
        store_options so;
        so.ca_file = ca_file;
        return make_store(io, url, so);
    }

    std::string https(uint16_t port) const { return "consul+https://127.0.0.1:" + std::to_string(port) + "/tls"; }
    uint16_t port() const { return shared_fake_consul_tls().port(); }

    asio::io_context io;
};

TEST_F(consul_tls, works_through_make_store_with_the_right_ca) {
    auto s = open(https(port()), shared_fake_consul_tls().ca_file());
    const std::string k = "k-" + std::to_string(::getpid());
    ASSERT_TRUE(run(io, s->create(k, "v")));
    const kv_snapshot snap = run(io, s->list(k));
    ASSERT_EQ(snap.items.size(), 1u);
    EXPECT_EQ(snap.items[0].value, "v");
    EXPECT_TRUE(run(io, s->remove(k)));
}

TEST_F(consul_tls, wrong_ca_is_a_clear_verify_error) {
    auto s = open(https(port()), shared_fake_consul_tls().other_ca_file());
    const auto t0 = std::chrono::steady_clock::now();
    const std::string msg = list_error(*s);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
    EXPECT_NE(msg.find("consul at 127.0.0.1:" + std::to_string(port()) + ": TLS handshake failed: certificate verify failed"),
              std::string::npos)
        << msg;
    // A watch reports it through on_error and keeps retrying, without a snapshot.
    watch_log log;
    auto w = s->watch("tls/", log.callbacks());
    EXPECT_TRUE(eventually(io, [&] { return !log.errors.empty(); }, 3s));
    EXPECT_TRUE(log.snapshots.empty());
    if (!log.errors.empty()) {
        EXPECT_NE(log.errors[0].find("certificate verify failed"), std::string::npos) << log.errors[0];
    }
}

TEST_F(consul_tls, host_name_must_match_the_certificate) {
    // The certificate names IP 127.0.0.1 only; "localhost" resolves there but is not named.
    auto s = open("consul+https://localhost:" + std::to_string(port()) + "/tls", shared_fake_consul_tls().ca_file());
    const std::string msg = list_error(*s);
    EXPECT_NE(msg.find("TLS handshake failed: certificate verify failed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mismatch"), std::string::npos) << msg;
}

TEST_F(consul_tls, plain_http_client_against_the_tls_server_is_a_clear_error) {
    auto s = make_store(io, "consul://127.0.0.1:" + std::to_string(port()) + "/tls");
    const auto t0 = std::chrono::steady_clock::now();
    const std::string msg = list_error(*s);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
    EXPECT_NE(msg.find("consul at 127.0.0.1:" + std::to_string(port()) + ": "), std::string::npos) << msg;
    EXPECT_NE(msg.find("GET /v1/kv/tls/"), std::string::npos) << msg;
}

TEST_F(consul_tls, tls_client_against_a_plain_server_is_a_clear_error) {
    const std::string why = shared_fake_consul().ensure_started();
    ASSERT_TRUE(why.empty()) << why;
    auto s = open(https(shared_fake_consul().port()), shared_fake_consul_tls().ca_file());
    const auto t0 = std::chrono::steady_clock::now();
    const std::string msg = list_error(*s);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
    EXPECT_NE(msg.find("consul at 127.0.0.1:" + std::to_string(shared_fake_consul().port()) + ": TLS handshake failed"),
              std::string::npos)
        << msg;
}

TEST_F(consul_tls, handshake_is_bounded_by_the_request_timeout) {
    fake_server hung(io, "", true);   // accepts, never answers the ClientHello
    consul_store_options o;
    o.tls = true;
    o.ca_file = shared_fake_consul_tls().ca_file();
    o.request_timeout = 300ms;
    consul_store s(io, "127.0.0.1", hung.port(), "", o);
    const auto t0 = std::chrono::steady_clock::now();
    const std::string msg = list_error(s);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_NE(msg.find("no answer within 300 ms (TLS handshake)"), std::string::npos) << msg;
}

} // namespace

// ---------------------------------------------------------------- a DNS server that does not answer

namespace {

// A store named by a host name whose DNS server never answers: the request must fail
// within its own timeout, not the resolver's (getaddrinfo, which asio runs on a thread
// of its own, cannot be interrupted once it has started). Needs such a resolver:
// tests/ctl/slow_resolver.sh runs this binary in private mount and network namespaces
// whose resolv.conf names a server behind a dummy interface, with OVP_SLOW_RESOLVER=1;
// anywhere else the test is skipped.
TEST(slow_resolver, a_name_without_an_answer_fails_within_the_request_timeout) {
    if (std::getenv("OVP_SLOW_RESOLVER") == nullptr)
        GTEST_SKIP() << "run by tests/ctl/slow_resolver.sh";
    asio::io_context io;
    consul_store_options o;
    o.request_timeout = 300ms;
    consul_store s(io, "store.overpass.test", 8500, "", o);
    const auto t0 = std::chrono::steady_clock::now();
    std::string msg;
    try {
        run(io, s.list("a/"), 10s);
        ADD_FAILURE() << "list succeeded";
    } catch (const store_error& e) {
        msg = e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "the resolver's own timeout is 3 s";
    EXPECT_NE(msg.find("no answer within 300 ms (resolve)"), std::string::npos) << msg;
}

} // namespace
