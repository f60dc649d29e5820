#include "backends/docker/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/file.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/file_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cstdlib>
#include <limits>
#include <utility>
#include <variant>
#include <vector>

namespace modhost::backend::docker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::system::error_code;
using std::chrono::milliseconds;

constexpr std::size_t kReadChunk = 64 * 1024;

http::verb to_verb(Method m) {
  switch (m) {
    case Method::get:
      return http::verb::get;
    case Method::head:
      return http::verb::head;
    case Method::post:
      return http::verb::post;
    case Method::put:
      return http::verb::put;
    case Method::del:
      return http::verb::delete_;
  }
  return http::verb::get;
}

// One connection with its own io_context: each operation is started
// asynchronously (so basic_stream's timeouts apply) and run to completion.
template <class Protocol>
struct Connection {
  asio::io_context ioc;
  beast::basic_stream<Protocol> stream{ioc};
  beast::flat_buffer buffer;

  void expire(std::optional<milliseconds> timeout) {
    if (timeout) {
      stream.expires_after(*timeout);
    } else {
      stream.expires_never();
    }
  }

  template <class Start>
  error_code run(Start&& start) {
    error_code result;
    bool done = false;
    start([&result, &done](error_code ec, auto&&...) {
      result = ec;
      done = true;
    });
    ioc.restart();
    ioc.run();
    if (!done) result = asio::error::operation_aborted;
    return result;
  }

  void close() {
    error_code ignored;
    stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
  }
};

// What a failed step turns into: the caller decides the words.
struct Failure {
  enum class Step { connect, exchange } step;
  error_code ec;
};

template <class Protocol, class ReqBody>
std::variant<HttpResponse, Failure> exchange(Connection<Protocol>& conn, http::request<ReqBody>& req,
                                             const ChunkSink* sink, std::optional<milliseconds> timeout,
                                             const StreamHooks* hooks) {
  conn.expire(timeout);
  error_code ec = conn.run([&](auto handler) { http::async_write(conn.stream, req, std::move(handler)); });
  if (ec) return Failure{Failure::Step::exchange, ec};

  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  if (req.method() == http::verb::head) parser.skip(true);
  conn.expire(timeout);
  ec = conn.run(
      [&](auto handler) { http::async_read_header(conn.stream, conn.buffer, parser, std::move(handler)); });
  if (ec) return Failure{Failure::Step::exchange, ec};

  HttpResponse out;
  out.status = parser.get().result_int();
  out.content_type = std::string(parser.get()[http::field::content_type]);
  if (hooks != nullptr && hooks->on_headers) hooks->on_headers(out.status);
  const bool to_sink = sink != nullptr && out.status >= 200 && out.status < 300;
  std::vector<char> buf(kReadChunk);
  while (!parser.is_done()) {
    parser.get().body().data = buf.data();
    parser.get().body().size = buf.size();
    conn.expire(timeout);
    // read_some: hand over what arrived (a followed log line) instead of waiting for a full buffer.
    ec = conn.run(
        [&](auto handler) { http::async_read_some(conn.stream, conn.buffer, parser, std::move(handler)); });
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return Failure{Failure::Step::exchange, ec};
    const std::size_t n = buf.size() - parser.get().body().size;
    if (n == 0) continue;
    if (to_sink) {
      if (!(*sink)(std::string_view(buf.data(), n))) {
        conn.close();
        return out;
      }
    } else {
      out.body.append(buf.data(), n);
    }
  }
  error_code ignored;
  conn.stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
  return out;
}

template <class Protocol>
error_code connect(Connection<Protocol>& conn, const EngineAddress& address, milliseconds timeout) {
  conn.expire(timeout);
  if constexpr (std::is_same_v<Protocol, asio::local::stream_protocol>) {
    typename Protocol::endpoint ep(address.path);
    return conn.run([&](auto handler) { conn.stream.async_connect(ep, std::move(handler)); });
  } else {
    asio::ip::tcp::resolver resolver(conn.ioc);
    error_code ec;
    auto results = resolver.resolve(address.host, address.port, ec);
    if (ec) return ec;
    return conn.run([&](auto handler) { conn.stream.async_connect(results, std::move(handler)); });
  }
}

std::string describe(const error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  return ec.message();
}

// Connects and exchanges on one connection that a canceller, if given, can interrupt.
template <class Protocol, class ReqBody>
std::variant<HttpResponse, Failure> connect_and_exchange(const EngineAddress& address,
                                                         http::request<ReqBody>& req, const ChunkSink* sink,
                                                         std::optional<milliseconds> io_timeout,
                                                         milliseconds connect_timeout,
                                                         const StreamHooks* hooks) {
  Connection<Protocol> conn;
  StreamCanceller* canceller = hooks != nullptr ? hooks->canceller : nullptr;
  // The close runs on the connection's own io_context, between or during its
  // steps: the socket is never touched from two threads at once.
  if (canceller != nullptr &&
      !canceller->attach([&conn] { asio::post(conn.ioc, [&conn] { conn.close(); }); })) {
    return Failure{Failure::Step::exchange, asio::error::operation_aborted};
  }
  // Detached before `conn` goes: no close is posted to a dead io_context.
  struct Detach {
    StreamCanceller* canceller;
    ~Detach() {
      if (canceller != nullptr) canceller->detach();
    }
  } detach{canceller};
  if (auto ec = connect(conn, address, connect_timeout)) return Failure{Failure::Step::connect, ec};
  return exchange(conn, req, sink, io_timeout, hooks);
}

template <class ReqBody>
Result<HttpResponse> perform(const EngineClient& client, http::request<ReqBody>& req, const ChunkSink* sink,
                             std::optional<milliseconds> io_timeout, milliseconds connect_timeout,
                             const StreamHooks* hooks = nullptr) {
  const EngineAddress& address = client.address();
  auto finish = [&](std::variant<HttpResponse, Failure> r) -> Result<HttpResponse> {
    if (hooks != nullptr && hooks->canceller != nullptr && hooks->canceller->cancelled()) {
      return Error(ErrorCode::cancelled,
                   std::string(req.method_string()) + " " + std::string(req.target()) + " was cancelled");
    }
    if (auto* resp = std::get_if<HttpResponse>(&r)) return std::move(*resp);
    const Failure& f = std::get<Failure>(r);
    if (f.step == Failure::Step::connect) {
      return Error(ErrorCode::unavailable, client.unreachable_message(describe(f.ec)));
    }
    std::string what = std::string(req.method_string()) + " " + std::string(req.target());
    if (f.ec == beast::error::timeout) {
      return Error(ErrorCode::timeout,
                   "the Docker engine at " + address.url + " did not answer in time (" + what + ")");
    }
    return Error(ErrorCode::unavailable, "lost the connection to the Docker engine at " + address.url +
                                             " during " + what + ": " + describe(f.ec));
  };
  if (address.kind == EngineAddress::Kind::unix_socket) {
    return finish(connect_and_exchange<asio::local::stream_protocol>(address, req, sink, io_timeout,
                                                                     connect_timeout, hooks));
  }
  return finish(connect_and_exchange<asio::ip::tcp>(address, req, sink, io_timeout, connect_timeout, hooks));
}

template <class ReqBody>
void prepare(http::request<ReqBody>& req, const EngineAddress& address, std::string_view content_type) {
  req.set(http::field::host, address.kind == EngineAddress::Kind::tcp ? address.host + ":" + address.port
                                                                      : std::string("docker"));
  req.set(http::field::user_agent, "modhost");
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
}

constexpr milliseconds kConnectTimeout{5000};

}  // namespace

Result<EngineAddress> parse_engine_address(std::string_view host) {
  std::string value(host);
  if (value.empty()) {
    const char* env = std::getenv("DOCKER_HOST");
    value = (env != nullptr && *env != '\0') ? env : "unix:///var/run/docker.sock";
  }
  EngineAddress out;
  out.url = value;
  constexpr std::string_view kUnix = "unix://";
  constexpr std::string_view kTcp = "tcp://";
  std::string_view v = value;
  if (v.starts_with(kUnix)) {
    out.kind = EngineAddress::Kind::unix_socket;
    out.path = std::string(v.substr(kUnix.size()));
    if (out.path.empty() || out.path.front() != '/') {
      return Error(ErrorCode::invalid_argument,
                   "bad Docker host '" + value + "': a unix socket needs an absolute path (unix:///path)");
    }
    return out;
  }
  if (v.starts_with(kTcp)) {
    out.kind = EngineAddress::Kind::tcp;
    std::string_view rest = v.substr(kTcp.size());
    if (auto slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
      return Error(ErrorCode::invalid_argument, "bad Docker host '" + value + "': use tcp://HOST:PORT");
    }
    out.host = std::string(rest.substr(0, colon));
    out.port = std::string(rest.substr(colon + 1));
    if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']') {
      out.host = out.host.substr(1, out.host.size() - 2);
    }
    return out;
  }
  return Error(ErrorCode::invalid_argument,
               "unsupported Docker host '" + value + "': use unix:///path or tcp://HOST:PORT");
}

EngineClient::EngineClient(EngineAddress address, milliseconds default_timeout)
    : address_(std::move(address)), default_timeout_(default_timeout) {}

std::string EngineClient::unreachable_message(std::string_view reason) const {
  return "cannot reach the Docker engine at " + address_.url + ": " + std::string(reason) +
         "; start it with 'dockerd' (or set DOCKER_HOST)";
}

Result<HttpResponse> EngineClient::request(Method method, std::string_view target, std::string_view body,
                                           std::string_view content_type,
                                           std::optional<milliseconds> timeout) const {
  http::request<http::string_body> req{to_verb(method), target, 11};
  prepare(req, address_, body.empty() ? std::string_view{} : content_type);
  req.body() = std::string(body);
  req.prepare_payload();
  return perform(*this, req, nullptr, timeout.value_or(default_timeout_), kConnectTimeout);
}

Result<HttpResponse> EngineClient::stream(Method method, std::string_view target, std::string_view body,
                                          const ChunkSink& sink, std::optional<milliseconds> idle_timeout,
                                          const StreamHooks& hooks) const {
  http::request<http::string_body> req{to_verb(method), target, 11};
  prepare(req, address_, body.empty() ? std::string_view{} : std::string_view("application/json"));
  req.body() = std::string(body);
  req.prepare_payload();
  return perform(*this, req, &sink, idle_timeout, kConnectTimeout, &hooks);
}

void StreamCanceller::cancel() {
  std::lock_guard lock(mutex_);
  cancelled_ = true;
  if (interrupt_) interrupt_();
}

bool StreamCanceller::cancelled() const {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

bool StreamCanceller::attach(std::function<void()> interrupt) {
  std::lock_guard lock(mutex_);
  if (cancelled_) return false;
  interrupt_ = std::move(interrupt);
  return true;
}

void StreamCanceller::detach() {
  std::lock_guard lock(mutex_);
  interrupt_ = nullptr;
}

Result<HttpResponse> EngineClient::upload_file(Method method, std::string_view target,
                                               const std::string& path, std::string_view content_type) const {
  http::request<http::file_body> req{to_verb(method), target, 11};
  prepare(req, address_, content_type);
  error_code ec;
  req.body().open(path.c_str(), beast::file_mode::scan, ec);
  if (ec) {
    return Error(ec == boost::system::errc::no_such_file_or_directory ? ErrorCode::not_found
                                                                      : ErrorCode::invalid_argument,
                 "cannot open '" + path + "': " + ec.message());
  }
  req.prepare_payload();
  return perform(*this, req, nullptr, default_timeout_, kConnectTimeout);
}

Result<HttpResponse> local_http_get(std::uint16_t port, std::string_view path, milliseconds timeout) {
  const std::string where = "127.0.0.1:" + std::to_string(port);
  Connection<asio::ip::tcp> conn;
  conn.expire(timeout);
  asio::ip::tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), port);
  if (auto ec = conn.run([&](auto handler) { conn.stream.async_connect(ep, std::move(handler)); })) {
    return Error(ErrorCode::unavailable, "cannot connect to " + where + ": " + describe(ec));
  }
  http::request<http::empty_body> req{http::verb::get, path.empty() ? std::string_view("/") : path, 11};
  req.set(http::field::host, where);
  req.set(http::field::user_agent, "modhost-probe");
  req.set(http::field::connection, "close");
  auto r = exchange(conn, req, nullptr, timeout, nullptr);
  if (auto* resp = std::get_if<HttpResponse>(&r)) return std::move(*resp);
  const Failure& f = std::get<Failure>(r);
  return Error(f.ec == beast::error::timeout ? ErrorCode::timeout : ErrorCode::unavailable,
               "GET http://" + where + std::string(path) + ": " + describe(f.ec));
}

Status local_tcp_probe(std::uint16_t port, milliseconds timeout) {
  const std::string where = "127.0.0.1:" + std::to_string(port);
  Connection<asio::ip::tcp> conn;
  const auto start = std::chrono::steady_clock::now();
  conn.expire(timeout);
  asio::ip::tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), port);
  if (auto ec = conn.run([&](auto handler) { conn.stream.async_connect(ep, std::move(handler)); })) {
    return Error(ErrorCode::unavailable, "cannot connect to " + where + ": " + describe(ec));
  }
  // Docker's userland proxy closes an accepted connection at once when the
  // container refuses it; a connection still open after a short while (or one
  // that delivers data) has a real listener behind it.
  const auto spent = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  const milliseconds linger = std::max(milliseconds(50), std::min(milliseconds(300), timeout - spent));
  conn.expire(linger);
  char byte = 0;
  error_code ec = conn.run(
      [&](auto handler) { conn.stream.async_read_some(asio::buffer(&byte, 1), std::move(handler)); });
  if (!ec || ec == beast::error::timeout) {
    conn.close();
    return ok_status();
  }
  return Error(ErrorCode::unavailable, where + " accepted the connection and closed it at once (" +
                                           describe(ec) +
                                           "): nothing listens on the port inside the service yet");
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

}  // namespace modhost::backend::docker
