// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (make_store: init only)
#include "control/store/store.hpp"

#include <stdexcept>

#include "control/store/etcd_store.hpp"
#include "control/store/file_store.hpp"

namespace overpass::ctl {

boost::asio::awaitable<bool> store::create(std::string key, std::string value, const liveness* lease) {
    std::vector<txn_op> ops;
    ops.push_back(txn_op::create(std::move(key), std::move(value), lease));
    const txn_result r = co_await txn(std::move(ops));
    co_return r.succeeded;
}

boost::asio::awaitable<bool> store::remove(std::string key, uint64_t mod_rev) {
    std::vector<txn_op> ops;
    ops.push_back(txn_op::remove(std::move(key), mod_rev));
    const txn_result r = co_await txn(std::move(ops));
    co_return r.succeeded;
}

std::unique_ptr<store> make_store(boost::asio::io_context& io, const std::string& url) {
    const std::string accepted = " (expected file:///path, consul://host:port[/prefix] or etcd://host:port[/prefix])";
    const size_t sep = url.find("://");
    if (sep == std::string::npos || sep == 0)
        throw std::invalid_argument("invalid store URL \"" + url + "\"" + accepted);
    const std::string scheme = url.substr(0, sep);
    const std::string rest = url.substr(sep + 3);
    if (scheme == "file") {
        if (rest.empty() || rest.front() != '/')
            throw std::invalid_argument("invalid store URL \"" + url +
                                        "\": a file store needs an absolute path, e.g. file:///var/lib/overpass/store.json");
        if (rest.back() == '/')
            throw std::invalid_argument("invalid store URL \"" + url + "\": the path names a directory, not a file");
        return std::make_unique<file_store>(io, rest);
    }
    if (scheme == "etcd")
        return etcd_store::from_url(io, url);
    if (scheme == "consul" || scheme == "consul+https")
        throw std::invalid_argument("store backend \"" + scheme + "\" is not implemented yet (use file:///path)");
    throw std::invalid_argument("invalid store URL \"" + url + "\": unknown scheme \"" + scheme + "\"" + accepted);
}

} // namespace overpass::ctl
