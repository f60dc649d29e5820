// modhost-datastore: a small HTTP/1.1 key-value store, the standard service
// of modhost's tests and examples. Plain POSIX sockets, one thread per
// connection, keep-alive, bounded requests, SIGTERM exits 0.
//
//   GET    /health     200 "ok"
//   GET    /kv         200 JSON array of keys
//   GET    /kv/<key>   200 value, or 404
//   PUT    /kv/<key>   201 (new) or 200 (replaced); body is the value
//   DELETE /kv/<key>   204, or 404
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

namespace {

constexpr std::size_t kMaxBody = 1024 * 1024;  // larger bodies get 413
constexpr std::size_t kMaxHeader = 16 * 1024;  // larger request heads get 431
constexpr int kMaxConnections = 512;           // more concurrent connections get 503
constexpr int kIdleTimeoutSeconds = 30;

int g_signal_pipe[2] = {-1, -1};
std::atomic<int> g_connections{0};

std::mutex g_store_mutex;
std::map<std::string, std::string> g_store;

std::mutex g_log_mutex;

void on_signal(int) {
  const char c = 1;
  // Nothing to do if the pipe is full: one byte is enough to wake the loop.
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &c, 1);
}

void log_request(const std::string& peer, std::string_view method, std::string_view target, int status,
                 std::size_t bytes) {
  std::lock_guard lock(g_log_mutex);
  std::printf("%s \"%.*s %.*s\" %d %zu\n", peer.c_str(), static_cast<int>(method.size()), method.data(),
              static_cast<int>(target.size()), target.data(), status, bytes);
  std::fflush(stdout);
}

std::string_view reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain";
  std::string extra_headers;
};

bool send_response(int fd, const Response& r, bool keep_alive, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reason(r.status)) + "\r\n";
  if (r.status != 204) {
    out += "Content-Type: " + r.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  }
  out += r.extra_headers;
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!head_only && r.status != 204) out += r.body;
  return send_all(fd, out);
}

Response text(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  if (!r.body.empty() && r.body.back() != '\n' && status >= 400) r.body += '\n';
  return r;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc() || p != s.data() + i + 3) return std::nullopt;
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

Response handle(std::string_view method, std::string_view target, std::string body) {
  std::string_view path = target.substr(0, target.find('?'));
  const bool get = method == "GET" || method == "HEAD";
  if (path == "/health") {
    if (!get) return Response{405, "method not allowed\n", "text/plain", "Allow: GET, HEAD\r\n"};
    return text(200, "ok");
  }
  if (path == "/kv" || path == "/kv/") {
    if (!get) return Response{405, "method not allowed\n", "text/plain", "Allow: GET, HEAD\r\n"};
    std::string out = "[";
    {
      std::lock_guard lock(g_store_mutex);
      for (const auto& [k, v] : g_store) {
        if (out.size() > 1) out += ",";
        out += json_string(k);
      }
    }
    out += "]";
    return Response{200, std::move(out), "application/json", {}};
  }
  if (path.starts_with("/kv/")) {
    const auto key = percent_decode(path.substr(4));
    if (!key || key->empty()) return text(400, "bad key");
    std::lock_guard lock(g_store_mutex);
    if (get) {
      auto it = g_store.find(*key);
      if (it == g_store.end()) return text(404, "no such key");
      return Response{200, it->second, "application/octet-stream", {}};
    }
    if (method == "PUT" || method == "POST") {
      const bool existed = g_store.count(*key) > 0;
      g_store[*key] = std::move(body);
      return text(existed ? 200 : 201, "");
    }
    if (method == "DELETE") {
      if (g_store.erase(*key) == 0) return text(404, "no such key");
      return text(204, "");
    }
    return Response{405, "method not allowed\n", "text/plain", "Allow: GET, HEAD, PUT, POST, DELETE\r\n"};
  }
  return text(404, "not found");
}

void serve(int fd, std::string peer) {
  std::string buf;
  char chunk[16 * 1024];
  // Reads until BUF holds at least N bytes; false on EOF, error or timeout.
  auto fill = [&](std::size_t n) {
    while (buf.size() < n) {
      const ssize_t got = recv(fd, chunk, sizeof(chunk), 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      buf.append(chunk, static_cast<std::size_t>(got));
    }
    return true;
  };
  while (true) {
    std::size_t head_end;
    while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (buf.size() > kMaxHeader) {
        send_response(fd, text(431, "request head too large"), false, false);
        log_request(peer, "-", "-", 431, 0);
        close(fd);
        return;
      }
      if (!fill(buf.size() + 1)) {
        close(fd);
        return;
      }
    }
    if (head_end > kMaxHeader) {
      send_response(fd, text(431, "request head too large"), false, false);
      log_request(peer, "-", "-", 431, 0);
      close(fd);
      return;
    }
    const std::string head = buf.substr(0, head_end);
    buf.erase(0, head_end + 4);

    const std::size_t line_end = head.find("\r\n");
    const std::string_view line = std::string_view(head).substr(0, line_end);
    const std::size_t sp1 = line.find(' ');
    const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) {
      send_response(fd, text(400, "malformed request line"), false, false);
      log_request(peer, "-", "-", 400, 0);
      close(fd);
      return;
    }
    const std::string method(line.substr(0, sp1));
    const std::string target(line.substr(sp1 + 1, sp2 - sp1 - 1));
    const std::string_view version = line.substr(sp2 + 1);
    auto fail = [&](int status, std::string msg) {
      send_response(fd, text(status, std::move(msg)), false, false);
      log_request(peer, method, target, status, 0);
      close(fd);
    };
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return fail(505, "only HTTP/1.0 and HTTP/1.1");

    bool keep_alive = version == "HTTP/1.1";
    std::optional<std::size_t> content_length;
    bool chunked = false;
    std::string_view rest =
        line_end == std::string::npos ? std::string_view() : std::string_view(head).substr(line_end + 2);
    while (!rest.empty()) {
      const std::size_t eol = rest.find("\r\n");
      const std::string_view h = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
      const std::size_t colon = h.find(':');
      if (colon == std::string_view::npos) return fail(400, "malformed header line");
      const std::string name = lower(trim(h.substr(0, colon)));
      const std::string value = lower(trim(h.substr(colon + 1)));
      if (name == "content-length") {
        std::size_t n = 0;
        auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec == std::errc::result_out_of_range) return fail(413, "body larger than 1 MiB");
        if (ec != std::errc() || p != value.data() + value.size()) return fail(400, "bad Content-Length");
        if (content_length && *content_length != n) return fail(400, "conflicting Content-Length headers");
        content_length = n;
      } else if (name == "transfer-encoding") {
        chunked = value != "identity";
      } else if (name == "connection") {
        if (value.find("close") != std::string::npos) keep_alive = false;
        if (value.find("keep-alive") != std::string::npos) keep_alive = true;
      }
    }
    if (chunked) return fail(411, "chunked bodies are not supported; send Content-Length");
    const std::size_t length = content_length.value_or(0);
    if (length > kMaxBody) return fail(413, "body larger than 1 MiB");
    if (!fill(length)) return fail(400, "body shorter than Content-Length");
    std::string body = buf.substr(0, length);
    buf.erase(0, length);

    const Response r = handle(method, target, std::move(body));
    const bool ok = send_response(fd, r, keep_alive, method == "HEAD");
    log_request(peer, method, target, r.status, r.status == 204 ? 0 : r.body.size());
    if (!ok || !keep_alive) break;
  }
  close(fd);
}

void usage(const char* argv0) {
  std::fprintf(
      stderr, "usage: %s [--port PORT]\n  an HTTP key-value store listening on 0.0.0.0:PORT (default 1323)\n",
      argv0);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 1323;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    std::string_view value;
    if (arg == "--port" && i + 1 < argc) {
      value = argv[++i];
    } else if (arg.starts_with("--port=")) {
      value = arg.substr(7);
    } else if (arg == "-h" || arg == "--help") {
      usage(argv[0]);
      return 0;
    } else {
      std::fprintf(stderr, "modhost-datastore: unknown argument '%s'\n", argv[i]);
      usage(argv[0]);
      return 2;
    }
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
    if (ec != std::errc() || p != value.data() + value.size() || port < 1 || port > 65535) {
      std::fprintf(stderr, "modhost-datastore: --port needs a number from 1 to 65535, got '%.*s'\n",
                   static_cast<int>(value.size()), value.data());
      return 2;
    }
  }

  if (pipe(g_signal_pipe) != 0) {
    std::perror("modhost-datastore: pipe");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) {
    std::perror("modhost-datastore: socket");
    return 1;
  }
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::fprintf(stderr, "modhost-datastore: cannot listen on 0.0.0.0:%d: %s\n", port, std::strerror(errno));
    return 1;
  }
  if (listen(listener, 128) != 0) {
    std::perror("modhost-datastore: listen");
    return 1;
  }
  std::printf("modhost-datastore listening on 0.0.0.0:%d\n", port);
  std::fflush(stdout);

  while (true) {
    pollfd fds[2] = {{listener, POLLIN, 0}, {g_signal_pipe[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("modhost-datastore: poll");
      return 1;
    }
    if (fds[1].revents != 0) break;
    if ((fds[0].revents & POLLIN) == 0) continue;
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    const int fd = accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;  // EINTR, ECONNABORTED, EMFILE...: try again
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
    std::string peer_name = std::string(ip) + ":" + std::to_string(ntohs(peer.sin_port));
    timeval tv{kIdleTimeoutSeconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (g_connections.fetch_add(1) >= kMaxConnections) {
      g_connections.fetch_sub(1);
      send_response(fd, text(503, "too many connections"), false, false);
      log_request(peer_name, "-", "-", 503, 0);
      close(fd);
      continue;
    }
    try {
      std::thread([fd, peer_name = std::move(peer_name)]() mutable {
        serve(fd, std::move(peer_name));
        g_connections.fetch_sub(1);
      }).detach();
    } catch (const std::system_error&) {
      g_connections.fetch_sub(1);
      send_response(fd, text(503, "cannot start a thread"), false, false);
      close(fd);
    }
  }
  std::printf("modhost-datastore: signal received, exiting\n");
  std::fflush(stdout);
  close(listener);
  // Connection threads are detached; _exit does not wait for them.
  std::_Exit(0);
}
