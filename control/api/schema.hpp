// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (the API) and the CLI (no DPDK, no Boost, no I/O)
//
// The local API's wire format, one definition for overpassd's API and the overpass CLI:
// its paths, the name of every field, and the JSON form of each request and answer.
// Decoding checks the shape (JSON object, known fields, types, required fields); the
// rules of a request (names, ranges) are validate()'s, in control/cluster/requests.hpp.
//
//   request                 answer
//   network_request   ->    net_meta                POST   /v1/networks
//                           [net_meta]              GET    /v1/networks
//                           network_details         GET    /v1/networks/<name>
//   attach_request    ->    endpoint_info           POST   /v1/endpoints
//                           [endpoint_info]         GET    /v1/endpoints
//   ?network=<net>                                  DELETE /v1/endpoints/<name>
//                           [host_info]             GET    /v1/hosts
//   errors:                 {"error": "<one line>"}
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/cluster/requests.hpp"

namespace overpass::ctl::api {

namespace path {
inline constexpr std::string_view networks = "/v1/networks";
inline constexpr std::string_view endpoints = "/v1/endpoints";
inline constexpr std::string_view hosts = "/v1/hosts";
inline constexpr std::string_view stats = "/v1/stats";
} // namespace path

/// "/v1/networks" + "net1" -> "/v1/networks/net1".
std::string item_path(std::string_view collection, std::string_view name);

namespace field {
// requests
inline constexpr const char* name = "name";
inline constexpr const char* subnet = "subnet";
inline constexpr const char* gateway = "gateway";
inline constexpr const char* vni = "vni";
inline constexpr const char* mtu = "mtu";
inline constexpr const char* allow_overlap = "allow_overlap";
inline constexpr const char* network = "network";   ///< also the query of DELETE /v1/endpoints/<name>
inline constexpr const char* netns = "netns";
inline constexpr const char* vhost_user = "vhost_user";
// answers
inline constexpr const char* id = "id";
inline constexpr const char* created_by = "created_by";
inline constexpr const char* driver = "driver";
inline constexpr const char* scope = "scope";
inline constexpr const char* endpoints = "endpoints";
inline constexpr const char* network_id = "network_id";
inline constexpr const char* ip = "ip";
inline constexpr const char* address = "address";
inline constexpr const char* mac = "mac";
inline constexpr const char* host = "host";
inline constexpr const char* vtep = "vtep";
inline constexpr const char* kind = "kind";
inline constexpr const char* vxlan_port = "vxlan_port";
inline constexpr const char* control = "control";   ///< the agent's section of GET /v1/stats
inline constexpr const char* error = "error";
} // namespace field

/// JSON that does not have the schema's shape: not JSON, not an object, an unknown or
/// missing field, a wrong type, a number out of range. One line; the API answers 400.
struct schema_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// The body of `r` as the API reads it: encoded, then decoded and validated the way the
/// daemon does it, so that a sender finds what the daemon would refuse, with the
/// daemon's words: schema_error, or cluster_error{invalid}. (The daemon alone checks what
/// needs its configuration or the store.)
nlohmann::json request_body(const network_request& r);
nlohmann::json request_body(const attach_request& r);

/// An endpoint's "address": "10.0.2.2/24".
std::string address(const endpoint_info& e);

/// A request body: a JSON object, else schema_error (also for a number that does not
/// fit a double, e.g. 1e400).
nlohmann::json parse_object(std::string_view text);

nlohmann::json encode(const network_request& r);
nlohmann::json encode(const attach_request& r);
nlohmann::json encode(const net_meta& m);
nlohmann::json encode(const network_details& d);
nlohmann::json encode(const endpoint_info& e);
nlohmann::json encode(const host_info& h);

/// The inverse of encode(); throws schema_error naming the field at fault. Requests are
/// read strictly (an unknown field is an error); answers ignore fields they do not know.
template <class T>
T decode(const nlohmann::json& j);
template <>
network_request decode<network_request>(const nlohmann::json& j);
template <>
attach_request decode<attach_request>(const nlohmann::json& j);
template <>
net_meta decode<net_meta>(const nlohmann::json& j);
template <>
network_details decode<network_details>(const nlohmann::json& j);
template <>
endpoint_info decode<endpoint_info>(const nlohmann::json& j);
template <>
host_info decode<host_info>(const nlohmann::json& j);

} // namespace overpass::ctl::api
