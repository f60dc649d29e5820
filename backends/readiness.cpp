#include "backends/readiness.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace modhost::backend {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A connected socket to 127.0.0.1:PORT, or an error; closes itself.
class LoopbackConnection {
 public:
  LoopbackConnection() = default;
  ~LoopbackConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  LoopbackConnection(const LoopbackConnection&) = delete;
  LoopbackConnection& operator=(const LoopbackConnection&) = delete;

  Status connect(std::uint16_t port, milliseconds timeout) {
    where_ = "127.0.0.1:" + std::to_string(port);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return Error(ErrorCode::internal, std::string("socket: ") + std::strerror(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
      return Error(ErrorCode::unavailable, "cannot connect to " + where_ + ": " + std::strerror(errno));
    }
    if (!wait(POLLOUT, timeout))
      return Error(ErrorCode::timeout, "cannot connect to " + where_ + ": timed out");
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
      return Error(ErrorCode::unavailable, "cannot connect to " + where_ + ": " + std::strerror(err));
    return ok_status();
  }

  bool wait(short events, milliseconds timeout) {
    pollfd p{fd_, events, 0};
    return ::poll(&p, 1, static_cast<int>(std::max<milliseconds::rep>(0, timeout.count()))) > 0;
  }
  int fd() const { return fd_; }
  const std::string& where() const { return where_; }

 private:
  int fd_ = -1;
  std::string where_;
};

// A service that ended will never become ready: say how it ended and what it
// printed last.
Error exited(const std::string& ctx, const ServiceInfo& info, const ReadinessProbes& probes) {
  return Error(ErrorCode::failed_precondition,
               ctx + " exited with code " + std::to_string(info.exit_code.value_or(-1)) +
                   " while waiting for it to be ready" +
                   (probes.last_output ? "; its last output: " + probes.last_output() : std::string()));
}

}  // namespace

Status loopback_tcp_probe(std::uint16_t port, milliseconds timeout) {
  const auto start = Clock::now();
  LoopbackConnection c;
  MODHOST_TRY(c.connect(port, timeout));
  // A port forwarder accepts every connection and closes it at once when
  // nothing listens behind it; a connection still open after a short while
  // (or one that delivers data) has a real listener.
  const auto spent = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  const milliseconds linger = std::max(milliseconds(50), std::min(milliseconds(300), timeout - spent));
  if (!c.wait(POLLIN, linger)) return ok_status();
  char byte = 0;
  const ssize_t n = ::recv(c.fd(), &byte, 1, MSG_PEEK);
  if (n > 0) return ok_status();
  return Error(ErrorCode::unavailable,
               c.where() +
                   " accepted the connection and closed it at once: nothing listens on "
                   "the port inside the service yet");
}

Result<std::pair<int, std::string>> loopback_http_request(std::uint16_t port, const HttpRequest& request,
                                                          milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  LoopbackConnection c;
  MODHOST_TRY(c.connect(port, timeout));
  const std::string target = request.path.empty() ? "/" : request.path;
  const std::string what = request.method + " http://" + c.where() + target;
  std::string req = request.method + " " + target + " HTTP/1.0\r\nHost: " + c.where() +
                    "\r\nUser-Agent: modhost\r\nConnection: close\r\n";
  for (const auto& [k, v] : request.headers) req += k + ": " + v + "\r\n";
  if (request.method != "GET" || !request.body.empty()) {
    if (!request.content_type.empty()) req += "Content-Type: " + request.content_type + "\r\n";
    req += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  }
  req += "\r\n";
  req += request.body;
  for (std::size_t sent = 0; sent < req.size();) {
    const ssize_t n = ::send(c.fd(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || !c.wait(POLLOUT, left)) return Error(ErrorCode::timeout, what + ": timed out");
      continue;
    }
    if (n <= 0) return Error(ErrorCode::unavailable, what + ": cannot send the request");
    sent += static_cast<std::size_t>(n);
  }
  std::string response;
  char buf[8192];
  while (response.size() < request.max_response_bytes) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || !c.wait(POLLIN, left)) return Error(ErrorCode::timeout, what + ": timed out");
    const ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error(ErrorCode::unavailable, what + ": " + std::strerror(errno));
    if (n == 0) break;
    response.append(buf, static_cast<std::size_t>(n));
  }
  // "HTTP/1.x NNN ..."
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) {
    return Error(ErrorCode::unavailable, what + ": no HTTP response");
  }
  const int status = std::atoi(response.c_str() + 9);
  const auto body = response.find("\r\n\r\n");
  return std::pair<int, std::string>{status,
                                     body == std::string::npos ? std::string() : response.substr(body + 4)};
}

Result<std::pair<int, std::string>> loopback_http_get(std::uint16_t port, const std::string& path,
                                                      milliseconds timeout) {
  HttpRequest r;
  r.path = path;
  r.max_response_bytes = 1u << 20;
  return loopback_http_request(port, r, timeout);
}

Status wait_until_ready(const std::string& ctx, const ReadinessCheck& check, const ServiceInfo& info,
                        const ReadinessProbes& probes) {
  std::uint16_t host_port = 0;
  PortSpec probed;
  std::string what;
  if (check.kind != ReadinessCheck::Kind::exec) {
    const PublishedPort* chosen = nullptr;
    for (const auto& p : info.ports) {
      if ((!check.port.empty() &&
           (p.port.name == check.port || std::to_string(p.port.number) == check.port)) ||
          (check.port.empty() && info.ports.size() == 1)) {
        chosen = &p;
        break;
      }
    }
    if (chosen == nullptr) {
      return Error(ErrorCode::invalid_argument, ctx + " has no published port '" + check.port +
                                                    "' to probe; declare it in the service's ports");
    }
    if (chosen->port.protocol != "tcp") {
      return Error(ErrorCode::invalid_argument, ctx + ": port '" + check.port + "' is not a tcp port");
    }
    what = std::string(check.kind == ReadinessCheck::Kind::http ? "http" : "tcp") + " probe of port " +
           std::to_string(chosen->port.number) + "/" + chosen->port.protocol;
    if (chosen->host_port == 0 && info.status == ServiceStatus::exited) return exited(ctx, info, probes);
    if (chosen->host_port == 0 && info.status != ServiceStatus::running) {
      return Error(ErrorCode::failed_precondition, ctx + " is not running");
    }
    host_port = chosen->host_port;
    probed = chosen->port;
  } else {
    if (check.command.empty())
      return Error(ErrorCode::invalid_argument, "an exec readiness check needs a command");
    what = "exec probe '" + check.command.front() + "'";
  }

  if (check.initial_delay.count() > 0) std::this_thread::sleep_for(check.initial_delay);
  const int attempts = std::max(1, check.retries);
  std::string last_error = "no attempt made";
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    if (attempt > 1) std::this_thread::sleep_for(check.interval);
    // A service that ended will never become ready.
    MODHOST_ASSIGN_OR_RETURN(ServiceInfo now, probes.current());
    if (now.status == ServiceStatus::exited) return exited(ctx, now, probes);
    // The engine picks a new host port when the service restarts.
    for (const auto& p : now.ports) {
      if (host_port != 0 && p.port.number == probed.number && p.port.protocol == probed.protocol &&
          p.host_port != 0) {
        host_port = p.host_port;
      }
    }
    switch (check.kind) {
      case ReadinessCheck::Kind::tcp: {
        Status st = probes.tcp(host_port, check.timeout);
        if (st.ok()) return ok_status();
        last_error = st.error().message();
        break;
      }
      case ReadinessCheck::Kind::http: {
        auto r = probes.http(host_port, check.path, check.timeout);
        if (!r.ok()) {
          last_error = r.error().message();
          break;
        }
        if (r->first != check.expected_status) {
          last_error = "GET " + check.path + " answered HTTP " + std::to_string(r->first) + ", expected " +
                       std::to_string(check.expected_status);
          break;
        }
        if (!check.body_contains.empty() && r->second.find(check.body_contains) == std::string::npos) {
          last_error = "GET " + check.path + " answered without '" + check.body_contains + "' in its body";
          break;
        }
        return ok_status();
      }
      case ReadinessCheck::Kind::exec: {
        auto r = probes.exec(check.command, check.timeout);
        if (!r.ok()) {
          last_error = r.error().message();
          break;
        }
        if (r->exit_code == 0) return ok_status();
        std::string out = r->output.substr(0, 200);
        while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
        last_error = "exited with code " + std::to_string(r->exit_code) + (out.empty() ? "" : ": " + out);
        break;
      }
    }
    if (probes.log) {
      probes.log(ctx + " not ready (attempt " + std::to_string(attempt) + "/" + std::to_string(attempts) +
                 "): " + last_error);
    }
  }
  return Error(ErrorCode::timeout, ctx + " was not ready after " + std::to_string(attempts) + " attempts (" +
                                       what + "); last attempt: " + last_error);
}

}  // namespace modhost::backend
