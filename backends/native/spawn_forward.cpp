// modhost-spawn's shim forwards the service's published ports from
// 127.0.0.1: tcp links pumped both ways, udp flows one socket per client.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "backends/native/spawn.hpp"

namespace modhost::backend::native::spawn {

bool pump(int from, int to, Flow& flow, short from_events, short to_events) {
  if ((from_events & (POLLIN | POLLHUP)) && !flow.eof && flow.buf.size() < 65536) {
    char tmp[16384];
    const ssize_t n = ::read(from, tmp, sizeof tmp);
    if (n > 0)
      flow.buf.append(tmp, static_cast<std::size_t>(n));
    else if (n == 0)
      flow.eof = true;
    else if (errno != EAGAIN && errno != EINTR)
      return false;
  }
  if ((to_events & POLLOUT) && !flow.buf.empty()) {
    const ssize_t n = ::send(to, flow.buf.data(), flow.buf.size(), MSG_NOSIGNAL);
    if (n > 0)
      flow.buf.erase(0, static_cast<std::size_t>(n));
    else if (n < 0 && errno != EAGAIN && errno != EINTR)
      return false;
  }
  if (flow.eof && flow.buf.empty() && !flow.shut) {
    ::shutdown(to, SHUT_WR);
    flow.shut = true;
  }
  return true;
}

sockaddr_in service_address(const std::string& ip, int port) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &to.sin_addr);
  return to;
}

void forward_udp_in(const Listener& l, const std::string& ip, std::list<UdpFlow>& flows) {
  char buf[65536];
  for (int budget = 0; budget < 64; ++budget) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(l.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return;  // EAGAIN: drained
    auto f = std::find_if(flows.begin(), flows.end(), [&](const UdpFlow& x) {
      return x.listener == l.fd && x.client.sin_addr.s_addr == from.sin_addr.s_addr &&
             x.client.sin_port == from.sin_port;
    });
    if (f == flows.end()) {
      if (flows.size() >= kUdpMaxFlows) continue;  // dropped, as an overloaded network would
      const int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      const sockaddr_in to = service_address(ip, l.port);
      if (u < 0 || ::connect(u, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
        if (u >= 0) ::close(u);
        continue;
      }
      f = flows.insert(flows.end(), UdpFlow{l.fd, from, u, {}});
    }
    f->last = std::chrono::steady_clock::now();
    // A datagram that found no listener earlier left ECONNREFUSED on the
    // socket, and the next send reports it instead of sending: once more.
    if (::send(f->upstream, buf, static_cast<std::size_t>(n), 0) < 0 && errno == ECONNREFUSED)
      (void)::send(f->upstream, buf, static_cast<std::size_t>(n), 0);
  }
}

// The service's replies on one flow, back to its client from the published
// socket.
void forward_udp_out(UdpFlow& f) {
  char buf[65536];
  for (int budget = 0; budget < 64; ++budget) {
    const ssize_t n = ::recv(f.upstream, buf, sizeof buf, 0);
    if (n < 0 && errno == ECONNREFUSED) continue;  // nothing listened yet: read, the error is cleared
    if (n < 0) return;                             // drained
    f.last = std::chrono::steady_clock::now();
    (void)::sendto(f.listener, buf, static_cast<std::size_t>(n), 0,
                   reinterpret_cast<const sockaddr*>(&f.client), sizeof f.client);
  }
}

}  // namespace modhost::backend::native::spawn
