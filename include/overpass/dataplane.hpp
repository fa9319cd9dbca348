// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore (all functions here), except where noted
//
// Entry points of the data plane (dataplane/, built with -fno-exceptions).
#pragma once

#include <cstdint>

#include <rte_mbuf.h>

#include "overpass/worker.hpp"

namespace overpass::dp {

/// rte_eal_remote_launch() entry: the worker loop. `arg` is a worker*.
/// Registers with the QSBR variable as thread id lcore_id, polls its RX queues,
/// processes, flushes, reports quiescent once per iteration, drains commands, backs
/// off when idle (offline while asleep). Returns when worker::stop is set.
int worker_main(void* arg) noexcept;

/// Processes one received burst from `rx_port` (the uplink or a container port) through
/// classify -> arp / decap / encap / local switch. Every packet ends in exactly one
/// place: a TX buffer of `w`, a counted drop, or the exception ring. Exposed for tests
/// and benchmarks, which call it with crafted mbufs.
/// Precondition: the calling thread is registered online with the QSBR variable, or no
/// table is changed concurrently.
void process_burst(worker& w, uint16_t rx_port, rte_mbuf** pkts, uint16_t n) noexcept;

/// Sends everything buffered in `w`'s TX buffers; what a queue refuses is freed and
/// counted as tx_full.
void tx_flush(worker& w) noexcept;

/// Moves packets the control thread injected (w.inject_ring; m->port is the TX port)
/// into the TX buffers.
void inject_burst(worker& w) noexcept;

/// Executes pending commands from w.cmd_ring and acknowledges them. Before the first
/// command it sends everything injected so far, so an acknowledged command is never
/// followed by a packet the control thread injected before sending it.
void drain_commands(worker& w) noexcept;

} // namespace overpass::dp
