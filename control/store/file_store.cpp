// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/store/file_store.hpp"

#include "control/store/keys.hpp"
#include "control/store/liveness_base.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <system_error>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

namespace overpass::ctl {

namespace asio = boost::asio;

namespace {

struct entry {
    std::string value;
    uint64_t create_rev = 0;
    uint64_t mod_rev = 0;
    std::string session;      // empty: persistent
};

struct session {
    std::string host;
    int64_t ttl = 0;
    double expiry = 0;
};

struct file_state {
    uint64_t revision = 0;
    std::map<std::string, entry> keys;
    std::map<std::string, session> sessions;
};

constexpr const char* format_tag = "overpass-file-store/1";

std::string errno_text(int err) { return std::strerror(err); }

// RAII file descriptor.
struct fd_guard {
    int fd = -1;
    explicit fd_guard(int f) : fd(f) {}
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    ~fd_guard() {
        if (fd >= 0)
            ::close(fd);
    }
};

file_state parse_state(const std::string& path, const std::string& text) {
    file_state st;
    try {
        const auto j = nlohmann::json::parse(text);
        if (!j.is_object() || j.value("format", "") != format_tag)
            throw std::invalid_argument(std::string("missing \"format\": \"") + format_tag + "\"");
        st.revision = j.at("revision").get<uint64_t>();
        for (const auto& [k, v] : j.at("keys").items())
            st.keys[k] = entry{v.at("value").get<std::string>(), v.at("create_rev").get<uint64_t>(),
                               v.at("mod_rev").get<uint64_t>(), v.value("session", "")};
        for (const auto& [id, v] : j.at("sessions").items())
            st.sessions[id] = session{v.at("host").get<std::string>(), v.at("ttl").get<int64_t>(),
                                      v.at("expiry").get<double>()};
    } catch (const std::exception& e) {
        throw store_error("store file " + path + " is unreadable (" + e.what() + "); not touching it");
    }
    return st;
}

std::string serialise(const file_state& st) {
    nlohmann::json keys = nlohmann::json::object();
    for (const auto& [k, e] : st.keys) {
        nlohmann::json v{{"value", e.value}, {"create_rev", e.create_rev}, {"mod_rev", e.mod_rev}};
        if (!e.session.empty())
            v["session"] = e.session;
        keys[k] = std::move(v);
    }
    nlohmann::json sessions = nlohmann::json::object();
    for (const auto& [id, s] : st.sessions)
        sessions[id] = {{"host", s.host}, {"ttl", s.ttl}, {"expiry", s.expiry}};
    return nlohmann::json{{"format", format_tag}, {"revision", st.revision}, {"keys", std::move(keys)},
                          {"sessions", std::move(sessions)}}
        .dump(1);
}

// Identity of the file's current contents: every write is a rename, so the inode changes.
struct file_sig {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    int64_t mtime_ns = -1;
    bool operator==(const file_sig&) const = default;
};

} // namespace

struct file_store::core {
    std::string path;
    std::string lock_path;
    std::string tmp_path;
    std::function<double()> clock;
    std::chrono::milliseconds poll_interval;

    /// The file was there once (this process read or wrote it).
    mutable bool seen = false;

    double now() const { return clock(); }

    // Missing file before it was ever seen: an empty store (the first run). Missing after:
    // someone removed it, which is an outage like an unreadable file, not an empty store
    // (every network would vanish): store_error until the file is back.
    std::optional<file_state> read(file_sig* sig = nullptr) const {
        fd_guard f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (f.fd < 0) {
            if (errno == ENOENT && !seen)
                return std::nullopt;
            if (errno == ENOENT)
                throw store_error("store file " + path + " has disappeared; keeping the last view until it is back");
            throw store_error("cannot open store file " + path + ": " + errno_text(errno));
        }
        struct stat sb {};
        if (::fstat(f.fd, &sb) != 0)
            throw store_error("cannot stat store file " + path + ": " + errno_text(errno));
        std::string text(static_cast<size_t>(sb.st_size), '\0');
        size_t done = 0;
        while (done < text.size()) {
            const ssize_t n = ::read(f.fd, text.data() + done, text.size() - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw store_error("cannot read store file " + path + ": " + errno_text(errno));
            if (n == 0)
                break;
            done += static_cast<size_t>(n);
        }
        text.resize(done);
        if (sig != nullptr)
            *sig = file_sig{sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim.tv_sec * 1'000'000'000LL + sb.st_mtim.tv_nsec};
        file_state st = parse_state(path, text);
        seen = true;
        return st;
    }

    void write(const file_state& st) const {
        const std::string text = serialise(st);
        {
            fd_guard f(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            if (f.fd < 0)
                throw store_error("cannot create " + tmp_path + ": " + errno_text(errno));
            size_t done = 0;
            while (done < text.size()) {
                const ssize_t n = ::write(f.fd, text.data() + done, text.size() - done);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0)
                    throw store_error("cannot write " + tmp_path + ": " + errno_text(errno));
                done += static_cast<size_t>(n);
            }
            if (::fsync(f.fd) != 0)
                throw store_error("cannot fsync " + tmp_path + ": " + errno_text(errno));
        }
        if (::rename(tmp_path.c_str(), path.c_str()) != 0)
            throw store_error("cannot rename " + tmp_path + " to " + path + ": " + errno_text(errno));
        seen = true;
    }

    // Drops expired sessions and their keys. Returns whether any key went away.
    bool purge(file_state& st) const {
        const double t = now();
        bool keys_changed = false;
        for (auto it = st.sessions.begin(); it != st.sessions.end();) {
            if (it->second.expiry > t) {
                ++it;
                continue;
            }
            keys_changed |= drop_session_keys(st, it->first);
            it = st.sessions.erase(it);
        }
        return keys_changed;
    }

    static bool drop_session_keys(file_state& st, const std::string& id) {
        bool any = false;
        for (auto it = st.keys.begin(); it != st.keys.end();) {
            if (it->second.session == id) {
                it = st.keys.erase(it);
                any = true;
            } else {
                ++it;
            }
        }
        return any;
    }

    enum class change { none, sessions, keys };

    // Read-modify-write under the lock. `fn(state, next_revision)` returns what it changed;
    // a key change (including purged keys) bumps the revision, a session-only change
    // (renewal) does not, as with etcd lease keep-alives.
    template <class Fn>
    auto mutate(Fn&& fn) const {
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
        fd_guard lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
        if (lock.fd < 0)
            throw store_error("cannot open lock file " + lock_path + ": " + errno_text(errno));
        while (::flock(lock.fd, LOCK_EX) != 0) {
            if (errno != EINTR)
                throw store_error("cannot lock " + lock_path + ": " + errno_text(errno));
        }
        // The lock goes with the descriptor (closed by fd_guard, also on exceptions).
        file_state st = read().value_or(file_state{});
        const bool purged = purge(st);
        const size_t sessions_before = st.sessions.size();
        auto [what, result] = fn(st, st.revision + 1);
        if (purged || what == change::keys)
            st.revision++;
        if (purged || what != change::none || sessions_before != st.sessions.size())
            write(st);
        return result;
    }
};

namespace {

using core_ptr = std::shared_ptr<file_store::core>;

struct file_session_state : liveness_state {
    file_session_state(asio::io_context& io, core_ptr c, std::string session_id, std::chrono::seconds ttl)
        : liveness_state(io.get_executor(), std::move(session_id), ttl), core(std::move(c)) {}
    core_ptr core;
};

class file_liveness final : public liveness_base<file_session_state> {
public:
    using state = file_session_state;

    file_liveness(asio::io_context& io, core_ptr c, std::string id, std::chrono::seconds ttl)
        : liveness_base(std::make_shared<state>(io, std::move(c), std::move(id), ttl)) {
        asio::co_spawn(io, renew_loop(st_, [](std::shared_ptr<state> s) -> asio::awaitable<bool> {
                           co_return renew_now(*s);
                       }),
                       asio::detached);
    }

    asio::awaitable<bool> renew() override { co_return renew_now(*st_); }

    asio::awaitable<void> release() override {
        auto& s = *st_;
        s.stop();
        if (!s.alive)
            co_return;
        s.alive = false;
        s.core->mutate([&](file_state& fs, uint64_t) {
            const bool keys = file_store::core::drop_session_keys(fs, s.id);
            const bool had = fs.sessions.erase(s.id) > 0;
            return std::pair{keys ? file_store::core::change::keys
                                  : had ? file_store::core::change::sessions : file_store::core::change::none,
                             0};
        });
    }

    const core_ptr& core() const { return st_->core; }

private:
    static bool renew_now(state& s) {
        if (!s.alive)
            return false;
        const bool ok = s.core->mutate([&](file_state& fs, uint64_t) {
            auto it = fs.sessions.find(s.id);   // expired ones were purged already
            if (it == fs.sessions.end())
                return std::pair{file_store::core::change::none, false};
            it->second.expiry = s.core->now() + static_cast<double>(it->second.ttl);
            return std::pair{file_store::core::change::sessions, true};
        });
        if (!ok)
            s.lose();
        return ok;
    }
};

class file_watch final : public watch_handle {
public:
    struct state {
        core_ptr core;
        std::string prefix;
        watch_callbacks cbs;
        asio::steady_timer timer;
        bool cancelled = false;
        bool delivered = false;
        std::optional<file_sig> last_sig;
        std::optional<file_sig> last_error_sig;
        uint64_t revision = 0;
        std::map<std::string, kv_item> items;
        state(asio::io_context& io, core_ptr c, std::string p, watch_callbacks w)
            : core(std::move(c)), prefix(std::move(p)), cbs(std::move(w)), timer(io) {}
    };

    file_watch(asio::io_context& io, core_ptr c, std::string prefix, watch_callbacks cbs)
        : st_(std::make_shared<state>(io, std::move(c), std::move(prefix), std::move(cbs))) {
        asio::co_spawn(io, loop(st_), asio::detached);
    }
    ~file_watch() override {
        st_->cancelled = true;
        st_->timer.cancel();
    }

private:
    static void poll(state& s) {
        file_sig sig;
        std::optional<file_state> fs;
        try {
            fs = s.core->read(&sig);
        } catch (const store_error& e) {
            if (s.last_error_sig != sig && s.cbs.on_error)   // report each bad version once
                s.cbs.on_error(e.what());
            s.last_error_sig = sig;
            return;
        }
        if (!fs)
            sig = file_sig{};
        if (s.delivered && s.last_sig == sig)
            return;
        s.last_sig = sig;
        s.last_error_sig.reset();
        const file_state st = fs.value_or(file_state{});

        std::map<std::string, kv_item> next;
        for (auto it = st.keys.lower_bound(s.prefix); it != st.keys.end() && it->first.starts_with(s.prefix); ++it)
            next.emplace(it->first, kv_item{it->first, it->second.value, it->second.create_rev, it->second.mod_rev});

        // A revision going backwards means the file was replaced: resync.
        if (!s.delivered || st.revision < s.revision) {
            s.delivered = true;
            s.items = std::move(next);
            s.revision = st.revision;
            kv_snapshot snap{{}, st.revision};
            for (const auto& [k, v] : s.items)
                snap.items.push_back(v);
            s.cbs.on_snapshot(snap);
            return;
        }
        std::vector<kv_delta> deltas;
        for (const auto& [k, old] : s.items)
            if (!next.contains(k))
                deltas.push_back({kv_delta::kind::del, old});
        for (const auto& [k, v] : next) {
            auto it = s.items.find(k);
            if (it == s.items.end() || it->second.mod_rev != v.mod_rev || it->second.value != v.value)
                deltas.push_back({kv_delta::kind::put, v});
        }
        s.items = std::move(next);
        s.revision = st.revision;
        if (!deltas.empty())
            s.cbs.on_changes(deltas, st.revision);
    }

    static asio::awaitable<void> loop(std::shared_ptr<state> s) {
        while (!s->cancelled) {
            try {
                poll(*s);
            } catch (const std::exception& e) {
                // A throwing callback must not end the watch.
                if (s->cbs.on_error && !s->cancelled)
                    s->cbs.on_error(std::string("watch callback failed: ") + e.what());
            }
            if (s->cancelled)
                break;
            s->timer.expires_after(s->core->poll_interval);
            boost::system::error_code ec;
            co_await s->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    std::shared_ptr<state> st_;
};

} // namespace

file_store::file_store(asio::io_context& io, std::string path, file_store_options opts)
    : io_(io), core_(std::make_shared<core>()) {
    core_->path = path;
    core_->lock_path = path + ".lock";
    core_->tmp_path = path + ".tmp";
    core_->clock = opts.clock ? std::move(opts.clock) : [] {
        return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    };
    core_->poll_interval = opts.poll_interval;
}

file_store::~file_store() = default;

std::string file_store::url() const { return "file://" + core_->path; }

asio::awaitable<kv_snapshot> file_store::list(std::string prefix) {
    const file_state st = core_->read().value_or(file_state{});
    kv_snapshot snap{{}, st.revision};
    for (auto it = st.keys.lower_bound(prefix); it != st.keys.end() && it->first.starts_with(prefix); ++it)
        snap.items.push_back({it->first, it->second.value, it->second.create_rev, it->second.mod_rev});
    co_return snap;
}

asio::awaitable<txn_result> file_store::txn(std::vector<txn_op> ops) {
    check_txn_ops<file_liveness>(ops, core_, check_store_key);
    co_return core_->mutate([&](file_state& st, uint64_t rev) {
        txn_result r;
        // Check every condition first: all or nothing.
        for (const auto& op : ops) {
            auto it = st.keys.find(op.key);
            const bool exists = it != st.keys.end();
            bool fails = false;
            if (op.what == txn_op::kind::create)
                fails = exists;
            else if (op.what == txn_op::kind::remove)
                fails = op.mod_rev != 0 && (!exists || it->second.mod_rev != op.mod_rev);
            else if (op.what == txn_op::kind::check)
                fails = op.mod_rev == 0 ? exists : !exists || it->second.mod_rev != op.mod_rev;
            if (fails) {
                r.failed_key = op.key;
                r.revision = st.revision;
                return std::pair{core::change::none, r};
            }
            if (op.lease != nullptr && !st.sessions.contains(op.lease->id()))
                throw store_error("liveness handle " + op.lease->id() + " has expired");
        }
        bool changed = false;
        for (const auto& op : ops) {
            if (op.what == txn_op::kind::create) {
                st.keys[op.key] = entry{op.value, rev, rev, op.lease ? op.lease->id() : std::string{}};
                changed = true;
            } else if (op.what == txn_op::kind::put) {
                auto it = st.keys.find(op.key);
                const uint64_t created = it != st.keys.end() ? it->second.create_rev : rev;
                st.keys[op.key] = entry{op.value, created, rev, std::string{}};
                changed = true;
            } else if (op.what == txn_op::kind::remove) {
                changed |= st.keys.erase(op.key) > 0;
            }
        }
        r.succeeded = true;
        r.revision = changed ? rev : st.revision;
        return std::pair{changed ? core::change::keys : core::change::none, r};
    });
}

asio::awaitable<std::unique_ptr<liveness>> file_store::open_liveness(std::string owner, std::chrono::seconds ttl) {
    if (ttl.count() <= 0)
        throw std::invalid_argument("liveness TTL must be positive");
    const std::string id = random_id();
    core_->mutate([&](file_state& st, uint64_t) {
        st.sessions[id] = session{owner, ttl.count(), core_->now() + static_cast<double>(ttl.count())};
        return std::pair{core::change::sessions, 0};
    });
    co_return std::make_unique<file_liveness>(io_, core_, id, ttl);
}

std::unique_ptr<watch_handle> file_store::watch(std::string prefix, watch_callbacks cbs) {
    if (!cbs.on_snapshot || !cbs.on_changes)
        throw std::invalid_argument("watch needs on_snapshot and on_changes");
    return std::make_unique<file_watch>(io_, core_, std::move(prefix), std::move(cbs));
}

} // namespace overpass::ctl
