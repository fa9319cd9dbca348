// SPDX-License-Identifier: Apache-2.0
// runs on: control thread and the CLI (no DPDK, no I/O)
//
// The cluster's failures in its own terms: what kind of thing went wrong, and one line
// for a person. Nothing here knows HTTP: control/api maps each kind to a status code
// (api_server.cpp, status_of), the CLI prints the line.
#pragma once

#include <stdexcept>
#include <string>

namespace overpass::ctl {

enum class error_kind {
    invalid,       ///< the request itself is wrong (a name, a range, a missing choice)
    not_found,     ///< it names a network or endpoint that does not exist
    conflict,      ///< it collides with what exists (a name, a VNI, a subnet, attached endpoints)
    exhausted,     ///< no free subnet, VNI or address left to hand out
    unavailable,   ///< this host cannot serve it right now (store session lost); try again
    internal,      ///< this host failed to carry it out (port, tables)
};

/// A failure of a cluster operation that the caller should show to a user.
struct cluster_error : std::runtime_error {
    error_kind kind;
    cluster_error(error_kind k, const std::string& message) : std::runtime_error(message), kind(k) {}
};

} // namespace overpass::ctl
