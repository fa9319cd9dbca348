// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/ports/worker_pool.hpp"

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <string>

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_ring_elem.h>

#include "overpass/dataplane.hpp"

namespace overpass::ctl {

worker_pool::worker_pool(dp_tables& tables, rte_mempool* pool, rte_ring* exception_ring) {
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) {
        // On the lcore's own NUMA node (its caches and TX buffers are touched per packet),
        // anywhere when that node has no memory for it.
        void* mem = rte_zmalloc_socket("overpass_worker", sizeof(worker), RTE_CACHE_LINE_SIZE,
                                       static_cast<int>(rte_lcore_to_socket_id(lcore)));
        if (mem == nullptr)
            mem = rte_zmalloc("overpass_worker", sizeof(worker), RTE_CACHE_LINE_SIZE);
        auto* w = static_cast<worker*>(mem);
        if (w == nullptr)
            throw std::runtime_error("cannot allocate worker for lcore " + std::to_string(lcore));
        new (w) worker();
        w->lcore_id = lcore;
        w->txq = static_cast<uint16_t>(workers_.size());
        w->tables = &tables;
        w->pool = pool;
        w->exception_ring = exception_ring;
        const std::string ring = "ovp_cmd_" + std::to_string(lcore);
        w->cmd_ring = rte_ring_create_elem(ring.c_str(), sizeof(struct command), 64,
                                           static_cast<int>(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (w->cmd_ring == nullptr) {
            rte_free(w);
            throw std::runtime_error("cannot create command ring " + ring + ": " + rte_strerror(rte_errno));
        }
        if (workers_.empty()) {
            w->inject_ring = rte_ring_create("ovp_inject", 256, static_cast<int>(rte_socket_id()),
                                             RING_F_SP_ENQ | RING_F_SC_DEQ);
            if (w->inject_ring == nullptr) {
                rte_ring_free(w->cmd_ring);
                rte_free(w);
                throw std::runtime_error(std::string("cannot create the inject ring: ") + rte_strerror(rte_errno));
            }
        }
        workers_.push_back(w);
    }
    if (workers_.empty())
        throw std::runtime_error("no worker lcore: EAL needs at least 2 lcores");
    last_seq_.assign(workers_.size(), 0);
}

worker_pool::~worker_pool() {
    stop();
    for (worker* w : workers_) {
        if (w->inject_ring != nullptr) {
            rte_mbuf* m;
            while (rte_ring_dequeue(w->inject_ring, reinterpret_cast<void**>(&m)) == 0)
                rte_pktmbuf_free(m);
            rte_ring_free(w->inject_ring);
        }
        rte_ring_free(w->cmd_ring);
        w->~worker();
        rte_free(w);
    }
}

void worker_pool::launch() {
    for (worker* w : workers_) {
        if (int rc = rte_eal_remote_launch(dp::worker_main, w, w->lcore_id); rc != 0)
            throw std::runtime_error("cannot launch worker on lcore " + std::to_string(w->lcore_id) + ": " +
                                     rte_strerror(-rc));
    }
    launched_ = true;
}

void worker_pool::stop() noexcept {
    if (!launched_)
        return;
    for (worker* w : workers_)
        w->stop.store(true, std::memory_order_relaxed);
    for (worker* w : workers_)
        rte_eal_wait_lcore(w->lcore_id);
    launched_ = false;
}

int worker_pool::wait_ack(unsigned index, uint64_t seq, unsigned timeout_ms) const noexcept {
    const worker& w = *workers_[index];
    const uint64_t deadline = rte_get_timer_cycles() + rte_get_timer_hz() * timeout_ms / 1000;
    // acquire; pairs with the release store of cmd_ack in drain_commands()
    while (w.cmd_ack.load(std::memory_order_acquire) < seq) {
        if (rte_get_timer_cycles() > deadline)
            return -ETIMEDOUT;
        // Workers drain commands at least once per idle sleep (a few hundred us).
        rte_delay_us_sleep(50);
    }
    return 0;
}

int worker_pool::command(unsigned index, command::kind what, uint16_t port, uint16_t queue) noexcept {
    worker& w = *workers_[index];
    struct command c{what, port, queue, next_seq_};
    if (rte_ring_enqueue_elem(w.cmd_ring, &c, sizeof(c)) != 0)
        return -ENOBUFS;
    next_seq_++;
    last_seq_[index] = c.seq;
    if (!launched_) {
        // Not running (start-up or after stop): execute in place, nothing else touches the worker.
        dp::drain_commands(w);
    }
    return wait_ack(index, c.seq, 1000);
}

int worker_pool::assign_rxq(uint16_t port, uint16_t queue) noexcept {
    // Least-loaded worker, counted from our own records (a worker's rxq list is private).
    std::vector<unsigned> load(workers_.size(), 0);
    for (const assignment& a : assigned_)
        load[a.worker]++;
    const unsigned best = static_cast<unsigned>(std::min_element(load.begin(), load.end()) - load.begin());
    const int rc = command(best, command::kind::assign_rxq, port, queue);
    if (rc == -ENOBUFS)
        return rc;
    // Recorded even when the ack is late: the worker will poll the queue once it drains
    // the command, so a later unassign must know about it.
    assigned_.push_back({port, queue, best});
    return rc < 0 ? rc : static_cast<int>(best);
}

bool worker_pool::unassign_port(uint16_t port) noexcept {
    bool ok = true;
    for (auto it = assigned_.begin(); it != assigned_.end();) {
        if (it->port != port) {
            ++it;
            continue;
        }
        int rc = command(it->worker, command::kind::unassign_rxq, it->port, it->queue);
        if (rc == -ETIMEDOUT)
            rc = wait_ack(it->worker, last_seq_[it->worker], 5000);   // a busy or descheduled lcore
        if (rc < 0) {
            ok = false;
            ++it;
            continue;
        }
        it = assigned_.erase(it);
    }
    // Packets the control thread injected for this port are sent (or refused) once worker 0
    // acknowledges a later command.
    int rc = command(0, command::kind::barrier, port, 0);
    if (rc == -ETIMEDOUT)
        rc = wait_ack(0, last_seq_[0], 5000);
    return ok && rc == 0;
}

void worker_pool::reset_port_counters(uint16_t port) noexcept {
    if (port >= RTE_MAX_ETHPORTS)
        return;
    for (worker* w : workers_)
        w->stats.ports[port].reset();
}

void worker_pool::reset_network_counters(uint16_t slot) noexcept {
    if (slot >= max_network_slots)
        return;
    for (worker* w : workers_)
        w->stats.networks[slot].reset();
}

void worker_pool::reset_vtep_counters(uint16_t slot) noexcept {
    if (slot >= max_vtep_slots)
        return;
    for (worker* w : workers_)
        w->stats.vteps[slot].reset();
}

} // namespace overpass::ctl
