// SPDX-License-Identifier: Apache-2.0
// runs on: the overpass CLI process
//
// A docker-like front end to the local API: parse, one HTTP request over the unix
// socket, print a table or JSON.
#include "tools/overpass/cli.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "control/api/schema.hpp"

namespace overpass::cli {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using local = asio::local::stream_protocol;
using json = nlohmann::json;
namespace ctl = overpass::ctl;
namespace api = overpass::ctl::api;

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
  stats [--json]
  stats --watch [--interval SECONDS] [--count N]

stats prints the daemon's counters as tables (ports, networks, VTEPs, workers, drops);
--json prints the raw JSON of GET /v1/stats instead. --watch refreshes the tables like
top every --interval seconds (default 2, at least 0.1) with per-second rates, until
Ctrl-C or after --count refreshes.
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
        if (ec == boost::asio::error::access_denied)
            throw cli_error("cannot connect to the overpass daemon at " + url + ": permission denied (run as root, " +
                            "or as a user who may write to the socket)");
        if (ec)
            throw cli_error("cannot connect to the overpass daemon at " + url + ": " + ec.message() +
                            " (is overpassd running?)");
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
            if (j.is_object() && j.contains(api::field::error) && j[api::field::error].is_string())
                throw cli_error(j[api::field::error].get<std::string>());
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
bool is_switch(const std::string& name) {
    return name == "--allow-overlap" || name == "--json" || name == "--watch";
}

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

/// The value of flag `name`, or "" without it.
std::string flag_or_empty(const parsed_args& p, const char* name) {
    const auto it = p.flags.find(name);
    return it == p.flags.end() ? "" : it->second;
}

/// An answer of the daemon, read with the API's schema.
template <class T>
T answer(const json& j) {
    try {
        return api::decode<T>(j);
    } catch (const api::schema_error& e) {
        throw cli_error(std::string("the daemon sent an unexpected answer: ") + e.what());
    }
}

template <class T>
std::vector<T> answers(const json& j) {
    if (!j.is_array())
        throw cli_error("the daemon sent an unexpected answer: expected a JSON array");
    std::vector<T> out;
    for (const auto& item : j)
        out.push_back(answer<T>(item));
    return out;
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

// ---- stats tables ----

std::string fixed(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

/// Scales by 1000 while the number would print as 1000 or more: 999, 1.2k, 12.3k, 123k.
std::string human(double v, std::initializer_list<const char*> units) {
    if (!std::isfinite(v) || v < 0)
        return "-";
    const std::vector<const char*> u(units);
    size_t i = 0;
    while (i + 1 < u.size() && v >= 999.5) {
        v /= 1000;
        i++;
    }
    std::string n;
    if (i == 0)
        n = v == std::floor(v) || v >= 9.95 ? fixed(v, 0) : fixed(v, 1);
    else
        n = v < 99.95 ? fixed(v, 1) : fixed(v, 0);
    return n + u[i];
}

const json* member(const json& j, const char* k) {
    if (!j.is_object())
        return nullptr;
    const auto it = j.find(k);
    return it == j.end() ? nullptr : &*it;
}

/// A counter: a non-negative number, else nullopt.
std::optional<uint64_t> counter(const json& j, const char* k) {
    const json* v = member(j, k);
    if (v == nullptr)
        return std::nullopt;
    if (v->is_number_unsigned())
        return v->get<uint64_t>();
    if (v->is_number_integer())
        return v->get<int64_t>() >= 0 ? std::optional<uint64_t>(static_cast<uint64_t>(v->get<int64_t>()))
                                      : std::nullopt;
    if (v->is_number_float()) {
        const double d = v->get<double>();
        if (std::isfinite(d) && d >= 0 && d < 1.8e19)
            return static_cast<uint64_t>(d);
    }
    return std::nullopt;
}

/// The rows of the array `section`, objects only (a missing or mistyped section has none).
std::vector<const json*> rows_of(const json& j, const char* section) {
    std::vector<const json*> r;
    const json* a = member(j, section);
    if (a != nullptr && a->is_array())
        for (const auto& e : *a)
            if (e.is_object())
                r.push_back(&e);
    return r;
}

/// The row of `prev`'s `section` with the same values of `keys` as `row` (a key missing
/// in both matches), or nullptr.
const json* same_row(const json& prev, const char* section, const std::vector<const char*>& keys,
                     const json& row) {
    for (const json* p : rows_of(prev, section)) {
        const bool all = std::all_of(keys.begin(), keys.end(), [&](const char* k) {
            const json* a = member(row, k);
            const json* b = member(*p, k);
            return a == nullptr ? b == nullptr : b != nullptr && *a == *b;
        });
        if (all)
            return p;
    }
    return nullptr;
}

/// How much counter `k` grew from `prev` to `cur` (nullopt without a previous sample or
/// after a reset).
std::optional<uint64_t> delta(const json& cur, const json* prev, const char* k) {
    if (prev == nullptr)
        return std::nullopt;
    const auto a = counter(cur, k);
    const auto b = counter(*prev, k);
    if (!a || !b || *a < *b)
        return std::nullopt;
    return *a - *b;
}

std::string text(const json& j, const char* k) {
    const json* v = member(j, k);
    if (v == nullptr || v->is_null())
        return "-";
    std::string s = v->is_string() ? v->get<std::string>() : v->dump();
    return s.empty() ? "-" : s;
}

std::string count_cell(const json& j, const char* k) {
    const auto v = counter(j, k);
    return v ? human_count(static_cast<double>(*v)) : "-";
}

std::string bytes_cell(const json& j, const char* k) {
    const auto v = counter(j, k);
    return v ? human_bytes(static_cast<double>(*v)) : "-";
}

std::string pps_cell(const json& cur, const json* prev, const char* k, double interval) {
    const auto d = delta(cur, prev, k);
    return d ? human_count(static_cast<double>(*d) / interval) : "-";
}

std::string bps_cell(const json& cur, const json* prev, const char* k, double interval) {
    const auto d = delta(cur, prev, k);
    return d ? human_bits_per_second(static_cast<double>(*d) * 8 / interval) : "-";
}

std::string percent(uint64_t part, uint64_t whole) {
    if (whole == 0)
        return "-";
    return fixed(100.0 * static_cast<double>(part) / static_cast<double>(whole), 1) + "%";
}

std::string seconds_ago(const json& j, const char* k) {
    const json* v = member(j, k);
    if (v == nullptr)
        return "-";
    if (v->is_null())
        return "never";
    if (!v->is_number())
        return "-";
    const double s = v->get<double>();
    if (!std::isfinite(s) || s < 0)
        return "-";
    if (s < 10)
        return fixed(s, 1) + "s ago";
    if (s < 60)
        return fixed(std::floor(s), 0) + "s ago";
    if (s < 3600)
        return fixed(std::floor(s / 60), 0) + "m ago";
    if (s < 86400)
        return fixed(std::floor(s / 3600), 0) + "h ago";
    return fixed(std::floor(s / 86400), 0) + "d ago";
}

/// Columns separated by two spaces, numbers right-aligned, no trailing blanks.
struct text_table {
    struct column {
        std::string head;
        bool right;
    };
    std::vector<column> cols;
    std::vector<std::vector<std::string>> rows;

    void render(std::string& out) const {
        std::vector<size_t> width(cols.size());
        for (size_t i = 0; i < cols.size(); i++)
            width[i] = cols[i].head.size();
        for (const auto& r : rows)
            for (size_t i = 0; i < r.size() && i < cols.size(); i++)
                width[i] = std::max(width[i], r[i].size());
        auto line = [&](auto cell) {
            std::string l;
            for (size_t i = 0; i < cols.size(); i++) {
                const std::string& c = cell(i);
                const std::string pad(width[i] - c.size(), ' ');
                if (i > 0)
                    l += "  ";
                l += cols[i].right ? pad + c : c + pad;
            }
            while (!l.empty() && l.back() == ' ')
                l.pop_back();
            out += l + '\n';
        };
        line([&](size_t i) -> const std::string& { return cols[i].head; });
        static const std::string none = "-";
        for (const auto& r : rows)
            line([&](size_t i) -> const std::string& { return i < r.size() ? r[i] : none; });
    }
};

/// "title: key value  key value" for the numbers and strings of an object ("a_b" as "a b").
std::string summary(const char* title, const json& j, bool nonzero_only) {
    if (!j.is_object())
        return "";
    std::string l;
    for (const auto& [k, v] : j.items()) {
        if (!(v.is_number() || v.is_string() || v.is_boolean()))
            continue;
        if (nonzero_only && v.is_number() && v == 0)
            continue;
        std::string name = k;
        std::replace(name.begin(), name.end(), '_', ' ');
        l += (l.empty() ? "" : "  ") + name + ' ' + (v.is_string() ? v.get<std::string>() : v.dump());
    }
    return std::string(title) + ": " + (l.empty() ? "none" : l) + '\n';
}

void section(std::string& out, const char* title, const text_table& t) {
    if (t.rows.empty())
        return;
    if (!out.empty())
        out += '\n';
    out += title;
    out += '\n';
    t.render(out);
}

std::string control_line(const json& c, const json& root) {
    if (!c.is_object())
        return "";
    std::string l;
    auto add = [&](const std::string& s) { l += (l.empty() ? "" : "  ") + s; };
    if (member(c, "host") != nullptr)
        add("host " + text(c, "host"));
    if (member(c, "vtep") != nullptr)
        add("vtep " + text(c, "vtep"));
    if (const json* r = member(c, "registered"); r != nullptr && r->is_boolean())
        add(r->get<bool>() ? "registered" : "NOT REGISTERED");
    if (const auto n = counter(c, "local_endpoints"))
        add(std::to_string(*n) + " local endpoints");
    if (const auto n = counter(c, "liveness_losses"); n && *n > 0)
        add(std::to_string(*n) + " liveness losses");
    if (const json* s = member(c, "sync"); s != nullptr && s->is_object()) {
        if (const auto rev = counter(*s, "applied_revision"))
            add("store revision " + std::to_string(*rev));
        if (const auto e = counter(*s, "store_errors"); e && *e > 0)
            add(std::to_string(*e) + " store errors");
        if (const auto e = counter(*s, "table_errors"); e && *e > 0)
            add(std::to_string(*e) + " table errors");
    }
    if (const json* st = member(root, "store"); st != nullptr && st->is_object())
        if (const json* up = member(*st, "up"); up != nullptr && up->is_boolean() && !up->get<bool>())
            add("STORE DOWN");
    return l.empty() ? "" : l + '\n';
}

/// `j[k]`, or null.
const json& sub(const json& j, const char* k) {
    static const json none;
    const json* v = member(j, k);
    return v != nullptr ? *v : none;
}

/// A counter of a /v1/stats row, as include/overpass/counters.def declares it.
struct def_counter {
    const char* name;   ///< its key in the row
    const char* unit;   ///< "count", "bytes" or "cycles"
};

// The counters of each kind of row, in counters.def's order. A counter added there is
// in these lists, and so in the tables below, without a change here.
const std::vector<def_counter> port_counters = {
#define OVP_PORT_COUNTER(id, unit, help) {#id, #unit},
#define OVP_PORT_DEVICE(id, field, help) {#id, "count"},
#include "overpass/counters.def"
};
const std::vector<def_counter> worker_counters = {
#define OVP_WORKER_COUNTER(id, unit, family, help) {#id, #unit},
#include "overpass/counters.def"
};
const std::vector<def_counter> network_counters = {
#define OVP_NETWORK_COUNTER(id, unit, help) {#id, #unit},
#include "overpass/counters.def"
};
const std::vector<def_counter> vtep_counters = {
#define OVP_VTEP_COUNTER(id, unit, help) {#id, #unit},
#include "overpass/counters.def"
};

bool listed(const std::vector<const char*>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

/// Column heading of a counter: its name in capitals, "_packets" as " PKTS"
/// ("rx_packets": "RX PKTS"), with one shorter exception.
std::string heading(const std::string& name) {
    if (name == "dropped_packets")
        return "DROPS";
    std::string h = name;
    const std::string packets = "_packets";
    if (h.size() > packets.size() && h.ends_with(packets))
        h.replace(h.size() - packets.size(), packets.size(), "_pkts");
    for (char& c : h)
        c = c == '_' ? ' ' : c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    return h;
}

/// The cell of counter `c` of `row`: a count, or bytes.
std::string counter_cell(const json& row, const def_counter& c) {
    return std::string(c.unit) == "bytes" ? bytes_cell(row, c.name) : count_cell(row, c.name);
}

/// The counters of `all` that get a column: those in `always`, and the others that a row
/// has unless `hidden` names them (a new counter shows up once the daemon sends it).
std::vector<def_counter> columns_of(const std::vector<def_counter>& all, const std::vector<const char*>& always,
                                    const std::vector<const char*>& hidden, const std::vector<const json*>& rows) {
    std::vector<def_counter> out;
    for (const def_counter& c : all) {
        const bool sent = std::any_of(rows.begin(), rows.end(), [&](const json* r) { return r->contains(c.name); });
        if (listed(always, c.name) || (sent && !listed(hidden, c.name)))
            out.push_back(c);
    }
    return out;
}

/// A table of counter rows (ports, networks, VTEPs): its leading columns, one per counter
/// (columns_of), trailing columns, and in watch mode the rates of each <x>_packets and
/// <x>_bytes pair: "<X> PPS" and "<X> BIT/S".
struct counter_table {
    const char* title;                            ///< "PORTS"
    const char* rows_key;                         ///< "ports" in /v1/stats
    std::vector<const char*> identity;            ///< keys of the same row in the previous sample
    std::vector<text_table::column> lead, trail;
    std::vector<std::string> (*lead_cells)(const json& row);
    std::vector<std::string> (*trail_cells)(const json& row);   ///< may be null without trailing columns
    const std::vector<def_counter>& counters;
    std::vector<const char*> always;   ///< counters with a column even when the daemon sent none

    /// The <x> of every <x>_bytes counter that has an <x>_packets.
    std::vector<std::string> rate_pairs() const {
        std::vector<std::string> out;
        for (const def_counter& c : counters) {
            const std::string n = c.name;
            if (!n.ends_with("_bytes"))
                continue;
            const std::string x = n.substr(0, n.size() - 6);
            const auto is_packets = [&](const def_counter& p) { return p.name == x + "_packets"; };
            if (std::any_of(counters.begin(), counters.end(), is_packets))
                out.push_back(x);
        }
        return out;
    }

    void render(std::string& out, const json& cur, const json& prev, double dt) const {
        const std::vector<const json*> rows = rows_of(cur, rows_key);
        const std::vector<def_counter> shown = columns_of(counters, always, {}, rows);
        const std::vector<std::string> rates = dt > 0 ? rate_pairs() : std::vector<std::string>{};
        text_table t{lead, {}};
        for (const def_counter& c : shown)
            t.cols.push_back({heading(c.name), true});
        t.cols.insert(t.cols.end(), trail.begin(), trail.end());
        for (const std::string& x : rates) {
            const std::string h = heading(x);
            t.cols.insert(t.cols.end(), {{h + " PPS", true}, {h + " BIT/S", true}});
        }
        for (const json* r : rows) {
            std::vector<std::string> row = lead_cells(*r);
            for (const def_counter& c : shown)
                row.push_back(counter_cell(*r, c));
            if (trail_cells != nullptr) {
                const std::vector<std::string> more = trail_cells(*r);
                row.insert(row.end(), more.begin(), more.end());
            }
            const json* p = rates.empty() ? nullptr : same_row(prev, rows_key, identity, *r);
            for (const std::string& x : rates)
                row.insert(row.end(), {pps_cell(*r, p, (x + "_packets").c_str(), dt),
                                       bps_cell(*r, p, (x + "_bytes").c_str(), dt)});
            t.rows.push_back(std::move(row));
        }
        section(out, title, t);
    }
};

const counter_table ports_table{
    "PORTS", "ports", {"port", "name"}, {{"NAME", false}, {"KIND", false}, {"ENDPOINT", false}}, {},
    [](const json& r) { return std::vector<std::string>{text(r, "name"), text(r, "kind"), text(r, "endpoint")}; },
    nullptr, port_counters, {"rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "dropped_packets"}};

const counter_table networks_table{
    "NETWORKS", "networks", {"vni", "network"}, {{"NETWORK", false}, {"VNI", true}}, {},
    [](const json& r) { return std::vector<std::string>{text(r, "network"), text(r, "vni")}; },
    nullptr, network_counters, {"encap_packets", "encap_bytes", "decap_packets", "decap_bytes", "flood_packets"}};

const counter_table vteps_table{
    "VTEPS", "vteps", {"vtep"}, {{"VTEP", false}, {"RESOLVED", false}}, {{"LAST SEEN", true}},
    [](const json& r) {
        const json& res = sub(r, "resolved");
        return std::vector<std::string>{text(r, "vtep"), res.is_boolean() ? (res.get<bool>() ? "yes" : "no") : "-"};
    },
    [](const json& r) { return std::vector<std::string>{seconds_ago(r, "last_seen_seconds")}; },
    vtep_counters, {"tx_packets", "tx_bytes", "rx_packets", "rx_bytes"}};

/// WORKERS: packets (and pps), busy % (from busy/idle cycles), TX bursts, exceptions and
/// endpoint cache hit % (from its hits and misses), over the interval in watch mode; then
/// any other counter the daemon sends, but the poll loop's own.
void workers_table(std::string& out, const json& cur, const json& prev, double dt) {
    const std::vector<const json*> rows = rows_of(cur, "workers");
    const std::vector<def_counter> extra =
        columns_of(worker_counters, {}, {"packets", "tx_bursts", "exceptions", "busy_polls", "idle_polls", "sleeps",
                                         "busy_cycles", "idle_cycles", "endpoint_cache_hits", "endpoint_cache_misses"},
                   rows);
    text_table t{{{"LCORE", true}, {heading("packets"), true}}, {}};
    if (dt > 0)
        t.cols.push_back({"PPS", true});
    t.cols.insert(t.cols.end(), {{"BUSY", true},
                                 {heading("tx_bursts"), true},
                                 {heading("exceptions"), true},
                                 {"EP CACHE HIT", true}});
    for (const def_counter& c : extra)
        t.cols.push_back({heading(c.name), true});
    for (const json* r : rows) {
        const json* p = dt > 0 ? same_row(prev, "workers", {"lcore"}, *r) : nullptr;
        // over the interval, or since the start without a previous sample
        auto amount = [&](const char* k) { return p != nullptr ? delta(*r, p, k) : counter(*r, k); };
        const auto busy = amount("busy_cycles"), idle = amount("idle_cycles");
        const auto hits = amount("endpoint_cache_hits"), misses = amount("endpoint_cache_misses");
        std::vector<std::string> row{text(*r, "lcore"), count_cell(*r, "packets")};
        if (dt > 0)
            row.push_back(pps_cell(*r, p, "packets", dt));
        row.insert(row.end(), {busy && idle ? percent(*busy, *busy + *idle) : "-", count_cell(*r, "tx_bursts"),
                               count_cell(*r, "exceptions"),
                               hits && misses && *hits + *misses != 0 ? percent(*hits, *hits + *misses) : "-"});
        for (const def_counter& c : extra)
            row.push_back(counter_cell(*r, c));
        t.rows.push_back(std::move(row));
    }
    section(out, "WORKERS", t);
}

/// DROPS: the reasons with a count, most first ("DROPS: none" without any).
void drops_table(std::string& out, const json& cur, const json& prev, double dt) {
    const json& drops = sub(cur, "drops");
    if (!drops.is_object())
        return;
    std::vector<std::pair<std::string, uint64_t>> nonzero;
    for (const auto& [reason, v] : drops.items())
        if (const auto n = counter(drops, reason.c_str()); n && *n > 0)
            nonzero.emplace_back(reason, *n);
    std::sort(nonzero.begin(), nonzero.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    text_table t{{{"REASON", false}, {"COUNT", true}}, {}};
    if (dt > 0)
        t.cols.push_back({"PER SEC", true});
    const json* pd = member(prev, "drops");
    for (const auto& [reason, n] : nonzero) {
        std::vector<std::string> row{reason, human_count(static_cast<double>(n))};
        if (dt > 0)
            row.push_back(pps_cell(drops, pd, reason.c_str(), dt));
        t.rows.push_back(std::move(row));
    }
    if (t.rows.empty())
        out += std::string(out.empty() ? "" : "\n") + "DROPS: none\n";
    else
        section(out, "DROPS", t);
}

// ---- commands ----

int network_cmd(client& c, const std::vector<std::string>& args, size_t at, std::ostream& out) {
    if (at >= args.size())
        throw usage_error("\"network\" needs a subcommand: create, ls, inspect, rm");
    const std::string sub = args[at];
    const std::string cmd = "network " + sub;
    if (sub == "create") {
        const auto p = parse(args, at + 1, {"--subnet", "--gateway", "--vni", "--mtu", "--allow-overlap"}, cmd);
        ctl::network_request req;
        req.name = one_positional(p, cmd, "a network name");
        if (p.flags.contains("subnet"))
            req.subnet = p.flags.at("subnet");
        if (p.flags.contains("gateway"))
            req.gateway = p.flags.at("gateway");
        if (p.flags.contains("vni"))
            req.vni = number("vni", p.flags.at("vni"));
        if (p.flags.contains("mtu"))
            req.mtu = number("mtu", p.flags.at("mtu"));
        req.allow_overlap = p.flags.contains("allow-overlap");
        const json body = api::request_body(req);   // refused here as the daemon would refuse it
        const auto created = answer<ctl::net_meta>(c.request(http::verb::post, std::string(api::path::networks), body));
        out << created.id << '\n';
        return 0;
    }
    if (sub == "ls" || sub == "list") {
        no_positional(parse(args, at + 1, {}, cmd), cmd);
        std::vector<std::vector<std::string>> rows{{"NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET", "VNI"}};
        for (const auto& n : answers<ctl::net_meta>(c.request(http::verb::get, std::string(api::path::networks))))
            rows.push_back(
                {n.id.substr(0, 12), n.name, "overpass", "global", n.subnet.str(), std::to_string(n.vni)});
        print_table(out, rows);
        return 0;
    }
    if (sub == "inspect") {
        const auto name = one_positional(parse(args, at + 1, {}, cmd), cmd, "a network name");
        out << c.request(http::verb::get, api::item_path(api::path::networks, name)).dump(4) << '\n';
        return 0;
    }
    if (sub == "rm" || sub == "remove") {
        const auto name = one_positional(parse(args, at + 1, {}, cmd), cmd, "a network name");
        c.request(http::verb::delete_, api::item_path(api::path::networks, name));
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
        const ctl::attach_request req{p.flags.at("network"), p.flags.at("name"), flag_or_empty(p, "netns"),
                                      flag_or_empty(p, "vhost-user")};
        const json body = api::request_body(req);   // refused here as the daemon would refuse it
        const auto e = answer<ctl::endpoint_info>(c.request(http::verb::post, std::string(api::path::endpoints), body));
        out << e.name << ' ' << api::address(e) << ' ' << e.mac << '\n';
        return 0;
    }
    if (sub == "detach") {
        const auto p = parse(args, at + 1, {"--network"}, cmd);
        const auto name = one_positional(p, cmd, "an endpoint name");
        std::string target = api::item_path(api::path::endpoints, name);
        if (p.flags.contains("network"))
            target += std::string("?") + api::field::network + "=" + p.flags.at("network");
        c.request(http::verb::delete_, target);
        out << name << '\n';
        return 0;
    }
    if (sub == "ls" || sub == "list") {
        no_positional(parse(args, at + 1, {}, cmd), cmd);
        std::vector<std::vector<std::string>> rows{{"NAME", "NETWORK", "ADDRESS", "MAC", "HOST", "KIND"}};
        for (const auto& e : answers<ctl::endpoint_info>(c.request(http::verb::get, std::string(api::path::endpoints))))
            rows.push_back({e.name, e.network, api::address(e), e.mac, e.host, e.kind});
        print_table(out, rows);
        return 0;
    }
    throw usage_error("unknown command \"" + cmd + "\" (see overpass --help)");
}

volatile std::sig_atomic_t interrupted = 0;

extern "C" void on_sigint(int) { interrupted = 1; }

/// Catches SIGINT for its lifetime (no SA_RESTART: a sleep or read returns early).
struct sigint_guard {
    struct sigaction old {};
    sigint_guard() {
        interrupted = 0;
        struct sigaction sa {};
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old);
    }
    ~sigint_guard() { sigaction(SIGINT, &old, nullptr); }
    sigint_guard(const sigint_guard&) = delete;
    sigint_guard& operator=(const sigint_guard&) = delete;
};

/// Seconds: digits with an optional fraction ("2", "0.5"), from 0.1 to a day.
double interval_arg(const std::string& v) {
    const bool well_formed =
        !v.empty() && v.size() <= 12 && std::count(v.begin(), v.end(), '.') <= 1 &&
        std::any_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        std::all_of(v.begin(), v.end(), [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
    if (!well_formed)
        throw usage_error("--interval needs a number of seconds, got \"" + v + "\"");
    const double s = std::strtod(v.c_str(), nullptr);
    if (!(s >= 0.1 && s <= 86400))
        throw usage_error("--interval must be between 0.1 and 86400 seconds, got \"" + v + "\"");
    return s;
}

std::string local_time() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

int stats_cmd(client& c, const std::vector<std::string>& args, size_t at, std::ostream& out, bool tty) {
    const std::string cmd = "stats";
    const auto p = parse(args, at, {"--json", "--watch", "--interval", "--count"}, cmd);
    no_positional(p, cmd);
    const bool watch = p.flags.contains("watch");
    const double interval = p.flags.contains("interval") ? interval_arg(p.flags.at("interval")) : 2.0;
    uint32_t count = 0;   // 0: until SIGINT
    if (p.flags.contains("count")) {
        count = number("count", p.flags.at("count"));
        if (count == 0)
            throw usage_error("--count must be at least 1");
    }
    if (!watch) {
        for (const char* f : {"interval", "count"})
            if (p.flags.contains(f))
                throw usage_error(std::string("--") + f + " needs --watch");
        const json j = c.request(http::verb::get, "/v1/stats");
        if (p.flags.contains("json"))
            out << j.dump(4) << '\n';
        else
            out << render_stats(j, nullptr, 0);
        return 0;
    }
    if (p.flags.contains("json"))
        throw usage_error("--json and --watch cannot be combined");

    using clock = std::chrono::steady_clock;
    const auto period = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(interval));
    std::string every = fixed(interval, 3);   // "2", "0.5", "0.25"
    while (every.back() == '0')
        every.pop_back();
    if (every.back() == '.')
        every.pop_back();
    sigint_guard guard;
    json prev;
    clock::time_point prev_at{};
    clock::time_point next = clock::now();
    for (uint32_t n = 0; count == 0 || n < count; n++) {
        if (n > 0) {
            next += period;
            for (auto now = clock::now(); !interrupted && now < next; now = clock::now())
                std::this_thread::sleep_for(std::min<clock::duration>(next - now, std::chrono::milliseconds(50)));
            if (clock::now() > next + period)   // fell behind (a slow answer): no catching up
                next = clock::now();
        }
        if (interrupted)
            break;
        json cur;
        try {
            cur = c.request(http::verb::get, "/v1/stats");
        } catch (const cli_error&) {
            if (interrupted)   // the signal cut the request short
                break;
            throw;
        }
        const auto at_time = clock::now();
        const double measured = prev.is_null() ? interval : std::chrono::duration<double>(at_time - prev_at).count();
        const std::string frame =
            "overpass stats every " + every + "s, " + local_time() +
            (count == 0 ? " (Ctrl-C to quit)" : "") + "\n\n" +
            render_stats(cur, prev, measured > 0 ? measured : interval);
        if (tty) {
            // Home and redraw in place, erasing each line's and the screen's leftovers.
            std::string screen = n == 0 ? "\033[H\033[2J" : "\033[H";
            for (size_t b = 0, e; b < frame.size(); b = e + 1) {
                e = frame.find('\n', b);
                if (e == std::string::npos)
                    e = frame.size();
                screen += frame.substr(b, e - b) + "\033[K\n";
            }
            out << screen << "\033[J";
        } else {
            out << (n > 0 ? "\n" : "") << frame;
        }
        out.flush();
        if (!out)
            return 1;
        prev = std::move(cur);
        prev_at = at_time;
    }
    return 0;
}

int dispatch(const std::vector<std::string>& args, const std::string& env_host, std::ostream& out, bool out_is_tty) {
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
    if (cmd == "stats")
        return stats_cmd(c, args, at + 1, out, out_is_tty);
    if (cmd == "host") {
        if (at + 1 >= args.size() || (args[at + 1] != "ls" && args[at + 1] != "list"))
            throw usage_error("\"host\" needs the subcommand ls");
        no_positional(parse(args, at + 2, {}, cmd), cmd);
        std::vector<std::vector<std::string>> rows{{"HOST ID", "VTEP", "VXLAN PORT"}};
        for (const auto& h : answers<ctl::host_info>(c.request(http::verb::get, std::string(api::path::hosts))))
            rows.push_back({h.id, h.vtep, std::to_string(h.vxlan_port)});
        print_table(out, rows);
        return 0;
    }
    throw usage_error("unknown command \"" + cmd + "\" (see overpass --help)");
}

} // namespace

std::string human_count(double v) { return human(v, {"", "k", "M", "G", "T", "P", "E"}); }
std::string human_bytes(double v) { return human(v, {" B", " kB", " MB", " GB", " TB", " PB", " EB"}); }
std::string human_bits_per_second(double v) {
    return human(v, {" bit/s", " kbit/s", " Mbit/s", " Gbit/s", " Tbit/s", " Pbit/s"});
}

std::string render_stats(const json& cur, const json& prev, double interval_seconds) {
    // dt > 0: watch mode, with rates over dt seconds
    const double dt = std::isfinite(interval_seconds) && interval_seconds > 0 ? interval_seconds : 0;
    std::string out = control_line(sub(cur, "control"), cur);
    ports_table.render(out, cur, prev, dt);
    networks_table.render(out, cur, prev, dt);
    vteps_table.render(out, cur, prev, dt);
    workers_table(out, cur, prev, dt);
    drops_table(out, cur, prev, dt);
    const std::string tail =
        summary("tables", sub(cur, "tables"), false) + summary("slow path", sub(cur, "slow_path"), true);
    if (!tail.empty())
        out += (out.empty() ? "" : "\n") + tail;
    return out;
}

int run(const std::vector<std::string>& args, const std::string& env_host, std::ostream& out, std::ostream& err,
        bool out_is_tty) {
    try {
        return dispatch(args, env_host, out, out_is_tty);
    } catch (const usage_error& e) {
        err << "overpass: " << e.what() << '\n';
        return 2;
    } catch (const std::exception& e) {
        err << "overpass: " << e.what() << '\n';
        return 1;
    }
}

} // namespace overpass::cli
