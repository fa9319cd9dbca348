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
    /// Returns 0, or -ETIMEDOUT / -ENOBUFS.
    int command(unsigned index, command::kind what, uint16_t port, uint16_t queue) noexcept;

    /// Picks the worker with the fewest RX queues and assigns (port, queue) to it.
    /// Returns the worker index or a negative errno.
    int assign_rxq(uint16_t port, uint16_t queue) noexcept;
    /// Removes every RX queue of `port` from whichever worker polls it, with acks.
    void unassign_port(uint16_t port) noexcept;

    unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()); }
    /// The ring through which the control thread transmits (worker 0 drains it).
    rte_ring* inject_ring() const noexcept { return workers_.front()->inject_ring; }
    const worker& at(unsigned i) const noexcept { return *workers_[i]; }

private:
    struct assignment {
        uint16_t port, queue;
        unsigned worker;
    };
    std::vector<worker*> workers_;
    std::vector<assignment> assigned_;
    uint64_t next_seq_ = 1;
    bool launched_ = false;
};

} // namespace overpass::ctl
