// SPDX-License-Identifier: Apache-2.0
// runs on: control thread
//
// The embedded single-machine backend: one JSON file holding the revision, the keys and
// the sessions. Several processes (several overpassd in different network namespaces of
// one machine, the unit tests' store instances) share it safely:
//  - every mutation runs under flock(LOCK_EX) on "<path>.lock", re-reads the file, purges
//    expired sessions and their keys, applies, and writes "<path>.tmp" + fsync + rename,
//    so readers never see a half-written file and need no lock;
//  - watchers poll stat() (inode changes on every rename) and diff what they read.
// File I/O and the lock are synchronous on the control thread: the critical section is a
// read-modify-write of a small file, far below the control loop's latency budget.
// Corrupt contents are reported as store_error and never overwritten.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "control/store/store.hpp"

namespace overpass::ctl {

struct file_store_options {
    /// Wall-clock seconds (session expiry is stored as wall-clock time so that several
    /// processes agree on it). Tests inject their own.
    std::function<double()> clock;
    std::chrono::milliseconds poll_interval{100};
};

class file_store final : public store {
public:
    file_store(boost::asio::io_context& io, std::string path, file_store_options opts = {});
    ~file_store() override;

    boost::asio::awaitable<kv_snapshot> list(std::string prefix) override;
    boost::asio::awaitable<txn_result> txn(std::vector<txn_op> ops) override;
    boost::asio::awaitable<std::unique_ptr<liveness>> open_liveness(std::string owner,
                                                                    std::chrono::seconds ttl) override;
    std::unique_ptr<watch_handle> watch(std::string prefix, watch_callbacks cbs) override;
    std::string url() const override;

    struct core;   // shared with liveness handles and watches, which may outlive calls

private:
    boost::asio::io_context& io_;
    std::shared_ptr<core> core_;
};

} // namespace overpass::ctl
