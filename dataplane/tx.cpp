// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore
//
// TX stage. Each worker owns one TX queue (w.txq) on every port and buffers per port.
// Invariants: a port is listed in w.dirty exactly when its buffer is non-empty; tx
// counters are bumped only for what the driver accepted; what it refused is freed
// and counted as tx_full against the TX port.
#include <rte_ethdev.h>
#include <rte_ring.h>

#include "dataplane/stages.hpp"
#include "overpass/dataplane.hpp"

namespace overpass::dp {

void tx_send_buffer(worker& w, uint16_t port) noexcept {
    tx_buffer& b = w.tx[port];
    const uint16_t sent = rte_eth_tx_burst(port, w.txq, b.pkts, b.n);
    // The sent mbufs belong to the driver now; the refused ones are still ours to read.
    uint64_t bytes = b.bytes;
    for (uint16_t i = sent; i < b.n; i++)
        bytes -= rte_pktmbuf_pkt_len(b.pkts[i]);
    port_counters& pc = w.stats.ports[port];
    pc.tx_packets.add(sent);
    pc.tx_bytes.add(bytes);
    if (sent < b.n) {
        const uint16_t refused = b.n - sent;
        w.stats.drop(drop_reason::tx_full, refused);
        pc.dropped_packets.add(refused);
        rte_pktmbuf_free_bulk(&b.pkts[sent], refused);
    }
    w.stats.tx_bursts.add(1);
    b.n = 0;
    b.bytes = 0;
}

void tx_flush(worker& w) noexcept {
    for (uint16_t i = 0; i < w.n_dirty; i++) {
        const uint16_t port = w.dirty[i];
        tx_send_buffer(w, port);
    }
    w.n_dirty = 0;
}

void inject_burst(worker& w) noexcept {
    if (w.inject_ring == nullptr)
        return;
    rte_mbuf* pkts[max_burst];
    const unsigned n = rte_ring_sc_dequeue_burst(w.inject_ring, reinterpret_cast<void**>(pkts), max_burst, nullptr);
    for (unsigned i = 0; i < n; i++) {
        // The control thread only injects to ports it has started; the check guards
        // the array index, not the port's life.
        if (pkts[i]->port < RTE_MAX_ETHPORTS)
            tx_enqueue(w, pkts[i]->port, pkts[i]);
        else
            rte_pktmbuf_free(pkts[i]);
    }
}

} // namespace overpass::dp
