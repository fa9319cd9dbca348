// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (the endpoints table's only writer)
#include "control/publish/endpoint_table_writer.hpp"

#include "control/log.hpp"

#include <algorithm>
#include <cerrno>
#include <new>

#include <rte_errno.h>
#include <rte_malloc.h>

namespace overpass::ctl {

namespace {
constexpr uint32_t ways = endpoint_table::ways;
}

std::unique_ptr<endpoint_table_writer> endpoint_table_writer::create(const char* name, uint32_t capacity,
                                                                     rte_rcu_qsbr* qsbr) {
    // A bucket (five entries) per two keys: at most 40% full.
    const uint32_t n_buckets = std::max<uint32_t>(capacity / 2 + capacity % 2, 8);
    auto w = std::unique_ptr<endpoint_table_writer>(new (std::nothrow) endpoint_table_writer(qsbr));
    if (w == nullptr)
        return nullptr;
    const size_t bytes = size_t{n_buckets} * sizeof(endpoint_table::bucket);
    w->t_.buckets = static_cast<endpoint_table::bucket*>(
        rte_malloc_socket(name, bytes, RTE_CACHE_LINE_SIZE, SOCKET_ID_ANY));
    if (w->t_.buckets == nullptr) {
        OVP_LOG(ERR, "endpoint table %s: %zu bytes: %s", name, bytes, rte_strerror(rte_errno));
        return nullptr;
    }
    for (uint32_t b = 0; b < n_buckets; b++) {
        endpoint_table::bucket& bk = w->t_.buckets[b];
        for (uint32_t i = 0; i < ways; i++) {
            bk.key[i] = endpoint_table::empty_key;
            bk.value[i] = 0;
        }
        bk.spill = 0;
    }
    w->t_.n_buckets = n_buckets;
    // Live and dead entries together stay under 60%: a free entry is always near.
    w->max_used_ = n_buckets * ways / 5 * 3;
    try {
        w->ips_.assign(size_t{n_buckets} * ways, 0);
    } catch (const std::bad_alloc&) {
        OVP_LOG(ERR, "endpoint table %s: no memory for the addresses", name);
        return nullptr;
    }
    return w;
}

endpoint_table_writer::~endpoint_table_writer() {
    // Precondition: no worker reads the table any more.
    rte_free(t_.buckets);
}

std::optional<endpoint_table_writer::where> endpoint_table_writer::locate(uint64_t key) const noexcept {
    uint32_t b = endpoint_home_index(t_, endpoint_hash(key));
    for (uint32_t d = 0;; d++) {   // the walk of endpoint_lookup()
        const endpoint_table::bucket& bk = t_.buckets[b];
        for (uint32_t i = 0; i < ways; i++)
            if (bk.key[i] == key)
                return where{b, i};
        if (bk.spill == 0 || d == endpoint_table::max_displacement)
            return std::nullopt;
        b = endpoint_next_index(t_, b);
    }
}

std::optional<endpoint_table_writer::entry> endpoint_table_writer::find(uint64_t key) const noexcept {
    const std::optional<where> at = locate(key);
    if (!at)
        return std::nullopt;
    return entry{key, t_.buckets[at->bucket].value[at->way], ips_[at->bucket * ways + at->way]};
}

void endpoint_table_writer::add_spill(uint64_t key, uint32_t b, int delta) noexcept {
    for (uint32_t h = endpoint_home_index(t_, endpoint_hash(key)); h != b; h = endpoint_next_index(t_, h)) {
        uint32_t& s = t_.buckets[h].spill;
        // relaxed: a reader that misses a key being added or deleted is in order either
        // way, and a key that stays keeps its own count in every bucket it passed
        __atomic_store_n(&s, static_cast<uint32_t>(static_cast<int>(s) + delta), __ATOMIC_RELAXED);
    }
}

int endpoint_table_writer::upsert(uint64_t key, uint32_t value, rte_be32_t ip_be) noexcept {
    if (value == 0 || !live(key))
        return -EINVAL;
    if (const std::optional<where> at = locate(key)) {
        // One atomic store: a reader sees the old value or the new one.
        __atomic_store_n(&t_.buckets[at->bucket].value[at->way], value, __ATOMIC_RELAXED);
        ips_[at->bucket * ways + at->way] = ip_be;
        return 0;
    }
    reclaim();   // what is past its grace period is room again (stops at the first that is not)
    const std::optional<where> at = free_entry(key);
    if (!at || n_live_ + dead() >= max_used_)
        return -ENOSPC;
    endpoint_table::bucket& bk = t_.buckets[at->bucket];
    add_spill(key, at->bucket, +1);
    ips_[at->bucket * ways + at->way] = ip_be;
    __atomic_store_n(&bk.value[at->way], value, __ATOMIC_RELAXED);
    // release; pairs with the acquire load in endpoint_lookup(): the value and the
    // spill counts on the way are visible before the key
    __atomic_store_n(&bk.key[at->way], key, __ATOMIC_RELEASE);
    n_live_++;
    return 0;
}

std::optional<endpoint_table_writer::where> endpoint_table_writer::free_entry(uint64_t key) const noexcept {
    uint32_t b = endpoint_home_index(t_, endpoint_hash(key));
    for (uint32_t d = 0; d <= endpoint_table::max_displacement; d++) {
        for (uint32_t i = 0; i < ways; i++)
            if (t_.buckets[b].key[i] == endpoint_table::empty_key)
                return where{b, i};
        b = endpoint_next_index(t_, b);
    }
    return std::nullopt;
}

bool endpoint_table_writer::erase(uint64_t key) noexcept {
    const std::optional<where> at = locate(key);
    if (!at)
        return false;
    endpoint_table::bucket& bk = t_.buckets[at->bucket];
    // The value stays until the grace period is over: a reader that matched the key
    // just before reads it.
    __atomic_store_n(&bk.key[at->way], endpoint_table::dead_key, __ATOMIC_RELEASE);
    add_spill(key, at->bucket, -1);
    n_live_--;
    dead_.push_back({at->bucket * ways + at->way, rte_rcu_qsbr_start(qsbr_)});
    reclaim();
    return true;
}

void endpoint_table_writer::reclaim() noexcept {
    // Tokens grow with the queue, so the first one still in its grace period ends the walk.
    while (!dead_.empty() && rte_rcu_qsbr_check(qsbr_, dead_.front().token, false) == 1) {
        const uint32_t slot = dead_.front().slot;
        endpoint_table::bucket& bk = t_.buckets[slot / ways];
        bk.value[slot % ways] = 0;
        // No reader can still hold this entry's key: free for a new key (whose value
        // is stored before its key, so no ordering is needed here).
        __atomic_store_n(&bk.key[slot % ways], endpoint_table::empty_key, __ATOMIC_RELAXED);
        ips_[slot] = 0;
        dead_.pop_front();
    }
}

uint32_t endpoint_table_writer::spilled() const noexcept {
    uint32_t n = 0;
    for (uint32_t b = 0; b < t_.n_buckets; b++)
        for (uint32_t i = 0; i < ways; i++)
            if (const uint64_t k = t_.buckets[b].key[i]; live(k) && endpoint_home_index(t_, endpoint_hash(k)) != b)
                n++;
    return n;
}

size_t endpoint_table_writer::bytes() const noexcept {
    return size_t{buckets()} * sizeof(endpoint_table::bucket) + ips_.capacity() * sizeof(rte_be32_t);
}

} // namespace overpass::ctl
