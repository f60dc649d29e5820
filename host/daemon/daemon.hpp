// The engine daemon: `modhost engine run|start|stop|status|restart`.
//
// Everything lives in one private directory ($MODHOST_ENGINE_DIR, else
// /run/modhost/engine, mode 0700):
//   engine.sock  the engine API (0600)       engine.lock  locked (fcntl) while it runs
//   engine.pid   its pid                     engine.log   its log
//   token        bearer token for TCP (0600)  tls/        cert.pem, key.pem (0600)
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/client.hpp"
#include "engine/engine.hpp"
#include "modhost/result.hpp"

namespace modhost::daemon {

struct Paths {
  std::filesystem::path dir;
  std::filesystem::path socket() const { return dir / "engine.sock"; }
  std::filesystem::path lock() const { return dir / "engine.lock"; }
  std::filesystem::path pid() const { return dir / "engine.pid"; }
  std::filesystem::path log() const { return dir / "engine.log"; }
  std::filesystem::path token() const { return dir / "token"; }
  std::filesystem::path cert() const { return dir / "tls" / "cert.pem"; }
  std::filesystem::path key() const { return dir / "tls" / "key.pem"; }
  std::string address() const { return "unix://" + socket().string(); }
};

Paths default_paths();

// Listen addresses must be tcp://HOST:PORT.
Status check_listen(const std::vector<std::string>& listen);

// Whether something accepts connections on the unix socket (a quick connect,
// no RPC): a socket file nobody listens on is what a crashed engine leaves.
bool socket_answers(const std::filesystem::path& socket);

// The pid of the engine holding the directory's lock, if one does.
std::optional<long> running_pid(const Paths& paths);

struct RunOptions {
  Paths paths;
  std::vector<std::string> listen;  // extra listeners: tcp://HOST:PORT (TLS + token)
  engine::EngineOptions engine;
  std::string version;
  // Called once the engine API answers.
  std::function<void(const std::vector<std::string>& listening)> on_ready;
};

// Runs the engine in this process until SIGTERM or SIGINT. Refuses when
// another engine holds the directory; replaces a stale socket.
Status run(const RunOptions& options);

struct StartOptions {
  Paths paths;
  std::vector<std::string> listen;
  std::vector<std::string> extra_args;  // passed on to `engine run` (backend, log level)
  std::chrono::milliseconds timeout{15000};
};

// Starts `modhost engine run` in the background and waits until it answers;
// returns what it says of itself (pid, addresses). A failure carries the
// last line of its log.
Result<RemoteInfo> start(const std::string& self_exe, const StartOptions& options);

// SIGTERM, then SIGKILL after `grace`; returns the pid stopped.
Result<long> stop(const Paths& paths, std::chrono::milliseconds grace);

// A token and a self-signed certificate for TCP listeners (made once, kept).
Status ensure_credentials(const Paths& paths);

}  // namespace modhost::daemon
