// SPDX-License-Identifier: Apache-2.0
// runs on: worker lcore
//
// Classify stage: counts what was received, loads the config snapshot once per burst
// and splits by direction. A burst comes from one RX queue, hence from one port, so the
// direction is decided once: the uplink goes to decap_burst(), anything else is a
// container port and goes to encap_burst().
// Invariant: no table pointer loaded here survives the caller's next quiescent report.
#include <rte_prefetch.h>

#include "dataplane/stages.hpp"
#include "overpass/dataplane.hpp"

namespace overpass::dp {

namespace {

void classify_burst(worker& w, uint16_t rx_port, rte_mbuf** pkts, uint16_t n) noexcept {
    // Headers of the first packets are fetched while we count; the stages keep
    // prefetching three packets ahead.
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < n; i++) {
        if (i < 3)
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
    }
    w.stats.packets.add(n);
    port_counters& pc = w.stats.ports[rx_port];
    pc.rx_packets.add(n);
    pc.rx_bytes.add(bytes);

    // acquire; pairs with the release exchange in table_writer::set_config()
    const config_snapshot* cfg = w.tables->config.load(std::memory_order_acquire);
    if (cfg == nullptr) {
        // Not configured yet: nothing on any port can be for us.
        for (uint16_t i = 0; i < n; i++)
            drop(w, rx_port, pkts[i], drop_reason::not_for_us);
        return;
    }
    if (rx_port == cfg->uplink_port)
        decap_burst(w, *cfg, pkts, n);
    else
        encap_burst(w, *cfg, rx_port, pkts, n);
}

} // namespace

void process_burst(worker& w, uint16_t rx_port, rte_mbuf** pkts, uint16_t n) noexcept {
    // The stages keep per-burst arrays of max_burst entries on the stack.
    while (n > 0) {
        const uint16_t chunk = n < max_burst ? n : max_burst;
        classify_burst(w, rx_port, pkts, chunk);
        pkts += chunk;
        n -= chunk;
    }
}

} // namespace overpass::dp
