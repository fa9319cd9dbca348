// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (make_store: init only)
#include "control/store/store.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "control/store/consul_store.hpp"
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

namespace {

// The Consul ACL token: the token file if given, else $CONSUL_HTTP_TOKEN (the variable
// Consul's own CLI reads), else none.
std::string consul_token(const store_options& opts) {
    std::string token;
    if (!opts.token_file.empty()) {
        std::ifstream f(opts.token_file);
        if (!f)
            throw std::invalid_argument("cannot read the store token file \"" + opts.token_file + "\"");
        token.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
        if (f.bad())
            throw std::invalid_argument("cannot read the store token file \"" + opts.token_file + "\"");
    } else if (const char* env = std::getenv("CONSUL_HTTP_TOKEN"); env != nullptr) {
        token = env;
    }
    const size_t b = token.find_first_not_of(" \t\r\n");
    token = b == std::string::npos ? std::string{} : token.substr(b, token.find_last_not_of(" \t\r\n") - b + 1);
    if (token.empty() && !opts.token_file.empty())
        throw std::invalid_argument("the store token file \"" + opts.token_file + "\" is empty");
    return token;
}

} // namespace

std::unique_ptr<store> make_store(boost::asio::io_context& io, const std::string& url, const store_options& opts) {
    const std::string accepted =
        " (expected file:///path, consul://host:port[/prefix], consul+https://host:port[/prefix] or "
        "etcd://host:port[/prefix])";
    const size_t sep = url.find("://");
    if (sep == std::string::npos || sep == 0)
        throw std::invalid_argument("invalid store URL \"" + url + "\"" + accepted);
    const std::string scheme = url.substr(0, sep);
    const std::string rest = url.substr(sep + 3);
    if (!opts.token_file.empty() && scheme != "consul" && scheme != "consul+https")
        throw std::invalid_argument("a store token file applies to consul:// stores only, not \"" + url + "\"");
    if (!opts.ca_file.empty() && scheme != "consul+https")
        throw std::invalid_argument("a store CA file applies to consul+https:// stores only, not \"" + url + "\"");
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
    if (scheme == "consul" || scheme == "consul+https") {
        consul_store_options o;
        o.token = consul_token(opts);
        o.ca_file = opts.ca_file;
        return consul_store::from_url(io, url, std::move(o));
    }
    throw std::invalid_argument("invalid store URL \"" + url + "\": unknown scheme \"" + scheme + "\"" + accepted);
}

} // namespace overpass::ctl
