#include "netshaper/nfqueue.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/types.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

namespace modhost::netshaper {

namespace {

// A packet message with copy mode "meta" is a few hundred bytes; this holds
// any netlink datagram the kernel sends on this socket.
constexpr std::size_t kRecvBufferSize = 64 * 1024;
// About a thousand verdicts per sendmsg.
constexpr std::size_t kBatchSize = 32 * 1024;
// Room one verdict message needs, with margin.
constexpr std::size_t kVerdictRoom = 128;
// The socket's receive buffer: the packets the kernel hands over faster than
// we read wait here; when it is full the kernel drops them (ENOBUFS).
constexpr int kReceiveBuffer = 8 * 1024 * 1024;
// One config command.
constexpr std::size_t kCommandSize = 1024;
constexpr auto kAckTimeout = std::chrono::seconds(5);

}  // namespace

Status errno_failure(const std::string& what, int err) {
  return Status::failure(what + ": " + std::strerror(err));
}
Status errno_failure(const std::string& what) { return errno_failure(what, errno); }

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) reset(std::exchange(o.fd_, -1));
  return *this;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

QueueSocket::QueueSocket(mnl_socket* s) : socket_(s), batch_(kBatchSize), recv_buf_(kRecvBufferSize) {}

QueueSocket::~QueueSocket() {
  // Closing unbinds every queue of this socket in the kernel.
  if (socket_) mnl_socket_close(socket_);
}

int QueueSocket::fd() const { return mnl_socket_get_fd(socket_); }

Status QueueSocket::open_in(int netns_fd, int home_netns_fd, std::unique_ptr<QueueSocket>& out) {
  // Already there (a helper container sharing the service's namespace, which
  // has no CAP_SYS_ADMIN for setns): no switch.
  struct stat target {
  }, home{};
  const bool same = ::fstat(netns_fd, &target) == 0 && ::fstat(home_netns_fd, &home) == 0 &&
                    target.st_dev == home.st_dev && target.st_ino == home.st_ino;
  if (!same && ::setns(netns_fd, CLONE_NEWNET) != 0) return errno_failure("setns");
  mnl_socket* s = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
  int open_errno = errno;
  if (!same && ::setns(home_netns_fd, CLONE_NEWNET) != 0) {
    // Every later namespace would be wrong: not recoverable.
    Status st = errno_failure("setns back to our own network namespace");
    if (s) mnl_socket_close(s);
    return st;
  }
  if (!s) return errno_failure("netlink socket", open_errno);
  std::unique_ptr<QueueSocket> q(new QueueSocket(s));
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) return errno_failure("netlink bind");
  q->portid_ = mnl_socket_get_portid(s);
  int size = kReceiveBuffer;
  if (::setsockopt(q->fd(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0 &&
      ::setsockopt(q->fd(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) {
    return errno_failure("netlink receive buffer");
  }
  out = std::move(q);
  return Status::success();
}

Status QueueSocket::command(char* buf, const PacketHandler& on_packet, const std::string& what) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf);
  nlh->nlmsg_flags |= NLM_F_ACK;
  nlh->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(socket_, nlh, nlh->nlmsg_len) < 0) return errno_failure(what);
  auto deadline = std::chrono::steady_clock::now() + kAckTimeout;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(socket_, recv_buf_.data(), recv_buf_.size());
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS) continue;  // ENOBUFS: packets lost, not our answer
      if (errno != EAGAIN && errno != EWOULDBLOCK) return errno_failure(what + ": receive");
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return Status::failure(what + ": the kernel did not answer");
      pollfd p{fd(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count()) + 1) < 0 && errno != EINTR) {
        return errno_failure(what + ": poll");
      }
      continue;
    }
    int ack_errno = 0;
    bool acked = false;
    dispatch(recv_buf_.data(), static_cast<std::size_t>(n), on_packet, seq_, ack_errno, acked);
    if (acked) return ack_errno == 0 ? Status::success() : errno_failure(what, ack_errno);
  }
}

Status QueueSocket::bind(std::uint16_t num, std::uint32_t max_len, const PacketHandler& on_packet) {
  std::string what = "bind queue " + std::to_string(num);
  alignas(nlmsghdr) char buf[kCommandSize];
  nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, num);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_BIND);
  if (Status st = command(buf, on_packet, what); !st.ok()) {
    if (st.error.find(std::strerror(EPERM)) != std::string::npos) {
      st.error += " (another program holds this queue, or we lack CAP_NET_ADMIN there)";
    }
    return st;
  }
  // Metadata only: the packet id is all we need. GSO packets whole, as netem
  // treats them, instead of segmented by the kernel first.
  nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, num);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
  nfq_nlmsg_cfg_put_qmaxlen(nlh, max_len);
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
  return command(buf, on_packet, "configure queue " + std::to_string(num));
}

Status QueueSocket::unbind(std::uint16_t num, const PacketHandler& on_packet) {
  alignas(nlmsghdr) char buf[kCommandSize];
  nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, num);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_UNBIND);
  return command(buf, on_packet, "unbind queue " + std::to_string(num));
}

Status QueueSocket::read(const PacketHandler& on_packet, int max_messages, ReadResult& result) {
  result = ReadResult::more;
  for (int i = 0; i < max_messages; ++i) {
    ssize_t n = mnl_socket_recvfrom(socket_, recv_buf_.data(), recv_buf_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        result = ReadResult::drained;
        return Status::success();
      }
      if (errno == ENOBUFS) {
        result = ReadResult::overflow;
        return Status::success();
      }
      return errno_failure("netlink receive");
    }
    int ack_errno = 0;
    bool acked = false;
    dispatch(recv_buf_.data(), static_cast<std::size_t>(n), on_packet, 0, ack_errno, acked);
  }
  return Status::success();
}

void QueueSocket::dispatch(const char* buf, std::size_t len, const PacketHandler& on_packet,
                           std::uint32_t awaited_seq, int& ack_errno, bool& acked) {
  int left = static_cast<int>(len);
  for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(nlh, left);
       nlh = mnl_nlmsg_next(nlh, &left)) {
    if (nlh->nlmsg_type == NLMSG_ERROR) {
      if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) continue;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (awaited_seq != 0 && nlh->nlmsg_seq == awaited_seq) {
        acked = true;
        ack_errno = -err->error;
      } else if (err->error != 0) {
        // Verdicts go without NLM_F_ACK: an error here is a refused one.
        ++refused_verdicts_;
        last_refusal_errno_ = -err->error;
      }
      continue;
    }
    if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_QUEUE ||
        NFNL_MSG_TYPE(nlh->nlmsg_type) != NFQNL_MSG_PACKET) {
      continue;
    }
    nlattr* attr[NFQA_MAX + 1] = {};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) continue;
    const auto* ph = static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
    const auto* gen = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    on_packet(ntohs(gen->res_id), ntohl(ph->packet_id));
  }
}

Status QueueSocket::add_verdict(std::uint16_t queue, std::uint32_t packet_id, int verdict) {
  if (batch_len_ + kVerdictRoom > batch_.size()) {
    if (Status st = flush(); !st.ok()) return st;
  }
  nlmsghdr* nlh = nfq_nlmsg_put(batch_.data() + batch_len_, NFQNL_MSG_VERDICT, queue);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(packet_id), verdict);
  batch_len_ += MNL_ALIGN(nlh->nlmsg_len);
  return Status::success();
}

Status QueueSocket::flush() {
  if (batch_len_ == 0) return Status::success();
  std::size_t len = batch_len_;
  batch_len_ = 0;
  for (;;) {
    if (mnl_socket_sendto(socket_, batch_.data(), len) >= 0) return Status::success();
    if (errno != EINTR) return errno_failure("send verdicts");
  }
}

}  // namespace modhost::netshaper
