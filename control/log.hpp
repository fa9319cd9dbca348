// SPDX-License-Identifier: Apache-2.0
// runs on: control thread and init (never on a worker: nothing is logged per packet)
//
// overpassd's own log lines go through DPDK's rte_log under the dynamic type
// "overpass", so one mechanism and one --log-level govern them and DPDK's messages.
// Before log_init() (and in unit tests without EAL) they use the USER1 type, which
// rte_log accepts as well.
//
//   OVP_LOG(WARNING, "store sync: %s", what.c_str());
#pragma once

#include <string>
#include <string_view>

#include <rte_log.h>

namespace overpass::ctl {

/// `text` with every byte outside printable ASCII written as \xNN: what comes from
/// outside (store values, error texts quoting them) cannot put control characters or
/// broken UTF-8 into a log line.
inline std::string printable(std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto b = static_cast<unsigned char>(c);
        if (b >= 0x20 && b < 0x7f && b != '\\') {
            out += c;
        } else {
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 15];
        }
    }
    return out;
}

inline int log_type = RTE_LOGTYPE_USER1;

/// Registers the "overpass" log type and sets its level (an RTE_LOG_* value). Call once
/// after rte_eal_init(). Returns false if the type could not be registered (the log then
/// stays on USER1).
inline bool log_init(uint32_t level) noexcept {
    const int t = rte_log_register_type_and_pick_level("overpass", level);
    if (t < 0)
        return false;
    rte_log_set_level(t, level);
    log_type = t;
    return true;
}

} // namespace overpass::ctl

/// One line at an rte_log level (ERR, WARNING, NOTICE, INFO, DEBUG); printf format.
#define OVP_LOG(level, fmt, ...) \
    rte_log(RTE_LOG_##level, ::overpass::ctl::log_type, "overpassd: " fmt "\n" __VA_OPT__(, ) __VA_ARGS__)
