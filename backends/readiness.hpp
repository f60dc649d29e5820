// The readiness wait every backend offers: tcp, http or exec probes with an
// initial delay, retries and an interval, ending early when the service
// exits. Backends give the probes; the loop is one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::backend {

struct ReadinessProbes {
  // The service as it is now.
  std::function<Result<ServiceInfo>()> current;
  // A connection to 127.0.0.1:PORT that a real listener keeps open.
  std::function<Status(std::uint16_t port, std::chrono::milliseconds timeout)> tcp;
  // GET http://127.0.0.1:PORT/PATH: status and body.
  std::function<Result<std::pair<int, std::string>>(std::uint16_t port, const std::string& path,
                                                    std::chrono::milliseconds timeout)>
      http;
  std::function<Result<ExecResult>(const std::vector<std::string>& argv, std::chrono::milliseconds timeout)>
      exec;
  // Debug lines (optional).
  std::function<void(const std::string&)> log;
  // The end of the service's output as one line, for the error when it
  // exits while waited for (optional).
  std::function<std::string()> last_output;
};

// `ctx` names the service in errors; `info` is the service when the wait begins.
Status wait_until_ready(const std::string& ctx, const ReadinessCheck& check, const ServiceInfo& info,
                        const ReadinessProbes& probes);

// Plain-socket probes of 127.0.0.1 (only ever loopback).
Status loopback_tcp_probe(std::uint16_t port, std::chrono::milliseconds timeout);
Result<std::pair<int, std::string>> loopback_http_get(std::uint16_t port, const std::string& path,
                                                      std::chrono::milliseconds timeout);

// One HTTP/1.0 request to 127.0.0.1:PORT: status and body.
struct HttpRequest {
  std::string method = "GET";
  std::string path = "/";
  std::string content_type;  // with a body
  std::string body;
  std::map<std::string, std::string> headers;
  std::size_t max_response_bytes = 16u << 20;
};
Result<std::pair<int, std::string>> loopback_http_request(std::uint16_t port, const HttpRequest& request,
                                                          std::chrono::milliseconds timeout);

}  // namespace modhost::backend
