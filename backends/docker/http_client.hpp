// HTTP/1.1 over the Docker engine's socket (unix or tcp), and the two probes
// readiness checks send to 127.0.0.1. Internal to the Docker backend; the
// Beast/Asio types stay in http_client.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "modhost/result.hpp"

namespace modhost::backend::docker {

enum class Method { get, head, post, put, del };

struct HttpResponse {
  unsigned status = 0;
  std::string body;  // empty when the body went to a ChunkSink
  std::string content_type;
};

// Called with each piece of a streamed response body; return false to stop reading.
using ChunkSink = std::function<bool(std::string_view chunk)>;

// Ends a stream() from another thread: cancel() shuts its connection down, so
// a read blocked on a quiet stream returns at once, and any later stream()
// given this canceller returns before it connects. One stream at a time.
class StreamCanceller {
 public:
  StreamCanceller() = default;
  StreamCanceller(const StreamCanceller&) = delete;
  StreamCanceller& operator=(const StreamCanceller&) = delete;

  void cancel();
  bool cancelled() const;

  // For EngineClient: the running stream's way to interrupt its own I/O.
  // attach() returns false when cancel() came first.
  bool attach(std::function<void()> interrupt);
  void detach();

 private:
  mutable std::mutex mutex_;
  bool cancelled_ = false;
  std::function<void()> interrupt_;
};

// What a long-lived stream (an event subscription) may add to stream().
struct StreamHooks {
  // Called once the response headers arrived, with the status, before any of the body.
  std::function<void(unsigned status)> on_headers;
  // Not null: cancel() on it ends the stream with ErrorCode::cancelled.
  StreamCanceller* canceller = nullptr;
};

// Where the engine listens: "unix:///path" or "tcp://HOST:PORT".
struct EngineAddress {
  enum class Kind { unix_socket, tcp } kind = Kind::unix_socket;
  std::string path;  // unix
  std::string host;  // tcp
  std::string port;  // tcp
  std::string url;   // as given, for messages
};

// Parses DOCKER_HOST syntax. Empty -> $DOCKER_HOST, else unix:///var/run/docker.sock.
Result<EngineAddress> parse_engine_address(std::string_view host);

// One request per connection: thread-safe, no shared I/O state.
class EngineClient {
 public:
  explicit EngineClient(EngineAddress address, std::chrono::milliseconds default_timeout);

  const EngineAddress& address() const { return address_; }

  // Sends a request and reads the whole response. `timeout` bounds each I/O step; nullopt = default.
  Result<HttpResponse> request(Method method, std::string_view target, std::string_view body = {},
                               std::string_view content_type = "application/json",
                               std::optional<std::chrono::milliseconds> timeout = std::nullopt) const;

  // Like request(), but a 2xx body goes to `sink` piece by piece as it arrives (chunked,
  // content-length or read-until-close). A non-2xx body is collected into the response.
  // `idle_timeout`: nullopt = wait for data forever (log follow).
  Result<HttpResponse> stream(Method method, std::string_view target, std::string_view body,
                              const ChunkSink& sink, std::optional<std::chrono::milliseconds> idle_timeout,
                              const StreamHooks& hooks = {}) const;

  // Sends the file at `path` as the request body without reading it into memory.
  Result<HttpResponse> upload_file(Method method, std::string_view target, const std::string& path,
                                   std::string_view content_type) const;

  // The one-line message for a failed connection.
  std::string unreachable_message(std::string_view reason) const;

 private:
  EngineAddress address_;
  std::chrono::milliseconds default_timeout_;
};

// GET http://127.0.0.1:PORT/PATH. Only ever 127.0.0.1: probes of published ports.
Result<HttpResponse> local_http_get(std::uint16_t port, std::string_view path,
                                    std::chrono::milliseconds timeout);

// Connects to 127.0.0.1:PORT and checks the connection stays open briefly: Docker's
// port proxy accepts every connection and closes it at once when nothing listens
// inside the container, so a bare connect proves nothing.
Status local_tcp_probe(std::uint16_t port, std::chrono::milliseconds timeout);

// Percent-encodes a query value or path segment.
std::string url_encode(std::string_view s);

}  // namespace modhost::backend::docker
