// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (the API) and the CLI
#include "control/api/schema.hpp"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>

namespace overpass::ctl::api {

namespace {

using json = nlohmann::json;

[[noreturn]] void fault(const std::string& message) { throw schema_error(message); }

std::string quoted(const char* name) { return std::string("\"") + name + "\""; }

void expect_object(const json& j) {
    if (!j.is_object())
        fault("expected a JSON object, got " + std::string(j.type_name()));
}

/// Requests: every member must be one of `known`.
void only(const json& j, std::initializer_list<const char*> known) {
    for (const auto& [k, v] : j.items())
        if (std::none_of(known.begin(), known.end(), [&k](const char* f) { return k == f; }))
            fault("unknown field \"" + k + "\"");
}

/// A member, or nullptr when it is absent or null.
const json* member(const json& j, const char* name) {
    const auto it = j.find(name);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<std::string> opt_string(const json& j, const char* name) {
    const json* f = member(j, name);
    if (f == nullptr)
        return std::nullopt;
    if (!f->is_string())
        fault("field " + quoted(name) + " must be a string");
    return f->get<std::string>();
}

/// A request's required text: present and not empty.
std::string req_string(const json& j, const char* name) {
    auto s = opt_string(j, name);
    if (!s || s->empty())
        fault("missing field " + quoted(name));
    return *s;
}

/// An answer's text: present (it may be empty).
std::string get_string(const json& j, const char* name) {
    auto s = opt_string(j, name);
    if (!s)
        fault("missing field " + quoted(name));
    return *s;
}

/// An unsigned integer up to `max`: a JSON float (4096.0, 1e300), a negative number or a
/// string is refused, as is anything above `max`.
std::optional<uint32_t> opt_uint(const json& j, const char* name, uint32_t max = UINT32_MAX) {
    const json* f = member(j, name);
    if (f == nullptr)
        return std::nullopt;
    if (!f->is_number_unsigned() || f->get<uint64_t>() > max)
        fault("field " + quoted(name) +
              (max == UINT32_MAX ? " must be a non-negative integer"
                                 : " must be an integer between 0 and " + std::to_string(max)));
    return static_cast<uint32_t>(f->get<uint64_t>());
}

uint32_t get_uint(const json& j, const char* name, uint32_t max = UINT32_MAX) {
    const auto v = opt_uint(j, name, max);
    if (!v)
        fault("missing field " + quoted(name));
    return *v;
}

uint32_t get_ipv4(const json& j, const char* name) {
    const std::string s = get_string(j, name);
    const auto ip = parse_ipv4(s);
    if (!ip)
        fault("field " + quoted(name) + " is not an IPv4 address: \"" + s + "\"");
    return *ip;
}

ipv4_prefix get_prefix(const json& j, const char* name) {
    try {
        return parse_prefix(get_string(j, name));
    } catch (const std::invalid_argument& e) {
        fault("field " + quoted(name) + ": " + e.what());
    }
}

} // namespace

std::string item_path(std::string_view collection, std::string_view name) {
    std::string p(collection);
    p += '/';
    p += name;
    return p;
}

json parse_object(std::string_view text) {
    json j;
    try {
        j = json::parse(text.begin(), text.end());
    } catch (const json::out_of_range& e) {
        // "[json.exception.out_of_range.406] number overflow parsing '1e400'"
        std::string number;
        const std::string what = e.what();
        if (const size_t a = what.find('\''), b = what.rfind('\''); a != std::string::npos && b > a)
            number = what.substr(a + 1, std::min<size_t>(b - a - 1, 40));
        fault(number.empty() ? "request body has a number out of range"
                             : "number " + number + " in the request body is out of range");
    } catch (const json::exception&) {
        fault("request body is not valid JSON");
    }
    if (!j.is_object())
        fault("request body must be a JSON object");
    return j;
}

// ---- requests ----

json encode(const network_request& r) {
    json j{{field::name, r.name}};
    if (r.subnet)
        j[field::subnet] = *r.subnet;
    if (r.gateway)
        j[field::gateway] = *r.gateway;
    if (r.vni)
        j[field::vni] = *r.vni;
    if (r.mtu)
        j[field::mtu] = *r.mtu;
    if (r.allow_overlap)
        j[field::allow_overlap] = true;
    return j;
}

template <>
network_request decode<network_request>(const json& j) {
    if (!j.is_object())
        fault("request body must be a JSON object");
    only(j, {field::name, field::subnet, field::gateway, field::vni, field::mtu, field::allow_overlap});
    network_request r{req_string(j, field::name), opt_string(j, field::subnet), opt_string(j, field::gateway),
                      opt_uint(j, field::vni), opt_uint(j, field::mtu), false};
    if (const auto it = j.find(field::allow_overlap); it != j.end()) {
        if (!it->is_boolean())
            fault(std::string(field::allow_overlap) + " must be true or false");
        r.allow_overlap = it->get<bool>();
    }
    return r;
}

json encode(const attach_request& r) {
    json j{{field::network, r.network}, {field::name, r.name}};
    if (!r.netns.empty())
        j[field::netns] = r.netns;
    if (!r.vhost_user.empty())
        j[field::vhost_user] = r.vhost_user;
    return j;
}

template <>
attach_request decode<attach_request>(const json& j) {
    if (!j.is_object())
        fault("request body must be a JSON object");
    only(j, {field::network, field::name, field::netns, field::vhost_user});
    return {req_string(j, field::network), req_string(j, field::name), opt_string(j, field::netns).value_or(""),
            opt_string(j, field::vhost_user).value_or("")};
}

json request_body(const network_request& r) {
    json j = encode(r);
    validate(decode<network_request>(j));
    return j;
}

json request_body(const attach_request& r) {
    json j = encode(r);
    validate(decode<attach_request>(j));
    return j;
}

// ---- answers ----

std::string address(const endpoint_info& e) { return format_ipv4(e.ip) + "/" + std::to_string(e.prefix_len); }

json encode(const net_meta& m) {
    return {{field::id, m.id},
            {field::name, m.name},
            {field::vni, m.vni},
            {field::subnet, m.subnet.str()},
            {field::gateway, format_ipv4(m.gateway)},
            {field::mtu, m.mtu},
            {field::created_by, m.created_by}};
}

template <>
net_meta decode<net_meta>(const json& j) {
    expect_object(j);
    net_meta m;
    m.id = get_string(j, field::id);
    m.name = get_string(j, field::name);
    m.vni = get_uint(j, field::vni);
    m.subnet = get_prefix(j, field::subnet);
    m.gateway = get_ipv4(j, field::gateway);
    m.mtu = static_cast<uint16_t>(get_uint(j, field::mtu, UINT16_MAX));
    m.created_by = opt_string(j, field::created_by).value_or("");
    return m;
}

json encode(const network_details& d) {
    json j = encode(d.network);
    j[field::driver] = "overpass";
    j[field::scope] = "global";
    json eps = json::array();
    for (const auto& e : d.endpoints)
        eps.push_back(encode(e));
    j[field::endpoints] = std::move(eps);
    return j;
}

template <>
network_details decode<network_details>(const json& j) {
    network_details d{decode<net_meta>(j), {}};
    const json* eps = member(j, field::endpoints);
    if (eps == nullptr || !eps->is_array())
        fault("field " + quoted(field::endpoints) + " must be an array");
    for (const auto& e : *eps)
        d.endpoints.push_back(decode<endpoint_info>(e));
    return d;
}

json encode(const endpoint_info& e) {
    return {{field::network, e.network},
            {field::network_id, e.network_id},
            {field::name, e.name},
            {field::ip, format_ipv4(e.ip)},
            {field::address, address(e)},
            {field::mac, e.mac},
            {field::host, e.host},
            {field::vtep, e.vtep},
            {field::kind, e.kind}};
}

template <>
endpoint_info decode<endpoint_info>(const json& j) {
    expect_object(j);
    endpoint_info e;
    e.network = get_string(j, field::network);
    e.network_id = get_string(j, field::network_id);
    e.name = get_string(j, field::name);
    // "10.0.2.2/24": the address and the network's prefix length ("ip" repeats the address).
    const std::string text = get_string(j, field::address);
    const size_t slash = text.find('/');
    const auto ip = parse_ipv4(std::string_view(text).substr(0, slash));
    const std::string len = slash == std::string::npos ? "" : text.substr(slash + 1);
    const bool digits = std::all_of(len.begin(), len.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!ip || len.empty() || len.size() > 2 || !digits || std::stoul(len) > 32)
        fault("field " + quoted(field::address) + " is not an address/prefix length: \"" + text + "\"");
    e.ip = *ip;
    e.prefix_len = static_cast<uint8_t>(std::stoul(len));
    e.mac = get_string(j, field::mac);
    e.host = get_string(j, field::host);
    e.vtep = get_string(j, field::vtep);
    e.kind = get_string(j, field::kind);
    return e;
}

json encode(const host_info& h) {
    return {{field::id, h.id}, {field::vtep, h.vtep}, {field::vxlan_port, h.vxlan_port}};
}

template <>
host_info decode<host_info>(const json& j) {
    expect_object(j);
    return {get_string(j, field::id), get_string(j, field::vtep),
            static_cast<uint16_t>(get_uint(j, field::vxlan_port, UINT16_MAX))};
}

} // namespace overpass::ctl::api
