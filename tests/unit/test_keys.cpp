// SPDX-License-Identifier: Apache-2.0
// runs on: unit tests (no EAL)
#include <gtest/gtest.h>

#include "control/store/keys.hpp"

using namespace overpass::ctl;

TEST(keys, ipv4_parse_and_format) {
    EXPECT_EQ(parse_ipv4("10.0.2.1"), 0x0a000201u);
    EXPECT_EQ(parse_ipv4("255.255.255.255"), 0xffffffffu);
    for (const char* bad : {"", "10.0.2", "10.0.2.1.5", "10.0.2.256", "10.0.02.1", "a.b.c.d", "10..2.1", "10.0.2.1 "})
        EXPECT_FALSE(parse_ipv4(bad)) << bad;
    EXPECT_EQ(format_ipv4(0x0a000201), "10.0.2.1");
}

TEST(keys, prefix_parse_rejects_junk_and_host_bits) {
    const ipv4_prefix p = parse_prefix("10.0.2.0/24");
    EXPECT_EQ(p.addr, 0x0a000200u);
    EXPECT_EQ(p.len, 24);
    EXPECT_EQ(p.broadcast(), 0x0a0002ffu);
    EXPECT_EQ(p.str(), "10.0.2.0/24");
    EXPECT_EQ(p.key_str(), "10.0.2.0_24");
    for (const char* bad : {"10.0.2.0", "10.0.2.0/33", "10.0.2.0/0", "10.0.2.0/", "10.0.2.0/x", "/24"})
        EXPECT_THROW(parse_prefix(bad), std::invalid_argument) << bad;
    try {
        parse_prefix("10.0.2.1/24");
        FAIL();
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("did you mean 10.0.2.0/24"), std::string::npos) << e.what();
    }
}

TEST(keys, prefix_overlap_is_symmetric_and_size_aware) {
    const auto a = parse_prefix("10.0.0.0/16");
    const auto b = parse_prefix("10.0.2.0/24");
    const auto c = parse_prefix("10.1.0.0/24");
    EXPECT_TRUE(a.overlaps(b));
    EXPECT_TRUE(b.overlaps(a));
    EXPECT_FALSE(a.overlaps(c));
    EXPECT_FALSE(c.overlaps(b));
    EXPECT_TRUE(parse_prefix("10.9.0.0/30").contains(0x0a090003));
    EXPECT_FALSE(parse_prefix("10.9.0.0/30").contains(0x0a090004));
}

TEST(keys, names) {
    for (const char* good : {"a", "net1", "Net_1.x-y", "0abc"})
        EXPECT_TRUE(valid_name(good)) << good;
    EXPECT_TRUE(valid_name(std::string(64, 'a')));
    for (const char* bad : {"", "-net", "_net", ".net", "net/1", "net 1", "net:1", "ne\xc3\xa9"})
        EXPECT_FALSE(valid_name(bad)) << bad;
    EXPECT_FALSE(valid_name(std::string(65, 'a')));
}

TEST(keys, key_alphabet) {
    EXPECT_TRUE(valid_key("overpass/v1/subnets/10.0.2.0_24"));
    EXPECT_TRUE(valid_key("a,b-c_d.e/f"));
    EXPECT_FALSE(valid_key("/overpass"));
    EXPECT_FALSE(valid_key("overpass//v1"));
    EXPECT_FALSE(valid_key("overpass/v1/subnets/10.0.2.0/24 "));
    EXPECT_FALSE(valid_key("overpass/v1/x:y"));
    EXPECT_FALSE(valid_key(""));
}

TEST(keys, layout_round_trips) {
    EXPECT_EQ(keys::subnet(parse_prefix("10.0.2.0/24")), "overpass/v1/subnets/10.0.2.0_24");
    EXPECT_EQ(keys::endpoint("abc", 0x0a000205), "overpass/v1/nets/abc/eps/10.0.2.5");
    auto p = keys::parse("overpass/v1/nets/abc/eps/10.0.2.5");
    EXPECT_EQ(p.what, keys::parsed::kind::endpoint);
    EXPECT_EQ(p.id, "abc");
    EXPECT_EQ(p.ip, 0x0a000205u);
    EXPECT_EQ(keys::parse(keys::net_meta("abc")).what, keys::parsed::kind::net_meta);
    EXPECT_EQ(keys::parse(keys::host("h1")).id, "h1");
    EXPECT_EQ(keys::parse("overpass/v1/nets/abc/eps/10.0.2").what, keys::parsed::kind::other);
    EXPECT_EQ(keys::parse("overpass/v1/nets/abc/meta/x").what, keys::parsed::kind::other);
    EXPECT_EQ(keys::parse("overpass/v2/hosts/h1").what, keys::parsed::kind::other);
    EXPECT_EQ(keys::parse("overpass/v1/hosts/").what, keys::parsed::kind::other);
}

TEST(keys, mac_derives_from_ip) {
    EXPECT_EQ(format_mac(mac_for_ip(0x0a000202)), "02:42:0a:00:02:02");
    EXPECT_EQ(parse_mac("02:42:0a:00:02:02"), mac_for_ip(0x0a000202));
    EXPECT_FALSE(parse_mac("02:42:0a:00:02"));
    EXPECT_FALSE(parse_mac("02-42-0a-00-02-02"));
    EXPECT_FALSE(parse_mac("02:42:0a:00:02:zz"));
}

TEST(keys, records_round_trip_and_reject_bad_values) {
    net_meta m{"id1", "net1", 4096, parse_prefix("10.0.2.0/24"), 0x0a000201, 1450, "h1"};
    const net_meta back = net_meta_from_value("id1", to_value(m));
    EXPECT_EQ(back.name, "net1");
    EXPECT_EQ(back.subnet, m.subnet);
    EXPECT_EQ(back.gateway, m.gateway);
    EXPECT_EQ(back.mtu, 1450);
    EXPECT_ANY_THROW(net_meta_from_value("x", "{not json"));
    EXPECT_ANY_THROW(net_meta_from_value("x", R"({"name":"n","vni":1,"subnet":"10.0.2.0/24","gateway":"10.0.3.1","mtu":1450})"));
    EXPECT_ANY_THROW(net_meta_from_value("x", R"({"name":"n","vni":0,"subnet":"10.0.2.0/24","gateway":"10.0.2.1","mtu":1450})"));
    EXPECT_ANY_THROW(endpoint_record_from_value(R"({"name":"a","mac":"zz","host":"h","vtep":"1.2.3.4"})"));
    EXPECT_ANY_THROW(host_record_from_value(R"({"vtep":"1.2.3","vxlan_port":4789})"));
    EXPECT_EQ(host_record_from_value(to_value(host_record{"198.18.0.1", 4789})).vtep, "198.18.0.1");
}
