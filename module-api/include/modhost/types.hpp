// Plain data shared by the SDK, the engine and the backends.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace modhost {

enum class LogLevel { trace, debug, info, warn, error };

// A port a service listens on, e.g. "http: 80/tcp".
struct PortSpec {
  std::string name;
  std::uint16_t number = 0;
  std::string protocol = "tcp";
};

// A files artifact mounted read-only into a service.
struct FileMount {
  std::string artifact;
  std::string path;
};

// A directory of the host mounted into a service (the engine uses it to give
// module containers the enclave API socket).
struct BindMount {
  std::string source;  // absolute path on the host
  std::string target;  // absolute path in the service
  bool read_only = true;
};

// What to start. Fields mirror `modhost service add`.
struct ServiceConfig {
  std::string name;
  std::string image;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::map<std::string, std::string> env;
  std::vector<PortSpec> ports;
  std::vector<FileMount> files;
  double cpus = 0;                 // 0 = unlimited
  std::uint64_t memory_bytes = 0;  // 0 = unlimited
  std::map<std::string, std::string> labels;
  std::vector<BindMount> binds;
  // "service", "module" for a module container the engine starts, or
  // "helper" for a container of the engine's own (network control).
  std::string kind = "service";
  // Join the network namespace of this service of the enclave instead of the
  // enclave network (no ports, no name of its own there).
  std::string network_of;
  // Linux capabilities beyond the engine's defaults, e.g. "NET_ADMIN".
  std::vector<std::string> cap_add;
  // The user the service runs as: "UID", "UID:GID", "NAME" or "NAME:GROUP"
  // (names from the image's /etc/passwd and /etc/group); empty = the image's.
  std::string user;
  // Everything the engine's default confinement takes away is given back:
  // every capability, no seccomp filter, no masked or read-only paths of
  // /proc and /sys, no no_new_privs (Docker's --privileged).
  bool privileged = false;
  // Docker's --security-opt: "seccomp=unconfined" (no seccomp filter),
  // "no-new-privileges=false" (setuid and file capabilities work again);
  // "no-new-privileges" / "=true" is the default.
  std::vector<std::string> security_opt;
};

enum class ServiceStatus { created, running, paused, stopped, exited, unknown };

// "created", "running", "paused", "stopped", "exited", "unknown".
const char* to_string(ServiceStatus s) noexcept;

struct PublishedPort {
  PortSpec port;
  std::string host_ip;  // 127.0.0.1
  std::uint16_t host_port = 0;
};

struct ServiceInfo {
  std::string name;
  std::string id;  // backend id (container id)
  std::string enclave_id;
  std::string image;
  ServiceStatus status = ServiceStatus::unknown;
  std::string ip;  // address inside the enclave network
  std::vector<PublishedPort> ports;
  std::map<std::string, std::string> labels;
  std::optional<int> exit_code;
};

struct ExecResult {
  int exit_code = 0;
  std::string output;  // stdout and stderr, interleaved
};

// A readiness wait. Exactly one of the probes is used, chosen by `kind`.
struct ReadinessCheck {
  enum class Kind { tcp, http, exec } kind = Kind::tcp;
  std::string port;                  // tcp/http: port name or number inside the service
  std::string path = "/";            // http
  int expected_status = 200;         // http
  std::string body_contains;         // http, optional
  std::vector<std::string> command;  // exec: exit 0 means ready
  std::chrono::milliseconds initial_delay{0};
  int retries = 30;
  std::chrono::milliseconds interval{500};
  std::chrono::milliseconds timeout{2000};  // per attempt
};

}  // namespace modhost
