// Docker-specific behaviour of the Docker backend: the engine connection,
// the multiplexed stream format, labels and names as seen from the engine
// itself, recovery from leftovers only Docker can have, and the listing
// cache that Docker's event stream keeps current.
#include "backends/docker/docker_backend.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <regex>
#include <thread>

#include "backends/docker/http_client.hpp"
#include "backends/docker/mux_stream.hpp"
#include "tests/conformance/backend_factory.hpp"

namespace modhost::testing {
namespace {

namespace json = boost::json;
using backend::DockerBackend;
using backend::DockerOptions;
using backend::EnclaveInfo;
using backend::docker::EngineClient;
using backend::docker::Method;
using backend::docker::StreamDemuxer;
using namespace std::chrono_literals;

using modhost::testing::describe;

// Threads of this process now. A thread just joined may still be listed for a moment.
std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& t : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// Polls `done` every 50 ms until it holds or `limit` passed; true when it held.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
}

std::string frame(int stream, std::string_view payload) {
  std::string f(8, '\0');
  f[0] = static_cast<char>(stream);
  const auto n = static_cast<std::uint32_t>(payload.size());
  f[4] = static_cast<char>(n >> 24);
  f[5] = static_cast<char>(n >> 16);
  f[6] = static_cast<char>(n >> 8);
  f[7] = static_cast<char>(n);
  return f + std::string(payload);
}

// --- No engine needed --------------------------------------------------------

TEST(DockerEngineAddress, DOCKER_UnreachableEngineIsOneClearLine) {
  const std::string sock = "/tmp/modhost-no-engine-" + random_suffix() + ".sock";
  DockerOptions options;
  options.host = "unix://" + sock;
  auto b = DockerBackend::create(options);  // no I/O yet
  ASSERT_OK(b);
  auto ping = b.value()->ping();
  ASSERT_FALSE(ping.ok());
  EXPECT_EQ(ping.error().code(), ErrorCode::unavailable);
  EXPECT_EQ(ping.error().message(),
            "cannot reach the Docker engine at unix://" + sock +
                ": No such file or directory; start it with 'dockerd' (or set DOCKER_HOST)");
  // The first real call says the same.
  auto list = b.value()->list_enclaves();
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error().code(), ErrorCode::unavailable);
  EXPECT_EQ(list.error().message().find('\n'), std::string::npos);
  EXPECT_NE(list.error().message().find("cannot reach the Docker engine at unix://" + sock),
            std::string::npos);
}

TEST(DockerEngineAddress, DOCKER_TcpEngineRefused) {
  DockerOptions options;
  options.host = "tcp://127.0.0.1:1";  // nothing listens on port 1
  auto b = backend::make_docker_backend(options);
  ASSERT_OK(b);
  auto list = b.value()->list_enclaves();
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error().code(), ErrorCode::unavailable);
  EXPECT_NE(
      list.error().message().find("cannot reach the Docker engine at tcp://127.0.0.1:1: Connection refused"),
      std::string::npos)
      << list.error().message();
}

TEST(DockerEngineAddress, DOCKER_HostSyntax) {
  auto unix_addr = backend::docker::parse_engine_address("unix:///run/x.sock");
  ASSERT_OK(unix_addr);
  EXPECT_EQ(unix_addr->path, "/run/x.sock");
  auto tcp = backend::docker::parse_engine_address("tcp://127.0.0.1:2375");
  ASSERT_OK(tcp);
  EXPECT_EQ(tcp->host, "127.0.0.1");
  EXPECT_EQ(tcp->port, "2375");
  for (const char* bad : {"http://x:1", "unix://relative", "tcp://nohost", "tcp://:12"}) {
    auto r = backend::docker::parse_engine_address(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  }
  DockerOptions options;
  options.host = "ftp://nowhere";
  EXPECT_FALSE(DockerBackend::create(options).ok());

  const char* old = std::getenv("DOCKER_HOST");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("DOCKER_HOST", "unix:///tmp/from-env.sock", 1);
  auto from_env = DockerBackend::create(DockerOptions{});
  ASSERT_OK(from_env);
  EXPECT_EQ(from_env.value()->host(), "unix:///tmp/from-env.sock");
  ::unsetenv("DOCKER_HOST");
  auto fallback = DockerBackend::create(DockerOptions{});
  ASSERT_OK(fallback);
  EXPECT_EQ(fallback.value()->host(), "unix:///var/run/docker.sock");
  if (old != nullptr) ::setenv("DOCKER_HOST", saved.c_str(), 1);
}

TEST(DockerEngineAddress, DOCKER_WatcherOfAnUnreachableEngineStopsPromptly) {
  // Counted after the first round: a runtime's own helper threads (a
  // sanitizer's) start with the first thread the process makes.
  std::size_t threads = 0;
  DockerOptions options;
  options.host = "unix:///tmp/modhost-no-engine-" + random_suffix() + ".sock";
  for (int i = 0; i < 4; ++i) {
    auto b = DockerBackend::create(options);
    ASSERT_OK(b);
    // Starts the watcher, which keeps failing to connect and waits between attempts.
    EXPECT_FALSE(b.value()->list_services("e").ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(150 * i));
    EXPECT_FALSE(b.value()->cache_stats().subscribed);
    const auto t0 = std::chrono::steady_clock::now();
    b.value().reset();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "the watcher is not waited out";
    if (i == 0) threads = thread_count();
    EXPECT_TRUE(eventually([&] { return thread_count() <= threads; }, 5s)) << "no thread is left behind";
  }
}

TEST(DockerStreamDemuxer, DOCKER_SplitsFramesFedInAnyPieces) {
  const std::string wire =
      frame(1, "hello ") + frame(2, "err\n") + frame(1, "") + frame(1, std::string(70000, 'x'));
  for (std::size_t piece :
       {std::size_t{1}, std::size_t{3}, std::size_t{8}, std::size_t{9}, std::size_t{4096}, wire.size()}) {
    std::string out;
    std::string err;
    StreamDemuxer d([&](int stream, std::string_view payload) {
      (stream == 2 ? err : out).append(payload);
      return true;
    });
    for (std::size_t i = 0; i < wire.size(); i += piece)
      ASSERT_TRUE(d.feed(std::string_view(wire).substr(i, piece)));
    EXPECT_FALSE(d.incomplete());
    EXPECT_EQ(out, "hello " + std::string(70000, 'x')) << "piece " << piece;
    EXPECT_EQ(err, "err\n");
  }
  StreamDemuxer stopper([](int, std::string_view) { return false; });
  EXPECT_FALSE(stopper.feed(frame(1, "a") + frame(1, "b")));
  StreamDemuxer partial([](int, std::string_view) { return true; });
  EXPECT_TRUE(partial.feed(frame(1, "abc").substr(0, 10)));
  EXPECT_TRUE(partial.incomplete());
}

// --- With an engine ----------------------------------------------------------

class DockerBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tb_ = make_backend_for_test("docker");
    if (!tb_.backend) GTEST_SKIP() << "no Docker engine: " << tb_.skip_reason;
    b_ = dynamic_cast<DockerBackend*>(tb_.backend.get());
    ASSERT_NE(b_, nullptr);
    ASSERT_OK(ensure_test_image(*b_));
    client_ = std::make_unique<EngineClient>(backend::docker::parse_engine_address("").value(), 60s);
  }
  void TearDown() override {
    if (!b_) return;
    for (const auto& id : made_) (void)b_->remove_enclave(id, true);
    auto left = tb_.list_labelled();
    ASSERT_OK(left);
    std::string names;
    for (const auto& l : left.value()) names += "\n  " + l;
    EXPECT_TRUE(left->empty()) << "left behind:" << names;
    tb_.purge();
  }

  EnclaveInfo enclave(const std::string& base) {
    auto e = b_->create_enclave("dt-" + tb_.scope.substr(5) + "-" + base);
    EXPECT_TRUE(e.ok()) << describe(e);
    if (!e.ok()) return {};
    made_.push_back(e->id);
    return e.value();
  }

  json::value get(const std::string& path) {
    auto r = client_->request(Method::get, "/v1.41" + path);
    EXPECT_TRUE(r.ok()) << describe(r);
    if (!r.ok()) return nullptr;
    EXPECT_EQ(r->status, 200u) << path << ": " << r->body;
    return json::parse(r->body);
  }

  // Another backend instance in the same scope: changes it makes are made
  // behind the back of b_.
  std::unique_ptr<DockerBackend> second_backend() {
    DockerOptions options;
    options.scope = tb_.scope;
    auto b = DockerBackend::create(options);
    EXPECT_TRUE(b.ok()) << describe(b);
    return b.ok() ? std::move(b).value() : nullptr;
  }

  // Lists until b_ serves the enclave's services from its cache.
  bool cache_warm(const std::string& enclave_id) {
    return eventually([&] {
      const auto hits = b_->cache_stats().hits;
      auto list = b_->list_services(enclave_id);
      return list.ok() && b_->cache_stats().hits >= hits + 2;  // the enclave and its services
    });
  }

  // The status of service `name` as b_ lists it; nullopt when it is not listed.
  std::optional<ServiceStatus> listed_status(const std::string& enclave_id, const std::string& name) {
    auto list = b_->list_services(enclave_id);
    EXPECT_TRUE(list.ok()) << describe(list);
    if (!list.ok()) return std::nullopt;
    for (const auto& s : list.value()) {
      if (s.name == name) return s.status;
    }
    return std::nullopt;
  }

  static std::string label(const json::value& owner, const char* key) {
    const auto* labels = owner.as_object().if_contains("Labels");
    if (labels == nullptr || !labels->is_object()) return {};
    const auto* v = labels->as_object().if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
  }

  static void expect_common_labels(const json::value& owner, const std::string& kind,
                                   const std::string& enclave, const std::string& name) {
    static const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)");
    EXPECT_EQ(label(owner, backend::kLabelApp), "modhost");
    EXPECT_EQ(label(owner, backend::kLabelKind), kind);
    EXPECT_EQ(label(owner, backend::kLabelEnclave), enclave);
    EXPECT_EQ(label(owner, backend::kLabelName), name);
    EXPECT_TRUE(std::regex_match(label(owner, backend::kLabelCreated), rfc3339))
        << label(owner, backend::kLabelCreated);
  }

  TestBackend tb_;
  DockerBackend* b_ = nullptr;
  std::unique_ptr<EngineClient> client_;
  std::vector<std::string> made_;
};

TEST_F(DockerBackendTest, DOCKER_ResourcesCarryLabelsAndNames) {
  EnclaveInfo e = enclave("labels");
  const json::value net = get("/networks/modhost-" + e.name + "-" + e.id.substr(0, 12));
  expect_common_labels(net, "enclave", e.id, e.name);
  EXPECT_EQ(label(net, backend::kLabelState), "ready");
  EXPECT_EQ(std::string(net.at("Driver").as_string()), "bridge");

  ServiceConfig c = http_service("web");
  c.memory_bytes = 32ull << 20;
  c.cpus = 0.25;
  ASSERT_OK(b_->add_service(e.id, c));
  const json::value ct = get("/containers/modhost-" + e.id.substr(0, 12) + "-web/json");
  expect_common_labels(ct.at("Config"), "service", e.id, "web");
  const auto& host = ct.at("HostConfig");
  EXPECT_EQ(host.at("Memory").to_number<std::int64_t>(), 32ll << 20);
  EXPECT_EQ(host.at("NanoCpus").to_number<std::int64_t>(), 250000000);
  const auto& binding = host.at("PortBindings").at("8080/tcp").as_array().at(0);
  EXPECT_EQ(std::string(binding.at("HostIp").as_string()), "127.0.0.1");
  const auto& endpoint =
      ct.at("NetworkSettings").at("Networks").at("modhost-" + e.name + "-" + e.id.substr(0, 12));
  bool alias = false;
  for (const auto& a : endpoint.at("Aliases").as_array()) alias = alias || a.as_string() == "web";
  EXPECT_TRUE(alias) << "the service name is a DNS alias on the enclave network";

  ASSERT_OK(b_->store_artifact(e.id, "cfg", make_tgz({{"a.txt", "a\n"}})));
  const json::value data = get("/volumes/modhost-" + e.id.substr(0, 12) + "-artifact-cfg");
  expect_common_labels(data, "artifact", e.id, "cfg");
  EXPECT_FALSE(label(data, "io.modhost.size").empty());
  const json::value tgz = get("/volumes/modhost-" + e.id.substr(0, 12) + "-artifact_tgz-cfg");
  expect_common_labels(tgz, "artifact", e.id, "cfg");

  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_F(DockerBackendTest, DOCKER_NetworkNamespacePidIsTheServicesNamespace) {
  EnclaveInfo e = enclave("netns");
  ASSERT_OK(b_->add_service(e.id, idle_service("box")));
  auto pid = b_->network_namespace_pid(e.id, "box");
  ASSERT_OK(pid);
  ASSERT_TRUE(pid->has_value());
  EXPECT_GT(**pid, 1);
  std::error_code ec;
  const auto theirs = std::filesystem::read_symlink("/proc/" + std::to_string(**pid) + "/ns/net", ec);
  if (!ec) {
    EXPECT_NE(theirs, std::filesystem::read_symlink("/proc/self/ns/net"))
        << "the service has its own namespace";
  }
  ASSERT_OK(b_->stop_service(e.id, "box", 1));
  auto stopped = b_->network_namespace_pid(e.id, "box");
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().code(), ErrorCode::failed_precondition);
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_F(DockerBackendTest, DOCKER_OrphansAndHalfStoredArtifactsAreRecovered) {
  // A container and a volume whose enclave no longer exists, and half of an
  // artifact in a live enclave, as a crash would leave them.
  EnclaveInfo e = enclave("orphans");
  const std::string gone = random_suffix(32);
  json::object labels{{backend::kLabelApp, "modhost"},
                      {backend::kLabelKind, "service"},
                      {backend::kLabelEnclave, gone},
                      {backend::kLabelName, "lost"},
                      {backend::kLabelCreated, "2020-01-01T00:00:00Z"},
                      {backend::kLabelScope, tb_.scope}};
  json::object body{{"Image", kTestImage}, {"Cmd", json::array{"true"}}, {"Labels", labels}};
  auto made =
      client_->request(Method::post, "/v1.41/containers/create?name=modhost-" + gone.substr(0, 12) + "-lost",
                       json::serialize(body));
  ASSERT_OK(made);
  ASSERT_EQ(made->status, 201u) << made->body;
  labels[backend::kLabelKind] = "artifact";
  auto vol =
      client_->request(Method::post, "/v1.41/volumes/create",
                       json::serialize(json::object{{"Name", "modhost-" + gone.substr(0, 12) + "-artifact-x"},
                                                    {"Labels", labels}}));
  ASSERT_OK(vol);
  labels[backend::kLabelEnclave] = e.id;
  labels[backend::kLabelName] = "half";
  labels["io.modhost.role"] = "data";
  auto half = client_->request(
      Method::post, "/v1.41/volumes/create",
      json::serialize(
          json::object{{"Name", "modhost-" + e.id.substr(0, 12) + "-artifact-half"}, {"Labels", labels}}));
  ASSERT_OK(half);

  auto found = b_->recover();
  ASSERT_OK(found);
  std::string all;
  for (const auto& f : found.value()) all += f + "\n";
  EXPECT_EQ(found->size(), 3u) << all;
  EXPECT_NE(all.find("orphan container"), std::string::npos) << all;
  EXPECT_NE(all.find("orphan volume"), std::string::npos) << all;
  EXPECT_NE(all.find("half-made files artifact 'half'"), std::string::npos) << all;
  auto listed = b_->list_artifacts(e.id);
  ASSERT_OK(listed);
  EXPECT_TRUE(listed->empty()) << "a half-stored artifact is not listed";

  // The enclave is empty (not running), so clean(false) takes it too.
  auto report = b_->clean(false);
  ASSERT_OK(report);
  EXPECT_EQ(report->removed.size(), 4u);
  auto after = b_->recover();
  ASSERT_OK(after);
  EXPECT_TRUE(after->empty());
}

TEST_F(DockerBackendTest, DOCKER_ScopesDoNotSeeEachOther) {
  EnclaveInfo e = enclave("scoped");
  TestBackend other = make_backend_for_test("docker");
  ASSERT_TRUE(other.backend);
  auto list = other.backend->list_enclaves();
  ASSERT_OK(list);
  for (const auto& x : list.value()) EXPECT_NE(x.id, e.id);
  auto report = other.backend->clean(true);
  ASSERT_OK(report);
  EXPECT_TRUE(b_->find_enclave(e.id).ok()) << "another scope's clean must not touch this enclave";
  ASSERT_OK(b_->remove_enclave(e.id, false));
}

// --- The listing cache --------------------------------------------------------

TEST_F(DockerBackendTest, DOCKER_ACancelledStreamEndsAtOnce) {
  backend::docker::StreamCanceller canceller;
  std::atomic<unsigned> status{0};
  backend::docker::StreamHooks hooks;
  hooks.canceller = &canceller;
  hooks.on_headers = [&status](unsigned s) { status = s; };
  std::optional<Result<backend::docker::HttpResponse>> result;
  // A quiet stream: nothing happens in this scope.
  const std::string target =
      "/v1.41/events?filters=" +
      backend::docker::url_encode(R"({"label":["io.modhost.scope=)" + tb_.scope + R"("]})");
  std::thread reader([&] {
    result = client_->stream(
        Method::get, target, {}, [](std::string_view) { return true; }, std::nullopt, hooks);
  });
  EXPECT_TRUE(eventually([&] { return status.load() != 0; }));
  EXPECT_EQ(status.load(), 200u);
  const auto t0 = std::chrono::steady_clock::now();
  canceller.cancel();
  reader.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  ASSERT_TRUE(result.has_value());
  ASSERT_FALSE(result->ok());
  EXPECT_EQ(result->error().code(), ErrorCode::cancelled) << result->error().message();
  // Cancelled before it starts: no connection at all.
  status = 0;
  auto again = client_->stream(
      Method::get, target, {}, [](std::string_view) { return true; }, std::nullopt, hooks);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::cancelled);
  EXPECT_EQ(status.load(), 0u);
}

TEST_F(DockerBackendTest, DOCKER_CacheSeesChangesMadeBehindItsBack) {
  EnclaveInfo e = enclave("cache-ext");
  ASSERT_OK(b_->add_service(e.id, idle_service("a")));
  ASSERT_OK(b_->add_service(e.id, idle_service("b")));
  ASSERT_OK(b_->add_service(e.id, idle_service("c")));
  auto other = second_backend();
  ASSERT_NE(other, nullptr);

  // Stopped by another backend instance.
  ASSERT_TRUE(cache_warm(e.id));
  ASSERT_OK(other->stop_service(e.id, "a", 0));
  EXPECT_TRUE(eventually([&] { return listed_status(e.id, "a") == ServiceStatus::exited; }));

  // Killed and removed with the Docker API directly.
  ASSERT_TRUE(cache_warm(e.id));
  const std::string prefix = "/v1.41/containers/modhost-" + e.id.substr(0, 12);
  auto killed = client_->request(Method::post, prefix + "-b/kill");
  ASSERT_OK(killed);
  ASSERT_EQ(killed->status, 204u) << killed->body;
  EXPECT_TRUE(eventually([&] { return listed_status(e.id, "b") == ServiceStatus::exited; }));
  ASSERT_TRUE(cache_warm(e.id));
  auto removed = client_->request(Method::del, prefix + "-c?force=1");
  ASSERT_OK(removed);
  ASSERT_EQ(removed->status, 204u) << removed->body;
  EXPECT_TRUE(eventually([&] { return !listed_status(e.id, "c").has_value(); }));

  // Enclaves made and removed elsewhere: the cached enclave listing follows.
  ASSERT_TRUE(cache_warm(e.id));
  auto made = other->create_enclave("dt-" + tb_.scope.substr(5) + "-cache-new");
  ASSERT_OK(made);
  made_.push_back(made->id);
  EXPECT_TRUE(eventually([&] { return b_->list_services(made->id).ok(); }));
  ASSERT_TRUE(cache_warm(made->id));
  ASSERT_OK(other->remove_enclave(made->id, true));
  EXPECT_TRUE(eventually([&] {
    auto r = b_->list_services(made->id);
    return !r.ok() && r.error().code() == ErrorCode::not_found;
  }));
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_F(DockerBackendTest, DOCKER_CacheSeesItsOwnChangesAtOnce) {
  EnclaveInfo e = enclave("cache-own");
  ASSERT_OK(b_->add_service(e.id, idle_service("a")));
  struct Step {
    const char* what;
    std::function<Status()> act;
    std::optional<ServiceStatus> expected;
  };
  const std::vector<Step> steps = {
      {"stop", [&] { return b_->stop_service(e.id, "a", 0); }, ServiceStatus::exited},
      {"start", [&] { return b_->start_service(e.id, "a"); }, ServiceStatus::running},
      {"pause", [&] { return b_->pause_service(e.id, "a"); }, ServiceStatus::paused},
      {"unpause", [&] { return b_->unpause_service(e.id, "a"); }, ServiceStatus::running},
      {"restart", [&] { return b_->restart_service(e.id, "a"); }, ServiceStatus::running},
      {"remove", [&] { return b_->remove_service(e.id, "a"); }, std::nullopt},
      {"add",
       [&]() -> Status {
         auto added = b_->add_service(e.id, idle_service("a"));
         if (!added.ok()) return added.error();
         return ok_status();
       },
       ServiceStatus::running},
  };
  // Docker's events about these changes come late: what the next listing
  // shows is the backend's own doing.
  b_->hold_events_for_tests(true);
  for (const auto& step : steps) {
    ASSERT_TRUE(cache_warm(e.id)) << step.what;
    ASSERT_OK(step.act());
    // No waiting: the very next listing shows it.
    EXPECT_EQ(listed_status(e.id, "a"), step.expected) << step.what;
    if (step.expected) {
      auto inspected = b_->inspect_service(e.id, "a");
      ASSERT_OK(inspected);
      EXPECT_EQ(inspected->status, *step.expected) << step.what;
    }
  }
  // The enclave goes the same way.
  ASSERT_TRUE(cache_warm(e.id));
  ASSERT_OK(b_->remove_enclave(e.id, true));
  auto gone = b_->list_services(e.id);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code(), ErrorCode::not_found);
  b_->hold_events_for_tests(false);
}

TEST_F(DockerBackendTest, DOCKER_CacheServesRepeatedListsWithoutTheEngine) {
  EnclaveInfo e = enclave("cache-hits");
  ASSERT_OK(b_->add_service(e.id, idle_service("a")));
  ASSERT_OK(b_->add_service(e.id, idle_service("b")));
  ASSERT_TRUE(cache_warm(e.id));
  auto first = b_->list_services(e.id);
  ASSERT_OK(first);
  ASSERT_EQ(first->size(), 2u);
  // A run of lists without one request to the engine. (Retried: any
  // modhost network or image event on this engine, another test's
  // included, makes the cache fetch again.)
  EXPECT_TRUE(eventually([&] {
    const auto before = b_->cache_stats();
    for (int i = 0; i < 20; ++i) {
      auto list = b_->list_services(e.id);
      EXPECT_TRUE(list.ok()) << describe(list);
      if (!list.ok() || list->size() != first->size()) return false;
      for (std::size_t k = 0; k < list->size(); ++k) {
        EXPECT_EQ((*list)[k].id, (*first)[k].id);
        EXPECT_EQ((*list)[k].status, (*first)[k].status);
        EXPECT_EQ((*list)[k].ip, (*first)[k].ip);
      }
      auto found = b_->find_enclave(e.id);
      EXPECT_TRUE(found.ok()) << describe(found);
    }
    const auto after = b_->cache_stats();
    EXPECT_TRUE(after.subscribed);
    return after.engine_calls == before.engine_calls && after.hits >= before.hits + 60;
  }));
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_F(DockerBackendTest, DOCKER_InspectFromTheCacheMatchesTheEngine) {
  EnclaveInfo e = enclave("cache-inspect");
  ServiceConfig web = http_service("web");
  web.labels = {{"team", "cache"}};
  ASSERT_OK(b_->add_service(e.id, web));
  ASSERT_OK(b_->add_service(e.id, idle_service("held")));
  ASSERT_OK(b_->pause_service(e.id, "held"));
  ServiceConfig quits = idle_service("quits");
  quits.entrypoint = {"/bin/sh"};
  quits.cmd = {"-c", "sleep 1; exit 3"};
  ASSERT_OK(b_->add_service(e.id, quits));
  ASSERT_TRUE(eventually([&] { return listed_status(e.id, "quits") == ServiceStatus::exited; }));
  // An inspect through another instance always asks the engine: it never lists.
  auto other = second_backend();
  ASSERT_NE(other, nullptr);
  for (const std::string name : {"web", "held", "quits"}) {
    ASSERT_TRUE(cache_warm(e.id));
    const auto before = b_->cache_stats();
    auto cached = b_->inspect_service(e.id, name);
    const auto after = b_->cache_stats();
    auto engine = other->inspect_service(e.id, name);
    ASSERT_OK(cached);
    ASSERT_OK(engine);
    EXPECT_EQ(after.engine_calls, before.engine_calls) << name << " is served from the listing";
    EXPECT_EQ(cached->name, engine->name);
    EXPECT_EQ(cached->id, engine->id);
    EXPECT_EQ(cached->enclave_id, engine->enclave_id);
    EXPECT_EQ(cached->image, engine->image);
    EXPECT_EQ(cached->status, engine->status) << name;
    EXPECT_EQ(cached->ip, engine->ip) << name;
    EXPECT_EQ(cached->labels, engine->labels) << name;
    EXPECT_EQ(cached->exit_code, engine->exit_code) << name;
    ASSERT_EQ(cached->ports.size(), engine->ports.size()) << name;
    for (std::size_t i = 0; i < cached->ports.size(); ++i) {
      EXPECT_EQ(cached->ports[i].port.name, engine->ports[i].port.name);
      EXPECT_EQ(cached->ports[i].port.number, engine->ports[i].port.number);
      EXPECT_EQ(cached->ports[i].host_ip, engine->ports[i].host_ip);
      EXPECT_EQ(cached->ports[i].host_port, engine->ports[i].host_port);
    }
  }
  auto quit = b_->inspect_service(e.id, "quits");
  ASSERT_OK(quit);
  EXPECT_EQ(quit->exit_code, 3);
  // Not in the listing: an inspect says so, as before.
  auto missing = b_->inspect_service(e.id, "nobody");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::not_found);
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_F(DockerBackendTest, DOCKER_CacheIsSharedByManyThreads) {
  EnclaveInfo e = enclave("cache-threads");
  ASSERT_OK(b_->add_service(e.id, idle_service("a")));
  ASSERT_OK(b_->add_service(e.id, idle_service("b")));
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!done) {
        auto list = b_->list_services(e.id);
        auto one = b_->inspect_service(e.id, "b");
        auto found = b_->find_enclave(e.id);
        if (!list.ok() || list->size() != 2 || !one.ok() || !found.ok()) ++failures;
      }
    });
  }
  for (int round = 0; round < 3; ++round) {
    ASSERT_OK(b_->stop_service(e.id, "a", 0));
    EXPECT_EQ(listed_status(e.id, "a"), ServiceStatus::exited);
    ASSERT_OK(b_->start_service(e.id, "a"));
    EXPECT_EQ(listed_status(e.id, "a"), ServiceStatus::running);
    EXPECT_TRUE(cache_warm(e.id));
  }
  done = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(b_->cache_stats().hits, 0u);
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

TEST_F(DockerBackendTest, DOCKER_DestroyingTheBackendStopsItsWatcherPromptly) {
  EnclaveInfo e = enclave("cache-stop");
  ASSERT_OK(b_->add_service(e.id, idle_service("a")));
  const std::size_t threads = thread_count();
  for (int i = 0; i < 5; ++i) {
    auto b = second_backend();
    ASSERT_NE(b, nullptr);
    ASSERT_OK(b->list_services(e.id));
    ASSERT_TRUE(eventually([&] { return b->cache_stats().subscribed; }));
    const auto t0 = std::chrono::steady_clock::now();
    b.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "the watcher's quiet stream is not waited out";
    EXPECT_TRUE(eventually([&] { return thread_count() <= threads; }, 5s)) << "no thread is left behind";
  }
  ASSERT_OK(b_->remove_enclave(e.id, true));
}

// Not assertions: the numbers go to the test log and the XML report.
TEST_F(DockerBackendTest, DOCKER_Timings) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  auto t0 = Clock::now();
  EnclaveInfo e = enclave("timing");
  auto t1 = Clock::now();
  ServiceConfig c;
  c.name = "box";
  c.image = kTestImage;
  c.entrypoint = {"/bin/sleep"};
  c.cmd = {"100000"};
  ASSERT_OK(b_->add_service(e.id, c));
  auto t2 = Clock::now();
  ASSERT_OK(b_->exec(e.id, "box", {"true"}));
  auto t3 = Clock::now();
  ASSERT_OK(b_->store_artifact(e.id, "f", make_tgz({{"f.txt", "x"}})));
  auto t4 = Clock::now();
  ASSERT_OK(b_->download_artifact(e.id, "f"));
  auto t5 = Clock::now();
  ASSERT_OK(b_->remove_enclave(e.id, true));
  auto t6 = Clock::now();
  RecordProperty("create_enclave_ms", std::to_string(ms(t1 - t0)));
  RecordProperty("add_service_ms", std::to_string(ms(t2 - t1)));
  RecordProperty("exec_ms", std::to_string(ms(t3 - t2)));
  RecordProperty("store_artifact_ms", std::to_string(ms(t4 - t3)));
  RecordProperty("download_artifact_ms", std::to_string(ms(t5 - t4)));
  RecordProperty("remove_enclave_ms", std::to_string(ms(t6 - t5)));
  std::printf(
      "create_enclave %lld ms, add_service (to running, incl. %lld ms startup check) %lld ms, exec %lld ms, "
      "store_artifact %lld ms, download_artifact %lld ms, remove_enclave (1 service, 1 artifact) %lld ms\n",
      static_cast<long long>(ms(t1 - t0)), static_cast<long long>(200), static_cast<long long>(ms(t2 - t1)),
      static_cast<long long>(ms(t3 - t2)), static_cast<long long>(ms(t4 - t3)),
      static_cast<long long>(ms(t5 - t4)), static_cast<long long>(ms(t6 - t5)));
}

}  // namespace
}  // namespace modhost::testing
