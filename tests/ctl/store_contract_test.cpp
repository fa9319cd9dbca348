// SPDX-License-Identifier: Apache-2.0
// runs on: ctl test binary (no EAL, no root; loopback only)
//
// The store contract (store.hpp), run identically against every backend:
//  - file:  a file_store in a temp dir with an injected clock;
//  - etcd:  a real etcd (/usr/bin/etcd, or $OVERPASS_ETCD) started once per binary on
//           free loopback ports, on first use, and stopped by PID at exit (data dir removed);
//  - (next) consul: see all_backends() for where the fake Consul plugs in.
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
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

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

struct backend_param {
    std::string name;
    std::function<std::unique_ptr<backend>()> make;
};

// Add a backend here. The fake Consul (tests/ctl/fake_consul/fake_consul.py) plugs in as
//   {"consul", [] { return std::make_unique<consul_backend>(); }}
// where consul_backend starts the fake once per binary (like etcd_server: free port,
// kill by PID at exit), opens consul_store instances on it, implements advance() with
// the fake's clock/fault endpoint and revoke() with PUT /v1/session/destroy/<id>.
std::vector<backend_param> all_backends() {
    return {
        {"file", [] { return std::make_unique<file_backend>(); }},
        {"etcd", [] { return std::make_unique<etcd_backend>(); }},
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
}

TEST_P(store_contract, on_lost_fires_when_revoked_behind_the_handles_back) {
    auto lease = run(io, a->open_liveness("host-a", 2s));
    int lost = 0;
    lease->on_lost([&] { lost++; });
    ASSERT_TRUE(run(io, a->create(k("eph"), "x", lease.get())));
    be->revoke(io, *lease);
    ASSERT_TRUE(eventually(io, [&] { return lost > 0; }, 5s)) << "the background renewal must notice";
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

} // namespace
