// SPDX-License-Identifier: Apache-2.0
// runs on: unit tests (no EAL)
//
// Helpers: run an awaitable to completion on an io_context, temporary directories, and
// fakes of table_writer and port_ops that record every call.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "control/ports/port_ops.hpp"
#include "control/publish/table_writer.hpp"
#include "control/store/keys.hpp"

namespace overpass::test {

namespace asio = boost::asio;

template <class T>
T run(asio::io_context& io, asio::awaitable<T> a) {
    std::optional<T> result;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
        error = e;
        if (!e)
            result = std::move(v);
        done = true;
    });
    io.restart();
    while (!done)
        io.run_one();
    if (error)
        std::rethrow_exception(error);
    return std::move(*result);
}

inline void run(asio::io_context& io, asio::awaitable<void> a) {
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io, std::move(a), [&](std::exception_ptr e) {
        error = e;
        done = true;
    });
    io.restart();
    while (!done)
        io.run_one();
    if (error)
        std::rethrow_exception(error);
}

/// Runs the io_context's handlers (timers included) for a while.
inline void run_for(asio::io_context& io, std::chrono::milliseconds d) {
    io.restart();
    io.run_for(d);
}

/// Runs the io_context's handlers until pred() holds (true) or `limit` passes (false).
/// For what a watch delivers: wait for the delivery, not for a time that a slow or
/// loaded machine may not keep.
template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        run_for(io, std::chrono::milliseconds(5));
    }
    return true;
}

struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "overpass-unit-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const char* name) const { return (path / name).string(); }
};

inline std::string ip_str(rte_be32_t be) { return ctl::format_ipv4(rte_be_to_cpu_32(be)); }
inline std::string mac_str(const rte_ether_addr& m) {
    std::array<uint8_t, 6> a;
    std::copy(std::begin(m.addr_bytes), std::end(m.addr_bytes), a.begin());
    return ctl::format_mac(a);
}

/// Records every call as one line; `fail_next` makes the next call whose line starts
/// with it return -EIO.
class fake_table_writer final : public ctl::table_writer {
public:
    std::vector<std::string> calls;
    std::string fail_next;

    overpass::dp_tables& tables() noexcept override { std::abort(); }
    int set_config(const overpass::config_snapshot&) noexcept override { return record("set_config"); }
    int upsert_network(const ctl::network_spec& n) noexcept override {
        return record("upsert_network " + std::to_string(n.vni) + " " + ip_str(n.subnet_be) + " " +
                      ip_str(n.mask_be) + " gw " + ip_str(n.gateway_be) + " mtu " + std::to_string(n.mtu));
    }
    int remove_network(uint32_t vni) noexcept override { return record("remove_network " + std::to_string(vni)); }
    int upsert_vtep(rte_be32_t ip) noexcept override { return record("upsert_vtep " + ip_str(ip)); }
    int resolve_vtep(rte_be32_t ip, const rte_ether_addr&) noexcept override { return record("resolve_vtep " + ip_str(ip)); }
    int remove_vtep(rte_be32_t ip) noexcept override { return record("remove_vtep " + ip_str(ip)); }
    int upsert_local_endpoint(uint32_t vni, rte_be32_t ip, const rte_ether_addr& mac, uint16_t port) noexcept override {
        return record("upsert_local_endpoint " + std::to_string(vni) + " " + ip_str(ip) + " " + mac_str(mac) + " port " +
                      std::to_string(port));
    }
    int upsert_remote_endpoint(uint32_t vni, rte_be32_t ip, const rte_ether_addr& mac, rte_be32_t vtep) noexcept override {
        return record("upsert_remote_endpoint " + std::to_string(vni) + " " + ip_str(ip) + " " + mac_str(mac) + " via " +
                      ip_str(vtep));
    }
    int remove_endpoint(uint32_t vni, const rte_ether_addr& mac) noexcept override {
        return record("remove_endpoint " + std::to_string(vni) + " " + mac_str(mac));
    }
    void reclaim() noexcept override {}
    void synchronize() noexcept override {}
    sizes size() const noexcept override { return {}; }
    int network_slot(uint32_t) const noexcept override { return 0; }
    int vtep_slot(rte_be32_t) const noexcept override { return 0; }
    std::vector<vtep_view> vteps() const override { return {}; }
    std::vector<network_view> networks() const override { return {}; }
    const ctl::table_limits& limits() const noexcept override { return limits_; }
    void on_slot_taken(std::function<void(slot_kind, uint16_t)>) override {}
    ctl::table_limits limits_{};

private:
    int record(std::string line) {
        if (!fail_next.empty() && line.starts_with(fail_next)) {
            fail_next.clear();
            calls.push_back("FAILED " + line);
            return -EIO;
        }
        calls.push_back(std::move(line));
        return 0;
    }
};

class fake_port_ops final : public ctl::port_ops {
public:
    std::vector<std::string> calls;
    std::vector<ctl::container_iface> taps;
    std::string fail_endpoint;   ///< attach of this endpoint name throws port_error
    uint16_t next_port = 1;

    uint16_t attach_tap(const std::string& endpoint, const ctl::container_iface& iface) override {
        if (endpoint == fail_endpoint)
            throw ctl::port_error("netns \"" + iface.netns + "\" does not exist");
        taps.push_back(iface);
        calls.push_back("attach_tap " + endpoint + " " + iface.netns + " " + iface.ip_cidr);
        return next_port++;
    }
    uint16_t attach_vhost(const std::string& endpoint, const std::string& socket_path) override {
        if (endpoint == fail_endpoint)
            throw ctl::port_error("cannot create " + socket_path);
        calls.push_back("attach_vhost " + endpoint + " " + socket_path);
        return next_port++;
    }
    void detach(uint16_t port_id) noexcept override { calls.push_back("detach " + std::to_string(port_id)); }
};

} // namespace overpass::test
