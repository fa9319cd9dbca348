// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/store/keys.hpp"

#include <charconv>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace overpass::ctl {

void check_store_key(std::string_view key) {
    if (!valid_key(key))
        throw std::invalid_argument("invalid store key \"" + std::string(key) + "\"");
}

bool valid_key(std::string_view key) {
    if (key.empty() || key.front() == '/')
        return false;
    char prev = 0;
    for (char c : key) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == ',' || c == '-' || c == '_' || c == '.' || c == '/';
        if (!ok || (c == '/' && prev == '/'))
            return false;
        prev = c;
    }
    return true;
}

namespace keys {

std::string nets_prefix() { return std::string(root) + "nets/"; }
std::string net_prefix(std::string_view id) { return nets_prefix() + std::string(id) + '/'; }
std::string net_meta(std::string_view id) { return net_prefix(id) + "meta"; }
std::string alloc_cursor(std::string_view id) { return net_prefix(id) + "alloc"; }
std::string endpoints_prefix(std::string_view id) { return net_prefix(id) + "eps/"; }
std::string endpoint(std::string_view id, uint32_t ip) { return endpoints_prefix(id) + format_ipv4(ip); }
std::string endpoint_name(std::string_view id, std::string_view name) {
    return net_prefix(id) + "epnames/" + std::string(name);
}
std::string names_prefix() { return std::string(root) + "names/"; }
std::string name(std::string_view n) { return names_prefix() + std::string(n); }
std::string vnis_prefix() { return std::string(root) + "vnis/"; }
std::string vni(uint32_t v) { return vnis_prefix() + std::to_string(v); }
std::string subnets_prefix() { return std::string(root) + "subnets/"; }
std::string subnet(const ipv4_prefix& p) { return subnets_prefix() + p.key_str(); }
std::string hosts_prefix() { return std::string(root) + "hosts/"; }
std::string host(std::string_view id) { return hosts_prefix() + std::string(id); }

parsed parse(std::string_view key) {
    parsed out;
    if (!key.starts_with(root))
        return out;
    key.remove_prefix(root.size());
    auto take = [&key]() {
        const size_t slash = key.find('/');
        std::string_view part = key.substr(0, slash);
        key = slash == std::string_view::npos ? std::string_view{} : key.substr(slash + 1);
        return part;
    };
    const std::string_view top = take();
    const std::string_view id = take();
    if (id.empty())
        return out;
    if (top == "nets") {
        const std::string_view what = take();
        if (what == "meta" && key.empty()) {
            out.what = parsed::kind::net_meta;
            out.id = id;
        } else if (what == "eps" && key.find('/') == std::string_view::npos) {
            if (auto ip = parse_ipv4(key)) {
                out.what = parsed::kind::endpoint;
                out.id = id;
                out.ip = *ip;
            }
        }
        return out;
    }
    if (!key.empty())
        return out;
    if (top == "names")
        out.what = parsed::kind::name;
    else if (top == "vnis")
        out.what = parsed::kind::vni;
    else if (top == "subnets")
        out.what = parsed::kind::subnet;
    else if (top == "hosts")
        out.what = parsed::kind::host;
    else
        return out;
    out.id = id;
    return out;
}

} // namespace keys

namespace {

/// An unsigned integer field of a record, at most `max`: a negative, fractional or larger
/// number is refused rather than cut to the field's width.
uint64_t uint_field(const nlohmann::json& j, const char* name, uint64_t max) {
    const nlohmann::json& v = j.at(name);
    if (!v.is_number_unsigned() || v.get<uint64_t>() > max)
        throw std::invalid_argument(std::string(name) + " " + v.dump() + " out of range");
    return v.get<uint64_t>();
}

} // namespace

nlohmann::json to_json(const net_meta& m) {
    return {{"id", m.id},
            {"name", m.name},
            {"vni", m.vni},
            {"subnet", m.subnet.str()},
            {"gateway", format_ipv4(m.gateway)},
            {"mtu", m.mtu},
            {"created_by", m.created_by}};
}

std::string to_value(const net_meta& m) {
    nlohmann::json j = to_json(m);
    j.erase("id");
    return j.dump();
}

net_meta net_meta_from_value(std::string_view net_id, std::string_view value) {
    const auto j = nlohmann::json::parse(value);
    net_meta m;
    m.id = net_id;
    m.name = j.at("name").get<std::string>();
    m.vni = static_cast<uint32_t>(uint_field(j, "vni", max_vni));
    m.subnet = parse_prefix(j.at("subnet").get<std::string>());
    const auto gw = parse_ipv4(j.at("gateway").get<std::string>());
    if (!gw || !m.subnet.contains(*gw))
        throw std::invalid_argument("gateway outside the subnet");
    m.gateway = *gw;
    const uint64_t mtu = uint_field(j, "mtu", max_network_mtu);
    if (mtu < min_network_mtu)
        throw std::invalid_argument("mtu " + std::to_string(mtu) + " out of range");
    m.mtu = static_cast<uint16_t>(mtu);
    m.created_by = j.value("created_by", "");
    if (!valid_vni(m.vni))
        throw std::invalid_argument("vni out of range");
    return m;
}

std::string to_value(const host_record& h) {
    return nlohmann::json{{"vtep", h.vtep}, {"vxlan_port", h.vxlan_port}}.dump();
}

host_record host_record_from_value(std::string_view value) {
    const auto j = nlohmann::json::parse(value);
    host_record h{j.at("vtep").get<std::string>(), static_cast<uint16_t>(uint_field(j, "vxlan_port", UINT16_MAX))};
    if (!parse_ipv4(h.vtep))
        throw std::invalid_argument("bad vtep address");
    return h;
}

std::string to_value(const endpoint_record& e) {
    return nlohmann::json{{"name", e.name}, {"mac", e.mac}, {"host", e.host}, {"vtep", e.vtep}, {"kind", e.kind}}
        .dump();
}

endpoint_record endpoint_record_from_value(std::string_view value) {
    const auto j = nlohmann::json::parse(value);
    endpoint_record e{j.at("name").get<std::string>(), j.at("mac").get<std::string>(),
                      j.at("host").get<std::string>(), j.at("vtep").get<std::string>(),
                      j.value("kind", "")};
    if (!parse_mac(e.mac))
        throw std::invalid_argument("bad mac");
    if (!parse_ipv4(e.vtep))
        throw std::invalid_argument("bad vtep address");
    return e;
}

} // namespace overpass::ctl
