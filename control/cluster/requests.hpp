// SPDX-License-Identifier: Apache-2.0
// runs on: control thread and the CLI (no DPDK, no I/O)
//
// What the cluster agent is asked and what it answers: the requests of its operations,
// the records it returns, and the one check of a request on its own (names, the subnet
// and gateway syntax, the VNI range, the choices that go together). The agent makes that
// check on every request, and the CLI before it sends one, so both say the same thing.
// What needs this host's configuration or the store's state (the MTU range, a gateway
// inside the chosen subnet, overlaps, claims) is checked by the agent alone.
// Their JSON form is the API's: control/api/schema.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "control/addressing.hpp"
#include "control/cluster/errors.hpp"
#include "control/store/keys.hpp"   // net_meta (the struct only)

namespace overpass::ctl {

struct network_request {
    std::string name;
    std::optional<std::string> subnet;    ///< CIDR; default: first free 10.0.N.0/24
    std::optional<std::string> gateway;   ///< default: first host address
    std::optional<uint32_t> vni;          ///< default: lowest free >= 4096
    std::optional<uint32_t> mtu;          ///< default: config default_mtu
    /// Let the subnet overlap other networks' (isolated by VNI; needs an explicit subnet).
    /// Such a network claims no subnets/ key, and ordinary networks still refuse to
    /// overlap it.
    bool allow_overlap = false;
};

struct attach_request {
    std::string network;
    std::string name;
    std::string netns;        ///< TAP into this namespace, or
    std::string vhost_user;   ///< a vhost-user socket path (exactly one of the two)
};

struct endpoint_info {
    std::string network;      ///< network name
    std::string network_id;
    std::string name;
    uint32_t ip = 0;          ///< host order
    uint8_t prefix_len = 0;
    std::string mac;
    std::string host;
    std::string vtep;
    std::string kind;
};

struct host_info {
    std::string id;
    std::string vtep;
    uint16_t vxlan_port = 0;
};

/// A network and the endpoints attached to it, on any host.
struct network_details {
    net_meta network;
    std::vector<endpoint_info> endpoints;
};

/// The text fields of a valid network_request, read.
struct network_request_values {
    std::optional<ipv4_prefix> subnet;
    std::optional<uint32_t> gateway;
};

/// The check of a request on its own. Throws cluster_error{invalid} with a one-line
/// message on the first fault found.
network_request_values validate(const network_request& req);
void validate(const attach_request& req);

} // namespace overpass::ctl
