// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore. Stages: rx -> classify -> decap | encap -> tx -> quiescent.
//
// The loop stays short: features go into the stages. When idle for
// idle_polls_before_sleep iterations the worker goes offline on the QSBR variable (so
// it never delays a grace period while asleep), sleeps, comes back online and drains
// commands, so the control thread waits at most about one sleep for an ack.
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_rcu_qsbr.h>

#include "dataplane/stages.hpp"
#include "overpass/dataplane.hpp"

namespace overpass::dp {

namespace {

constexpr uint32_t cmd_poll_mask = 15;   // drain commands every 16 busy iterations

void qsbr_online(worker& w) noexcept {
    if (w.tables->qsbr != nullptr)
        rte_rcu_qsbr_thread_online(w.tables->qsbr, w.lcore_id);
}

void qsbr_offline(worker& w) noexcept {
    if (w.tables->qsbr != nullptr)
        rte_rcu_qsbr_thread_offline(w.tables->qsbr, w.lcore_id);
}

void assign_rxq(worker& w, uint16_t port, uint16_t queue) noexcept {
    for (uint16_t i = 0; i < w.n_rxqs; i++)
        if (w.rxqs[i].port == port && w.rxqs[i].queue == queue)
            return;
    if (w.n_rxqs < max_rxqs_per_worker)
        w.rxqs[w.n_rxqs++] = rxq_ref{port, queue};
}

void unassign_rxq(worker& w, uint16_t port, uint16_t queue) noexcept {
    for (uint16_t i = 0; i < w.n_rxqs; i++) {
        if (w.rxqs[i].port == port && w.rxqs[i].queue == queue) {
            w.rxqs[i] = w.rxqs[--w.n_rxqs];
            return;
        }
    }
}

} // namespace

void drain_commands(worker& w) noexcept {
    if (w.cmd_ring == nullptr)
        return;
    if (rte_ring_empty(w.cmd_ring))
        return;
    // A command is acknowledged only after every packet injected before it was sent, so
    // that once a port's removal is acknowledged no injected packet for it remains.
    while (w.inject_ring != nullptr && !rte_ring_empty(w.inject_ring)) {
        inject_burst(w);
        tx_flush(w);
    }
    tx_flush(w);
    command cmds[8];
    unsigned n;
    while ((n = rte_ring_dequeue_burst_elem(w.cmd_ring, cmds, sizeof(command), RTE_DIM(cmds),
                                            nullptr)) != 0) {
        for (unsigned i = 0; i < n; i++) {
            const command& c = cmds[i];
            if (c.port < RTE_MAX_ETHPORTS) {
                switch (c.what) {
                case command::kind::assign_rxq:
                    assign_rxq(w, c.port, c.queue);
                    break;
                case command::kind::unassign_rxq:
                    unassign_rxq(w, c.port, c.queue);
                    break;
                case command::kind::barrier:
                    break;
                }
            }
            // release; pairs with the acquire load in the control thread's wait for seq
            w.cmd_ack.store(c.seq, std::memory_order_release);
        }
    }
}

int worker_main(void* arg) noexcept {
    auto& w = *static_cast<worker*>(arg);
    if (w.tables->qsbr != nullptr)
        rte_rcu_qsbr_thread_register(w.tables->qsbr, w.lcore_id);
    qsbr_online(w);
    drain_commands(w);
    // One TSC read per iteration splits the lcore's time into busy (the iteration
    // received something) and idle (including sleeps): busy cycles / packets is the
    // cost per packet, busy / (busy + idle) the load.
    uint64_t last_tsc = rte_rdtsc();
    for (uint32_t iter = 0; !w.stop.load(std::memory_order_relaxed); iter++) {
        uint32_t received = 0;
        for (uint16_t i = 0; i < w.n_rxqs; i++) {
            const rxq_ref q = w.rxqs[i];
            rte_mbuf* pkts[max_burst];
            const uint16_t n = rte_eth_rx_burst(q.port, q.queue, pkts, max_burst);
            if (n == 0)
                continue;
            received += n;
            process_burst(w, q.port, pkts, n);
        }
        inject_burst(w);
        tx_flush(w);
        if (w.tables->qsbr != nullptr)
            rte_rcu_qsbr_quiescent(w.tables->qsbr, w.lcore_id);   // no table pointer survives this line
        if ((iter & cmd_poll_mask) == 0)
            drain_commands(w);

        if (received != 0) {
            const uint64_t now = rte_rdtsc();
            w.stats.busy_cycles.add(now - last_tsc);
            last_tsc = now;
            w.stats.busy_polls.add(1);
            w.idle_run = 0;
            continue;
        }
        w.stats.idle_polls.add(1);
        // Stays at the threshold while idle: one poll between sleeps until traffic returns.
        if (++w.idle_run >= w.idle_polls_before_sleep) {
            w.idle_run = w.idle_polls_before_sleep;
            qsbr_offline(w);
            rte_delay_us_sleep(w.idle_sleep_us);
            qsbr_online(w);
            w.stats.sleeps.add(1);
            drain_commands(w);
        }
        const uint64_t now = rte_rdtsc();
        w.stats.idle_cycles.add(now - last_tsc);
        last_tsc = now;
    }
    tx_flush(w);
    qsbr_offline(w);
    if (w.tables->qsbr != nullptr)
        rte_rcu_qsbr_thread_unregister(w.tables->qsbr, w.lcore_id);
    return 0;
}

} // namespace overpass::dp
