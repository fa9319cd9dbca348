// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/stats.hpp"

namespace overpass::ctl {

nlohmann::json collect_stats(const worker_pool& workers, const port_manager& ports, const table_writer& writer,
                             const slow_path* slow) {
    nlohmann::json j;
    nlohmann::json drops = nlohmann::json::object();
    for (std::size_t r = 0; r < drop_reason_count; r++) {
        uint64_t sum = 0;
        for (unsigned w = 0; w < workers.size(); w++)
            sum += workers.at(w).stats.drops[r].get();
        drops[drop_reason_names[r]] = sum;
    }
    j["drops"] = drops;

    nlohmann::json pj = nlohmann::json::array();
    for (const auto& [id, info] : ports.ports()) {
        uint64_t c[5] = {};
        for (unsigned w = 0; w < workers.size(); w++) {
            const port_counters& p = workers.at(w).stats.ports[id];
            c[0] += p.rx_packets.get();
            c[1] += p.rx_bytes.get();
            c[2] += p.tx_packets.get();
            c[3] += p.tx_bytes.get();
            c[4] += p.drops.get();
        }
        pj.push_back({{"port", id}, {"name", info.name}, {"kind", info.kind}, {"endpoint", info.endpoint},
                      {"detail", info.detail}, {"rx_packets", c[0]}, {"rx_bytes", c[1]}, {"tx_packets", c[2]},
                      {"tx_bytes", c[3]}, {"drops", c[4]}});
    }
    j["ports"] = pj;

    nlohmann::json wj = nlohmann::json::array();
    for (unsigned w = 0; w < workers.size(); w++) {
        const lcore_stats& s = workers.at(w).stats;
        wj.push_back({{"lcore", workers.at(w).lcore_id}, {"packets", s.packets.get()},
                      {"busy_polls", s.busy_polls.get()}, {"idle_polls", s.idle_polls.get()},
                      {"sleeps", s.sleeps.get()}, {"tx_flushes", s.tx_flushes.get()},
                      {"exceptions", s.exceptions.get()}});
    }
    j["workers"] = wj;

    const auto sz = writer.size();
    j["tables"] = {{"endpoints", sz.endpoints}, {"addresses", sz.addresses}, {"networks", sz.networks},
                   {"vteps", sz.vteps}, {"ports", sz.ports}, {"retire_backlog", sz.retire_backlog}};
    if (slow != nullptr) {
        const auto& s = slow->stats();
        j["slow_path"] = {{"arp_requests_sent", s.arp_requests_sent}, {"arp_replies_learned", s.arp_replies_learned},
                          {"exceptions", s.exceptions}, {"ignored", s.ignored},
                          {"dns_queries", s.dns_queries}, {"dns_answers", s.dns_answers},
                          {"dns_nxdomain", s.dns_nxdomain}, {"dns_malformed", s.dns_malformed}};
    }
    return j;
}

} // namespace overpass::ctl
