// What the conformance suite needs from each backend: a way to make one for a
// test, to see every resource the test labelled, and to fake a crash. Add a
// backend by teaching make_backend_for_test() its name.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.hpp"
#include "backends/net.hpp"
#include "modhost/result.hpp"

namespace modhost::testing {

// "ok", or the error's message: for assertion output.
template <class T>
std::string describe(const Result<T>& r) {
  return r.ok() ? "ok" : r.error().message();
}

// The busybox image every test service runs (sh, nc, httpd, cat, sleep, ...,
// and udp-echo PORT; /www/index.html holds kTestIndexBody).
inline constexpr const char* kTestImage = "modhost-test/busybox:5";
inline constexpr const char* kTestIndexBody = "modhost conformance index page\n";

struct TestBackend {
  std::unique_ptr<backend::Backend> backend;
  // Non-empty when the backend cannot run here (no engine): the test skips with it.
  std::string skip_reason;
  // Every resource the test makes carries this scope; the backend sees nothing else.
  std::string scope;
  // Every resource labelled with the scope, whatever its state, as "kind name".
  std::function<Result<std::vector<std::string>>()> list_labelled;
  // Removes everything labelled with the scope without going through the backend.
  std::function<void()> purge;
  // Simulates a crash in the middle of create_enclave(name): the enclave's
  // resource exists with its labels but was never marked ready.
  std::function<Status(const std::string& name)> make_half_made_enclave;
};

// "docker" (the native backend joins later). Never fails: an unusable
// backend comes back with skip_reason set.
TestBackend make_backend_for_test(const std::string& name);

// Builds the busybox test image in memory (TarWriter + write_docker_archive,
// /bin/busybox from busybox-static) and loads it through the backend, once.
Status ensure_test_image(backend::Backend& b);

// busybox httpd on 8080 serving /www, published.
inline ServiceConfig http_service(const std::string& name) {
  ServiceConfig c;
  c.name = name;
  c.image = kTestImage;
  c.entrypoint = {"/bin/httpd"};
  c.cmd = {"-f", "-p", "8080", "-h", "/www"};
  c.ports = {PortSpec{"http", 8080, "tcp"}};
  return c;
}

// A long-running service: PID 1 sleeps, the test pokes it with exec.
inline ServiceConfig idle_service(const std::string& name) {
  ServiceConfig c;
  c.name = name;
  c.image = kTestImage;
  c.entrypoint = {"/bin/sleep"};
  c.cmd = {"100000"};
  return c;
}

// A short random hex string for unique names.
std::string random_suffix(std::size_t chars = 8);

// GET http://127.0.0.1:PORT/PATH with plain sockets: the whole response (status line, headers, body).
Result<std::string> http_get_loopback(std::uint16_t port, const std::string& path);

using backend::ip_in_subnet;  // backends/net.hpp

// A .tgz of the given files ({path, content}); directories are made as needed.
std::string make_tgz(const std::vector<std::pair<std::string, std::string>>& files);

}  // namespace modhost::testing

// Asserts a Result or Status is ok, printing its error otherwise.
#define ASSERT_OK(expr)                                                         \
  do {                                                                          \
    const auto& modhost_ok_ = (expr);                                           \
    ASSERT_TRUE(modhost_ok_.ok()) << ::modhost::testing::describe(modhost_ok_); \
  } while (false)
