// SPDX-License-Identifier: Apache-2.0
// runs on: control thread (the only writer of the data-plane tables)
//
// Publishing rules (docs: tables-and-rcu):
//  - values are immutable; an update publishes a fresh value and retires the old one
//    through our own rte_rcu_qsbr defer queue (22.11's rte_hash does not free
//    overwritten data); a delete goes through the hash's own RCU defer queue
//    (rte_hash_rcu_qsbr_add, DQ mode), whose free_key_data_func frees the value; the
//    endpoints table (endpoint_table.hpp) frees its deleted entries itself;
//  - publication order makes every reader see a consistent world: a network before its
//    endpoints, an endpoint before the port binding that lets its traffic in; removal in
//    the reverse order;
//  - derived values (flood lists, outer-header templates) are rebuilt from the shadow
//    state kept here, never on the workers;
//  - the endpoints and addresses tables are their own record: no copy of them is kept
//    here (a million endpoints would cost more heap than the tables). An endpoint's
//    record is read back from its entry (location, port or VTEP slot; the IPv4 address
//    the endpoint table keeps beside it); networks and VTEPs keep counts and
//    flood-list refcounts only. The rare
//    operations that need every endpoint of a network or VTEP walk the endpoints table.
#include "control/addressing.hpp"
#include "control/log.hpp"
#include "control/publish/endpoint_table_writer.hpp"
#include "control/publish/table_writer.hpp"

#include "overpass/stats.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_udp.h>
#include <rte_vxlan.h>

namespace overpass::ctl {

namespace {

constexpr size_t max_name_len = 12;   // "<name>_xx" must fit rte_hash/rte_ring name limits
constexpr uint8_t outer_ttl = 64;

/// The defer queue of the addresses table holds at most this many deleted
/// keys (a 64k-slot ring: rte_rcu_qsbr_dq_create() rounds size + 1 up to a power of two).
constexpr uint32_t max_bounded_dq = (1u << 16) - 1;

/// Deleted keys hold their slot until a grace period has passed: a quarter more room
/// for them. Beyond that an add waits for one grace period (add_or_wait()), which frees
/// them: bounded by one worker loop iteration.
uint32_t table_entries(uint32_t max_entries) noexcept {
    return std::max<uint32_t>(max_entries + max_entries / 4, 64);
}

/// The gateway address's MAC by the endpoints' rule: the same on every host.
rte_ether_addr gateway_mac_for(rte_be32_t gw_be) noexcept {
    return to_ether(mac_for_ip(rte_be_to_cpu_32(gw_be)));
}

/// An endpoint as published: its key plus its endpoint_value, with the VTEP's slot
/// resolved to the VTEP's address.
struct ep_record {
    endpoint_value::location where;
    uint16_t port_id;          ///< local: the container port
    rte_be32_t vtep_ip_be;     ///< remote: the VTEP the endpoint lives behind
    rte_be32_t ip_be;
    rte_ether_addr mac;
    uint32_t vni;
};

struct retired {
    enum class kind : uint32_t { segment, vtep, config, binding, network_slot, vtep_slot };
    void* p;
    kind what;
    uint32_t slot;
};
static_assert(sizeof(retired) % 4 == 0);

class slot_pool {
public:
    explicit slot_pool(uint16_t n) {
        free_.reserve(n);
        for (uint16_t i = n; i > 0; i--)
            free_.push_back(static_cast<uint16_t>(i - 1));   // lowest first
    }
    int take() noexcept {
        if (free_.empty())
            return -ENOSPC;
        const int s = free_.back();
        free_.pop_back();
        return s;
    }
    void give(uint16_t s) { free_.push_back(s); }

private:
    std::vector<uint16_t> free_;
};

class table_writer_impl final : public table_writer {
public:
    table_writer_impl(const char* name, const table_limits& limits)
        : name_(name), limits_(limits),
          network_slots_(static_cast<uint16_t>(std::min<uint32_t>(limits.max_networks, max_network_slots))),
          vtep_slots_(static_cast<uint16_t>(std::min<uint32_t>(limits.max_vteps, max_vtep_slots))) {}
    ~table_writer_impl() override;

    int init() noexcept;

    dp_tables& tables() noexcept override { return t_; }
    int set_config(const config_snapshot& cfg) noexcept override;
    int upsert_network(const network_spec& net) noexcept override;
    int remove_network(uint32_t vni) noexcept override;
    int upsert_vtep(rte_be32_t ip_be) noexcept override;
    int resolve_vtep(rte_be32_t ip_be, const rte_ether_addr& mac) noexcept override;
    int remove_vtep(rte_be32_t ip_be) noexcept override;
    int upsert_local_endpoint(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac,
                              uint16_t port_id) noexcept override;
    int upsert_remote_endpoint(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac,
                               rte_be32_t vtep_ip_be) noexcept override;
    int remove_endpoint(uint32_t vni, const rte_ether_addr& mac) noexcept override;
    void reclaim() noexcept override;
    void synchronize() noexcept override;
    sizes size() const noexcept override;
    int network_slot(uint32_t vni) const noexcept override;
    int vtep_slot(rte_be32_t ip_be) const noexcept override;
    std::vector<vtep_view> vteps() const override;
    std::vector<network_view> networks() const override;
    const table_limits& limits() const noexcept override { return limits_; }
    void on_slot_taken(std::function<void(slot_kind, uint16_t)> cb) override { slot_taken_ = std::move(cb); }

private:
    struct net_shadow {
        network_spec spec;
        uint16_t slot;
        std::set<uint16_t> local_ports;
        std::map<rte_be32_t, uint32_t> remote_vteps;   // VTEP -> endpoints of this VNI behind it
    };
    struct vtep_shadow {
        uint16_t slot;
        bool mac_known = false;
        rte_ether_addr mac{};
        uint32_t n_endpoints = 0;   // remote endpoints behind it
    };

    /// `dq_size` 0: the hash's defer queue holds the whole table (every deleted key
    /// still holds its slot, so it can never overflow); otherwise every delete must go
    /// through del_key().
    rte_hash* create_hash(const char* suffix, uint32_t entries, uint32_t key_len,
                          rte_hash_free_key_data free_fn, uint32_t dq_size) noexcept;
    int publish_segment(const net_shadow& n) noexcept;
    int publish_vtep(rte_be32_t ip_be, const vtep_shadow& v) noexcept;
    /// Adds or replaces `key` -> `value` in `h` and retires the replaced value. `mirror`:
    /// a second place workers find the same value in (its slot in vtep_slots or
    /// network_slots), updated before the old value is retired so that no worker can
    /// find it once its grace period runs.
    template <class T>
    int publish(rte_hash* h, const void* key, T* value, retired::kind k, std::atomic<const T*>* mirror) noexcept;
    /// rte_hash_add_key_data(), waiting for one grace period when the table is full of
    /// deleted keys still in theirs.
    int add_or_wait(rte_hash* h, const void* key, void* data) noexcept;
    void retire(void* p, retired::kind k, uint32_t slot = 0) noexcept;
    /// rte_rcu_qsbr_synchronize(): every value and key deleted so far can be freed.
    void wait_for_readers() noexcept;
    /// rte_hash_del_key() on the addresses table, keeping its bounded defer queue from
    /// overflowing (see init()).
    void del_key(rte_hash* h, const void* key) noexcept;
    /// A free stats slot; waits for a grace period when all free ones are still retiring.
    int take_slot(slot_pool& pool) noexcept;
    void set_binding(uint16_t port, const port_binding* b) noexcept;
    /// The endpoint as published, read back from the endpoints table.
    std::optional<ep_record> find_endpoint(uint32_t vni, const rte_ether_addr& mac) const noexcept;
    ep_record record_of(const endpoint_table_writer::entry& k) const noexcept;
    /// The endpoints table's key of (vni, mac); nullopt when the network is unknown.
    std::optional<uint64_t> endpoint_key_of(uint32_t vni, const rte_ether_addr& mac) const noexcept;
    /// Deletes an endpoint's entry; bumps endpoints_gen.
    void erase_endpoint(uint64_t key) noexcept;
    /// Every endpoint of a network (vni != 0) or behind a VTEP slot (vni == 0). Walks the
    /// whole endpoints table: for the rare removal of a network or a VTEP.
    std::vector<ep_record> endpoints_of(uint32_t vni, uint16_t vtep_slot) const;
    /// Unpublishes an endpoint and updates the shadow; does not republish its segment.
    void unlink_endpoint(const ep_record& e, std::set<uint32_t>& dirty_nets) noexcept;
    int add_address(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac) noexcept;
    void remove_address(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac) noexcept;
    int install_endpoint(const ep_record& e) noexcept;
    /// After an endpoint was deleted or overwritten: the workers' cached lookups of the
    /// endpoints table stop counting (release; pairs with the acquire load per burst).
    void endpoints_changed() noexcept { t_.endpoints_gen.fetch_add(1, std::memory_order_release); }
    /// Rolls back a failed install_endpoint() + add_address(). `kept`: the endpoint's
    /// record when it stayed in place (not unlinked).
    void undo_install(uint32_t vni, const rte_ether_addr& mac, const std::optional<ep_record>& kept) noexcept;
    /// Puts `e` where `old` (the endpoint's present record, if any) was: a moved endpoint
    /// is unlinked first (its networks' lists go into `dirty_nets`), one that stays only
    /// drops an address it no longer has; then e and its address are installed. On
    /// failure the install is rolled back (republishing `dirty_nets` is the caller's).
    int replace_endpoint(const ep_record& e, const std::optional<ep_record>& old, bool same_place,
                         std::set<uint32_t>& dirty_nets) noexcept;
    void republish(const std::set<uint32_t>& vnis) noexcept;
    void remove_vtep_if_unused(rte_be32_t ip_be) noexcept;

    static void free_retired(void* p, void* e, unsigned int n);

    std::string name_;
    table_limits limits_;
    dp_tables t_;
    std::unique_ptr<endpoint_table_writer> eps_;
    rte_rcu_qsbr_dq* dq_ = nullptr;
    uint64_t retired_count_ = 0;
    uint64_t freed_count_ = 0;

    bool have_config_ = false;
    config_snapshot cfg_{};
    std::map<uint32_t, net_shadow> nets_;
    std::map<rte_be32_t, vtep_shadow> vteps_;
    std::set<rte_be32_t> explicit_vteps_;            // added by upsert_vtep(): kept when unused
    std::array<rte_be32_t, max_vtep_slots> vtep_ip_by_slot_{};   // valid while the slot's VTEP exists
    uint32_t n_endpoints_ = 0;
    uint32_t n_addresses_ = 0;
    uint32_t n_bound_ports_ = 0;
    uint32_t delete_budget_ = 0;    // deletes allowed between two grace periods (init())
    uint32_t deletes_since_grace_ = 0;
    slot_pool network_slots_;
    slot_pool vtep_slots_;
    std::function<void(slot_kind, uint16_t)> slot_taken_;
};

// Frees for values deleted through the hashes' own defer queues.
void free_segment(void*, void* data) { delete static_cast<segment*>(data); }
void free_vtep(void*, void* data) { delete static_cast<vtep_entry*>(data); }
void free_nothing(void*, void*) {}   // addresses carry their value (the MAC) in the pointer

void table_writer_impl::free_retired(void* p, void* e, unsigned int n) {
    auto* self = static_cast<table_writer_impl*>(p);
    auto* items = static_cast<retired*>(e);
    for (unsigned int i = 0; i < n; i++) {
        const retired& r = items[i];
        switch (r.what) {
        case retired::kind::segment: delete static_cast<segment*>(r.p); break;
        case retired::kind::vtep: delete static_cast<vtep_entry*>(r.p); break;
        case retired::kind::config: delete static_cast<config_snapshot*>(r.p); break;
        case retired::kind::binding: delete static_cast<port_binding*>(r.p); break;
        // A stats slot is reused only once no worker can still count into it for the
        // object it used to belong to.
        case retired::kind::network_slot: self->network_slots_.give(static_cast<uint16_t>(r.slot)); break;
        case retired::kind::vtep_slot: self->vtep_slots_.give(static_cast<uint16_t>(r.slot)); break;
        }
        self->freed_count_++;
    }
}

rte_hash* table_writer_impl::create_hash(const char* suffix, uint32_t entries, uint32_t key_len,
                                         rte_hash_free_key_data free_fn, uint32_t dq_size) noexcept {
    char hname[RTE_HASH_NAMESIZE];
    std::snprintf(hname, sizeof(hname), "%s_%s", name_.c_str(), suffix);
    rte_hash_parameters p{};
    p.name = hname;
    p.entries = table_entries(entries);
    p.key_len = key_len;
    p.hash_func = rte_hash_crc;
    p.hash_func_init_val = 0;
    p.socket_id = SOCKET_ID_ANY;
    p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
    rte_hash* h = rte_hash_create(&p);
    if (h == nullptr) {
        OVP_LOG(ERR, "table_writer: rte_hash_create(%s): %s", hname, rte_strerror(rte_errno));
        return nullptr;
    }
    rte_hash_rcu_config rc{};
    rc.v = t_.qsbr;
    rc.mode = RTE_HASH_QSBR_MODE_DQ;
    rc.dq_size = dq_size;
    rc.trigger_reclaim_limit = 0;     // try to reclaim on every delete
    rc.max_reclaim_size = p.entries;  // ... everything whose grace period is over
    rc.key_data_ptr = nullptr;
    rc.free_key_data_func = free_fn;
    if (int rc2 = rte_hash_rcu_qsbr_add(h, &rc); rc2 != 0) {
        OVP_LOG(ERR, "table_writer: rte_hash_rcu_qsbr_add(%s): %s", hname, rte_strerror(rte_errno));
        rte_hash_free(h);
        return nullptr;
    }
    return h;
}

int table_writer_impl::init() noexcept {
    if (name_.empty() || name_.size() > max_name_len) {
        OVP_LOG(ERR, "table_writer: name '%s' must have 1 to %zu characters", name_.c_str(),
                max_name_len);
        return -EINVAL;
    }
    const size_t qsz = rte_rcu_qsbr_get_memsize(limits_.max_lcores);
    t_.qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc(nullptr, qsz, RTE_CACHE_LINE_SIZE));
    if (t_.qsbr == nullptr || rte_rcu_qsbr_init(t_.qsbr, limits_.max_lcores) != 0) {
        OVP_LOG(ERR, "table_writer: QSBR variable: %s", rte_strerror(rte_errno));
        return -ENOMEM;
    }
    // A defer queue as large as its table costs 16 bytes per entry, rounded up to a power
    // of two: 32 MB for the addresses of a million endpoints. Its queue is capped
    // instead, and kept from overflowing by the writer: rte_hash_del_key()
    // cannot wait for room in a full queue (it logs "Failed to push QSBR FIFO" and the
    // key's slot is lost for good). Every enqueue first reclaims what is past its grace
    // period (trigger_reclaim_limit 0), and del_key() waits for a grace period after
    // every delete_budget_ deletes; the next enqueue then frees everything queued before
    // the wait. So the queue never holds more than delete_budget_ keys, half its size.
    const uint32_t bounded_dq = std::min(table_entries(limits_.max_endpoints), max_bounded_dq);
    delete_budget_ = bounded_dq / 2;
    const std::string ep_name = name_ + "_ep";
    eps_ = endpoint_table_writer::create(ep_name.c_str(), limits_.max_endpoints, t_.qsbr);
    if (eps_ == nullptr)
        return -ENOMEM;
    t_.endpoints = eps_->table();
    t_.addresses = create_hash("ad", limits_.max_endpoints, sizeof(vni_ip_key), free_nothing, bounded_dq);
    t_.networks = create_hash("nw", limits_.max_networks, sizeof(uint32_t), free_segment, 0);
    t_.vteps = create_hash("vt", limits_.max_vteps, sizeof(rte_be32_t), free_vtep, 0);
    if (t_.addresses == nullptr || t_.networks == nullptr || t_.vteps == nullptr)
        return -ENOMEM;

    char dqname[RTE_RCU_QSBR_DQ_NAMESIZE];
    std::snprintf(dqname, sizeof(dqname), "%s_rt", name_.c_str());
    rte_rcu_qsbr_dq_parameters dp{};
    dp.name = dqname;
    dp.flags = RTE_RCU_QSBR_DQ_MT_UNSAFE;   // the control thread is the only user
    // Values replaced between two grace periods (every enqueue reclaims what the workers
    // no longer see, so it holds one grace period's worth): 64k, or every value twice in
    // small tables. Beyond that retire() waits for a grace period itself.
    dp.size = std::min<uint32_t>(2 * (limits_.max_endpoints + limits_.max_networks + limits_.max_vteps) +
                                     RTE_MAX_ETHPORTS + 64,
                                 1u << 16);
    dp.esize = sizeof(retired);
    dp.trigger_reclaim_limit = 0;
    dp.max_reclaim_size = dp.size;
    dp.free_fn = free_retired;
    dp.p = this;
    dp.v = t_.qsbr;
    dq_ = rte_rcu_qsbr_dq_create(&dp);
    if (dq_ == nullptr) {
        OVP_LOG(ERR, "table_writer: rte_rcu_qsbr_dq_create(%s): %s", dqname, rte_strerror(rte_errno));
        return -ENOMEM;
    }
    return 0;
}

table_writer_impl::~table_writer_impl() {
    // Precondition: no worker reads the tables any more (stopped or offline).
    auto* old_cfg = t_.config.exchange(nullptr, std::memory_order_acq_rel);
    delete old_cfg;
    for (auto& slot : t_.ports)
        delete slot.exchange(nullptr, std::memory_order_acq_rel);
    auto drain = [](rte_hash* h, void (*free_value)(void*, void*)) {
        if (h == nullptr)
            return;
        const void* key;
        void* data;
        uint32_t it = 0;
        while (rte_hash_iterate(h, &key, &data, &it) >= 0)
            free_value(nullptr, data);
        rte_hash_free(h);   // also frees what its defer queue still holds
    };
    drain(t_.addresses, free_nothing);
    drain(t_.networks, free_segment);
    drain(t_.vteps, free_vtep);
    if (dq_ != nullptr && rte_rcu_qsbr_dq_delete(dq_) != 0)
        OVP_LOG(ERR, "table_writer %s: values still in a grace period leak", name_.c_str());
    rte_free(t_.qsbr);
}

void table_writer_impl::retire(void* p, retired::kind k, uint32_t slot) noexcept {
    if (p == nullptr && k != retired::kind::network_slot && k != retired::kind::vtep_slot)
        return;
    retired r{p, k, slot};
    retired_count_++;
    if (rte_rcu_qsbr_dq_enqueue(dq_, &r) == 0)
        return;
    reclaim();
    if (rte_rcu_qsbr_dq_enqueue(dq_, &r) == 0)
        return;
    // Queue full of values still in their grace period: wait for one (rare, bounded by
    // one worker loop iteration) rather than leak or free early.
    wait_for_readers();
    free_retired(this, &r, 1);
}

void table_writer_impl::wait_for_readers() noexcept {
    rte_rcu_qsbr_synchronize(t_.qsbr, RTE_QSBR_THRID_INVALID);
    deletes_since_grace_ = 0;
}

void table_writer_impl::del_key(rte_hash* h, const void* key) noexcept {
    if (rte_hash_del_key(h, key) < 0)
        return;   // not there: nothing queued
    if (++deletes_since_grace_ >= delete_budget_)
        wait_for_readers();   // see init(): the next delete's reclaim empties the queues
}

int table_writer_impl::take_slot(slot_pool& pool) noexcept {
    int slot = pool.take();
    if (slot == -ENOSPC) {
        reclaim();
        slot = pool.take();
    }
    if (slot == -ENOSPC && retired_count_ != freed_count_) {
        synchronize();
        slot = pool.take();
    }
    if (slot >= 0 && slot_taken_)
        slot_taken_(&pool == &network_slots_ ? slot_kind::network : slot_kind::vtep, static_cast<uint16_t>(slot));
    return slot;
}

int table_writer_impl::add_or_wait(rte_hash* h, const void* key, void* data) noexcept {
    int rc = rte_hash_add_key_data(h, key, data);
    if (rc == -ENOSPC) {
        // Deleted keys still in their grace period hold the room: wait for one grace
        // period (rare; bounded by one worker iteration) and let the add reclaim them.
        wait_for_readers();
        rc = rte_hash_add_key_data(h, key, data);
    }
    return rc < 0 ? rc : 0;
}

template <class T>
int table_writer_impl::publish(rte_hash* h, const void* key, T* value, retired::kind k,
                               std::atomic<const T*>* mirror) noexcept {
    void* old = nullptr;
    const bool replacing = rte_hash_lookup_data(h, key, &old) >= 0;
    if (int rc = add_or_wait(h, key, value); rc < 0)
        return rc;
    // release; pairs with the acquire loads in encap.cpp, decap.cpp and find_segment()
    mirror->store(value, std::memory_order_release);
    if (replacing)
        retire(old, k);
    return 0;
}

void table_writer_impl::set_binding(uint16_t port, const port_binding* b) noexcept {
    // release; pairs with the acquire load in encap_burst()
    const port_binding* old = t_.ports[port].exchange(b, std::memory_order_acq_rel);
    n_bound_ports_ += (b != nullptr) - (old != nullptr);
    retire(const_cast<port_binding*>(old), retired::kind::binding);
}

int table_writer_impl::publish_segment(const net_shadow& n) noexcept {
    auto* s = new (std::nothrow) segment{};
    if (s == nullptr)
        return -ENOMEM;
    s->vni = n.spec.vni;
    s->vni_wire = vni_to_wire(n.spec.vni);
    s->mtu = n.spec.mtu != 0 ? n.spec.mtu : default_network_mtu;
    // A network created on a host with a larger uplink MTU must not make this host send
    // outer packets its uplink cannot carry: the effective MTU is what fits after the
    // 50 bytes of VXLAN (the frame is counted as mtu_exceeded instead of lost on the wire).
    if (have_config_ && cfg_.uplink_mtu > vxlan_overhead && s->mtu > cfg_.uplink_mtu - vxlan_overhead)
        s->mtu = static_cast<uint16_t>(cfg_.uplink_mtu - vxlan_overhead);
    s->stats_slot = n.slot;
    s->subnet_be = n.spec.subnet_be;
    s->mask_be = n.spec.mask_be;
    s->gateway_be = n.spec.gateway_be;
    s->gateway_mac = gateway_mac_for(n.spec.gateway_be);
    for (uint16_t p : n.local_ports)
        s->local_ports[s->n_local_ports++] = p;
    for (const auto& [ip, refs] : n.remote_vteps)
        if (auto v = vteps_.find(ip); v != vteps_.end())   // always: a VTEP outlives its endpoints
            s->remote_vtep_slots[s->n_remote_vteps++] = v->second.slot;
    const uint32_t key = n.spec.vni;
    if (int rc = publish(t_.networks, &key, s, retired::kind::segment, &t_.network_slots[n.slot]); rc < 0) {
        delete s;
        return rc;
    }
    return 0;
}

int table_writer_impl::publish_vtep(rte_be32_t ip_be, const vtep_shadow& v) noexcept {
    auto* e = new (std::nothrow) vtep_entry{};
    if (e == nullptr)
        return -ENOMEM;
    e->ip_be = ip_be;
    e->stats_slot = v.slot;
    e->mac = v.mac;
    e->resolved = v.mac_known && have_config_;
    if (e->resolved) {
        uint8_t* t = e->outer_template;
        auto* eth = reinterpret_cast<rte_ether_hdr*>(t);
        auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
        auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
        auto* vx = reinterpret_cast<rte_vxlan_hdr*>(udp + 1);
        eth->dst_addr = v.mac;
        eth->src_addr = cfg_.vtep_mac;
        eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
        ip->version_ihl = RTE_IPV4_VHL_DEF;
        ip->fragment_offset = RTE_BE16(RTE_IPV4_HDR_DF_FLAG);
        ip->time_to_live = outer_ttl;
        ip->next_proto_id = IPPROTO_UDP;
        ip->src_addr = cfg_.vtep_ip_be;
        ip->dst_addr = ip_be;
        udp->dst_port = cfg_.vxlan_port_be;
        vx->vx_flags = RTE_BE32(0x08000000);   // I flag
        e->outer_ip_sum = rte_raw_cksum(ip, sizeof(*ip));   // length and checksum still zero
    }
    if (int rc = publish(t_.vteps, &ip_be, e, retired::kind::vtep, &t_.vtep_slots[v.slot]); rc < 0) {
        delete e;
        return rc;
    }
    return 0;
}

void table_writer_impl::republish(const std::set<uint32_t>& vnis) noexcept {
    for (uint32_t vni : vnis)
        if (auto it = nets_.find(vni); it != nets_.end())
            publish_segment(it->second);   // a failure keeps the previous flood list
}

int table_writer_impl::set_config(const config_snapshot& cfg) noexcept {
    if (cfg.uplink_port >= RTE_MAX_ETHPORTS)
        return -EINVAL;
    auto* fresh = new (std::nothrow) config_snapshot(cfg);
    if (fresh == nullptr)
        return -ENOMEM;
    cfg_ = cfg;
    have_config_ = true;
    // release; pairs with the acquire load in process_burst()
    const config_snapshot* old = t_.config.exchange(fresh, std::memory_order_acq_rel);
    retire(const_cast<config_snapshot*>(old), retired::kind::config);
    int rc = 0;
    for (const auto& [ip, v] : vteps_)
        if (int r = publish_vtep(ip, v); r < 0)
            rc = r;
    for (const auto& [vni, n] : nets_)   // the effective MTU depends on the uplink's
        if (int r = publish_segment(n); r < 0)
            rc = r;
    return rc;
}

int table_writer_impl::upsert_network(const network_spec& net) noexcept {
    if (!valid_vni(net.vni))
        return -EINVAL;
    auto it = nets_.find(net.vni);
    if (it != nets_.end()) {
        const network_spec prev = it->second.spec;
        it->second.spec = net;
        if (int rc = publish_segment(it->second); rc < 0) {
            it->second.spec = prev;
            return rc;
        }
        return 0;
    }
    if (nets_.size() >= limits_.max_networks)
        return -ENOSPC;
    const int slot = take_slot(network_slots_);
    if (slot < 0)
        return slot;
    // The workers' endpoint caches key entries by network slot, not VNI. Whatever a
    // burst of the slot's previous network may have cached under the slot, ending the
    // generation before the slot names this network makes it stale. (The endpoints
    // table keys by slot too, and the slot comes back only after a grace period, so
    // no burst can find this network's endpoints for the old one; the bump keeps the
    // cache's own guarantee independent of that: docs/tables-and-rcu.md.)
    endpoints_changed();
    net_shadow n{net, static_cast<uint16_t>(slot), {}, {}};
    if (int rc = publish_segment(n); rc < 0) {
        network_slots_.give(static_cast<uint16_t>(slot));
        return rc;
    }
    nets_.emplace(net.vni, std::move(n));
    return 0;
}

int table_writer_impl::remove_network(uint32_t vni) noexcept {
    auto it = nets_.find(vni);
    if (it == nets_.end())
        return -ENOENT;
    std::set<uint32_t> dirty;
    std::set<rte_be32_t> vteps;
    // Collected first: the walk of the endpoints table must not run across deletes.
    for (const ep_record& e : endpoints_of(vni, 0)) {
        if (e.where == endpoint_value::location::remote)
            vteps.insert(e.vtep_ip_be);
        unlink_endpoint(e, dirty);
    }
    for (rte_be32_t ip : vteps)
        remove_vtep_if_unused(ip);
    const uint16_t slot = it->second.slot;
    // Unpublished from both places; the hash's defer queue frees the segment after a
    // grace period.
    t_.network_slots[slot].store(nullptr, std::memory_order_release);
    rte_hash_del_key(t_.networks, &vni);
    nets_.erase(it);
    retire(nullptr, retired::kind::network_slot, slot);
    return 0;
}

int table_writer_impl::upsert_vtep(rte_be32_t ip_be) noexcept {
    explicit_vteps_.insert(ip_be);
    if (vteps_.count(ip_be) != 0)
        return 0;
    if (vteps_.size() >= limits_.max_vteps) {
        explicit_vteps_.erase(ip_be);
        return -ENOSPC;
    }
    const int slot = take_slot(vtep_slots_);
    if (slot < 0) {
        explicit_vteps_.erase(ip_be);
        return slot;
    }
    vtep_shadow v;
    v.slot = static_cast<uint16_t>(slot);
    vtep_ip_by_slot_[v.slot] = ip_be;
    if (int rc = publish_vtep(ip_be, v); rc < 0) {
        vtep_slots_.give(v.slot);
        explicit_vteps_.erase(ip_be);
        return rc;
    }
    vteps_.emplace(ip_be, std::move(v));
    return 0;
}

int table_writer_impl::resolve_vtep(rte_be32_t ip_be, const rte_ether_addr& mac) noexcept {
    auto it = vteps_.find(ip_be);
    if (it == vteps_.end())
        return -ENOENT;
    vtep_shadow& v = it->second;
    const vtep_shadow prev_mac_state = v;
    v.mac_known = true;
    v.mac = mac;
    if (int rc = publish_vtep(ip_be, v); rc < 0) {
        v.mac_known = prev_mac_state.mac_known;
        v.mac = prev_mac_state.mac;
        return rc;
    }
    return 0;
}

int table_writer_impl::remove_vtep(rte_be32_t ip_be) noexcept {
    auto it = vteps_.find(ip_be);
    if (it == vteps_.end())
        return -ENOENT;
    std::set<uint32_t> dirty;
    for (const ep_record& e : endpoints_of(0, it->second.slot))
        unlink_endpoint(e, dirty);
    republish(dirty);
    explicit_vteps_.erase(ip_be);
    remove_vtep_if_unused(ip_be);
    return 0;
}

void table_writer_impl::remove_vtep_if_unused(rte_be32_t ip_be) noexcept {
    auto it = vteps_.find(ip_be);
    if (it == vteps_.end() || it->second.n_endpoints != 0 || explicit_vteps_.count(ip_be) != 0)
        return;
    // Unpublished from both places before the hash's defer queue takes the value.
    t_.vtep_slots[it->second.slot].store(nullptr, std::memory_order_release);
    rte_hash_del_key(t_.vteps, &ip_be);   // freed by the hash's defer queue
    retire(nullptr, retired::kind::vtep_slot, it->second.slot);
    vteps_.erase(it);
}

int table_writer_impl::add_address(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac) noexcept {
    const vni_ip_key key{vni_to_wire(vni), ip_be};
    const bool fresh = rte_hash_lookup(t_.addresses, &key) < 0;
    // The MAC travels in the pointer itself: nothing to retire on overwrite.
    if (int rc = add_or_wait(t_.addresses, &key, mac_to_data(mac)); rc < 0)
        return rc;
    n_addresses_ += fresh;
    return 0;
}

void table_writer_impl::remove_address(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac) noexcept {
    const vni_ip_key key{vni_to_wire(vni), ip_be};
    void* data = nullptr;
    if (rte_hash_lookup_data(t_.addresses, &key, &data) < 0)
        return;
    const rte_ether_addr owner = mac_from_data(data);
    if (!rte_is_same_ether_addr(&owner, &mac))
        return;   // the address moved to another endpoint meanwhile: not ours to remove
    del_key(t_.addresses, &key);
    n_addresses_--;
}

ep_record table_writer_impl::record_of(const endpoint_table_writer::entry& k) const noexcept {
    const endpoint_value v = endpoint_value::from_word(k.value);
    ep_record e{};
    e.where = v.where;
    e.ip_be = k.ip_be;
    std::memcpy(e.mac.addr_bytes, &k.key, RTE_ETHER_ADDR_LEN);   // bits 0-47, wire order
    // The slot's published segment: a network is published before its endpoints and
    // outlives them.
    e.vni = t_.network_slots[k.key >> 48].load(std::memory_order_relaxed)->vni;
    if (v.is_local())
        e.port_id = v.index;
    else
        e.vtep_ip_be = vtep_ip_by_slot_[v.index];   // a VTEP outlives its endpoints
    return e;
}

std::optional<uint64_t> table_writer_impl::endpoint_key_of(uint32_t vni, const rte_ether_addr& mac) const noexcept {
    auto it = nets_.find(vni);
    if (it == nets_.end())
        return std::nullopt;
    return endpoint_key(it->second.slot, mac);
}

std::optional<ep_record> table_writer_impl::find_endpoint(uint32_t vni, const rte_ether_addr& mac) const noexcept {
    const std::optional<uint64_t> key = endpoint_key_of(vni, mac);
    if (!key)
        return std::nullopt;
    const std::optional<endpoint_table_writer::entry> e = eps_->find(*key);
    if (!e)
        return std::nullopt;
    return record_of(*e);
}

std::vector<ep_record> table_writer_impl::endpoints_of(uint32_t vni, uint16_t vtep_slot) const {
    std::vector<ep_record> out;
    auto nit = nets_.find(vni);
    const uint64_t slot = vni != 0 && nit != nets_.end() ? nit->second.slot : UINT64_MAX;
    eps_->for_each([&](const endpoint_table_writer::entry& k) {
        const endpoint_value v = endpoint_value::from_word(k.value);
        const bool match = vni != 0 ? k.key >> 48 == slot : !v.is_local() && v.index == vtep_slot;
        if (match)
            out.push_back(record_of(k));
    });
    return out;
}

void table_writer_impl::erase_endpoint(uint64_t key) noexcept {
    if (eps_->erase(key))
        endpoints_changed();
}

void table_writer_impl::unlink_endpoint(const ep_record& e, std::set<uint32_t>& dirty_nets) noexcept {
    auto nit = nets_.find(e.vni);
    if (e.where == endpoint_value::location::local) {
        set_binding(e.port_id, nullptr);   // first: stop its ingress
        if (nit != nets_.end())
            nit->second.local_ports.erase(e.port_id);
    } else {
        if (nit != nets_.end()) {
            auto r = nit->second.remote_vteps.find(e.vtep_ip_be);
            if (r != nit->second.remote_vteps.end() && --r->second == 0)
                nit->second.remote_vteps.erase(r);
        }
        if (auto v = vteps_.find(e.vtep_ip_be); v != vteps_.end())
            v->second.n_endpoints--;
    }
    if (nit != nets_.end())
        dirty_nets.insert(e.vni);
    if (const std::optional<uint64_t> key = endpoint_key_of(e.vni, e.mac))
        erase_endpoint(*key);   // its entry is free again after a grace period
    n_endpoints_--;
    remove_address(e.vni, e.ip_be, e.mac);
}

int table_writer_impl::install_endpoint(const ep_record& e) noexcept {
    endpoint_value v{e.where, e.port_id};
    if (e.where == endpoint_value::location::remote) {
        auto it = vteps_.find(e.vtep_ip_be);
        if (it == vteps_.end())
            return -ENOENT;   // callers create the VTEP first
        v.index = it->second.slot;
    }
    const std::optional<uint64_t> key = endpoint_key_of(e.vni, e.mac);
    if (!key)
        return -ENOENT;
    // An overwrite is one atomic store, nothing to retire.
    const std::optional<endpoint_table_writer::entry> before = eps_->find(*key);
    int rc = eps_->upsert(*key, v.word(), e.ip_be);
    if (rc == -ENOSPC && eps_->dead() != 0) {
        // Deleted entries still in their grace period hold the room: wait for one (rare;
        // bounded by one worker iteration) and free them. With none, the table is full
        // near the key's home bucket (crafted MACs): -ENOSPC to the caller, at once.
        wait_for_readers();
        eps_->reclaim();
        rc = eps_->upsert(*key, v.word(), e.ip_be);
    }
    if (rc == 0 && before && before->value != v.word())
        endpoints_changed();
    return rc;
}

int table_writer_impl::replace_endpoint(const ep_record& e, const std::optional<ep_record>& old, bool same_place,
                                        std::set<uint32_t>& dirty_nets) noexcept {
    if (old && !same_place)
        unlink_endpoint(*old, dirty_nets);
    else if (old && old->ip_be != e.ip_be)
        remove_address(e.vni, old->ip_be, e.mac);
    int rc = install_endpoint(e);
    if (rc == 0)
        rc = add_address(e.vni, e.ip_be, e.mac);
    if (rc < 0)
        undo_install(e.vni, e.mac, same_place ? old : std::nullopt);
    return rc;
}

void table_writer_impl::undo_install(uint32_t vni, const rte_ether_addr& mac,
                                     const std::optional<ep_record>& kept) noexcept {
    // An endpoint kept in place gets its previous value back (an overwrite, which cannot
    // fail); one that was unlinked, or new, is taken back out if it got in.
    if (kept) {
        install_endpoint(*kept);
        return;
    }
    if (const std::optional<uint64_t> key = endpoint_key_of(vni, mac))
        erase_endpoint(*key);   // bumps endpoints_gen: a worker may have cached it meanwhile
}

int table_writer_impl::upsert_local_endpoint(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac,
                                             uint16_t port_id) noexcept {
    if (port_id >= RTE_MAX_ETHPORTS || (have_config_ && port_id == cfg_.uplink_port))
        return -EINVAL;
    auto nit = nets_.find(vni);
    if (nit == nets_.end())
        return -ENOENT;
    const port_binding* bound = t_.ports[port_id].load(std::memory_order_relaxed);
    if (bound != nullptr && (bound->vni != vni || !rte_is_same_ether_addr(&bound->mac, &mac)))
        return -EBUSY;   // one endpoint per port
    const std::optional<ep_record> old = find_endpoint(vni, mac);
    const bool same_place = old && old->where == endpoint_value::location::local && old->port_id == port_id;
    if (!same_place) {
        if (nit->second.local_ports.size() >= max_local_ports_per_network)
            return -ENOSPC;
        if (!old && n_endpoints_ >= limits_.max_endpoints)
            return -ENOSPC;
    }
    auto* binding = new (std::nothrow)
        port_binding{port_id, vni, vni_to_wire(vni), ip_be, mac, endpoint_key(nit->second.slot, mac)};
    if (binding == nullptr)
        return -ENOMEM;

    std::set<uint32_t> dirty;
    const bool was_remote = old && old->where == endpoint_value::location::remote;
    const rte_be32_t old_vtep = was_remote ? old->vtep_ip_be : 0;
    const ep_record e{endpoint_value::location::local, port_id, 0, ip_be, mac, vni};
    if (int rc = replace_endpoint(e, old, same_place, dirty); rc < 0) {
        delete binding;
        republish(dirty);
        return rc;
    }
    n_endpoints_ += !same_place;
    if (nit->second.local_ports.insert(port_id).second)
        dirty.insert(vni);
    republish(dirty);
    set_binding(port_id, binding);   // last: ingress only once everything else is there
    if (was_remote)
        remove_vtep_if_unused(old_vtep);
    return 0;
}

int table_writer_impl::upsert_remote_endpoint(uint32_t vni, rte_be32_t ip_be, const rte_ether_addr& mac,
                                              rte_be32_t vtep_ip_be) noexcept {
    auto nit = nets_.find(vni);
    if (nit == nets_.end())
        return -ENOENT;
    const std::optional<ep_record> old = find_endpoint(vni, mac);
    const bool same_place = old && old->where == endpoint_value::location::remote && old->vtep_ip_be == vtep_ip_be;
    if (!old && n_endpoints_ >= limits_.max_endpoints)
        return -ENOSPC;
    if (!same_place && nit->second.remote_vteps.count(vtep_ip_be) == 0 &&
        nit->second.remote_vteps.size() >= max_remote_vteps_per_network)
        return -ENOSPC;

    // The VTEP must exist before anything points at it.
    bool created_vtep = false;
    if (vteps_.count(vtep_ip_be) == 0) {
        if (int rc = upsert_vtep(vtep_ip_be); rc < 0)
            return rc;
        explicit_vteps_.erase(vtep_ip_be);   // implicit: goes away with its last endpoint
        created_vtep = true;
    }

    std::set<uint32_t> dirty;
    const bool was_remote = old && old->where == endpoint_value::location::remote;
    const rte_be32_t old_vtep = was_remote ? old->vtep_ip_be : 0;
    const ep_record e{endpoint_value::location::remote, 0, vtep_ip_be, ip_be, mac, vni};
    if (int rc = replace_endpoint(e, old, same_place, dirty); rc < 0) {
        republish(dirty);
        if (created_vtep)
            remove_vtep_if_unused(vtep_ip_be);
        return rc;
    }
    if (!same_place) {
        n_endpoints_++;
        vteps_[vtep_ip_be].n_endpoints++;
        if (nit->second.remote_vteps[vtep_ip_be]++ == 0)
            dirty.insert(vni);
    }
    republish(dirty);
    if (was_remote && !same_place)
        remove_vtep_if_unused(old_vtep);   // lost its last endpoint through the move
    return 0;
}

int table_writer_impl::remove_endpoint(uint32_t vni, const rte_ether_addr& mac) noexcept {
    const std::optional<ep_record> e = find_endpoint(vni, mac);
    if (!e)
        return -ENOENT;
    std::set<uint32_t> dirty;
    unlink_endpoint(*e, dirty);
    republish(dirty);
    if (e->where == endpoint_value::location::remote)
        remove_vtep_if_unused(e->vtep_ip_be);
    return 0;
}

void table_writer_impl::reclaim() noexcept {
    eps_->reclaim();
    unsigned int freed = 0, pending = 0, available = 0;
    rte_rcu_qsbr_dq_reclaim(dq_, UINT32_MAX, &freed, &pending, &available);
}

void table_writer_impl::synchronize() noexcept {
    wait_for_readers();
    reclaim();
}

table_writer::sizes table_writer_impl::size() const noexcept {
    sizes s{};
    s.endpoints = n_endpoints_;
    s.addresses = n_addresses_;
    s.networks = static_cast<uint32_t>(nets_.size());
    s.vteps = static_cast<uint32_t>(vteps_.size());
    s.ports = n_bound_ports_;
    s.retire_backlog = static_cast<uint32_t>(retired_count_ - freed_count_);
    return s;
}

int table_writer_impl::network_slot(uint32_t vni) const noexcept {
    auto it = nets_.find(vni);
    return it == nets_.end() ? -ENOENT : it->second.slot;
}

std::vector<table_writer::vtep_view> table_writer_impl::vteps() const {
    std::vector<vtep_view> out;
    out.reserve(vteps_.size());
    for (const auto& [ip, v] : vteps_)
        out.push_back({ip, v.slot, v.mac_known});
    return out;
}

std::vector<table_writer::network_view> table_writer_impl::networks() const {
    std::vector<network_view> out;
    out.reserve(nets_.size());
    for (const auto& [vni, n] : nets_)
        out.push_back({vni, n.slot});
    return out;
}

int table_writer_impl::vtep_slot(rte_be32_t ip_be) const noexcept {
    auto it = vteps_.find(ip_be);
    return it == vteps_.end() ? -ENOENT : it->second.slot;
}

} // namespace

std::unique_ptr<table_writer> table_writer::create(const char* name, const table_limits& limits) {
    auto w = std::unique_ptr<table_writer_impl>(new (std::nothrow) table_writer_impl(name, limits));
    if (w == nullptr || w->init() != 0)
        return nullptr;
    return w;
}

} // namespace overpass::ctl
