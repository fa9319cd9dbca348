// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (pure functions; also used by the CLI-free unit tests)
//
// The store's key layout and the JSON records kept under it. The same key strings are
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

namespace overpass::ctl {

// ---- IPv4 addresses and prefixes (host byte order) ----

/// "10.0.2.1" -> 0x0a000201. Strict dotted quad; nullopt on anything else.
std::optional<uint32_t> parse_ipv4(std::string_view s);
std::string format_ipv4(uint32_t addr);

struct ipv4_prefix {
    uint32_t addr = 0;   ///< network address (host bits are zero)
    uint8_t len = 0;

    uint32_t mask() const noexcept { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }
    uint32_t broadcast() const noexcept { return addr | ~mask(); }
    bool contains(uint32_t ip) const noexcept { return (ip & mask()) == addr; }
    bool overlaps(const ipv4_prefix& o) const noexcept {
        const uint32_t m = len < o.len ? mask() : o.mask();
        return (addr & m) == (o.addr & m);
    }
    std::string str() const;        ///< "10.0.2.0/24"
    std::string key_str() const;    ///< "10.0.2.0_24" (the subnets/ key component)
    bool operator==(const ipv4_prefix&) const = default;
};

/// "10.0.2.0/24". Rejects host bits set ("10.0.2.1/24"), lengths outside 1..32 and junk.
/// Throws std::invalid_argument with a one-line message.
ipv4_prefix parse_prefix(std::string_view s);

/// Docker-like network / endpoint names: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 chars.
bool valid_name(std::string_view name);
/// Consul's key alphabet [A-Za-z0-9,-_./], no leading '/', no empty components.
bool valid_key(std::string_view key);
/// valid_key, or std::invalid_argument naming the key.
void check_store_key(std::string_view key);

/// Docker's MAC scheme: 02:42 followed by the four IPv4 bytes.
std::array<uint8_t, 6> mac_for_ip(uint32_t ip);
std::string format_mac(const std::array<uint8_t, 6>& mac);
std::optional<std::array<uint8_t, 6>> parse_mac(std::string_view s);

/// Lowest VNI handed out by default (below it stays free for manual assignment).
inline constexpr uint32_t first_auto_vni = 4096;
inline constexpr uint32_t max_vni = (1u << 24) - 1;

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

/// 16 random hex characters, used for network ids and session ids.
std::string random_id();

} // namespace overpass::ctl
