// SPDX-License-Identifier: Apache-2.0
// runs on: unit tests (no EAL)
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "control/store/file_store.hpp"
#include "control/store/keys.hpp"
#include "tests/unit/test_support.hpp"

using namespace overpass::ctl;
using overpass::test::run;
using overpass::test::run_for;
using overpass::test::run_until;
using overpass::test::temp_dir;
using namespace std::chrono_literals;

namespace {

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

struct file_store_test : ::testing::Test {
    temp_dir dir;
    std::string path = dir.file("store.json");
    double now = 1000.0;
    boost::asio::io_context io;
    file_store_options opts() {
        file_store_options o;
        o.clock = [this] { return now; };
        o.poll_interval = 10ms;
        return o;
    }
    file_store a{io, path, opts()};
    file_store b{io, path, opts()};

    std::set<std::string> keys_in(file_store& s, const std::string& prefix = "") {
        std::set<std::string> out;
        for (const auto& i : run(io, s.list(prefix)).items)
            out.insert(i.key);
        return out;
    }
};

} // namespace

TEST_F(file_store_test, create_is_create_only) {
    EXPECT_TRUE(run(io, a.create("t/k", "v1")));
    EXPECT_FALSE(run(io, b.create("t/k", "v2")));
    const kv_snapshot s = run(io, b.list("t/"));
    ASSERT_EQ(s.items.size(), 1u);
    EXPECT_EQ(s.items[0].value, "v1");
    EXPECT_EQ(s.items[0].create_rev, s.revision);
    EXPECT_EQ(s.items[0].mod_rev, s.revision);
    EXPECT_THROW(run(io, a.create("t/bad key", "v")), std::invalid_argument);
}

TEST_F(file_store_test, txn_is_all_or_nothing) {
    ASSERT_TRUE(run(io, a.create("t/a", "1")));
    const uint64_t rev = run(io, a.list("t/")).revision;
    std::vector<txn_op> ops{txn_op::create("t/b", "2"), txn_op::create("t/a", "again"), txn_op::create("t/c", "3")};
    const txn_result r = run(io, b.txn(ops));
    EXPECT_FALSE(r.succeeded);
    EXPECT_EQ(r.failed_key, "t/a");
    EXPECT_EQ(keys_in(a, "t/"), std::set<std::string>{"t/a"});
    EXPECT_EQ(run(io, a.list("t/")).revision, rev);

    std::vector<txn_op> ok{txn_op::create("t/b", "2"), txn_op::create("t/c", "3"), txn_op::remove("t/a")};
    EXPECT_TRUE(run(io, b.txn(ok)).succeeded);
    EXPECT_EQ(keys_in(a, "t/"), (std::set<std::string>{"t/b", "t/c"}));
}

TEST_F(file_store_test, remove_with_mod_rev_compares) {
    ASSERT_TRUE(run(io, a.create("t/a", "1")));
    const uint64_t rev = run(io, a.list("t/a")).items.at(0).mod_rev;
    EXPECT_FALSE(run(io, b.remove("t/a", rev + 7)));
    EXPECT_EQ(keys_in(a).size(), 1u);
    EXPECT_TRUE(run(io, b.remove("t/a", rev)));
    EXPECT_TRUE(keys_in(a).empty());
    EXPECT_FALSE(run(io, b.remove("t/a", rev)));   // absent + compare: fails
    EXPECT_TRUE(run(io, b.remove("t/a")));         // absent, unconditional: fine
}

TEST_F(file_store_test, ephemeral_keys_expire_without_renewal) {
    auto lease = run(io, a.open_liveness("h1", 10s));
    bool lost = false;
    lease->on_lost([&] { lost = true; });
    ASSERT_TRUE(run(io, a.create("t/eph", "x", lease.get())));
    ASSERT_TRUE(run(io, a.create("t/persist", "y")));

    now += 8;
    EXPECT_TRUE(run(io, lease->renew()));   // expiry now 1018
    now += 9;                                // 1017: still alive
    ASSERT_TRUE(run(io, b.create("t/other", "z")));
    EXPECT_TRUE(keys_in(b, "t/").contains("t/eph"));

    now += 2;                                // 1019: expired; b's next mutation purges it
    ASSERT_TRUE(run(io, b.create("t/other2", "z")));
    EXPECT_EQ(keys_in(b, "t/"), (std::set<std::string>{"t/other", "t/other2", "t/persist"}));
    EXPECT_FALSE(run(io, lease->renew()));
    EXPECT_TRUE(lost);
    EXPECT_FALSE(lease->alive());
    EXPECT_THROW(run(io, a.create("t/eph2", "x", lease.get())), store_error);
}

TEST_F(file_store_test, release_deletes_bound_keys_at_once) {
    auto lease = run(io, a.open_liveness("h1", 10s));
    ASSERT_TRUE(run(io, a.create("t/eph", "x", lease.get())));
    run(io, lease->release());
    EXPECT_TRUE(keys_in(b).empty());
    run(io, lease->release());   // idempotent
}

TEST_F(file_store_test, watch_sees_the_other_instances_writes) {
    std::vector<std::string> events;
    int snapshots = 0;
    auto w = b.watch("t/", watch_callbacks{
                               [&](const kv_snapshot& s) {
                                   snapshots++;
                                   events.push_back("snapshot " + std::to_string(s.items.size()));
                               },
                               [&](std::span<const kv_delta> d, uint64_t) {
                                   for (const auto& x : d)
                                       events.push_back((x.what == kv_delta::kind::put ? "put " : "del ") + x.item.key +
                                                        (x.what == kv_delta::kind::put ? "=" + x.item.value : ""));
                               },
                               {}});
    // Each step waits for the watch's delivery (polls every 10 ms): a fixed 50 ms is
    // not enough on a loaded machine under ASan, and a put and its remove caught by one
    // poll would cancel out.
    ASSERT_TRUE(run_until(io, [&] { return !events.empty(); })) << "no snapshot";
    ASSERT_TRUE(run(io, a.create("t/k1", "v1")));
    ASSERT_TRUE(run(io, a.create("other/k", "ignored")));
    ASSERT_TRUE(run_until(io, [&] { return events.size() >= 2; })) << ::testing::PrintToString(events);
    ASSERT_TRUE(run(io, a.remove("t/k1")));
    ASSERT_TRUE(run_until(io, [&] { return events.size() >= 3; })) << ::testing::PrintToString(events);
    run_for(io, 50ms);   // nothing else may arrive
    EXPECT_EQ(events, (std::vector<std::string>{"snapshot 0", "put t/k1=v1", "del t/k1"}));
    EXPECT_EQ(snapshots, 1);

    w.reset();   // cancelled: no more callbacks
    ASSERT_TRUE(run(io, a.create("t/k2", "v2")));
    run_for(io, 50ms);
    EXPECT_EQ(events.size(), 3u);
}

TEST_F(file_store_test, garbage_file_is_an_error_not_a_crash_nor_a_wipe) {
    ASSERT_TRUE(run(io, a.create("t/k", "v")));
    std::vector<std::string> errors;
    std::vector<std::string> seen;
    auto w = b.watch("t/", watch_callbacks{[&](const kv_snapshot& s) { seen.push_back("snapshot " + std::to_string(s.items.size())); },
                                           [&](std::span<const kv_delta> d, uint64_t) {
                                               for (const auto& x : d)
                                                   seen.push_back(x.item.key);
                                           },
                                           [&](const std::string& e) { errors.push_back(e); }});
    ASSERT_TRUE(run_until(io, [&] { return !seen.empty(); })) << "no snapshot";
    const std::string good = slurp(path);
    { std::ofstream(path, std::ios::trunc) << "{\"format\": garbage"; }
    ASSERT_TRUE(run_until(io, [&] { return !errors.empty(); })) << "the garbage was not reported";
    run_for(io, 50ms);   // more polls of the same bad version: no second report
    EXPECT_THROW(run(io, a.list("t/")), store_error);
    EXPECT_THROW(run(io, a.create("t/x", "v")), store_error);
    EXPECT_EQ(slurp(path), "{\"format\": garbage");   // never overwritten
    ASSERT_EQ(errors.size(), 1u) << "each bad version is reported once";
    EXPECT_NE(errors[0].find("unreadable"), std::string::npos) << errors[0];

    { std::ofstream(path, std::ios::trunc) << good; }   // repaired: the watch carries on
    run_for(io, 50ms);
    ASSERT_TRUE(run(io, a.create("t/x", "v")));
    ASSERT_TRUE(run_until(io, [&] { return seen.size() >= 2; })) << ::testing::PrintToString(seen);
    run_for(io, 50ms);   // nothing else may arrive
    EXPECT_EQ(seen, (std::vector<std::string>{"snapshot 1", "t/x"}));
}

// Removing the file is an outage, not an empty store: nothing vanishes from a watcher's
// view, writes fail instead of starting a new empty file, and when the file is back the
// watch carries on from it.
TEST_F(file_store_test, a_removed_file_is_an_outage_not_an_empty_store) {
    ASSERT_TRUE(run(io, a.create("t/k", "v")));
    std::vector<std::string> errors;
    std::vector<std::string> seen;
    auto w = b.watch("t/", watch_callbacks{[&](const kv_snapshot& s) { seen.push_back("snapshot " + std::to_string(s.items.size())); },
                                           [&](std::span<const kv_delta> d, uint64_t) {
                                               for (const auto& x : d)
                                                   seen.push_back((x.what == kv_delta::kind::del ? "del " : "put ") + x.item.key);
                                           },
                                           [&](const std::string& e) { errors.push_back(e); }});
    ASSERT_TRUE(run_until(io, [&] { return !seen.empty(); })) << "no snapshot";
    const std::string good = slurp(path);
    std::filesystem::remove(path);
    ASSERT_TRUE(run_until(io, [&] { return !errors.empty(); })) << "the removal was not reported";
    EXPECT_NE(errors[0].find("disappeared"), std::string::npos) << errors[0];
    EXPECT_THROW(run(io, a.list("t/")), store_error);
    EXPECT_THROW(run(io, a.create("t/x", "v")), store_error);
    EXPECT_FALSE(std::filesystem::exists(path)) << "a write must not start a new, empty store";
    EXPECT_EQ(seen, std::vector<std::string>{"snapshot 1"}) << "nothing may vanish from the view";

    { std::ofstream(path, std::ios::trunc) << good; }   // restored
    run_for(io, 50ms);
    EXPECT_EQ(keys_in(a, "t/"), std::set<std::string>{"t/k"});
    ASSERT_TRUE(run(io, a.create("t/x", "v")));
    ASSERT_TRUE(run_until(io, [&] { return seen.size() >= 2 && seen.back() == "put t/x"; })) << ::testing::PrintToString(seen);
}

TEST(file_store_race, concurrent_claims_never_give_a_key_to_both) {
    temp_dir dir;
    const std::string path = dir.file("store.json");
    constexpr int n = 150;
    std::vector<int> won[2];
    auto claimer = [&](int who) {
        boost::asio::io_context io;
        file_store s(io, path);
        for (int i = 0; i < n; i++)
            if (run(io, s.create("claims/" + std::to_string(i), std::to_string(who))))
                won[who].push_back(i);
    };
    std::thread t0(claimer, 0), t1(claimer, 1);
    t0.join();
    t1.join();
    std::set<int> all(won[0].begin(), won[0].end());
    for (int i : won[1])
        EXPECT_TRUE(all.insert(i).second) << "claim " << i << " given to both";
    EXPECT_EQ(all.size(), static_cast<size_t>(n));
    boost::asio::io_context io;
    file_store s(io, path);
    const kv_snapshot snap = run(io, s.list("claims/"));
    ASSERT_EQ(snap.items.size(), static_cast<size_t>(n));
    for (const auto& item : snap.items) {
        const int i = std::stoi(item.key.substr(7));
        const int owner = std::stoi(item.value);
        EXPECT_NE(std::find(won[owner].begin(), won[owner].end(), i), won[owner].end()) << item.key;
    }
}

TEST(make_store, parses_urls) {
    boost::asio::io_context io;
    temp_dir dir;
    auto s = make_store(io, "file://" + dir.file("s.json"));
    EXPECT_EQ(s->url(), "file://" + dir.file("s.json"));
    auto message = [&](const std::string& url) {
        try {
            make_store(io, url);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_EQ(message("consul://127.0.0.1:8500/overpass"), "no error");   // connects lazily
    EXPECT_NE(message("consul://127.0.0.1:8500/p?token=secret").find("token"), std::string::npos);
    EXPECT_EQ(message("etcd://127.0.0.1:2379"), "no error");   // connects lazily
    EXPECT_NE(message("etcd://user:pw@127.0.0.1:2379").find("etcd"), std::string::npos);
    EXPECT_NE(message("store.json").find("invalid store URL"), std::string::npos);
    EXPECT_NE(message("file://relative/path").find("absolute path"), std::string::npos);
    EXPECT_NE(message("redis://x").find("unknown scheme"), std::string::npos);
}
