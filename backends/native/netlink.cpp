#include "backends/native/netlink.hpp"

// The kernel's netlink macros (NLMSG_NEXT, RTA_NEXT, ...) are C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"

#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

namespace modhost::backend::native::netlink {
namespace {

// A request being built: the netlink header, its fixed part, attributes.
class Message {
 public:
  Message(std::uint16_t type, std::uint16_t flags) {
    auto* h = header();
    h->nlmsg_len = NLMSG_LENGTH(0);
    h->nlmsg_type = type;
    h->nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
  }
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buf_); }

  template <class T>
  T* fixed() {
    auto* h = header();
    auto* p = reinterpret_cast<T*>(buf_ + h->nlmsg_len);
    std::memset(p, 0, sizeof(T));
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len + sizeof(T));
    return p;
  }

  void put(std::uint16_t type, const void* data, std::size_t len) {
    auto* h = header();
    auto* a = reinterpret_cast<rtattr*>(buf_ + NLMSG_ALIGN(h->nlmsg_len));
    a->rta_type = type;
    a->rta_len = static_cast<std::uint16_t>(RTA_LENGTH(len));
    if (len > 0) std::memcpy(RTA_DATA(a), data, len);
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
  }
  void put_string(std::uint16_t type, const std::string& s) { put(type, s.c_str(), s.size() + 1); }
  void put_u32(std::uint16_t type, std::uint32_t v) { put(type, &v, sizeof v); }

  // Opens a nested attribute; end() closes it.
  rtattr* begin(std::uint16_t type) {
    auto* a = reinterpret_cast<rtattr*>(buf_ + NLMSG_ALIGN(header()->nlmsg_len));
    put(type, nullptr, 0);
    return a;
  }
  void end(rtattr* a) {
    a->rta_len = static_cast<std::uint16_t>(buf_ + header()->nlmsg_len - reinterpret_cast<char*>(a));
  }

 private:
  alignas(nlmsghdr) char buf_[1024] = {};
};

class Socket {
 public:
  Socket() : fd_(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

Status sys_error(const std::string& what, int err) {
  return Error(err == EPERM || err == EACCES ? ErrorCode::failed_precondition : ErrorCode::internal,
               what + ": " + std::strerror(err));
}

// Sends one request and reads the kernel's answer: each message of a dump
// goes to `each`, until its end; a request without a dump ends with the
// acknowledgement.
Status exchange(Message& m, const std::string& what, const std::function<void(nlmsghdr*)>& each = {}) {
  Socket s;
  if (s.fd() < 0) return sys_error(what + " (netlink socket)", errno);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  m.header()->nlmsg_seq = 1;
  if (::sendto(s.fd(), m.header(), m.header()->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    return sys_error(what, errno);
  }
  alignas(nlmsghdr) char reply[32768];
  while (true) {
    const ssize_t n = ::recv(s.fd(), reply, sizeof reply, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(what, errno);
    }
    ssize_t left = n;
    for (auto* h = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(h, static_cast<unsigned>(left));
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return ok_status();
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (e->error == 0) return ok_status();
        return sys_error(what, -e->error);
      }
      if (each) each(h);
    }
  }
}

Status talk(Message& m, const std::string& what) { return exchange(m, what); }

Result<int> index_of(const std::string& name) {
  const unsigned idx = ::if_nametoindex(name.c_str());
  if (idx == 0) return Error(ErrorCode::not_found, "no network link '" + name + "'");
  return static_cast<int>(idx);
}

Result<std::uint32_t> ipv4(const std::string& s) {
  in_addr a{};
  if (::inet_pton(AF_INET, s.c_str(), &a) != 1)
    return Error(ErrorCode::invalid_argument, "'" + s + "' is not an IPv4 address");
  return a.s_addr;
}

// Changes a link by index with RTM_NEWLINK (no NLM_F_CREATE).
template <class Fill>
Status change_link(const std::string& name, const std::string& what, Fill fill) {
  MODHOST_ASSIGN_OR_RETURN(int idx, index_of(name));
  Message m(RTM_NEWLINK, 0);
  auto* info = m.fixed<ifinfomsg>();
  info->ifi_family = AF_UNSPEC;
  info->ifi_index = idx;
  fill(m, *info);
  return talk(m, what);
}

// Dumps a table and hands each message to `each`.
Status dump(std::uint16_t type, const std::string& what, const std::function<void(nlmsghdr*)>& each) {
  Message m(type, NLM_F_DUMP);
  m.header()->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  auto* g = m.fixed<rtgenmsg>();
  g->rtgen_family = type == RTM_GETADDR ? AF_INET : AF_UNSPEC;
  return exchange(m, what, each);
}

}  // namespace

Status create_bridge(const std::string& name) {
  Message m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  m.fixed<ifinfomsg>()->ifi_family = AF_UNSPEC;
  m.put_string(IFLA_IFNAME, name);
  auto* li = m.begin(IFLA_LINKINFO);
  m.put_string(IFLA_INFO_KIND, "bridge");
  m.end(li);
  return talk(m, "cannot create bridge '" + name + "'");
}

Status create_veth(const std::string& name, const std::string& peer, int peer_pid,
                   const std::string& peer_mac) {
  Message m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  m.fixed<ifinfomsg>()->ifi_family = AF_UNSPEC;
  m.put_string(IFLA_IFNAME, name);
  auto* li = m.begin(IFLA_LINKINFO);
  m.put_string(IFLA_INFO_KIND, "veth");
  auto* data = m.begin(IFLA_INFO_DATA);
  auto* p = m.begin(VETH_INFO_PEER);
  m.fixed<ifinfomsg>()->ifi_family = AF_UNSPEC;
  m.put_string(IFLA_IFNAME, peer);
  if (peer_pid > 0) m.put_u32(IFLA_NET_NS_PID, static_cast<std::uint32_t>(peer_pid));
  if (peer_mac.size() == 6) m.put(IFLA_ADDRESS, peer_mac.data(), peer_mac.size());
  m.end(p);
  m.end(data);
  m.end(li);
  return talk(m, "cannot create veth pair '" + name + "'");
}

Status delete_link(const std::string& name) {
  auto idx = index_of(name);
  if (!idx.ok()) return ok_status();
  Message m(RTM_DELLINK, 0);
  auto* info = m.fixed<ifinfomsg>();
  info->ifi_family = AF_UNSPEC;
  info->ifi_index = idx.value();
  Status s = talk(m, "cannot delete link '" + name + "'");
  if (!s.ok() && !link_exists(name)) return ok_status();  // went meanwhile
  return s;
}

Status set_up(const std::string& name) {
  return change_link(name, "cannot set link '" + name + "' up", [](Message&, ifinfomsg& info) {
    info.ifi_flags = IFF_UP;
    info.ifi_change = IFF_UP;
  });
}

Status set_down(const std::string& name) {
  return change_link(name, "cannot set link '" + name + "' down", [](Message&, ifinfomsg& info) {
    info.ifi_flags = 0;
    info.ifi_change = IFF_UP;
  });
}

Status set_master(const std::string& name, const std::string& bridge) {
  MODHOST_ASSIGN_OR_RETURN(int master, index_of(bridge));
  return change_link(
      name, "cannot attach '" + name + "' to bridge '" + bridge + "'",
      [&](Message& m, ifinfomsg&) { m.put_u32(IFLA_MASTER, static_cast<std::uint32_t>(master)); });
}

Status rename_link(const std::string& name, const std::string& new_name) {
  return change_link(name, "cannot rename link '" + name + "'",
                     [&](Message& m, ifinfomsg&) { m.put_string(IFLA_IFNAME, new_name); });
}

Status move_to_netns(const std::string& name, int pid) {
  return change_link(
      name, "cannot move link '" + name + "' to process " + std::to_string(pid),
      [&](Message& m, ifinfomsg&) { m.put_u32(IFLA_NET_NS_PID, static_cast<std::uint32_t>(pid)); });
}

Status add_address(const std::string& name, const std::string& address, int prefix) {
  MODHOST_ASSIGN_OR_RETURN(int idx, index_of(name));
  MODHOST_ASSIGN_OR_RETURN(std::uint32_t a, ipv4(address));
  Message m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifa = m.fixed<ifaddrmsg>();
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa->ifa_index = static_cast<unsigned>(idx);
  m.put(IFA_LOCAL, &a, sizeof a);
  m.put(IFA_ADDRESS, &a, sizeof a);
  return talk(m, "cannot add address " + address + "/" + std::to_string(prefix) + " to '" + name + "'");
}

Status add_route(const std::string& destination, int prefix, const std::string& gateway) {
  MODHOST_ASSIGN_OR_RETURN(std::uint32_t dst, ipv4(destination));
  MODHOST_ASSIGN_OR_RETURN(std::uint32_t gw, ipv4(gateway));
  Message m(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  auto* r = m.fixed<rtmsg>();
  r->rtm_family = AF_INET;
  r->rtm_dst_len = static_cast<unsigned char>(prefix);
  r->rtm_table = RT_TABLE_MAIN;
  r->rtm_protocol = RTPROT_BOOT;
  r->rtm_scope = RT_SCOPE_UNIVERSE;
  r->rtm_type = RTN_UNICAST;
  if (prefix > 0) m.put(RTA_DST, &dst, sizeof dst);
  m.put(RTA_GATEWAY, &gw, sizeof gw);
  return talk(m, "cannot add a route to " + destination + "/" + std::to_string(prefix));
}

bool link_exists(const std::string& name) { return ::if_nametoindex(name.c_str()) != 0; }

Status set_alias(const std::string& name, const std::string& alias) {
  return change_link(name, "cannot label link '" + name + "'",
                     [&](Message& m, ifinfomsg&) { m.put(IFLA_IFALIAS, alias.data(), alias.size()); });
}

Result<std::vector<Link>> list_links() {
  std::vector<Link> out;
  MODHOST_TRY(dump(RTM_GETLINK, "cannot list network links", [&](nlmsghdr* h) {
    auto* info = static_cast<ifinfomsg*>(NLMSG_DATA(h));
    int len = static_cast<int>(IFLA_PAYLOAD(h));
    Link l;
    for (auto* a = IFLA_RTA(info); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      const auto* data = static_cast<const char*>(RTA_DATA(a));
      const auto size = RTA_PAYLOAD(a);
      if (a->rta_type == IFLA_IFNAME) l.name.assign(data, strnlen(data, size));
      if (a->rta_type == IFLA_IFALIAS) l.alias.assign(data, strnlen(data, size));
    }
    out.push_back(std::move(l));
  }));
  return out;
}

Result<std::vector<std::string>> list_addresses() {
  std::vector<std::string> out;
  MODHOST_TRY(dump(RTM_GETADDR, "cannot list addresses", [&](nlmsghdr* h) {
    auto* ifa = static_cast<ifaddrmsg*>(NLMSG_DATA(h));
    if (ifa->ifa_family != AF_INET) return;
    int len = static_cast<int>(IFA_PAYLOAD(h));
    for (auto* a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      if (a->rta_type != IFA_LOCAL && a->rta_type != IFA_ADDRESS) continue;
      char buf[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, RTA_DATA(a), buf, sizeof buf);
      out.push_back(std::string(buf) + "/" + std::to_string(ifa->ifa_prefixlen));
      break;
    }
  }));
  return out;
}

}  // namespace modhost::backend::native::netlink
