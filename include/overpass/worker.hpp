// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore and control thread (ownership is marked on every field)
//
// The worker: one lcore, a fixed set of RX queues, its own TX queue on every port.
#pragma once

#include <atomic>
#include <cstdint>

#include <rte_common.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "overpass/endpoint_cache.hpp"
#include "overpass/stats.hpp"
#include "overpass/tables.hpp"

namespace overpass {

inline constexpr uint16_t max_burst = 32;
inline constexpr uint16_t max_rxqs_per_worker = RTE_MAX_ETHPORTS * 2;
inline constexpr uint16_t vtep_hint_entries = 1024;   ///< power of two
inline constexpr uint16_t local_hint_entries = 256;   ///< power of two
inline constexpr uint16_t network_hint_entries = 256;   ///< power of two

/// Commands from the control thread to one worker (per-worker SP/SC ring).
/// Plain old data: nothing with a refcount or a vtable travels on a ring.
struct command {
    enum class kind : uint16_t {
        assign_rxq,     ///< start polling (port, queue)
        unassign_rxq,   ///< stop polling (port, queue); after the ack the queue is never touched again
        barrier,        ///< nothing: its ack proves every earlier command and injected packet was handled
    };
    kind what;
    uint16_t port;
    uint16_t queue;
    uint64_t seq;       ///< acknowledged through worker::cmd_ack
};
static_assert(sizeof(command) % 4 == 0, "rte_ring elements are multiples of 4 bytes");

struct rxq_ref {
    uint16_t port;
    uint16_t queue;
};

/// Per-port TX buffer of one worker.
struct tx_buffer {
    uint16_t n;
    uint32_t bytes;   ///< sum of the buffered packets' lengths
    rte_mbuf* pkts[max_burst];
};

/// Worker configuration and state. Allocated by the control thread (rte_zmalloc,
/// cache aligned) before the worker is launched.
struct alignas(RTE_CACHE_LINE_SIZE) worker {
    // --- set by control before launch, read-only afterwards ---
    unsigned lcore_id = 0;
    uint16_t txq = 0;                   ///< this worker's TX queue id on every port
    dp_tables* tables = nullptr;
    rte_mempool* pool = nullptr;        ///< for head-end replication copies
    /// control enqueues, this worker dequeues (SP/SC). An element ring
    /// (rte_ring_create_elem, esize = sizeof(command)): commands travel by value.
    rte_ring* cmd_ring = nullptr;
    rte_ring* exception_ring = nullptr; ///< workers enqueue (MP), control dequeues (SC)
    /// Packets the control thread sends (ARP requests for VTEPs, later DNS answers):
    /// control enqueues mbufs whose m->port names the TX port (SP), this worker dequeues
    /// them into its TX buffers (SC). Only worker 0 has one; ports then need no TX queue
    /// of the control thread's own, which single-queue PMDs (af_xdp on one NIC queue,
    /// vhost-user with a one-queue guest) could not give.
    rte_ring* inject_ring = nullptr;
    uint32_t idle_polls_before_sleep = 256;
    uint32_t idle_sleep_us = 200;
    /// false: encap asks the endpoints table for every frame (overpassd and
    /// perf/dp_bench --no-endpoint-cache; worker_pool::use_endpoint_cache()).
    bool use_endpoint_cache = true;

    // --- worker-private from here ... ---
    uint16_t n_rxqs = 0;
    rxq_ref rxqs[max_rxqs_per_worker];
    uint16_t n_dirty = 0;                    ///< ports with buffered packets
    uint16_t dirty[RTE_MAX_ETHPORTS];
    tx_buffer tx[RTE_MAX_ETHPORTS];
    uint32_t idle_run = 0;
    /// Replication token buckets, one per network (by stats slot): a storm in one
    /// network cannot spend another network's budget.
    struct bum_bucket {
        uint64_t tokens;
        uint64_t refill_tsc;
    } bum[max_network_slots] = {};
    /// Decap's guess of a sender VTEP's slot (slot + 1; 0: none) by hash of its IPv4
    /// address. Only a hint: it is checked against dp_tables::vtep_slots, whose entry
    /// must carry the same address, so a stale or colliding hint costs a hash lookup,
    /// never a wrong VTEP.
    uint16_t vtep_hint[vtep_hint_entries] = {};
    /// Decap's guess of the container port of a local endpoint (port + 1; 0: none) by
    /// the endpoints table's hash of its key (endpoint_key()). Checked against the
    /// port's binding, which carries the same key exactly while the endpoint is local
    /// on that port (published after it, withdrawn before it), so a stale hint costs a
    /// table lookup, never a wrong port.
    uint16_t local_hint[local_hint_entries] = {};
    /// A network's stats slot (slot + 1; 0: none) by hash of its VNI, for encap (the RX
    /// port's network) and decap. Checked against dp_tables::network_slots, whose
    /// segment must carry the same VNI: a stale hint costs a networks table lookup.
    uint16_t network_hint[network_hint_entries] = {};
    endpoint_cache ep_cache = {};            ///< encap's endpoint lookups (zeroed: empty)
    // --- ... to here ---

    lcore_stats stats;                  ///< worker writes; control reads

    /// release-stored by the worker after executing command seq; pairs with the
    /// acquire load in the control thread's wait for that command.
    alignas(RTE_CACHE_LINE_SIZE) std::atomic<uint64_t> cmd_ack{0};
    /// control stores; worker relaxed-loads once per iteration
    std::atomic<bool> stop{false};
};

} // namespace overpass
