// SPDX-License-Identifier: Apache-2.0
// runs on: unit tests (no EAL): the agent + API server on one io_context thread, the CLI
// in the test thread, over a unix socket in a temp dir; fake ports and tables.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <sstream>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "control/api/api_server.hpp"
#include "control/api/schema.hpp"
#include "control/store/file_store.hpp"
#include "control/cluster/agent.hpp"
#include "tests/unit/test_support.hpp"
#include "tools/overpass/cli.hpp"

using namespace overpass::ctl;
using namespace std::chrono_literals;
namespace test = overpass::test;

namespace {

struct cli_result {
    int code;
    std::string out;
    std::string err;
};

class api_cli_test : public ::testing::Test {
protected:
    test::temp_dir dir;
    std::string sock = dir.file("api.sock");
    boost::asio::io_context io;
    file_store st{io, dir.file("store.json")};
    test::fake_table_writer tw;
    test::fake_port_ops ports;
    agent ag{io, st, tw, ports,
             agent_config{"hostA", "198.18.0.1", rte_cpu_to_be_32(0xc6120001), 4789, 1450, 1500, 10s}};
    api_server api{io, ag, sock, [] { return nlohmann::json{{"workers", 1}}; }};
    std::thread thread;

    void SetUp() override {
        test::run(io, ag.start());
        api.start();
        thread = std::thread([this] {
            auto guard = boost::asio::make_work_guard(io);
            io.restart();
            io.run();
        });
    }

    void TearDown() override {
        std::promise<void> done;
        boost::asio::co_spawn(io, ag.shutdown(), [&](std::exception_ptr) {
            api.stop();
            done.set_value();
        });
        done.get_future().wait();
        io.stop();
        thread.join();
    }

    cli_result cli(std::vector<std::string> args) {
        args.insert(args.begin(), {"-H", "unix://" + sock});
        std::ostringstream out, err;
        const int code = overpass::cli::run(args, "", out, err);
        return {code, out.str(), err.str()};
    }

    // Runs a call on the io thread (the agent is single-threaded).
    template <class F>
    auto on_io(F f) {
        std::promise<decltype(f())> p;
        boost::asio::post(io, [&] { p.set_value(f()); });
        return p.get_future().get();
    }
    std::vector<std::string> tw_calls() { return on_io([this] { return tw.calls; }); }
    std::vector<std::string> port_calls() { return on_io([this] { return ports.calls; }); }

    // One request straight to the API's handler (no socket), on the io thread.
    api_response raw(std::string method, std::string target, std::string body = "") {
        return on_io([&] {
            std::optional<api_response> out;
            boost::asio::co_spawn(io, api.handle(method, target, body),
                                  [&](std::exception_ptr, api_response r) { out = r; });
            while (!out)
                io.run_one();
            return *out;
        });
    }
};

} // namespace

TEST_F(api_cli_test, network_lifecycle) {
    auto r = cli({"network", "create", "--subnet", "10.0.2.0/24", "net1"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out.size(), 17u) << r.out;   // the id

    r = cli({"network", "create", "net2"});   // default subnet: first free /24 of 10.0.0.0/16
    ASSERT_EQ(r.code, 0) << r.err;

    r = cli({"network", "ls"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::istringstream lines(r.out);
    std::string header, l1, l2, extra;
    std::getline(lines, header);
    std::getline(lines, l1);
    std::getline(lines, l2);
    EXPECT_FALSE(std::getline(lines, extra));
    EXPECT_TRUE(header.starts_with("NETWORK ID")) << header;
    for (const char* col : {"NAME", "DRIVER", "SCOPE", "SUBNET", "VNI"})
        EXPECT_NE(header.find(col), std::string::npos) << col;
    EXPECT_NE(l1.find("net1"), std::string::npos);
    EXPECT_NE(l1.find("10.0.2.0/24"), std::string::npos);
    EXPECT_NE(l1.find("overpass"), std::string::npos);
    EXPECT_NE(l1.find("global"), std::string::npos);
    EXPECT_NE(l1.find("4096"), std::string::npos);
    EXPECT_NE(l2.find("10.0.0.0/24"), std::string::npos) << l2;
    EXPECT_NE(l2.find("4097"), std::string::npos) << l2;

    r = cli({"network", "inspect", "net1"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["gateway"], "10.0.2.1");
    EXPECT_EQ(j["mtu"], 1450);
    EXPECT_EQ(j["endpoints"].size(), 0u);

    r = cli({"network", "create", "net1"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: network \"net1\" already exists\n");

    r = cli({"network", "create", "--subnet", "10.0.0.0/16", "wide"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("overlaps"), std::string::npos) << r.err;

    r = cli({"network", "create", "--vni", "4096", "--subnet", "10.1.0.0/24", "dupvni"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("vni 4096 is already used"), std::string::npos) << r.err;

    r = cli({"network", "create", "--mtu", "1460", "bigmtu"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("invalid mtu 1460"), std::string::npos) << r.err;

    r = cli({"network", "create", "-bad"});
    EXPECT_NE(r.code, 0);

    r = cli({"network", "rm", "net2"});
    ASSERT_EQ(r.code, 0) << r.err;
    r = cli({"network", "inspect", "net2"});
    EXPECT_EQ(r.err, "overpass: network \"net2\" not found\n");
    // Its claims were released: the same name, VNI and subnet can be used again.
    r = cli({"network", "create", "--vni", "4097", "--subnet", "10.0.0.0/24", "net2"});
    EXPECT_EQ(r.code, 0) << r.err;

    // The sync engine programs networks from the watch (a poll every 100 ms): wait for
    // the call itself, bounded, rather than for any two calls within 2 s.
    const std::string want = "upsert_network 4096 10.0.2.0 255.255.255.0 gw 10.0.2.1 mtu 1450";
    const auto has_want = [&] {
        const auto calls = tw_calls();
        return std::find(calls.begin(), calls.end(), want) != calls.end();
    };
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!has_want() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(has_want()) << ::testing::PrintToString(tw_calls());
}

TEST_F(api_cli_test, endpoints_attach_detach_and_errors) {
    ASSERT_EQ(cli({"network", "create", "--subnet", "10.0.2.0/24", "net1"}).code, 0);

    auto r = cli({"endpoint", "attach", "--network", "net1", "--name", "app1", "--netns", "ns1"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "app1 10.0.2.2/24 02:42:0a:00:02:02\n");
    const auto taps = on_io([this] { return ports.taps; });
    ASSERT_EQ(taps.size(), 1u);
    EXPECT_EQ(taps[0].netns, "ns1");
    EXPECT_EQ(taps[0].ifname, "eth0");
    EXPECT_EQ(taps[0].ip_cidr, "10.0.2.2/24");
    EXPECT_EQ(taps[0].gateway, "10.0.2.1");
    EXPECT_EQ(taps[0].dns_server, "10.0.2.1");
    EXPECT_EQ(taps[0].mtu, 1450);
    EXPECT_EQ(test::mac_str(taps[0].mac), "02:42:0a:00:02:02");
    auto calls = tw_calls();
    EXPECT_NE(std::find(calls.begin(), calls.end(), "upsert_local_endpoint 4096 10.0.2.2 02:42:0a:00:02:02 port 1"),
              calls.end());

    r = cli({"endpoint", "attach", "--network", "net1", "--name", "app1", "--netns", "ns2"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: endpoint name \"app1\" is already taken in network \"net1\"\n");

    r = cli({"endpoint", "attach", "--network", "nope", "--name", "x", "--netns", "ns2"});
    EXPECT_EQ(r.err, "overpass: network \"nope\" not found\n");

    r = cli({"endpoint", "attach", "--network", "net1", "--name", "app2", "--vhost-user", "/tmp/x.sock"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "app2 10.0.2.3/24 02:42:0a:00:02:03\n");

    // A failing port rolls back the claim: the next endpoint gets the same address.
    on_io([this] { ports.fail_endpoint = "boom"; return 0; });
    r = cli({"endpoint", "attach", "--network", "net1", "--name", "boom", "--netns", "nsx"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("netns \"nsx\" does not exist"), std::string::npos) << r.err;
    // A failing table update rolls back the port and the claim.
    on_io([this] { tw.fail_next = "upsert_local_endpoint"; return 0; });
    r = cli({"endpoint", "attach", "--network", "net1", "--name", "tbl", "--netns", "nsy"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(port_calls().back().find("detach 3"), std::string::npos) << port_calls().back();
    r = cli({"endpoint", "attach", "--network", "net1", "--name", "app3", "--netns", "ns3"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "app3 10.0.2.4/24 02:42:0a:00:02:04\n");

    r = cli({"endpoint", "ls"});
    ASSERT_EQ(r.code, 0);
    EXPECT_NE(r.out.find("app1"), std::string::npos);
    EXPECT_NE(r.out.find("hostA"), std::string::npos);
    EXPECT_EQ(r.out.find("boom"), std::string::npos);
    EXPECT_EQ(r.out.find("tbl"), std::string::npos);

    r = cli({"network", "rm", "net1"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: network \"net1\" has 3 endpoint(s) attached; detach them first\n");

    for (const char* e : {"app1", "app2", "app3"})
        ASSERT_EQ(cli({"endpoint", "detach", e}).code, 0) << e;
    calls = tw_calls();
    EXPECT_NE(std::find(calls.begin(), calls.end(), "remove_endpoint 4096 02:42:0a:00:02:02"), calls.end());
    r = cli({"endpoint", "detach", "app1"});
    EXPECT_EQ(r.err, "overpass: endpoint \"app1\" not found on this host\n");
    r = cli({"network", "rm", "net1"});
    EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(api_cli_test, pool_exhausted_on_a_slash_30) {
    ASSERT_EQ(cli({"network", "create", "--subnet", "10.9.0.0/30", "tiny"}).code, 0);
    auto r = cli({"endpoint", "attach", "--network", "tiny", "--name", "a", "--netns", "nsa"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "a 10.9.0.2/30 02:42:0a:09:00:02\n");
    r = cli({"endpoint", "attach", "--network", "tiny", "--name", "b", "--netns", "nsb"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: address pool of network \"tiny\" (10.9.0.0/30) is exhausted\n");
}

// Addresses are handed out in turn: a freed one comes back only after the rest of the
// pool, and then from the current state of the store.
TEST_F(api_cli_test, addresses_are_handed_out_in_turn) {
    ASSERT_EQ(cli({"network", "create", "--subnet", "10.7.0.0/29", "turn"}).code, 0);   // .2 to .6
    const auto attach = [this](const char* name) {
        const auto r = cli({"endpoint", "attach", "--network", "turn", "--name", name, "--netns", name});
        return r.code == 0 ? r.out.substr(r.out.find(' ') + 1, r.out.find('/') - r.out.find(' ') - 1) : r.err;
    };
    EXPECT_EQ(attach("a"), "10.7.0.2");
    EXPECT_EQ(attach("b"), "10.7.0.3");
    EXPECT_EQ(attach("c"), "10.7.0.4");
    ASSERT_EQ(cli({"endpoint", "detach", "b"}).code, 0);
    EXPECT_EQ(attach("d"), "10.7.0.5") << "the freed 10.7.0.3 waits for the rest of the pool";
    EXPECT_EQ(attach("e"), "10.7.0.6");
    EXPECT_EQ(attach("f"), "10.7.0.3") << "after the last address, the allocation wraps around";
    EXPECT_EQ(attach("g"), "overpass: address pool of network \"turn\" (10.7.0.0/29) is exhausted\n");
    ASSERT_EQ(cli({"endpoint", "detach", "a"}).code, 0);
    EXPECT_EQ(attach("h"), "10.7.0.2");

    for (const char* e : {"c", "d", "e", "f", "h"})
        ASSERT_EQ(cli({"endpoint", "detach", e}).code, 0) << e;
    ASSERT_EQ(cli({"network", "rm", "turn"}).code, 0);
    boost::asio::io_context io2;   // a reader of its own: `io` runs on the API's thread
    file_store reader{io2, dir.file("store.json")};
    const kv_snapshot left = test::run(io2, reader.list(keys::nets_prefix()));
    EXPECT_TRUE(left.items.empty()) << "network rm leaves " << left.items.front().key;
}

// Another host claiming the same endpoint name at the same moment: the name claim is
// made in the same transaction as the address claim, so exactly one host gets the name,
// and the loser keeps neither the address nor a half-made endpoint.
TEST_F(api_cli_test, endpoint_name_race_is_decided_by_the_store) {
    ASSERT_EQ(cli({"network", "create", "--subnet", "10.8.0.0/24", "race"}).code, 0);
    const auto inspect = nlohmann::json::parse(cli({"network", "inspect", "race"}).out);
    const std::string net_id = inspect.at("id").get<std::string>();
    {
        // "hostB", through its own store instance on the same file: it won the name an
        // instant after our listing (its address claim is not visible to us yet).
        boost::asio::io_context io2;
        file_store other{io2, dir.file("store.json")};
        std::vector<txn_op> ops;
        ops.push_back(txn_op::create(keys::endpoint_name(net_id, "app1"), "10.8.0.77"));
        const txn_result r = test::run(io2, other.txn(std::move(ops)));
        ASSERT_TRUE(r.succeeded);
    }
    auto r = cli({"endpoint", "attach", "--network", "race", "--name", "app1", "--netns", "ns1"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: endpoint name \"app1\" is already taken in network \"race\"\n");
    EXPECT_TRUE(port_calls().empty()) << "no port may be created for a lost claim";
    r = cli({"endpoint", "attach", "--network", "race", "--name", "app2", "--netns", "ns2"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "app2 10.8.0.2/24 02:42:0a:08:00:02\n");   // .2 was not kept by the loser
}

TEST_F(api_cli_test, hosts_and_stats) {
    auto r = cli({"host", "ls"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("hostA"), std::string::npos);
    EXPECT_NE(r.out.find("198.18.0.1"), std::string::npos);
    r = cli({"stats", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["workers"], 1);
    EXPECT_EQ(j["control"]["host"], "hostA");
    // The tables: this fake daemon has only the control section.
    r = cli({"stats"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out.rfind("host hostA  vtep 198.18.0.1  registered  0 local endpoints  store revision ", 0), 0u)
        << r.out;
    EXPECT_FALSE(nlohmann::json::accept(r.out));
    // --watch into a non-terminal: successive tables separated by a blank line, no ANSI codes.
    r = cli({"stats", "--watch", "--interval", "0.1", "--count", "3"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out.find('\033'), std::string::npos);
    size_t frames = 0;
    for (size_t at = r.out.find("overpass stats every 0.1s, "); at != std::string::npos;
         at = r.out.find("overpass stats every 0.1s, ", at + 1)) {
        EXPECT_TRUE(at == 0 || r.out.compare(at - 2, 2, "\n\n") == 0) << r.out;
        frames++;
    }
    EXPECT_EQ(frames, 3u) << r.out;
}

TEST_F(api_cli_test, bad_requests_are_answered_not_fatal) {
    auto call = [this](std::string m, std::string t, std::string b) {
        return on_io([&] {
            std::optional<api_response> out;
            boost::asio::co_spawn(io, api.handle(m, t, b), [&](std::exception_ptr, api_response r) { out = r; });
            while (!out)
                io.run_one();
            return *out;
        });
    };
    EXPECT_EQ(call("POST", "/v1/networks", "{bad json").status, 400u);
    EXPECT_EQ(call("POST", "/v1/networks", "[1,2]").status, 400u);
    EXPECT_EQ(call("POST", "/v1/networks", R"({"name": 5})").status, 400u);
    EXPECT_EQ(call("POST", "/v1/networks", R"({"name": "x", "vni": -1})").status, 400u);
    EXPECT_EQ(call("POST", "/v1/networks", R"({"name": "x", "colour": "red"})").status, 400u);
    EXPECT_EQ(call("POST", "/v1/networks", R"({"name": "x", "subnet": "10.0.0.1/24"})").status, 400u);
    EXPECT_EQ(call("POST", "/v1/endpoints", R"({"network": "x", "name": "a"})").status, 400u);
    EXPECT_EQ(call("GET", "/v1/nothing", "").status, 404u);
    EXPECT_EQ(call("PUT", "/v1/networks", "").status, 405u);
    EXPECT_EQ(call("GET", "/v1/networks/a/b", "").status, 404u);
    const api_response r = call("GET", "/v1/networks/missing", "");
    EXPECT_EQ(r.status, 404u);
    EXPECT_EQ(r.body["error"], "network \"missing\" not found");
    // And the server still works.
    EXPECT_EQ(cli({"network", "ls"}).code, 0);
}

// The route table: a path it lacks is 404, a method it lacks for a known path 405, and
// every route answers.
TEST_F(api_cli_test, route_table_answers_404_and_405) {
    const std::pair<std::pair<const char*, const char*>, std::pair<unsigned, const char*>> cases[] = {
        {{"GET", "/v1/nothing"}, {404, "no such API path /v1/nothing"}},
        {{"GET", "/v2/networks"}, {404, "no such API path /v2/networks"}},
        {{"GET", "/v1/"}, {404, "no such API path /v1/"}},
        {{"GET", "/v1/networks/"}, {404, "no such API path /v1/networks/"}},
        {{"GET", "/v1/networks/a/b"}, {404, "no such API path /v1/networks/a/b"}},
        {{"GET", "/v1/hosts/x"}, {404, "no such API path /v1/hosts/x"}},
        {{"GET", "/v1/stats/x?y=1"}, {404, "no such API path /v1/stats/x"}},
        {{"PUT", "/v1/networks"}, {405, "method PUT not allowed on /v1/networks"}},
        {{"POST", "/v1/networks/x"}, {405, "method POST not allowed on /v1/networks/x"}},
        {{"GET", "/v1/endpoints/x"}, {405, "method GET not allowed on /v1/endpoints/x"}},
        {{"DELETE", "/v1/hosts"}, {405, "method DELETE not allowed on /v1/hosts"}},
        {{"POST", "/v1/stats"}, {405, "method POST not allowed on /v1/stats"}},
        {{"DELETE", "/v1/endpoints/x?colour=red"}, {400, "unknown query \"colour=red\""}},
    };
    for (const auto& [req, want] : cases) {
        const api_response r = raw(req.first, req.second);
        EXPECT_EQ(r.status, want.first) << req.first << ' ' << req.second;
        EXPECT_EQ(r.body["error"], want.second) << req.first << ' ' << req.second;
    }
    for (const char* path : {"/v1/networks", "/v1/endpoints", "/v1/hosts", "/v1/stats"})
        EXPECT_EQ(raw("GET", path).status, 200u) << path;
    EXPECT_EQ(raw("GET", "/v1/networks?whatever").status, 200u) << "other routes ignore a query";
    EXPECT_EQ(raw("POST", "/v1/networks", R"({"name": "n1"})").status, 201u);
    EXPECT_EQ(raw("GET", "/v1/networks/n1").status, 200u);
    EXPECT_EQ(raw("DELETE", "/v1/networks/n1").status, 204u);
    EXPECT_EQ(raw("DELETE", "/v1/endpoints/nosuch?network=n1").status, 404u);
}

// Numbers the schema refuses: 400 with a line naming the field or the number, never 500.
TEST_F(api_cli_test, out_of_range_numbers_are_400) {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"name": "x", "vni": 1e400})", "number 1e400 in the request body is out of range"},
        {R"({"name": "x", "mtu": -1e400})", "number -1e400 in the request body is out of range"},
        {R"({"name": "x", "vni": 4096.5})", "field \"vni\" must be a non-negative integer"},
        {R"({"name": "x", "vni": 4096.0})", "field \"vni\" must be a non-negative integer"},
        {R"({"name": "x", "vni": 1e300})", "field \"vni\" must be a non-negative integer"},
        {R"({"name": "x", "vni": "4096"})", "field \"vni\" must be a non-negative integer"},
        {R"({"name": "x", "vni": -1})", "field \"vni\" must be a non-negative integer"},
        {R"({"name": "x", "vni": 4294967296})", "field \"vni\" must be a non-negative integer"},
        {R"({"name": "x", "vni": 18446744073709551616})", "field \"vni\" must be a non-negative integer"},
        {R"({"name": "x", "vni": 0})", "invalid vni 0: must be between 1 and 16777215"},
        {R"({"name": "x", "vni": 16777216})", "invalid vni 16777216: must be between 1 and 16777215"},
        {R"({"name": "x", "mtu": 1.5e3})", "field \"mtu\" must be a non-negative integer"},
        {R"({"name": "x", "allow_overlap": "yes"})", "allow_overlap must be true or false"},
    };
    for (const auto& [body, message] : cases) {
        const api_response r = raw("POST", "/v1/networks", body);
        EXPECT_EQ(r.status, 400u) << body;
        EXPECT_EQ(r.body["error"], message) << body;
    }
    // The largest VNI is fine.
    EXPECT_EQ(raw("POST", "/v1/networks", R"({"name": "top", "vni": 16777215})").status, 201u);

    // Through the CLI: the same line, exit 1 as for any refusal; a non-number is a usage error.
    auto r = cli({"network", "create", "--vni", "16777216", "x"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: invalid vni 16777216: must be between 1 and 16777215\n");
    r = cli({"network", "create", "--vni", "0", "x"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: invalid vni 0: must be between 1 and 16777215\n");
    r = cli({"network", "create", "--vni", "1e400", "x"});
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.err, "overpass: --vni needs a number, got \"1e400\"\n");
    r = cli({"network", "create", "--vni", "4096.5", "x"});
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.err, "overpass: --vni needs a number, got \"4096.5\"\n");
    r = cli({"network", "create", "--vni", "16777215", "--subnet", "10.3.0.0/24", "y"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: vni 16777215 is already used by another network\n");
    const auto ls = cli({"network", "ls"});
    EXPECT_EQ(ls.out.find(" x "), std::string::npos) << ls.out;
}

// The cluster's error kinds keep the statuses the API always gave them.
TEST_F(api_cli_test, error_kinds_keep_their_statuses) {
    ASSERT_EQ(raw("POST", "/v1/networks", R"({"name": "tiny", "subnet": "10.9.0.0/30"})").status, 201u);
    EXPECT_EQ(raw("POST", "/v1/networks", R"({"name": "bad name"})").status, 400u);             // invalid
    EXPECT_EQ(raw("GET", "/v1/networks/nosuch").status, 404u);                                  // not_found
    EXPECT_EQ(raw("POST", "/v1/networks", R"({"name": "tiny"})").status, 409u);                 // conflict
    const char* attach_a = R"({"network": "tiny", "name": "a", "netns": "nsa"})";
    const char* attach_b = R"({"network": "tiny", "name": "b", "netns": "nsb"})";
    ASSERT_EQ(raw("POST", "/v1/endpoints", attach_a).status, 201u);
    EXPECT_EQ(raw("POST", "/v1/endpoints", attach_b).status, 507u);                             // exhausted
    EXPECT_EQ(raw("DELETE", "/v1/endpoints/a").status, 204u);
    on_io([this] { ports.fail_endpoint = "b"; return 0; });
    const api_response r = raw("POST", "/v1/endpoints", attach_b);                               // internal
    EXPECT_EQ(r.status, 500u);
    EXPECT_EQ(r.body["error"].get<std::string>().rfind("cannot attach endpoint \"b\": ", 0), 0u) << r.body;
}

// The CLI checks a request as the daemon will, before it sends it: the same words, and
// the same exit status, with no daemon needed.
TEST(cli, requests_are_checked_before_sending) {
    test::temp_dir dir;
    const std::string url = "unix://" + dir.file("none.sock");
    auto run = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {"-H", url});
        std::ostringstream out, err;
        const int code = overpass::cli::run(args, "", out, err);
        return cli_result{code, out.str(), err.str()};
    };
    const std::pair<std::vector<std::string>, std::string> cases[] = {
        {{"network", "create", "--vni", "16777216", "x"}, "invalid vni 16777216: must be between 1 and 16777215"},
        {{"network", "create", "--subnet", "10.0.7.1/24", "x"}, ""},
        {{"network", "create", "--subnet", "10.0.7.0/31", "x"}, "subnet 10.0.7.0/31 is too small (at most /30)"},
        {{"network", "create", "--gateway", "10.0.7.300", "--subnet", "10.0.7.0/24", "x"},
         "invalid gateway \"10.0.7.300\""},
        {{"network", "create", "--allow-overlap", "x"}, "--allow-overlap needs an explicit --subnet"},
        {{"network", "create", "bad name!"}, ""},
        {{"network", "create", ""}, "missing field \"name\""},
        {{"endpoint", "attach", "--network", "n", "--name", "a b", "--netns", "ns"}, "invalid endpoint name \"a b\""},
        {{"endpoint", "attach", "--network", "n", "--name", "a", "--netns", "n s"},
         "invalid network namespace name \"n s\""},
        {{"endpoint", "attach", "--network", "n", "--name", "a", "--netns="},
         "give exactly one of netns (TAP) or vhost_user (socket path)"},
    };
    for (const auto& [args, message] : cases) {
        const auto r = run(args);
        EXPECT_EQ(r.code, 1) << args.back();
        if (message.empty())   // the syntax's own words: one line
            EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        else
            EXPECT_EQ(r.err, "overpass: " + message + "\n");
        EXPECT_EQ(r.err.find("cannot connect"), std::string::npos) << r.err;
    }
    // A valid request does go to the daemon.
    EXPECT_NE(run({"network", "create", "--vni", "16777215", "x"}).err.find("cannot connect"), std::string::npos);
}

// Every request and answer survives its JSON form.
TEST(schema, round_trips) {
    namespace api = overpass::ctl::api;
    const network_request nr{"net1", "10.0.2.0/24", "10.0.2.254", 4096, 1400, true};
    const auto nr2 = api::decode<network_request>(api::encode(nr));
    EXPECT_EQ(nr2.name, nr.name);
    EXPECT_EQ(nr2.subnet, nr.subnet);
    EXPECT_EQ(nr2.gateway, nr.gateway);
    EXPECT_EQ(nr2.vni, nr.vni);
    EXPECT_EQ(nr2.mtu, nr.mtu);
    EXPECT_TRUE(nr2.allow_overlap);
    EXPECT_EQ(api::encode(network_request{"n", {}, {}, {}, {}, false}).dump(), R"({"name":"n"})");

    const attach_request ar{"net1", "app1", "", "/tmp/app1.sock"};
    EXPECT_EQ(api::encode(ar).dump(), R"({"name":"app1","network":"net1","vhost_user":"/tmp/app1.sock"})");
    const auto ar2 = api::decode<attach_request>(api::encode(ar));
    EXPECT_EQ(ar2.network, "net1");
    EXPECT_EQ(ar2.name, "app1");
    EXPECT_EQ(ar2.netns, "");
    EXPECT_EQ(ar2.vhost_user, "/tmp/app1.sock");

    net_meta m;
    m.id = "0123456789abcdef";
    m.name = "net1";
    m.vni = 4096;
    m.subnet = parse_prefix("10.0.2.0/24");
    m.gateway = *parse_ipv4("10.0.2.1");
    m.mtu = 1450;
    m.created_by = "hostA";
    EXPECT_EQ(api::encode(m), to_json(m)) << "the answer is the record, with its id";
    const endpoint_info e{"net1", m.id, "app1", *parse_ipv4("10.0.2.2"), 24, "02:42:0a:00:02:02", "hostA",
                          "198.18.0.1", "tap"};
    const auto d = api::decode<network_details>(api::encode(network_details{m, {e}}));
    EXPECT_EQ(api::encode(d.network), api::encode(m));
    ASSERT_EQ(d.endpoints.size(), 1u);
    EXPECT_EQ(api::encode(d.endpoints[0]), api::encode(e));
    EXPECT_EQ(api::encode(e)["address"], "10.0.2.2/24");
    EXPECT_EQ(api::encode(e)["ip"], "10.0.2.2");
    const host_info h{"hostA", "198.18.0.1", 4789};
    EXPECT_EQ(api::encode(api::decode<host_info>(api::encode(h))), api::encode(h));

    // Requests are read strictly, answers leniently.
    EXPECT_THROW(api::decode<attach_request>(nlohmann::json{{"network", "n"}, {"name", "a"}, {"x", 1}}),
                 api::schema_error);
    auto extra = api::encode(h);
    extra["future_field"] = true;
    EXPECT_EQ(api::decode<host_info>(extra).id, "hostA");
    EXPECT_THROW(api::decode<host_info>(nlohmann::json{{"id", "h"}}), api::schema_error);
    EXPECT_THROW(api::decode<host_info>(nlohmann::json::array()), api::schema_error);
}

TEST(cli, errors_are_one_line_and_non_zero) {
    test::temp_dir dir;
    auto run = [](std::vector<std::string> args, const std::string& env = "") {
        std::ostringstream out, err;
        const int code = overpass::cli::run(args, env, out, err);
        return cli_result{code, out.str(), err.str()};
    };
    const std::string url = "unix://" + dir.file("none.sock");
    const std::string absent =
        "overpass: cannot connect to the overpass daemon at " + url + ": No such file or directory (is overpassd running?)\n";
    auto r = run({"-H", url, "network", "ls"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, absent);
    r = run({"network", "ls"}, url);   // $OVERPASS_HOST
    EXPECT_EQ(r.err, absent);

    r = run({"network", "create", "--colour", "red", "x"});
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.err, "overpass: unknown flag --colour for \"network create\" (see overpass --help)\n");
    r = run({"network", "create"});
    EXPECT_EQ(r.err, "overpass: \"network create\" needs a network name\n");
    r = run({"network", "create", "--vni", "abc", "x"});
    EXPECT_EQ(r.err, "overpass: --vni needs a number, got \"abc\"\n");
    r = run({"endpoint", "attach", "--network", "n", "--name", "a"});
    EXPECT_EQ(r.err, "overpass: \"endpoint attach\" needs exactly one of --netns or --vhost-user\n");
    r = run({"frobnicate"});
    EXPECT_EQ(r.err, "overpass: unknown command \"frobnicate\" (see overpass --help)\n");
    r = run({});
    EXPECT_EQ(r.code, 2);
    r = run({"-H", "tcp://1.2.3.4:5", "network", "ls"});
    EXPECT_NE(r.err.find("invalid daemon address"), std::string::npos);
    r = run({"--help"});
    EXPECT_EQ(r.code, 0);
    EXPECT_NE(r.out.find("network create"), std::string::npos);
    EXPECT_TRUE(r.err.empty());
}

// ---- overpass stats: the tables ----

namespace {

// One GET /v1/stats answer, as the daemon shapes it (plus a field the CLI does not know).
nlohmann::json stats_sample() {
    return nlohmann::json::parse(R"({
      "drops": {"no_route": 12, "tx_full": 0, "unknown_vtep": 3400, "port_unbound": 12},
      "ports": [
        {"port": 0, "name": "net_af_packet0", "kind": "uplink", "endpoint": "", "detail": "eth0",
         "rx_packets": 1234567, "rx_bytes": 1850000000, "tx_packets": 999, "tx_bytes": 12500000,
         "dropped_packets": 0},
        {"port": 1, "name": "net_tap1", "kind": "tap", "endpoint": "app1", "detail": "",
         "rx_packets": 10, "rx_bytes": 980, "tx_packets": 20, "dropped_packets": 2, "future_counter": 7}
      ],
      "workers": [
        {"lcore": 1, "packets": 2000000, "busy_polls": 5, "idle_polls": 6, "sleeps": 0, "tx_bursts": 1500,
         "exceptions": 3, "busy_cycles": 250, "idle_cycles": 750, "endpoint_cache_hits": 900,
         "endpoint_cache_misses": 100},
        {"lcore": 2, "packets": 0, "tx_bursts": 0, "exceptions": 0}
      ],
      "networks": [{"network": "overlay-net", "vni": 4096, "encap_packets": 100, "encap_bytes": 150000,
                    "decap_packets": 90, "decap_bytes": 135000, "flood_packets": 4}],
      "vteps": [
        {"vtep": "198.18.0.2", "resolved": true, "tx_packets": 100, "tx_bytes": 150000, "rx_packets": 90,
         "rx_bytes": 135000, "last_seen_seconds": 1.5},
        {"vtep": "198.18.0.3", "resolved": false, "tx_packets": 0, "tx_bytes": 0, "rx_packets": 0, "rx_bytes": 0,
         "last_seen_seconds": null}
      ],
      "tables": {"endpoints": 3, "addresses": 5, "networks": 1, "vteps": 2, "ports": 2, "retire_backlog": 0},
      "slow_path": {"arp_requests_sent": 2, "dns_queries": 0},
      "control": {"host": "hostA", "vtep": "198.18.0.1", "registered": true, "local_endpoints": 1,
                  "liveness_losses": 0, "sync": {"applied_revision": 42, "errors": 0}}
    })");
}

} // namespace

TEST(stats_table, human_numbers) {
    using namespace overpass::cli;
    EXPECT_EQ(human_count(0), "0");
    EXPECT_EQ(human_count(999), "999");
    EXPECT_EQ(human_count(1000), "1.0k");
    EXPECT_EQ(human_count(1234), "1.2k");
    EXPECT_EQ(human_count(123456), "123k");
    EXPECT_EQ(human_count(999999), "1.0M");   // not "1000k"
    EXPECT_EQ(human_count(3.4e9), "3.4G");
    EXPECT_EQ(human_count(0.5), "0.5");   // a slow rate
    EXPECT_EQ(human_count(-1), "-");
    EXPECT_EQ(human_bytes(512), "512 B");
    EXPECT_EQ(human_bytes(12.5e6), "12.5 MB");
    EXPECT_EQ(human_bits_per_second(0), "0 bit/s");
    EXPECT_EQ(human_bits_per_second(9.87e9), "9.9 Gbit/s");
}

TEST(stats_table, cumulative) {
    const std::string t = overpass::cli::render_stats(stats_sample(), nullptr, 0);
    EXPECT_EQ(t, R"(host hostA  vtep 198.18.0.1  registered  1 local endpoints  store revision 42

PORTS
NAME            KIND    ENDPOINT  RX PKTS  RX BYTES  TX PKTS  TX BYTES  DROPS
net_af_packet0  uplink  -            1.2M    1.9 GB      999   12.5 MB      0
net_tap1        tap     app1           10     980 B       20         -      2

NETWORKS
NETWORK       VNI  ENCAP PKTS  ENCAP BYTES  DECAP PKTS  DECAP BYTES  FLOOD PKTS
overlay-net  4096         100       150 kB          90       135 kB           4

VTEPS
VTEP        RESOLVED  TX PKTS  TX BYTES  RX PKTS  RX BYTES  LAST SEEN
198.18.0.2  yes           100    150 kB       90    135 kB   1.5s ago
198.18.0.3  no              0       0 B        0       0 B      never

WORKERS
LCORE  PACKETS   BUSY  TX BURSTS  EXCEPTIONS  EP CACHE HIT
    1     2.0M  25.0%       1.5k           3         90.0%
    2        0      -          0           0             -

DROPS
REASON        COUNT
unknown_vtep   3.4k
no_route         12
port_unbound     12

tables: addresses 5  endpoints 3  networks 1  ports 2  retire backlog 0  vteps 2
slow path: arp requests sent 2
)");
}

TEST(stats_table, watch_rates_over_the_interval) {
    const nlohmann::json prev = stats_sample();
    nlohmann::json cur = prev;
    // 2 s later: the uplink received 20k packets (30 MB), lcore 1 was busy 600 of 1000 cycles.
    cur["ports"][0]["rx_packets"] = 1234567 + 20000;
    cur["ports"][0]["rx_bytes"] = 1850000000 + 30000000;
    cur["ports"][0]["tx_packets"] = 999 + 5;
    cur["ports"][0]["tx_bytes"] = 12500000 + 500;
    cur["workers"][0]["packets"] = 2000000 + 20005;
    cur["workers"][0]["busy_cycles"] = 250 + 600;
    cur["workers"][0]["idle_cycles"] = 750 + 400;
    cur["workers"][0]["endpoint_cache_hits"] = 900 + 300;
    cur["workers"][0]["endpoint_cache_misses"] = 100 + 100;
    cur["drops"]["no_route"] = 12 + 8;
    cur["vteps"][0]["tx_packets"] = 5;   // counters went back: the daemon restarted, no rate
    cur["vteps"].push_back({{"vtep", "198.18.0.9"}, {"tx_packets", 1}});   // new: no previous sample

    const std::string t = overpass::cli::render_stats(cur, prev, 2.0);
    EXPECT_NE(t.find("NAME            KIND    ENDPOINT  RX PKTS  RX BYTES  TX PKTS  TX BYTES  DROPS  RX PPS  "
                     "  RX BIT/S  TX PPS    TX BIT/S\n"
                     "net_af_packet0  uplink  -            1.3M    1.9 GB     1.0k   12.5 MB      0   10.0k  "
                     "120 Mbit/s     2.5  2.0 kbit/s\n"
                     "net_tap1        tap     app1           10     980 B       20         -      2       0  "
                     "   0 bit/s       0           -\n"),
              std::string::npos)
        << t;
    EXPECT_NE(t.find("LCORE  PACKETS    PPS   BUSY  TX BURSTS  EXCEPTIONS  EP CACHE HIT\n"
                     "    1     2.0M  10.0k  60.0%       1.5k           3         75.0%\n"
                     "    2        0      0      -          0           0             -\n"),
              std::string::npos)
        << t;
    EXPECT_NE(t.find("REASON        COUNT  PER SEC\n"
                     "unknown_vtep   3.4k        0\n"
                     "no_route         20        4\n"
                     "port_unbound     12        0\n"),
              std::string::npos)
        << t;
    EXPECT_NE(t.find("198.18.0.2  yes             5    150 kB       90    135 kB   1.5s ago       -"),
              std::string::npos)
        << t;
    EXPECT_NE(t.find("198.18.0.9  -               1         -        -         -          -       -"),
              std::string::npos)
        << t;

    // The first sample of --watch: the rate columns are there, without values yet.
    const std::string first = overpass::cli::render_stats(prev, nullptr, 2.0);
    EXPECT_NE(first.find("net_af_packet0  uplink  -            1.2M    1.9 GB      999   12.5 MB      0       -"
                         "         -       -         -\n"),
              std::string::npos)
        << first;
    EXPECT_NE(first.find("    1     2.0M    -  25.0%       1.5k           3         90.0%\n"), std::string::npos)
        << first;
}

TEST(stats_table, tolerates_missing_and_odd_sections) {
    using overpass::cli::render_stats;
    EXPECT_EQ(render_stats(nlohmann::json::object(), nullptr, 0), "");
    EXPECT_EQ(render_stats(nlohmann::json::array(), nullptr, 2), "");
    EXPECT_EQ(render_stats({{"workers", 1}, {"ports", "x"}, {"drops", {{"a", 0}, {"b", "x"}}}}, nullptr, 0),
              "DROPS: none\n");
    const nlohmann::json odd = {{"ports", {1, {{"name", "p"}, {"rx_packets", -3}, {"tx_packets", 1.5e3}}}},
                                {"control", {{"sync", 5}}}};
    EXPECT_EQ(render_stats(odd, {{"ports", {{{"name", "p"}}}}}, 1),
              "PORTS\n"
              "NAME  KIND  ENDPOINT  RX PKTS  RX BYTES  TX PKTS  TX BYTES  DROPS  RX PPS  RX BIT/S  TX PPS  TX BIT/S\n"
              "p     -     -               -         -     1.5k         -      -       -         -       -"
              "         -\n");
}

TEST(stats_table, a_counter_without_a_fixed_column_gets_one_when_sent) {
    // rx_missed_packets is in counters.def but not among the columns the PORTS table always
    // has: it gets a column once the daemon sends it. future_counter, not in counters.def,
    // does not.
    nlohmann::json j = stats_sample();
    j["ports"][0]["rx_missed_packets"] = 4200;
    const std::string t = overpass::cli::render_stats(j, nullptr, 0);
    EXPECT_NE(t.find("NAME            KIND    ENDPOINT  RX PKTS  RX BYTES  TX PKTS  TX BYTES  DROPS  RX MISSED PKTS\n"
                     "net_af_packet0  uplink  -            1.2M    1.9 GB      999   12.5 MB      0            4.2k\n"
                     "net_tap1        tap     app1           10     980 B       20         -      2               -\n"),
              std::string::npos)
        << t;
    EXPECT_EQ(t.find("FUTURE"), std::string::npos) << t;
    // A worker counter folded into a ratio or private to the poll loop has no column.
    EXPECT_EQ(t.find("BUSY POLLS"), std::string::npos) << t;
}

TEST(stats_table, bad_arguments_are_usage_errors) {
    auto run = [](std::vector<std::string> args) {
        args.insert(args.begin(), {"-H", "unix:///nonexistent/overpass.sock", "stats"});
        std::ostringstream out, err;
        const int code = overpass::cli::run(args, "", out, err);
        return cli_result{code, out.str(), err.str()};
    };
    const std::pair<std::vector<std::string>, std::string> cases[] = {
        {{"--watch", "--interval", "0"}, "--interval must be between 0.1 and 86400 seconds, got \"0\""},
        {{"--watch", "--interval", "abc"}, "--interval needs a number of seconds, got \"abc\""},
        {{"--watch", "--interval=-1"}, "--interval needs a number of seconds, got \"-1\""},
        {{"--watch", "--interval"}, "flag --interval needs a value"},
        {{"--watch", "--count", "0"}, "--count must be at least 1"},
        {{"--interval", "1"}, "--interval needs --watch"},
        {{"--json", "--watch"}, "--json and --watch cannot be combined"},
        {{"--watch=yes"}, "flag --watch takes no value"},
        {{"--top"}, "unknown flag --top for \"stats\" (see overpass --help)"},
        {{"ports"}, "\"stats\" takes no arguments, got \"ports\""},
    };
    for (const auto& [args, message] : cases) {
        const auto r = run(args);
        EXPECT_EQ(r.code, 2) << message;
        EXPECT_EQ(r.err, "overpass: " + message + "\n");
        EXPECT_TRUE(r.out.empty());
    }
}

// A second daemon started with a live host's id: refused while the id's session lives
// and names another VTEP, unless told to replace it; a restart of the same host (same
// VTEP, the old session not expired yet, as after kill -9) goes ahead.
TEST_F(api_cli_test, a_live_host_id_is_not_taken_over) {
    boost::asio::io_context io2;
    file_store other{io2, dir.file("store.json")};
    test::fake_table_writer tw2;
    test::fake_port_ops ports2;
    const auto start = [&](const char* vtep, bool replace) {
        agent_config cfg{"hostA", vtep, rte_cpu_to_be_32(0xc6120009), 4789, 1450, 1500, 10s};
        cfg.replace = replace;
        auto ag2 = std::make_unique<agent>(io2, other, tw2, ports2, cfg);
        std::string error;
        try {
            test::run(io2, ag2->start());
        } catch (const std::exception& e) {
            error = e.what();
        }
        test::run(io2, ag2->shutdown());
        return error;
    };
    const std::string refused = start("198.18.0.9", false);
    EXPECT_NE(refused.find("VTEP 198.18.0.1"), std::string::npos) << refused;
    EXPECT_NE(refused.find("--replace"), std::string::npos) << refused;
    EXPECT_EQ(start("198.18.0.1", false), "") << "the same host restarting takes its id back";
    // Another daemon's record (persistent here, so that it stays while we look).
    ASSERT_TRUE(test::run(io2, other.create(keys::host("hostA"), to_value(host_record{"198.18.0.7", 4789}))));
    EXPECT_NE(start("198.18.0.9", false).find("VTEP 198.18.0.7"), std::string::npos);
    EXPECT_EQ(start("198.18.0.9", true), "") << "--replace takes the id over";
    const kv_snapshot left = test::run(io2, other.list(keys::host("hostA")));
    EXPECT_TRUE(left.items.empty()) << "the replaced record went with the replacing daemon's session";
}

// Names resolve case-insensitively, as DNS does: "E1" is the name "e1" already has.
TEST_F(api_cli_test, endpoint_names_differing_only_in_case_are_one_name) {
    ASSERT_EQ(cli({"network", "create", "--subnet", "10.6.0.0/24", "cased"}).code, 0);
    ASSERT_EQ(cli({"endpoint", "attach", "--network", "cased", "--name", "e1", "--netns", "nse1"}).code, 0);
    const auto r = cli({"endpoint", "attach", "--network", "cased", "--name", "E1", "--netns", "nsE1"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "overpass: endpoint name \"E1\" is already taken in network \"cased\"\n");
    ASSERT_EQ(cli({"endpoint", "detach", "e1"}).code, 0);
    ASSERT_EQ(cli({"network", "rm", "cased"}).code, 0);
}

// Subnets that can never hold a container are refused, by the CLI and by the daemon.
TEST_F(api_cli_test, subnets_without_host_addresses_are_refused) {
    const std::pair<const char*, const char*> cases[] = {
        {"224.0.0.0/24", "multicast"}, {"0.0.0.0/24", "this network"}, {"127.1.0.0/24", "loopback"},
        {"240.0.0.0/24", "reserved"}, {"255.255.255.0/30", "reserved"}};
    for (const auto& [subnet, why] : cases) {
        const auto r = cli({"network", "create", "--subnet", subnet, "bad"});
        EXPECT_EQ(r.code, 1) << subnet;
        EXPECT_NE(r.err.find(why), std::string::npos) << subnet << ": " << r.err;
        const std::string body = std::string(R"({"name":"bad","subnet":")") + subnet + "\"}";
        EXPECT_EQ(raw("POST", "/v1/networks", body).status, 400u) << subnet;
    }
    EXPECT_EQ(cli({"network", "create", "--subnet", "198.18.200.0/24", "fine"}).code, 0);
}

// Idle connections cannot take the API over: past the cap a new connection is closed at
// once, an idle one is closed after the idle timeout, and the API answers again.
TEST_F(api_cli_test, idle_connections_are_capped_and_timed_out) {
    const std::string small_sock = dir.file("small.sock");
    auto small = on_io([&] {
        auto s = std::make_unique<api_server>(io, ag, small_sock, nullptr, api_limits{4, std::chrono::milliseconds(300)});
        s->start();
        return s;
    });
    auto connect = [&] {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, small_sock.c_str(), sizeof(a.sun_path) - 1);
        EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
        return fd;
    };
    // Whether the server closed `fd` within `wait` (a read sees EOF).
    auto closed_within = [](int fd, int wait_ms) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, wait_ms) != 1)
            return false;
        char c;
        return ::read(fd, &c, 1) == 0;
    };
    std::vector<int> idle;
    for (int i = 0; i < 4; i++)
        idle.push_back(connect());
    std::this_thread::sleep_for(50ms);   // all four accepted and counted
    const int extra = connect();
    EXPECT_TRUE(closed_within(extra, 200)) << "the fifth connection must be closed at the cap";
    for (int fd : idle)
        EXPECT_FALSE(closed_within(fd, 0)) << "idle, but not for long yet";
    for (int fd : idle)
        EXPECT_TRUE(closed_within(fd, 2000)) << "an idle connection must be closed after the idle timeout";
    for (int fd : idle)
        ::close(fd);
    ::close(extra);
    std::this_thread::sleep_for(50ms);
    std::ostringstream out, err;
    EXPECT_EQ(overpass::cli::run({"-H", "unix://" + small_sock, "host", "ls"}, "", out, err), 0) << err.str();
    on_io([&] {
        small->stop();
        small.reset();
        return 0;
    });
}

// When a network's record goes away and comes back (a store file removed and restored,
// an older copy put back), its endpoints on this host are bound to their ports again,
// without detach and attach.
TEST_F(api_cli_test, local_endpoints_come_back_with_their_network) {
    ASSERT_EQ(cli({"network", "create", "--subnet", "10.5.0.0/24", "back"}).code, 0);
    ASSERT_EQ(cli({"endpoint", "attach", "--network", "back", "--name", "b1", "--netns", "nsb1"}).code, 0);
    const auto inspect = nlohmann::json::parse(cli({"network", "inspect", "back"}).out);
    const std::string meta_key = keys::net_meta(inspect.at("id").get<std::string>());
    const auto wait_for = [this](const std::string& call, size_t after) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        for (;;) {
            const auto calls = tw_calls();
            if (std::find(calls.begin() + static_cast<std::ptrdiff_t>(std::min(after, calls.size())), calls.end(), call) !=
                calls.end())
                return true;
            if (std::chrono::steady_clock::now() > deadline)
                return false;
            std::this_thread::sleep_for(20ms);
        }
    };
    const std::string bind = "upsert_local_endpoint " + std::to_string(inspect.at("vni").get<uint32_t>()) +
                             " 10.5.0.2 02:42:0a:05:00:02 port 1";
    ASSERT_TRUE(wait_for(bind, 0)) << ::testing::PrintToString(tw_calls());

    const auto synced_networks = [this] { return on_io([this] { return ag.status()["sync"]["networks"].get<size_t>(); }); };
    for (int i = 0; i < 500 && synced_networks() == 0; i++)
        std::this_thread::sleep_for(20ms);
    ASSERT_EQ(synced_networks(), 1u) << "the sync engine never applied the network";

    boost::asio::io_context io2;   // another writer of the same file
    file_store other{io2, dir.file("store.json")};
    const kv_snapshot before = test::run(io2, other.list(meta_key));
    ASSERT_EQ(before.items.size(), 1u);
    const size_t n0 = tw_calls().size();
    ASSERT_TRUE(test::run(io2, other.remove(meta_key)));
    ASSERT_TRUE(wait_for("remove_network " + std::to_string(inspect.at("vni").get<uint32_t>()), n0))
        << ::testing::PrintToString(tw_calls());
    const size_t n1 = tw_calls().size();
    ASSERT_TRUE(test::run(io2, other.create(meta_key, before.items[0].value)));
    EXPECT_TRUE(wait_for(bind, n1)) << "the endpoint was not bound again: " << ::testing::PrintToString(tw_calls());
    ASSERT_EQ(cli({"endpoint", "detach", "b1"}).code, 0);
}

namespace {

/// A store that runs `before_txn` once, just before the next transaction: what another
/// host does between an operation's reading and its writing.
class interleaving_store final : public store {
public:
    explicit interleaving_store(store& inner) : inner_(inner) {}
    std::function<void()> before_txn;

    boost::asio::awaitable<kv_snapshot> list(std::string prefix) override { return inner_.list(std::move(prefix)); }
    boost::asio::awaitable<txn_result> txn(std::vector<txn_op> ops) override {
        if (auto hook = std::exchange(before_txn, nullptr))
            hook();
        return inner_.txn(std::move(ops));
    }
    boost::asio::awaitable<std::unique_ptr<liveness>> open_liveness(std::string owner, std::chrono::seconds ttl) override {
        return inner_.open_liveness(std::move(owner), ttl);
    }
    std::unique_ptr<watch_handle> watch(std::string prefix, watch_callbacks cbs) override {
        return inner_.watch(std::move(prefix), std::move(cbs));
    }
    std::string url() const override { return inner_.url(); }

private:
    store& inner_;
};

} // namespace

// `network rm` on another host racing an attach here: never both, whichever comes
// between the other's reading and writing.
TEST_F(api_cli_test, network_removal_and_attach_exclude_each_other) {
    boost::asio::io_context io2;
    file_store file{io2, dir.file("store.json")};
    interleaving_store other{file};
    test::fake_table_writer tw2;
    test::fake_port_ops ports2;
    agent host_b{io2, other, tw2, ports2, agent_config{"hostB", "198.18.0.2", rte_cpu_to_be_32(0xc6120002), 4789, 1450, 1500, 10s}};
    test::run(io2, host_b.start());
    const auto listed = [this](const std::string& net) { return cli({"endpoint", "ls"}).out.find(" " + net + " ") != std::string::npos; };

    // hostB removes "r1" and has found no endpoint; an attach here lands before its write.
    ASSERT_EQ(cli({"network", "create", "--subnet", "10.4.1.0/24", "r1"}).code, 0);
    other.before_txn = [&] { EXPECT_EQ(cli({"endpoint", "attach", "--network", "r1", "--name", "e", "--netns", "ns1"}).code, 0); };
    std::string error;
    try {
        test::run(io2, host_b.remove_network("r1"));
    } catch (const cluster_error& e) {
        error = e.what();
    }
    EXPECT_NE(error.find("changed while removing it"), std::string::npos) << "removed under an attach: " << error;
    EXPECT_TRUE(listed("r1"));
    EXPECT_EQ(cli({"network", "inspect", "r1"}).code, 0);
    ASSERT_EQ(cli({"endpoint", "detach", "e"}).code, 0);
    ASSERT_EQ(cli({"network", "rm", "r1"}).code, 0);

    // hostB attaches to "r2" and has read the pool; the network is removed here first.
    ASSERT_EQ(cli({"network", "create", "--subnet", "10.4.2.0/24", "r2"}).code, 0);
    other.before_txn = [&] { EXPECT_EQ(cli({"network", "rm", "r2"}).code, 0); };
    error.clear();
    try {
        test::run(io2, host_b.attach_endpoint(attach_request{"r2", "f", "nsf", ""}));
    } catch (const cluster_error& e) {
        error = e.what();
    }
    EXPECT_NE(error.find("removed meanwhile"), std::string::npos) << "attached to a removed network: " << error;
    EXPECT_FALSE(listed("r2"));
    EXPECT_TRUE(ports2.taps.empty()) << "no port for a refused attach";
    test::run(io2, host_b.shutdown());
}
