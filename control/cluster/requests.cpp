// SPDX-License-Identifier: Apache-2.0
// runs on: control thread and the CLI
#include "control/cluster/requests.hpp"

#include <stdexcept>

namespace overpass::ctl {

namespace {

[[noreturn]] void invalid(const std::string& message) { throw cluster_error(error_kind::invalid, message); }

} // namespace

network_request_values validate(const network_request& req) {
    network_request_values v;
    if (!valid_name(req.name))
        invalid("invalid network name \"" + req.name +
                "\": use letters, digits, '_', '.', '-', starting with a letter or digit, at most 64");
    if (req.subnet) {
        try {
            v.subnet = parse_prefix(*req.subnet);
        } catch (const std::invalid_argument& e) {
            invalid(e.what());
        }
        if (v.subnet->len > 30)
            invalid("subnet " + v.subnet->str() + " is too small (at most /30)");
        if (const char* why = unusable_subnet(*v.subnet))
            invalid("subnet " + v.subnet->str() + " cannot hold containers: " + why);
    }
    if (req.vni && !valid_vni(*req.vni))
        invalid("invalid vni " + std::to_string(*req.vni) + ": must be between 1 and " + std::to_string(max_vni));
    if (req.allow_overlap && !req.subnet)
        invalid("--allow-overlap needs an explicit --subnet");
    if (req.gateway) {
        v.gateway = parse_ipv4(*req.gateway);
        if (!v.gateway)
            invalid("invalid gateway \"" + *req.gateway + "\"");
    }
    return v;
}

void validate(const attach_request& req) {
    if (!valid_name(req.name))
        invalid("invalid endpoint name \"" + req.name + "\"");
    if (req.netns.empty() == req.vhost_user.empty())
        invalid("give exactly one of netns (TAP) or vhost_user (socket path)");
    if (!req.netns.empty() && !valid_name(req.netns))
        invalid("invalid network namespace name \"" + req.netns + "\"");
}

} // namespace overpass::ctl
