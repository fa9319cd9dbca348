// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
#include "control/log.hpp"
#include "control/ports/port_manager.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_log.h>

extern char** environ;

namespace overpass::ctl {

namespace {

// RX descriptors per queue. Some PMDs (net_tap) hold one mbuf per RX descriptor from
// queue setup on, so the pool must cover every port's ring: 31 container ports at 256
// plus the uplink fit the default pool (--mbufs 16384) with room for bursts in flight.
constexpr uint16_t uplink_rx_descriptors = 1024;
constexpr uint16_t container_rx_descriptors = 256;

std::string errstr(int rc) { return rte_strerror(rc < 0 ? -rc : rc); }

std::string mac_str(const rte_ether_addr& m) {
    char buf[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(buf, sizeof(buf), &m);
    return buf;
}

constexpr const char* resolv_conf_mark = "# written by overpassd: names of this overlay network";

/// Where a namespace's own resolv.conf waits while overpassd's is in place.
std::filesystem::path saved_resolv_conf(const std::filesystem::path& file) {
    return file.parent_path() / "resolv.conf.overpass-saved";
}

/// `ip netns exec NS` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf: the
/// container asks its network's resolver (the gateway address, answered by overpassd).
/// A resolv.conf the namespace already had is kept aside and put back by
/// restore_resolv_conf(). Returns the path written.
std::string write_resolv_conf(const std::string& ns, const std::string& server) {
    const std::filesystem::path dir = "/etc/netns/" + ns;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    const std::filesystem::path file = dir / "resolv.conf";
    const std::filesystem::path tmp = dir / "resolv.conf.overpass";
    std::string first_line;
    if (std::ifstream old(file); old && std::getline(old, first_line) && first_line != resolv_conf_mark &&
                                 !std::filesystem::exists(saved_resolv_conf(file))) {
        std::filesystem::rename(file, saved_resolv_conf(file), ec);
        if (ec)
            throw port_error("cannot keep " + file.string() + " aside: " + ec.message());
    }
    {
        std::ofstream out(tmp);
        out << resolv_conf_mark << "\nnameserver " << server
            << "\noptions ndots:0 timeout:1 attempts:2\n";
        if (!out)
            throw port_error("cannot write " + tmp.string());
    }
    std::filesystem::rename(tmp, file, ec);
    if (ec)
        throw port_error("cannot write " + file.string() + ": " + ec.message());
    return file.string();
}

/// Removes overpassd's resolv.conf and puts back the one the namespace had, if any.
void restore_resolv_conf(const std::filesystem::path& file) noexcept {
    std::error_code ec;
    if (std::filesystem::exists(saved_resolv_conf(file), ec)) {
        std::filesystem::rename(saved_resolv_conf(file), file, ec);
        return;
    }
    std::filesystem::remove(file, ec);
    std::filesystem::remove(file.parent_path(), ec);   // only if empty: it may hold the user's files
}

} // namespace

std::string run_program(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int err_pipe[2];
    if (pipe2(err_pipe, O_CLOEXEC) != 0)
        return std::string("pipe: ") + std::strerror(errno);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
    pid_t pid;
    const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(err_pipe[1]);
    if (rc != 0) {
        close(err_pipe[0]);
        return argv[0] + ": " + std::strerror(rc);
    }
    std::string err;
    std::array<char, 512> buf;
    ssize_t n;
    while ((n = read(err_pipe[0], buf.data(), buf.size())) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            err.append(buf.data(), static_cast<std::size_t>(n));
    close(err_pipe[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return "";
    while (!err.empty() && (err.back() == '\n' || err.back() == ' '))
        err.pop_back();
    std::string cmd;
    for (const auto& a : argv)
        cmd += (cmd.empty() ? "" : " ") + a;
    return "'" + cmd + "' failed" + (err.empty() ? "" : ": " + err);
}

port_manager::port_manager(worker_pool& workers, table_writer& writer, rte_mempool* pool, std::string host_id)
    : workers_(workers), writer_(writer), pool_(pool), host_id_(std::move(host_id)) {}

port_manager::~port_manager() { close_all(); }

void port_manager::configure_and_start(uint16_t port, uint16_t n_rxq, uint16_t nb_rxd, const std::string& what) {
    // A reused port id starts from zero: no worker polls or transmits to it yet.
    workers_.reset_port_counters(port);
    rte_eth_dev_info info;
    if (int rc = rte_eth_dev_info_get(port, &info); rc != 0)
        throw port_error(what + ": cannot read device info: " + errstr(rc));
    const uint16_t n_txq = static_cast<uint16_t>(workers_.size());
    if (info.max_tx_queues < n_txq || info.max_rx_queues < n_rxq)
        throw port_error(what + ": needs " + std::to_string(n_rxq) + " RX and " + std::to_string(n_txq) +
                         " TX queues, the device has " + std::to_string(info.max_rx_queues) + " and " +
                         std::to_string(info.max_tx_queues));
    rte_eth_conf conf{};
    if (n_rxq > 1) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
    if (int rc = rte_eth_dev_configure(port, n_rxq, n_txq, &conf); rc != 0)
        throw port_error(what + ": configure failed: " + errstr(rc));
    uint16_t nb_txd = 1024;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd);
    const int socket = rte_eth_dev_socket_id(port);
    const unsigned sock = socket < 0 ? 0 : static_cast<unsigned>(socket);
    for (uint16_t q = 0; q < n_rxq; q++)
        if (int rc = rte_eth_rx_queue_setup(port, q, nb_rxd, sock, nullptr, pool_); rc != 0)
            throw port_error(what + ": RX queue " + std::to_string(q) + " setup failed: " + errstr(rc));
    rte_eth_txconf txconf = info.default_txconf;
    txconf.offloads = conf.txmode.offloads;
    for (uint16_t q = 0; q < n_txq; q++)
        if (int rc = rte_eth_tx_queue_setup(port, q, nb_txd, sock, &txconf); rc != 0)
            throw port_error(what + ": TX queue " + std::to_string(q) + " setup failed: " + errstr(rc));
    if (int rc = rte_eth_dev_start(port); rc != 0)
        throw port_error(what + ": start failed: " + errstr(rc));
}

uint16_t port_manager::open_uplink(const std::string& devargs) {
    const std::string name = devargs.substr(0, devargs.find(','));
    uint16_t port;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &port) != 0)
        throw port_error("uplink " + name + ": no such port (the device could not be probed; see the EAL log)");
    const uint16_t n_rxq = static_cast<uint16_t>(workers_.size());
    configure_and_start(port, n_rxq, uplink_rx_descriptors, "uplink " + name);
    uint16_t mtu = 1500;
    if (rte_eth_dev_get_mtu(port, &mtu) == 0 && mtu >= 576)
        uplink_mtu_ = mtu;
    uplink_ = port;
    ports_[port] = {port, name, "uplink", "", devargs, ""};
    for (uint16_t q = 0; q < n_rxq; q++)
        if (int rc = workers_.assign_rxq(port, q); rc < 0)
            throw port_error("uplink " + name + ": cannot hand RX queue to a worker: " + errstr(rc));
    return port;
}

uint16_t port_manager::hotplug(const std::string& devargs, const std::string& name) {
    if (int rc = rte_dev_probe(devargs.c_str()); rc != 0)
        throw port_error("cannot create port " + name + ": " + errstr(rc));
    uint16_t port;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &port) != 0) {
        rte_eal_hotplug_remove("vdev", name.c_str());
        throw port_error("port " + name + " was probed but has no ethdev");
    }
    return port;
}

uint16_t port_manager::attach_tap(const std::string& endpoint, const container_iface& iface) {
    if (iface.netns.empty() || iface.netns.find('/') != std::string::npos ||
        !std::filesystem::exists("/var/run/netns/" + iface.netns))
        throw port_error("network namespace '" + iface.netns + "' does not exist (ip netns add " + iface.netns + ")");
    const unsigned n = next_vdev_++;
    const std::string name = "net_tap" + std::to_string(n);
    // Kernel names are at most 15 characters and live in our namespace until moved.
    const std::string ifname = "ovp" + std::to_string(getpid() % 100000) + "t" + std::to_string(n);
    const uint16_t port = hotplug(name + ",iface=" + ifname, name);
    ports_[port] = {port, name, "tap", endpoint, iface.netns + ":" + iface.ifname, ""};
    try {
        configure_and_start(port, 1, container_rx_descriptors, "tap port for " + endpoint);
        // The kernel side of the TAP is the container's interface. Moving it brings it
        // down; everything after the move is configured inside the container's namespace.
        const std::string& ns = iface.netns;
        const std::vector<std::vector<std::string>> steps = {
            {"ip", "link", "set", "dev", ifname, "netns", ns},
            {"ip", "-n", ns, "link", "set", "dev", ifname, "name", iface.ifname},
            {"ip", "-n", ns, "link", "set", "dev", iface.ifname, "address", mac_str(iface.mac), "mtu",
             std::to_string(iface.mtu)},
            {"ip", "-n", ns, "addr", "add", iface.ip_cidr, "dev", iface.ifname},
            {"ip", "-n", ns, "link", "set", "dev", "lo", "up"},
        };
        for (const auto& step : steps)
            if (std::string err = run_program(step); !err.empty())
                throw port_error("configuring " + endpoint + " in netns " + ns + ": " + err);
        // The overlay is IPv4: without this the kernel's IPv6 chatter (router and
        // neighbour solicitations, MLD) is all counted as unsupported_ethertype drops.
        // Not fatal: a kernel without IPv6 has no such setting.
        run_program({"ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                     "net.ipv6.conf." + iface.ifname + ".disable_ipv6=1"});
        if (std::string err = run_program({"ip", "-n", ns, "link", "set", "dev", iface.ifname, "up"}); !err.empty())
            throw port_error("configuring " + endpoint + " in netns " + ns + ": " + err);
        if (!iface.gateway.empty())
            if (std::string err = run_program({"ip", "-n", ns, "route", "replace", "default", "via", iface.gateway,
                                               "dev", iface.ifname});
                !err.empty())
                throw port_error("configuring " + endpoint + " in netns " + ns + ": " + err);
        if (!iface.dns_server.empty())
            ports_[port].resolv_conf = write_resolv_conf(ns, iface.dns_server);
        if (int rc = workers_.assign_rxq(port, 0); rc < 0)
            throw port_error("cannot hand " + endpoint + "'s RX queue to a worker: " + errstr(rc));
    } catch (...) {
        remove_port(port);
        throw;
    }
    OVP_LOG(INFO, "endpoint %s: port %u (%s) is %s in netns %s", endpoint.c_str(), port, name.c_str(),
            iface.ifname.c_str(), iface.netns.c_str());
    return port;
}

namespace {

/// Whether a program accepts connections on the unix socket at `path` (a stale socket
/// left by a process that died refuses them).
bool socket_listened_on(const std::string& path) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return true;   // cannot tell: leave the file alone
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), std::min(path.size(), sizeof(addr.sun_path) - 1));
    const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    const int err = errno;
    close(fd);
    // A listener with a full backlog answers EAGAIN on a non-blocking connect.
    return rc == 0 || err == EAGAIN || err == EINPROGRESS;
}

} // namespace

uint16_t port_manager::attach_vhost(const std::string& endpoint, const std::string& socket_path) {
    if (socket_path.empty() || socket_path.size() >= 108 || socket_path[0] != '/')
        throw port_error("vhost-user socket path must be absolute and shorter than 108 characters");
    if (socket_path.find(',') != std::string::npos)
        throw port_error("vhost-user socket path must not contain ','");
    const auto dir = std::filesystem::path(socket_path).parent_path();
    if (!std::filesystem::is_directory(dir))
        throw port_error("vhost-user socket directory " + dir.string() + " does not exist");
    struct stat st;
    if (lstat(socket_path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw port_error(socket_path + " exists and is not a socket");
        if (socket_listened_on(socket_path))
            throw port_error(socket_path + " is a socket in use by another program");
        unlink(socket_path.c_str());   // stale socket from an earlier run: nobody listens on it
    }
    const unsigned n = next_vdev_++;
    const std::string name = "net_vhost" + std::to_string(n);
    // One queue pair per worker; a virtio-user peer with fewer queue pairs only
    // receives from the first ones (see docs/architecture.md).
    const std::string devargs = name + ",iface=" + socket_path + ",queues=" + std::to_string(workers_.size());
    const uint16_t port = hotplug(devargs, name);
    ports_[port] = {port, name, "vhost", endpoint, socket_path, ""};
    try {
        configure_and_start(port, 1, container_rx_descriptors, "vhost-user port for " + endpoint);
        if (int rc = workers_.assign_rxq(port, 0); rc < 0)
            throw port_error("cannot hand " + endpoint + "'s RX queue to a worker: " + errstr(rc));
    } catch (...) {
        remove_port(port);
        throw;
    }
    OVP_LOG(INFO, "endpoint %s: port %u (%s) listens on %s", endpoint.c_str(), port, name.c_str(),
            socket_path.c_str());
    return port;
}

void port_manager::remove_port(uint16_t port) noexcept {
    auto it = ports_.find(port);
    if (it == ports_.end())
        return;
    if (!workers_.unassign_port(port)) {
        // A worker may still poll this port: closing it would pull the queue from under
        // it. Leave the port open (its id is not reused) and say so.
        OVP_LOG(ERR, "port %u (%s): a worker did not acknowledge its removal; port left open", port,
                it->second.name.c_str());
        ports_.erase(it);
        return;
    }
    // Workers flush their TX buffers before every quiescent report: after a grace
    // period no worker holds a packet for this port, nor a binding that points to it.
    writer_.synchronize();
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
    if (it->second.kind != "uplink")
        rte_eal_hotplug_remove("vdev", it->second.name.c_str());
    if (it->second.kind == "vhost")
        unlink(it->second.detail.c_str());
    if (!it->second.resolv_conf.empty())
        restore_resolv_conf(it->second.resolv_conf);
    ports_.erase(it);
}

void port_manager::detach(uint16_t port_id) noexcept {
    auto it = ports_.find(port_id);
    if (it == ports_.end() || it->second.kind == "uplink")
        return;
    OVP_LOG(INFO, "endpoint %s: removing port %u (%s)", it->second.endpoint.c_str(), port_id,
            it->second.name.c_str());
    remove_port(port_id);
}

void port_manager::close_all() noexcept {
    while (!ports_.empty()) {
        auto it = ports_.begin();
        if (it->second.kind == "uplink" && ports_.size() > 1)
            it = std::next(it);
        remove_port(it->first);
    }
}

} // namespace overpass::ctl
