// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// What the cluster agent needs from the port layer to attach a container. The real
// implementation hot-plugs net_tap / net_vhost ethdevs; tests use a fake.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <rte_ether.h>

namespace overpass::ctl {

/// How the container's interface is set up (TAP ports only).
struct container_iface {
    std::string netns;        ///< network namespace name (ip netns) of the container
    std::string ifname = "eth0";
    rte_ether_addr mac;
    std::string ip_cidr;      ///< "10.0.2.2/24"
    std::string gateway;      ///< "10.0.2.1" (default route); empty: none
    uint16_t mtu;
    std::string dns_server;   ///< written to /etc/netns/<netns>/resolv.conf; empty: none
};

struct port_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class port_ops {
public:
    virtual ~port_ops() = default;
    /// Creates a TAP port, moves it into the container's namespace, configures it and
    /// starts polling it. Returns the DPDK port id. Throws port_error with a clear message.
    virtual uint16_t attach_tap(const std::string& endpoint, const container_iface& iface) = 0;
    /// Creates a vhost-user port listening on `socket_path` and starts polling it.
    virtual uint16_t attach_vhost(const std::string& endpoint, const std::string& socket_path) = 0;
    /// Stops polling, waits for a grace period, stops and removes the port.
    /// Call after the endpoint was removed from the tables. Never throws.
    virtual void detach(uint16_t port_id) noexcept = 0;
};

} // namespace overpass::ctl
