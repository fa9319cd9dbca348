// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (pure functions; also used by the CLI-free unit tests)
//
// The store's key layout and the JSON records kept under it (addresses, names and the
// MAC rule are in control/addressing.hpp). The same key strings are
// used by every backend, so they stay within Consul's key alphabet [A-Za-z0-9,-_./]:
//
//   overpass/v1/nets/<id>/meta         persistent  net_meta
//   overpass/v1/names/<name>           persistent  "<id>"   create-only claim
//   overpass/v1/vnis/<vni>             persistent  "<id>"   create-only claim
//   overpass/v1/subnets/<a.b.c.d_len>  persistent  "<id>"   create-only claim
//   overpass/v1/hosts/<host-id>        ephemeral   host_record
//   overpass/v1/nets/<id>/eps/<ip>     ephemeral   endpoint_record (IP claim + peer record)
//   overpass/v1/nets/<id>/epnames/<n>  ephemeral   "<ip>"   name claim, same txn as the IP claim
//   overpass/v1/nets/<id>/alloc        persistent  "<ip>"   the address handed out last
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/addressing.hpp"

namespace overpass::ctl {

/// Consul's key alphabet [A-Za-z0-9,-_./], no leading '/', no empty components.
bool valid_key(std::string_view key);
/// valid_key, or std::invalid_argument naming the key.
void check_store_key(std::string_view key);

// ---- key layout ----

namespace keys {

inline constexpr std::string_view root = "overpass/v1/";

std::string nets_prefix();                                  // overpass/v1/nets/
std::string net_prefix(std::string_view net_id);            // overpass/v1/nets/<id>/
std::string net_meta(std::string_view net_id);
std::string endpoints_prefix(std::string_view net_id);      // overpass/v1/nets/<id>/eps/
std::string endpoint(std::string_view net_id, uint32_t ip);
/// Ephemeral claim of an endpoint name in a network (value: its address), created in the
/// same transaction as the address claim so that two hosts cannot both take a name.
std::string endpoint_name(std::string_view net_id, std::string_view name);
/// The address the network handed out last (persistent, dotted quad): allocation goes on
/// after it, so that a freed address is handed out again only after the rest of the pool.
std::string alloc_cursor(std::string_view net_id);
std::string names_prefix();
std::string name(std::string_view net_name);
std::string vnis_prefix();
std::string vni(uint32_t vni);
std::string subnets_prefix();
std::string subnet(const ipv4_prefix& p);
std::string hosts_prefix();
std::string host(std::string_view host_id);

/// What a key under root names. kind::other for anything unrecognised.
struct parsed {
    enum class kind { other, net_meta, endpoint, name, vni, subnet, host } what = kind::other;
    std::string id;        ///< network id (net_meta, endpoint) or host id or name
    uint32_t ip = 0;       ///< endpoint address
};
parsed parse(std::string_view key);

} // namespace keys

// ---- records (values) ----

struct net_meta {
    std::string id;            ///< not stored in the value; taken from the key
    std::string name;
    uint32_t vni = 0;
    ipv4_prefix subnet;
    uint32_t gateway = 0;
    uint16_t mtu = 0;
    std::string created_by;
};

struct host_record {
    std::string vtep;          ///< dotted quad
    uint16_t vxlan_port = 0;
};

struct endpoint_record {
    std::string name;
    std::string mac;           ///< "02:42:0a:00:02:02"
    std::string host;
    std::string vtep;
    std::string kind;          ///< "tap" | "vhost"
};

/// Serialised form of each record. The parse functions throw std::invalid_argument
/// (or nlohmann::json::exception) on records that are missing fields or out of range.
std::string to_value(const net_meta& m);
net_meta net_meta_from_value(std::string_view net_id, std::string_view value);
std::string to_value(const host_record& h);
host_record host_record_from_value(std::string_view value);
std::string to_value(const endpoint_record& e);
endpoint_record endpoint_record_from_value(std::string_view value);

nlohmann::json to_json(const net_meta& m);

} // namespace overpass::ctl
