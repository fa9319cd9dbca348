// SPDX-License-Identifier: Apache-2.0
// runs on: control thread and reader threads, as marked
#include "control/metrics/exporter.hpp"

#include <future>
#include <stdexcept>

#include <boost/asio/post.hpp>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>

#include "control/log.hpp"

namespace overpass::ctl {

namespace asio = boost::asio;

// ---- snapshot_source ----

snapshot_source::snapshot_source(asio::io_context& io, std::function<stats_snapshot()> take)
    : st_(std::make_shared<state>(io, std::move(take))) {}

std::optional<stats_snapshot> snapshot_source::fetch(std::chrono::milliseconds timeout) const {
    auto done = std::make_shared<std::promise<stats_snapshot>>();
    std::future<stats_snapshot> result = done->get_future();
    {
        std::lock_guard lock(st_->mu);
        if (st_->closed)
            return std::nullopt;
        // Posting under the lock: close() (which runs before the io_context goes away)
        // cannot slip in between the check and the post.
        asio::post(st_->io, [st = st_, done] {
            // control thread
            {
                std::lock_guard lock(st->mu);
                if (st->closed)
                    return;   // the promise breaks; the reader sees an error
            }
            try {
                done->set_value(st->take());
            } catch (...) {
                done->set_exception(std::current_exception());
            }
        });
    }
    if (result.wait_for(timeout) != std::future_status::ready)
        return std::nullopt;
    try {
        return result.get();
    } catch (const std::exception& e) {
        OVP_LOG(WARNING, "metrics: snapshot failed: %s", e.what());
        return std::nullopt;
    }
}

void snapshot_source::close() {
    std::lock_guard lock(st_->mu);
    st_->closed = true;
}

// ---- /metrics ----

class metrics_server::collectable final : public prometheus::Collectable {
public:
    collectable(std::shared_ptr<const snapshot_source> src, build_info info)
        : src_(std::move(src)), info_(std::move(info)) {}

    // civetweb thread
    std::vector<prometheus::MetricFamily> Collect() const override {
        std::optional<stats_snapshot> s = src_->fetch(std::chrono::seconds(2));
        if (!s)
            return {};   // shutting down, or the control thread is stuck: an empty scrape
        return to_families(*s, info_);
    }

private:
    std::shared_ptr<const snapshot_source> src_;
    build_info info_;
};

metrics_server::metrics_server(const std::string& listen, std::shared_ptr<const snapshot_source> source,
                               build_info info)
    : collectable_(std::make_shared<collectable>(std::move(source), std::move(info))) {
    try {
        // One serving thread: scrapes are rare and each waits on the control thread anyway.
        exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
    } catch (const std::exception& e) {
        throw std::runtime_error("--metrics " + listen + ": cannot listen: " + e.what());
    }
    exposer_->RegisterCollectable(collectable_);
}

metrics_server::~metrics_server() = default;   // the exposer stops its threads first

uint16_t metrics_server::port() const {
    const auto ports = exposer_->GetListeningPorts();
    return ports.empty() ? 0 : static_cast<uint16_t>(ports.front());
}

} // namespace overpass::ctl
