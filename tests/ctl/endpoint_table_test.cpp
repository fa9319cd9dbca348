// SPDX-License-Identifier: Apache-2.0
// runs on: init only (test binary: the main thread plays the control thread; plain
// threads play workers registered on the QSBR variable)
//
// The endpoints table (include/overpass/endpoint_table.hpp, its writer in
// control/publish/endpoint_table_writer.cpp) against EAL --no-huge: lookups through the
// workers' function, keys that spill out of their home bucket, deleted entries held
// until a grace period, and readers that must find every key the writer leaves alone
// while it churns the keys around them.
#include <atomic>
#include <cerrno>
#include <memory>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include "control/publish/endpoint_table_writer.hpp"
#include "overpass/tables.hpp"
#include "tests/dp/dp_support.hpp"

using namespace overpass;
using namespace overpass::test;

namespace {

constexpr uint32_t max_threads = 4;

struct qsbr_var {
    qsbr_var() {
        v = static_cast<rte_rcu_qsbr*>(rte_zmalloc(nullptr, rte_rcu_qsbr_get_memsize(max_threads), RTE_CACHE_LINE_SIZE));
        if (v != nullptr)
            rte_rcu_qsbr_init(v, max_threads);
    }
    ~qsbr_var() { rte_free(v); }
    rte_rcu_qsbr* v = nullptr;
};

/// A worker's registration on the QSBR variable, online from construction to destruction
/// (also when an ASSERT returns early).
struct online_reader {
    online_reader(rte_rcu_qsbr* v, unsigned id) : v(v), id(id) {
        rte_rcu_qsbr_thread_register(v, id);
        rte_rcu_qsbr_thread_online(v, id);
    }
    ~online_reader() {
        rte_rcu_qsbr_thread_offline(v, id);
        rte_rcu_qsbr_thread_unregister(v, id);
    }
    void quiescent() { rte_rcu_qsbr_quiescent(v, id); }
    rte_rcu_qsbr* v;
    unsigned id;
};

uint32_t remote(uint16_t vtep_slot) {
    return endpoint_value{endpoint_value::location::remote, vtep_slot}.word();
}

uint64_t nth_key(uint32_t i, uint16_t slot = 1) {
    const rte_ether_addr m{{0x02, 0x42, static_cast<uint8_t>(i >> 24), static_cast<uint8_t>(i >> 16),
                            static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)}};
    return endpoint_key(slot, m);
}

uint32_t lookup(const endpoint_table& t, uint64_t key) { return endpoint_lookup(t, key, endpoint_hash(key)); }

/// `n` keys whose home is bucket `home`, from key index `from` on.
std::vector<uint64_t> keys_homed_at(const endpoint_table& t, uint32_t home, size_t n, uint32_t from = 0) {
    std::vector<uint64_t> out;
    for (uint32_t i = from; out.size() < n; i++)
        if (endpoint_home_index(t, endpoint_hash(nth_key(i))) == home)
            out.push_back(nth_key(i));
    return out;
}

// crc32c_u64/u32 (the CRC instruction itself where the compiler may use it) give what
// DPDK's rte_hash_crc_8byte/4byte give: the same CRC32C, argument order included.
TEST(crc32c, matches_rte_hash_crc) {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 100000; i++) {
        const uint64_t data = rng();
        const auto init = static_cast<uint32_t>(rng());
        ASSERT_EQ(crc32c_u64(data, init), rte_hash_crc_8byte(data, init)) << data << " " << init;
        ASSERT_EQ(crc32c_u32(static_cast<uint32_t>(data), init), rte_hash_crc_4byte(static_cast<uint32_t>(data), init));
    }
    EXPECT_EQ(crc32c_u64(0, 0), rte_hash_crc_8byte(0, 0));
    EXPECT_EQ(crc32c_u32(~0u, ~0u), rte_hash_crc_4byte(~0u, ~0u));
}

TEST(endpoint_table, keys_carry_the_mac_in_wire_order_and_the_slot_above) {
    const rte_ether_addr m{{0x02, 0x42, 0x0a, 0x00, 0x02, 0x07}};
    const uint64_t k = endpoint_key(0x3ff, m);
    uint8_t bytes[8];
    std::memcpy(bytes, &k, sizeof(bytes));
    EXPECT_EQ(0, std::memcmp(bytes, m.addr_bytes, 6)) << "a frame's first 6 bytes, loaded little-endian";
    EXPECT_EQ(k >> 48, 0x3ffu);
    EXPECT_NE(k, endpoint_table::empty_key);
    EXPECT_NE(k, endpoint_table::dead_key);
}

TEST(endpoint_table, adds_overwrites_and_deletes) {
    qsbr_var q;
    auto w = ctl::endpoint_table_writer::create("et_basic", 100, q.v);
    ASSERT_NE(w, nullptr);
    const endpoint_table& t = w->table();
    EXPECT_EQ(w->buckets(), 50u) << "a bucket per two keys";

    EXPECT_EQ(w->upsert(nth_key(1), 0, 0), -EINVAL) << "0 is 'not there'";
    EXPECT_EQ(w->upsert(endpoint_table::empty_key, remote(1), 0), -EINVAL);
    EXPECT_EQ(w->upsert(endpoint_table::dead_key, remote(1), 0), -EINVAL);
    EXPECT_EQ(lookup(t, nth_key(1)), 0u);

    ASSERT_EQ(w->upsert(nth_key(1), remote(7), ip4(10, 0, 0, 1)), 0);
    EXPECT_EQ(lookup(t, nth_key(1)), remote(7));
    EXPECT_EQ(lookup(t, nth_key(1, 2)), 0u) << "the same MAC in another network";
    ASSERT_EQ(w->upsert(nth_key(1), remote(8), ip4(10, 0, 0, 2)), 0);
    EXPECT_EQ(lookup(t, nth_key(1)), remote(8));
    EXPECT_EQ(w->size(), 1u);
    const auto e = w->find(nth_key(1));
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->value, remote(8));
    EXPECT_EQ(e->ip_be, ip4(10, 0, 0, 2));

    EXPECT_TRUE(w->erase(nth_key(1)));
    EXPECT_FALSE(w->erase(nth_key(1)));
    EXPECT_EQ(lookup(t, nth_key(1)), 0u);
    EXPECT_FALSE(w->find(nth_key(1)).has_value());
    EXPECT_EQ(w->size(), 0u);
    EXPECT_EQ(w->dead(), 0u) << "no reader registered: the grace period is over at once";
}

// A full table of random keys: every key found, absent keys not, few keys outside their
// home bucket; the table's bytes per key.
TEST(endpoint_table, full_table_of_random_keys) {
    qsbr_var q;
    constexpr uint32_t n = 200000;
    auto w = ctl::endpoint_table_writer::create("et_full", n, q.v);
    ASSERT_NE(w, nullptr);
    std::mt19937_64 rng(5);
    std::unordered_map<uint64_t, uint32_t> want;
    while (want.size() < n) {
        const uint64_t k = (rng() & 0xffffffffffffULL) | uint64_t{static_cast<uint16_t>(rng() % 1024)} << 48;
        const uint32_t v = remote(static_cast<uint16_t>(rng()));
        if (want.emplace(k, v).second) {
            ASSERT_EQ(w->upsert(k, v, 0), 0);
        }
    }
    EXPECT_EQ(w->size(), n);
    for (const auto& [k, v] : want)
        ASSERT_EQ(lookup(w->table(), k), v);
    for (int i = 0; i < 100000; i++) {
        const uint64_t k = (rng() & 0xffffffffffffULL) | uint64_t{static_cast<uint16_t>(rng() % 1024)} << 48;
        if (want.count(k) == 0) {
            ASSERT_EQ(lookup(w->table(), k), 0u);
        }
    }
    const double spilled = static_cast<double>(w->spilled()) / n;
    std::printf("%u keys in %u buckets: %.2f%% outside their home bucket, %.1f bytes per key\n", n, w->buckets(),
                100 * spilled, static_cast<double>(w->bytes()) / n);
    EXPECT_LT(spilled, 0.02);
}

// Twelve keys with one home bucket fill it and spill into the next two; deleting keys
// anywhere in the chain leaves the others found (also past the deleted entries, which a
// reader that has not reported quiescent keeps in place), and the spill counts return
// to 0.
TEST(endpoint_table, keys_that_spill_stay_found_while_their_neighbours_go) {
    qsbr_var q;
    auto w = ctl::endpoint_table_writer::create("et_spill", 100, q.v);
    ASSERT_NE(w, nullptr);
    const endpoint_table& t = w->table();
    online_reader reader(q.v, 0);
    const uint32_t home = t.n_buckets - 1;   // the last bucket: the chain wraps to bucket 0
    const std::vector<uint64_t> keys = keys_homed_at(t, home, 12);
    for (size_t i = 0; i < keys.size(); i++)
        ASSERT_EQ(w->upsert(keys[i], remote(static_cast<uint16_t>(i)), 0), 0);
    EXPECT_EQ(w->spilled(), 7u);
    EXPECT_EQ(t.buckets[home].spill, 7u);
    EXPECT_EQ(t.buckets[0].spill, 2u);
    EXPECT_EQ(t.buckets[1].spill, 0u);
    for (size_t i = 0; i < keys.size(); i++)
        EXPECT_EQ(lookup(t, keys[i]), remote(static_cast<uint16_t>(i))) << i;

    // Delete the home bucket's keys and the first spilled one: the rest stay found.
    for (size_t i : {0, 1, 2, 3, 4, 5})
        ASSERT_TRUE(w->erase(keys[i]));
    EXPECT_EQ(w->dead(), 6u);
    EXPECT_EQ(t.buckets[home].key[0], endpoint_table::dead_key);
    for (size_t i = 6; i < keys.size(); i++)
        EXPECT_EQ(lookup(t, keys[i]), remote(static_cast<uint16_t>(i))) << i;
    for (size_t i = 0; i < 6; i++)
        EXPECT_EQ(lookup(t, keys[i]), 0u) << i;
    reader.quiescent();
    w->reclaim();
    EXPECT_EQ(w->dead(), 0u);
    // A new key of the same home takes a freed entry in the home bucket.
    const uint64_t fresh = keys_homed_at(t, home, 1, 1000000)[0];
    ASSERT_EQ(w->upsert(fresh, remote(99), 0), 0);
    EXPECT_EQ(lookup(t, fresh), remote(99));
    EXPECT_EQ(t.buckets[home].spill, 6u);
    for (size_t i = 6; i < keys.size(); i++)
        ASSERT_TRUE(w->erase(keys[i]));
    ASSERT_TRUE(w->erase(fresh));
    EXPECT_EQ(t.buckets[home].spill, 0u);
    EXPECT_EQ(t.buckets[0].spill, 0u);
    EXPECT_EQ(w->size(), 0u);
    for (const uint64_t k : keys)
        EXPECT_EQ(lookup(t, k), 0u);
}

// Spill counts can all stay above 0 with the table nearly empty: each bucket spilled
// one key into the next, and the keys that filled it went. A lookup of an absent key
// must still end (a walk that stops only at a spill count of 0 never would).
TEST(endpoint_table, a_lookup_ends_when_every_bucket_has_spilled) {
    qsbr_var q;
    auto w = ctl::endpoint_table_writer::create("et_ring", 16, q.v);   // 8 buckets
    ASSERT_NE(w, nullptr);
    const endpoint_table& t = w->table();
    uint32_t from = 0;
    std::vector<uint64_t> kept;
    for (uint32_t b = 0; b < t.n_buckets; b++) {
        uint32_t free_here = 0;
        for (const uint64_t k : t.buckets[b].key)
            free_here += k == endpoint_table::empty_key;
        const std::vector<uint64_t> ks = keys_homed_at(t, b, free_here + 1, from);
        from = 0;
        for (const uint64_t k : ks)
            ASSERT_EQ(w->upsert(k, remote(1), 0), 0);
        kept.push_back(ks.back());   // spilled into the next bucket
        for (size_t i = 0; i + 1 < ks.size(); i++)
            ASSERT_TRUE(w->erase(ks[i]));
    }
    for (uint32_t b = 0; b < t.n_buckets; b++)
        ASSERT_GT(t.buckets[b].spill, 0u) << b;
    EXPECT_EQ(w->size(), t.n_buckets);
    for (const uint64_t k : kept)
        EXPECT_EQ(lookup(t, k), remote(1));
    EXPECT_EQ(lookup(t, nth_key(0, 7)), 0u);
    EXPECT_FALSE(w->find(nth_key(0, 7)).has_value());
    EXPECT_EQ(w->upsert(nth_key(0, 7), remote(2), 0), 0);
}

// Keys crafted to share one home bucket fill it and the max_displacement buckets after
// it; the next one is refused instead of going further, and every placed key is found.
TEST(endpoint_table, keys_are_never_placed_far_from_home) {
    qsbr_var q;
    auto w = ctl::endpoint_table_writer::create("et_far", 400, q.v);   // 200 buckets
    ASSERT_NE(w, nullptr);
    const endpoint_table& t = w->table();
    constexpr uint32_t reach = (endpoint_table::max_displacement + 1) * endpoint_table::ways;
    const std::vector<uint64_t> keys = keys_homed_at(t, 10, reach + 1);
    for (uint32_t i = 0; i < reach; i++)
        ASSERT_EQ(w->upsert(keys[i], remote(static_cast<uint16_t>(i)), 0), 0) << i;
    EXPECT_EQ(w->upsert(keys[reach], remote(1), 0), -ENOSPC);
    EXPECT_EQ(w->size(), reach);
    for (uint32_t i = 0; i < reach; i++)
        EXPECT_EQ(lookup(t, keys[i]), remote(static_cast<uint16_t>(i))) << i;
    EXPECT_EQ(lookup(t, keys[reach]), 0u);
    // Other homes are not affected beyond the filled run.
    const uint64_t other = keys_homed_at(t, 100, 1)[0];
    EXPECT_EQ(w->upsert(other, remote(5), 0), 0);
    EXPECT_EQ(lookup(t, other), remote(5));
}

// A deleted entry stays taken while a reader that may have matched its key has not
// reported quiescent; reclaim() frees it afterwards.
TEST(endpoint_table, a_deleted_entry_waits_for_the_grace_period) {
    qsbr_var q;
    auto w = ctl::endpoint_table_writer::create("et_grace", 100, q.v);
    ASSERT_NE(w, nullptr);
    const endpoint_table& t = w->table();
    online_reader reader(q.v, 0);

    const std::vector<uint64_t> keys = keys_homed_at(t, 3, 6);
    for (size_t i = 0; i < 5; i++)
        ASSERT_EQ(w->upsert(keys[i], remote(static_cast<uint16_t>(i)), 0), 0);
    ASSERT_TRUE(w->erase(keys[0]));
    EXPECT_EQ(w->dead(), 1u);
    EXPECT_EQ(t.buckets[3].key[0], endpoint_table::dead_key);
    EXPECT_EQ(t.buckets[3].value[0], remote(0)) << "a reader that matched the key still reads its value";
    // The home bucket has no free entry until the grace period is over: the new key
    // goes to the next bucket.
    ASSERT_EQ(w->upsert(keys[5], remote(5), 0), 0);
    EXPECT_EQ(t.buckets[4].key[0], keys[5]);
    EXPECT_EQ(t.buckets[3].spill, 1u);
    w->reclaim();
    EXPECT_EQ(w->dead(), 1u) << "the reader has not reported quiescent";

    reader.quiescent();
    w->reclaim();
    EXPECT_EQ(w->dead(), 0u);
    EXPECT_EQ(t.buckets[3].key[0], endpoint_table::empty_key);
    for (size_t i = 1; i < 6; i++)
        EXPECT_EQ(lookup(t, keys[i]), remote(static_cast<uint16_t>(i))) << i;

}

// When deleted entries still in their grace period take the room, upsert says so
// instead of walking a full table; once they are reclaimed the add succeeds.
TEST(endpoint_table, room_held_by_deleted_entries_is_reported) {
    qsbr_var q;
    auto w = ctl::endpoint_table_writer::create("et_room", 16, q.v);   // 8 buckets, 24 live + dead
    ASSERT_NE(w, nullptr);
    online_reader reader(q.v, 0);
    uint32_t i = 0;
    for (; i < 24; i++) {
        ASSERT_EQ(w->upsert(nth_key(i), remote(1), 0), 0) << i;
        ASSERT_TRUE(w->erase(nth_key(i)));
    }
    EXPECT_EQ(w->upsert(nth_key(i), remote(1), 0), -ENOSPC);
    reader.quiescent();
    EXPECT_EQ(w->upsert(nth_key(i), remote(1), 0), 0) << "upsert reclaims first";
    EXPECT_EQ(lookup(w->table(), nth_key(i)), remote(1));
}

// Readers on two threads look up a fixed set of keys in a small table while the writer
// adds and deletes other keys in the same buckets and overwrites the fixed keys'
// values. Every lookup of a fixed key must answer one of its two values.
TEST(endpoint_table, readers_always_find_the_keys_left_alone) {
    qsbr_var q;
    auto w = ctl::endpoint_table_writer::create("et_race", 200, q.v);   // 100 buckets
    ASSERT_NE(w, nullptr);
    const endpoint_table& t = w->table();
    // Fixed keys: three per home bucket, in every fourth of the first 64 buckets; churn
    // keys: ten per home bucket there, so the fixed keys are pushed out of their home
    // buckets too.
    std::vector<uint64_t> fixed, churn;
    for (uint32_t b = 0; b < 64; b += 4) {
        const std::vector<uint64_t> ks = keys_homed_at(t, b, 13);
        fixed.insert(fixed.end(), ks.begin(), ks.begin() + 3);
        churn.insert(churn.end(), ks.begin() + 3, ks.end());
    }
    const auto value_a = [](size_t i) { return remote(static_cast<uint16_t>(2 * i)); };
    const auto value_b = [](size_t i) { return remote(static_cast<uint16_t>(2 * i + 1)); };
    const auto churn_value = [](size_t c) { return remote(static_cast<uint16_t>(1000 + c)); };

    std::mt19937 rng(3);
    std::vector<bool> in(churn.size(), false);
    auto churn_once = [&] {
        const size_t c = rng() % churn.size();
        if (in[c]) {
            ASSERT_TRUE(w->erase(churn[c]));
        } else {
            ASSERT_EQ(w->upsert(churn[c], churn_value(c), 0), 0);
        }
        in[c] = !in[c];
    };
    // Half the churn keys first, so fixed keys land behind them.
    for (int i = 0; i < 2000; i++)
        churn_once();
    for (size_t i = 0; i < fixed.size(); i++)
        ASSERT_EQ(w->upsert(fixed[i], value_a(i), 0), 0);
    ASSERT_GT(w->spilled(), 0u);

    std::atomic<bool> stop{false};
    std::atomic<uint64_t> wrong{0}, wrong_churn{0}, lookups{0};
    auto reader = [&](unsigned id) {
        online_reader me(q.v, id);
        uint64_t n = 0, bad = 0, bad_churn = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            for (size_t i = 0; i < fixed.size(); i++) {
                const uint32_t v = lookup(t, fixed[i]);
                bad += v != value_a(i) && v != value_b(i);
                n++;
            }
            // A churn key is there or not, but never with another key's value.
            for (size_t c = 0; c < churn.size(); c++) {
                const uint32_t v = lookup(t, churn[c]);
                bad_churn += v != 0 && v != churn_value(c);
            }
            me.quiescent();
        }
        wrong += bad;
        wrong_churn += bad_churn;
        lookups += n;
    };
    // Joined before the test returns, also when an ASSERT below returns early.
    struct joiner {
        std::atomic<bool>& stop;
        std::thread a, b;
        ~joiner() {
            stop = true;
            a.join();
            b.join();
        }
    } readers{stop, std::thread(reader, 1), std::thread(reader, 2)};
    for (int round = 0; round < 60000; round++) {
        churn_once();
        if (round % 7 == 0) {
            const size_t i = rng() % fixed.size();
            ASSERT_EQ(w->upsert(fixed[i], round % 2 ? value_b(i) : value_a(i), 0), 0);
        }
        if (w->dead() > 64) {   // as table_writer does on -ENOSPC, sooner
            rte_rcu_qsbr_synchronize(q.v, RTE_QSBR_THRID_INVALID);
            w->reclaim();
        }
    }
    stop = true;
    readers.a.join();
    readers.b.join();
    readers.a = std::thread([] {});   // the joiner joins these instead
    readers.b = std::thread([] {});
    EXPECT_GT(lookups.load(), 0u);
    EXPECT_EQ(wrong.load(), 0u) << "of " << lookups.load() << " lookups";
    EXPECT_EQ(wrong_churn.load(), 0u);
    for (size_t i = 0; i < fixed.size(); i++) {
        const uint32_t v = lookup(t, fixed[i]);
        EXPECT_TRUE(v == value_a(i) || v == value_b(i)) << i;
    }
}

} // namespace

int main(int argc, char** argv) { return run_dp_tests(argc, argv); }
