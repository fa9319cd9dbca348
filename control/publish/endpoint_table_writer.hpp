// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (the endpoints table's only writer)
//
// The writer side of include/overpass/endpoint_table.hpp: inserts, overwrites and
// deletes under lock-free readers, with deleted entries freed after a grace period of
// the tables' QSBR variable. It also keeps each endpoint's IPv4 address beside the
// table (the control thread's record of the endpoint; workers never read it).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include <rte_byteorder.h>
#include <rte_rcu_qsbr.h>

#include "overpass/endpoint_table.hpp"

namespace overpass::ctl {

class endpoint_table_writer {
public:
    /// A table for up to `capacity` keys (40% of its entries), in hugepage
    /// memory when the EAL has it. nullptr (and a log line) when out of memory.
    static std::unique_ptr<endpoint_table_writer> create(const char* name, uint32_t capacity, rte_rcu_qsbr* qsbr);
    ~endpoint_table_writer();
    endpoint_table_writer(const endpoint_table_writer&) = delete;
    endpoint_table_writer& operator=(const endpoint_table_writer&) = delete;

    /// What workers read; valid for the writer's lifetime.
    const endpoint_table& table() const noexcept { return t_; }

    struct entry {
        uint64_t key;
        uint32_t value;
        rte_be32_t ip_be;
    };
    std::optional<entry> find(uint64_t key) const noexcept;
    /// Adds `key` or overwrites its value in place (one atomic store). `value` must not be
    /// 0. -ENOSPC when no entry is free within reach of its home bucket: deleted ones may
    /// still be in their grace period (the caller waits for one, reclaim()s and tries
    /// again), or the table is full, or (crafted keys) too many keys share a few buckets.
    int upsert(uint64_t key, uint32_t value, rte_be32_t ip_be) noexcept;
    /// false when `key` is not there.
    bool erase(uint64_t key) noexcept;
    /// Frees the deleted entries whose grace period is over; never blocks.
    void reclaim() noexcept;
    /// Every live entry, in table order. `f` must not change the table.
    template <class F>
    void for_each(F&& f) const {
        for (uint32_t b = 0; b < t_.n_buckets; b++)
            for (uint32_t i = 0; i < endpoint_table::ways; i++)
                if (const uint64_t k = t_.buckets[b].key[i]; live(k))
                    f(entry{k, t_.buckets[b].value[i], ips_[b * endpoint_table::ways + i]});
    }

    uint32_t size() const noexcept { return n_live_; }
    uint32_t dead() const noexcept { return static_cast<uint32_t>(dead_.size()); }
    uint32_t buckets() const noexcept { return t_.n_buckets; }
    /// Keys that live outside their home bucket (a lookup of them reads two lines or more).
    uint32_t spilled() const noexcept;
    /// Bytes of the table and of the addresses kept beside it.
    size_t bytes() const noexcept;

private:
    endpoint_table_writer(rte_rcu_qsbr* qsbr) noexcept : qsbr_(qsbr) {}
    static bool live(uint64_t k) noexcept { return k != endpoint_table::empty_key && k != endpoint_table::dead_key; }
    struct where {
        uint32_t bucket;
        uint32_t way;
    };
    std::optional<where> locate(uint64_t key) const noexcept;
    /// The first empty entry within max_displacement buckets of `key`'s home.
    std::optional<where> free_entry(uint64_t key) const noexcept;
    /// Adds or takes away one from the spill count of every bucket from `key`'s home
    /// bucket up to (not including) `b`.
    void add_spill(uint64_t key, uint32_t b, int delta) noexcept;

    struct dead_entry {
        uint32_t slot;       ///< bucket * ways + way
        uint64_t token;      ///< rte_rcu_qsbr_start() at the delete
    };

    endpoint_table t_;
    rte_rcu_qsbr* qsbr_;
    std::vector<rte_be32_t> ips_;   ///< by bucket * ways + way
    /// Deleted entries in their grace period, in token order. Not an rte_rcu_qsbr_dq
    /// (which the table writer uses for retired values): its size is fixed at creation,
    /// and never overflowing would take room for 60% of the entries (tens of MB at a
    /// million endpoints), where this holds only what is pending.
    std::deque<dead_entry> dead_;
    uint32_t n_live_ = 0;
    uint32_t max_used_ = 0;         ///< live + dead entries allowed: 60%, so free entries stay near
};

} // namespace overpass::ctl
