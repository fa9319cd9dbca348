// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The worker lcores seen from the control thread: allocation, launch, stop, and the
// per-worker command ring with acknowledgement.
#pragma once

#include <cstdint>
#include <vector>

#include "overpass/worker.hpp"

namespace overpass::ctl {

class worker_pool {
public:
    /// Allocates one worker per worker lcore (every lcore but the main one).
    /// Throws std::runtime_error naming the failing object.
    worker_pool(dp_tables& tables, rte_mempool* pool, rte_ring* exception_ring);
    ~worker_pool();
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;

    void launch();
    /// Sets stop, waits for every lcore to return. Idempotent.
    void stop() noexcept;

    /// Sends a command to worker `index` and waits (bounded) for its acknowledgement.
    /// Returns 0, -ENOBUFS (not sent), or -ETIMEDOUT (sent, not yet acknowledged: the
    /// worker will still execute it; wait_ack() can wait again).
    int command(unsigned index, command::kind what, uint16_t port, uint16_t queue) noexcept;
    /// Waits until worker `index` has acknowledged command `seq`. 0 or -ETIMEDOUT.
    int wait_ack(unsigned index, uint64_t seq, unsigned timeout_ms) const noexcept;

    /// Picks the worker with the fewest RX queues and assigns (port, queue) to it.
    /// Returns the worker index or a negative errno.
    int assign_rxq(uint16_t port, uint16_t queue) noexcept;
    /// Removes every RX queue of `port` from whichever worker polls it, then waits until
    /// worker 0 has sent everything injected so far (its inject ring). Returns false if a
    /// worker did not acknowledge in time: then the port must stay open, since that worker
    /// may still poll it.
    bool unassign_port(uint16_t port) noexcept;

    unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()); }
    /// The ring through which the control thread transmits (worker 0 drains it).
    rte_ring* inject_ring() const noexcept { return workers_.front()->inject_ring; }
    const worker& at(unsigned i) const noexcept { return *workers_[i]; }
    /// Turns the workers' encap endpoint cache on or off; before launch().
    void use_endpoint_cache(bool on) noexcept {
        for (worker* w : workers_)
            w->use_endpoint_cache = on;
    }

    /// Zero every worker's counters of a port id / network slot / VTEP slot that is being
    /// handed to a new owner (all of them: the group's reset(), generated from
    /// counters.def). Only while no worker can count into it: a port id before its queues
    /// are assigned and its binding published, a slot before its entry is published
    /// (table_writer::on_slot_taken). The counters' single writer is then idle, so a
    /// relaxed store from here is ordered before its next add by that publication.
    void reset_port_counters(uint16_t port) noexcept;
    void reset_network_counters(uint16_t slot) noexcept;
    void reset_vtep_counters(uint16_t slot) noexcept;

private:
    struct assignment {
        uint16_t port, queue;
        unsigned worker;
    };
    std::vector<worker*> workers_;
    std::vector<assignment> assigned_;
    uint64_t next_seq_ = 1;
    std::vector<uint64_t> last_seq_;   ///< last command sent, per worker
    bool launched_ = false;
};

} // namespace overpass::ctl
