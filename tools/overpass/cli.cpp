// SPDX-License-Identifier: Apache-2.0
// runs on: the overpass CLI process
//
// A docker-like front end to the local API: parse, one HTTP request over the unix
// socket, print a table or JSON.
#include "tools/overpass/cli.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace overpass::cli {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using local = asio::local::stream_protocol;
using json = nlohmann::json;

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct cli_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

constexpr const char* help_text = R"(Usage: overpass [-H unix:///path] COMMAND

A VXLAN overlay network for containers.

Options:
  -H, --host URL     daemon socket (default $OVERPASS_HOST or unix:///run/overpass/overpass.sock)
  -h, --help         show this help

Commands:
  network create [--subnet CIDR [--allow-overlap]] [--gateway IP] [--vni N] [--mtu N] NAME
  network ls
  network inspect NAME
  network rm NAME
  endpoint attach --network NET --name NAME (--netns NS | --vhost-user SOCKET)
  endpoint detach [--network NET] NAME
  endpoint ls
  host ls
  stats
)";

// ---- HTTP over the unix socket ----

struct client {
    std::string url;
    std::string path;

    explicit client(std::string u) : url(std::move(u)) {
        if (!url.starts_with("unix://") || url.size() <= 7 || url[7] != '/')
            throw usage_error("invalid daemon address \"" + url + "\" (expected unix:///path/to/socket)");
        path = url.substr(7);
    }

    // Returns the parsed JSON body (null for an empty one); throws cli_error with the
    // server's error message on a non-2xx status.
    json request(http::verb method, const std::string& target, const std::optional<json>& body = std::nullopt) {
        asio::io_context io;
        local::socket sock(io);
        boost::system::error_code ec;
        sock.connect(local::endpoint(path), ec);
        if (ec)
            throw cli_error("cannot connect to the overpass daemon at " + url + ": is overpassd running?");
        http::request<http::string_body> req{method, target, 11};
        req.set(http::field::host, "overpass");
        req.set(http::field::user_agent, "overpass-cli");
        if (body) {
            req.set(http::field::content_type, "application/json");
            req.body() = body->dump();
        }
        req.prepare_payload();
        http::write(sock, req, ec);
        boost::beast::flat_buffer buf;
        http::response<http::string_body> res;
        if (!ec)
            http::read(sock, buf, res, ec);
        if (ec)
            throw cli_error("lost the connection to the overpass daemon at " + url + ": " + ec.message());
        json j;
        if (!res.body().empty()) {
            try {
                j = json::parse(res.body());
            } catch (const json::parse_error&) {
                throw cli_error("the daemon sent an unreadable answer (HTTP " + std::to_string(res.result_int()) + ")");
            }
        }
        if (res.result_int() / 100 != 2) {
            if (j.is_object() && j.contains("error") && j["error"].is_string())
                throw cli_error(j["error"].get<std::string>());
            throw cli_error("the daemon answered HTTP " + std::to_string(res.result_int()));
        }
        return j;
    }
};

// ---- argument parsing ----

// Flags take a value ("--subnet X" or "--subnet=X"); anything not starting with '-' is a
// positional argument.
struct parsed_args {
    std::map<std::string, std::string> flags;
    std::vector<std::string> positional;
};

/// Flags that take no value.
bool is_switch(const std::string& name) { return name == "--allow-overlap"; }

parsed_args parse(const std::vector<std::string>& args, size_t from, std::initializer_list<const char*> known,
                  const std::string& cmd) {
    parsed_args p;
    for (size_t i = from; i < args.size(); i++) {
        const std::string& a = args[i];
        if (!a.starts_with("-") || a == "-") {
            p.positional.push_back(a);
            continue;
        }
        std::string name = a;
        std::optional<std::string> value;
        if (const size_t eq = a.find('='); eq != std::string::npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
        }
        if (std::none_of(known.begin(), known.end(), [&](const char* k) { return name == k; }))
            throw usage_error("unknown flag " + name + " for \"" + cmd + "\" (see overpass --help)");
        if (is_switch(name)) {
            if (value)
                throw usage_error("flag " + name + " takes no value");
            p.flags[name.substr(2)] = "true";
            continue;
        }
        if (!value) {
            if (i + 1 >= args.size())
                throw usage_error("flag " + name + " needs a value");
            value = args[++i];
        }
        p.flags[name.substr(2)] = *value;
    }
    return p;
}

std::string one_positional(const parsed_args& p, const std::string& cmd, const char* what) {
    if (p.positional.empty())
        throw usage_error("\"" + cmd + "\" needs " + what);
    if (p.positional.size() > 1)
        throw usage_error("\"" + cmd + "\" takes one " + std::string(what) + ", got \"" + p.positional[1] + "\" too");
    return p.positional.front();
}

void no_positional(const parsed_args& p, const std::string& cmd) {
    if (!p.positional.empty())
        throw usage_error("\"" + cmd + "\" takes no arguments, got \"" + p.positional.front() + "\"");
}

uint32_t number(const std::string& flag, const std::string& v) {
    if (v.empty() || v.size() > 9 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
        throw usage_error("--" + flag + " needs a number, got \"" + v + "\"");
    return static_cast<uint32_t>(std::stoul(v));
}

std::string str(const json& j, const char* k) {
    auto it = j.find(k);
    if (it == j.end())
        return "";
    return it->is_string() ? it->get<std::string>() : it->dump();
}

void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> width;
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size(); i++) {
            width.resize(std::max(width.size(), r.size()));
            width[i] = std::max(width[i], r[i].size());
        }
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); i++) {
            line += r[i];
            if (i + 1 < r.size())
                line += std::string(width[i] - r[i].size() + 3, ' ');
        }
        out << line << '\n';
    }
}

// ---- commands ----

int network_cmd(client& c, const std::vector<std::string>& args, size_t at, std::ostream& out) {
    if (at >= args.size())
        throw usage_error("\"network\" needs a subcommand: create, ls, inspect, rm");
    const std::string sub = args[at];
    const std::string cmd = "network " + sub;
    if (sub == "create") {
        const auto p = parse(args, at + 1, {"--subnet", "--gateway", "--vni", "--mtu", "--allow-overlap"}, cmd);
        json body{{"name", one_positional(p, cmd, "a network name")}};
        if (p.flags.contains("allow-overlap"))
            body["allow_overlap"] = true;
        for (const char* f : {"subnet", "gateway"})
            if (p.flags.contains(f))
                body[f] = p.flags.at(f);
        for (const char* f : {"vni", "mtu"})
            if (p.flags.contains(f))
                body[f] = number(f, p.flags.at(f));
        out << str(c.request(http::verb::post, "/v1/networks", body), "id") << '\n';
        return 0;
    }
    if (sub == "ls" || sub == "list") {
        no_positional(parse(args, at + 1, {}, cmd), cmd);
        std::vector<std::vector<std::string>> rows{{"NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET", "VNI"}};
        for (const auto& n : c.request(http::verb::get, "/v1/networks"))
            rows.push_back({str(n, "id").substr(0, 12), str(n, "name"), "overpass", "global", str(n, "subnet"),
                            str(n, "vni")});
        print_table(out, rows);
        return 0;
    }
    if (sub == "inspect") {
        const auto name = one_positional(parse(args, at + 1, {}, cmd), cmd, "a network name");
        out << c.request(http::verb::get, "/v1/networks/" + name).dump(4) << '\n';
        return 0;
    }
    if (sub == "rm" || sub == "remove") {
        const auto name = one_positional(parse(args, at + 1, {}, cmd), cmd, "a network name");
        c.request(http::verb::delete_, "/v1/networks/" + name);
        out << name << '\n';
        return 0;
    }
    throw usage_error("unknown command \"" + cmd + "\" (see overpass --help)");
}

int endpoint_cmd(client& c, const std::vector<std::string>& args, size_t at, std::ostream& out) {
    if (at >= args.size())
        throw usage_error("\"endpoint\" needs a subcommand: attach, detach, ls");
    const std::string sub = args[at];
    const std::string cmd = "endpoint " + sub;
    if (sub == "attach") {
        const auto p = parse(args, at + 1, {"--network", "--name", "--netns", "--vhost-user"}, cmd);
        no_positional(p, cmd);
        for (const char* f : {"network", "name"})
            if (!p.flags.contains(f))
                throw usage_error("\"" + cmd + "\" needs --" + f);
        if (p.flags.contains("netns") == p.flags.contains("vhost-user"))
            throw usage_error("\"" + cmd + "\" needs exactly one of --netns or --vhost-user");
        json body{{"network", p.flags.at("network")}, {"name", p.flags.at("name")}};
        if (p.flags.contains("netns"))
            body["netns"] = p.flags.at("netns");
        else
            body["vhost_user"] = p.flags.at("vhost-user");
        const json e = c.request(http::verb::post, "/v1/endpoints", body);
        out << str(e, "name") << ' ' << str(e, "address") << ' ' << str(e, "mac") << '\n';
        return 0;
    }
    if (sub == "detach") {
        const auto p = parse(args, at + 1, {"--network"}, cmd);
        const auto name = one_positional(p, cmd, "an endpoint name");
        std::string target = "/v1/endpoints/" + name;
        if (p.flags.contains("network"))
            target += "?network=" + p.flags.at("network");
        c.request(http::verb::delete_, target);
        out << name << '\n';
        return 0;
    }
    if (sub == "ls" || sub == "list") {
        no_positional(parse(args, at + 1, {}, cmd), cmd);
        std::vector<std::vector<std::string>> rows{{"NAME", "NETWORK", "ADDRESS", "MAC", "HOST", "KIND"}};
        for (const auto& e : c.request(http::verb::get, "/v1/endpoints"))
            rows.push_back({str(e, "name"), str(e, "network"), str(e, "address"), str(e, "mac"), str(e, "host"),
                            str(e, "kind")});
        print_table(out, rows);
        return 0;
    }
    throw usage_error("unknown command \"" + cmd + "\" (see overpass --help)");
}

int dispatch(const std::vector<std::string>& args, const std::string& env_host, std::ostream& out) {
    std::string host = env_host.empty() ? default_host : env_host;
    size_t at = 0;
    while (at < args.size() && args[at].starts_with("-")) {
        const std::string& a = args[at];
        if (a == "-h" || a == "--help") {
            out << help_text;
            return 0;
        }
        if (a == "-H" || a == "--host") {
            if (at + 1 >= args.size())
                throw usage_error("flag " + a + " needs a value");
            host = args[at + 1];
            at += 2;
        } else if (a.starts_with("--host=")) {
            host = a.substr(7);
            at++;
        } else {
            throw usage_error("unknown flag " + a + " (see overpass --help)");
        }
    }
    if (at >= args.size())
        throw usage_error("missing command (see overpass --help)");
    if (std::find_if(args.begin() + static_cast<long>(at), args.end(),
                     [](const std::string& a) { return a == "--help" || a == "-h"; }) != args.end()) {
        out << help_text;
        return 0;
    }
    client c(host);
    const std::string& cmd = args[at];
    if (cmd == "network")
        return network_cmd(c, args, at + 1, out);
    if (cmd == "endpoint")
        return endpoint_cmd(c, args, at + 1, out);
    if (cmd == "host" || cmd == "stats") {
        const bool is_host = cmd == "host";
        if (is_host && (at + 1 >= args.size() || (args[at + 1] != "ls" && args[at + 1] != "list")))
            throw usage_error("\"host\" needs the subcommand ls");
        no_positional(parse(args, at + (is_host ? 2 : 1), {}, cmd), cmd);
        if (!is_host) {
            out << c.request(http::verb::get, "/v1/stats").dump(4) << '\n';
            return 0;
        }
        std::vector<std::vector<std::string>> rows{{"HOST ID", "VTEP", "VXLAN PORT"}};
        for (const auto& h : c.request(http::verb::get, "/v1/hosts"))
            rows.push_back({str(h, "id"), str(h, "vtep"), str(h, "vxlan_port")});
        print_table(out, rows);
        return 0;
    }
    throw usage_error("unknown command \"" + cmd + "\" (see overpass --help)");
}

} // namespace

int run(const std::vector<std::string>& args, const std::string& env_host, std::ostream& out, std::ostream& err) {
    try {
        return dispatch(args, env_host, out);
    } catch (const usage_error& e) {
        err << "overpass: " << e.what() << '\n';
        return 2;
    } catch (const std::exception& e) {
        err << "overpass: " << e.what() << '\n';
        return 1;
    }
}

} // namespace overpass::cli
