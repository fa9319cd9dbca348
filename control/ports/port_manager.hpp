// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// Owns every ethdev of the process: the uplink (configured at start-up) and the
// container ports (net_tap, net_vhost) hot-plugged while traffic flows. A container
// port gets one RX queue, polled by one worker, and one TX queue per worker. The
// control thread transmits through worker 0's inject ring.
#pragma once

#include <map>
#include <string>

#include <rte_ether.h>
#include <rte_mempool.h>

#include "control/ports/port_ops.hpp"
#include "control/ports/worker_pool.hpp"
#include "control/publish/table_writer.hpp"

namespace overpass::ctl {

struct port_info {
    uint16_t port_id;
    std::string name;        ///< ethdev name (net_tap3)
    std::string kind;        ///< uplink | tap | vhost
    std::string endpoint;    ///< endpoint name; empty for the uplink
    std::string detail;      ///< tap: kernel ifname + netns; vhost: socket path
    std::string resolv_conf; ///< tap: /etc/netns/<ns>/resolv.conf we wrote (removed with the port)
};

class port_manager final : public port_ops {
public:
    port_manager(worker_pool& workers, table_writer& writer, rte_mempool* pool, std::string host_id);
    ~port_manager() override;

    /// Configures and starts the uplink given to EAL (by its devargs), with one RX and
    /// one TX queue per worker (RSS over the RX queues), and hands its RX queues to the
    /// workers. Throws port_error.
    uint16_t open_uplink(const std::string& devargs);
    uint16_t uplink() const noexcept { return uplink_; }
    /// Largest IP packet the uplink carries.
    uint16_t uplink_mtu() const noexcept { return uplink_mtu_; }

    uint16_t attach_tap(const std::string& endpoint, const container_iface& iface) override;
    uint16_t attach_vhost(const std::string& endpoint, const std::string& socket_path) override;
    void detach(uint16_t port_id) noexcept override;

    /// Detaches every container port and stops the uplink (shutdown).
    void close_all() noexcept;

    const std::map<uint16_t, port_info>& ports() const noexcept { return ports_; }

private:
    uint16_t hotplug(const std::string& devargs, const std::string& name);
    void configure_and_start(uint16_t port, uint16_t n_rxq, uint16_t nb_rxd, const std::string& what);
    void remove_port(uint16_t port) noexcept;

    worker_pool& workers_;
    table_writer& writer_;
    rte_mempool* pool_;
    std::string host_id_;
    uint16_t uplink_ = UINT16_MAX;
    uint16_t uplink_mtu_ = 1500;
    unsigned next_vdev_ = 0;
    std::map<uint16_t, port_info> ports_;
};

/// Runs a program (no shell) and waits for it. Returns "" on success, otherwise the
/// program's stderr (or why it could not run). Used for iproute2 on the control side.
std::string run_program(const std::vector<std::string>& argv);

} // namespace overpass::ctl
