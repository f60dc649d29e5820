// One nfnetlink_queue socket: the queues of one network namespace, their
// packets in, verdicts out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

struct mnl_socket;

namespace modhost::netshaper {

// An error message, empty when all went well.
struct [[nodiscard]] Status {
  std::string error;
  bool ok() const { return error.empty(); }
  static Status success() { return {}; }
  static Status failure(std::string message) { return {std::move(message)}; }
};

// "what: strerror(errno)"
Status errno_failure(const std::string& what);
Status errno_failure(const std::string& what, int err);

// A file descriptor that closes itself.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd = -1);
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// Called for each packet the kernel hands over: its queue and id.
using PacketHandler = std::function<void(std::uint16_t queue, std::uint32_t packet_id)>;

class QueueSocket {
 public:
  // A socket in the network namespace `netns_fd` refers to. The calling
  // thread enters that namespace just for socket(2) and returns to
  // `home_netns_fd`; the socket stays in the namespace it was made in.
  static Status open_in(int netns_fd, int home_netns_fd, std::unique_ptr<QueueSocket>& out);
  ~QueueSocket();
  QueueSocket(const QueueSocket&) = delete;
  QueueSocket& operator=(const QueueSocket&) = delete;

  int fd() const;

  // Binds queue `num` to this socket, metadata only (no payload is copied
  // to us), GSO packets whole, up to `max_len` packets held in the kernel.
  // Packets arriving while the kernel's answer is awaited go to `on_packet`.
  Status bind(std::uint16_t num, std::uint32_t max_len, const PacketHandler& on_packet);
  // Unbinds: the kernel drops what it still holds for `num`, so give the
  // verdicts first.
  Status unbind(std::uint16_t num, const PacketHandler& on_packet);

  enum class ReadResult { drained, more, overflow };
  // Reads what has arrived, without blocking, at most `max_messages`
  // datagrams. `overflow` (ENOBUFS: the kernel could not hand us some
  // packets and dropped them) is not fatal; the socket keeps working.
  Status read(const PacketHandler& on_packet, int max_messages, ReadResult& result);

  // Verdicts are batched; `flush` sends them (`add_verdict` flushes by
  // itself when the batch is full).
  Status add_verdict(std::uint16_t queue, std::uint32_t packet_id, int verdict);
  Status flush();

  // Verdicts the kernel refused (unknown packet id), since the last call.
  std::uint64_t take_refused_verdicts() { return std::exchange(refused_verdicts_, 0); }
  int last_refusal_errno() const { return last_refusal_errno_; }

 private:
  explicit QueueSocket(mnl_socket* s);
  Status command(char* buf, const PacketHandler& on_packet, const std::string& what);
  // Handles every message in buf: packets to on_packet, acks of `awaited_seq`
  // into `ack_errno` (0 = success).
  void dispatch(const char* buf, std::size_t len, const PacketHandler& on_packet, std::uint32_t awaited_seq,
                int& ack_errno, bool& acked);

  mnl_socket* socket_;
  std::uint32_t portid_ = 0;
  std::uint32_t seq_ = 0;
  std::vector<char> batch_;
  std::size_t batch_len_ = 0;
  std::vector<char> recv_buf_;
  std::uint64_t refused_verdicts_ = 0;
  int last_refusal_errno_ = 0;
};

}  // namespace modhost::netshaper
