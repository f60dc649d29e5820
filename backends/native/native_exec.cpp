// The native backend's exec, logs and readiness waits: a command runs
// through the service's init (its exec socket, the output pipe passed
// along), logs are the shim's log file, readiness the shared probe loop.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstring>
#include <filesystem>
#include <thread>

#include "backends/native/native_impl.hpp"
#include "backends/native/processes.hpp"
#include "backends/native/records.hpp"
#include "backends/net.hpp"
#include "backends/readiness.hpp"

namespace modhost::backend {

Result<ExecResult> NativeBackend::exec(std::string_view enclave_id, std::string_view name,
                                       const std::vector<std::string>& argv) {
  return exec_with_timeout(enclave_id, name, argv, std::nullopt);
}

Result<ExecResult> NativeBackend::exec_with_timeout(std::string_view enclave_id, std::string_view name_in,
                                                    const std::vector<std::string>& argv,
                                                    std::optional<std::chrono::milliseconds> timeout) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_ASSIGN_OR_RETURN(std::string dir, impl_->state.require_service(e.id, name, e));
  if (argv.empty()) return Error(ErrorCode::invalid_argument, "exec needs a command");
  if (impl_->state.service_info(e.id, name).status != ServiceStatus::running) {
    return Error(ErrorCode::failed_precondition,
                 "service '" + name + "' in enclave '" + e.name + "' is not running");
  }
  const int sock = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = impl_->state.ctl_socket(str(impl_->state.service_state(e.id, name), "id"));
  std::memcpy(addr.sun_path, path.c_str(), std::min(path.size() + 1, sizeof addr.sun_path - 1));
  if (sock < 0 || ::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    if (sock >= 0) ::close(sock);
    return Error(ErrorCode::unavailable,
                 "cannot reach the init of service '" + name + "': " + std::strerror(err));
  }
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(sock);
    return Error(ErrorCode::internal, std::string("pipe: ") + std::strerror(errno));
  }
  Records req;
  for (const auto& a : argv) req.emplace_back("argv", a);
  const std::string data = native::encode_records(req);
  iovec iov{const_cast<char*>(data.data()), data.size()};
  char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &out[1], sizeof(int));
  const ssize_t sent = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  ::close(out[1]);
  if (sent < 0) {
    const int err = errno;
    ::close(out[0]);
    ::close(sock);
    return Error(ErrorCode::unavailable, "cannot send the exec request: " + std::string(std::strerror(err)));
  }
  // Output and the exit code arrive on two channels: watch both. Once the
  // exit code is in, what is left in the pipe is read without waiting (a
  // process the command left in the background may hold it open for ever).
  ExecResult result;
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  char buf[16384];
  char reply[4096];
  ssize_t n = 0;
  bool out_open = true, replied = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout.value_or(std::chrono::hours(24 * 365));
  while (!replied || out_open) {
    pollfd fds[2] = {{out[0], static_cast<short>(out_open ? POLLIN : 0), 0},
                     {sock, static_cast<short>(replied ? 0 : POLLIN), 0}};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::close(out[0]);
      ::close(sock);  // init kills the command when its socket closes
      return Error(ErrorCode::timeout,
                   "exec in service '" + name + "' did not finish within " +
                       std::to_string(timeout.value_or(std::chrono::milliseconds(0)).count()) + " ms");
    }
    const int ready =
        replied ? 0 : ::poll(fds, 2, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (ready < 0 && errno != EINTR) break;
    if (out_open && (replied || (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))) {
      while (true) {
        const ssize_t got = ::read(out[0], buf, sizeof buf);
        if (got > 0) {
          result.output.append(buf, static_cast<std::size_t>(got));
          continue;
        }
        if (got == 0 || replied || (errno != EAGAIN && errno != EINTR)) out_open = false;
        break;
      }
    }
    if (!replied && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      while ((n = ::recv(sock, reply, sizeof reply, 0)) < 0 && errno == EINTR) {
      }
      replied = true;
    }
  }
  ::close(out[0]);
  ::close(sock);
  if (n <= 0) {
    return Error(ErrorCode::unavailable, "service '" + name + "' ended during the exec");
  }
  const Records r = native::decode_records(std::string_view(reply, static_cast<std::size_t>(n)));
  result.exit_code = std::atoi(native::record(r, "exit", "-1").c_str());
  if (const std::string err = native::record(r, "error"); !err.empty()) result.output += err + "\n";
  return result;
}

Status NativeBackend::logs(std::string_view enclave_id, std::string_view name_in, bool follow,
                           const LogSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_ASSIGN_OR_RETURN(std::string dir, impl_->state.require_service(e.id, name, e));
  const int fd = ::open((dir + "/log").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ok_status();  // never started: no output yet
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      if (!sink(std::string_view(buf, static_cast<std::size_t>(n)))) break;
      continue;
    }
    if (!follow) break;
    // At the end: done when the service is, else look again shortly.
    const ServiceStatus s = impl_->state.service_info(e.id, name).status;
    if (s != ServiceStatus::running && s != ServiceStatus::paused) {
      const ssize_t last = ::read(fd, buf, sizeof buf);
      if (last > 0 && sink(std::string_view(buf, static_cast<std::size_t>(last)))) continue;
      break;
    }
    if (!fs::exists(dir)) break;
    std::this_thread::sleep_for(20ms);
  }
  ::close(fd);
  return ok_status();
}

Status NativeBackend::wait_ready(std::string_view enclave_id, std::string_view name_in,
                                 const ReadinessCheck& check) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->state.require_service(e.id, name, e));
  const std::string ctx = "service '" + name + "' in enclave '" + e.name + "'";
  ReadinessProbes probes;
  probes.current = [&]() -> Result<ServiceInfo> { return impl_->state.service_info(e.id, name); };
  probes.tcp = loopback_tcp_probe;
  probes.http = loopback_http_get;
  probes.exec = [&](const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
    return exec_with_timeout(e.id, name, argv, timeout);
  };
  probes.last_output = [&] { return last_words(impl_->state.service_dir(e.id, name) + "/log"); };
  return wait_until_ready(ctx, check, impl_->state.service_info(e.id, name), probes);
}

}  // namespace modhost::backend
