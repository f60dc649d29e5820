// The engine daemon's API over its unix socket: one client's round trip
// (Info: the API alone; ListEnclaves: with the Docker engine behind it, next
// to the same list from an engine in this process), 1,000 concurrent clients
// each on its own connection (throughput, p50, p99), and the daemon's RSS
// idle and after the load. Prints a table. Usage: engine_api_bench [CLIENTS]
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.hpp"
#include "engine_api.grpc.pb.h"
#include "support/process_util.hpp"

using Clock = std::chrono::steady_clock;
using modhost::test::run_command;
namespace api = modhost::engine_api;

namespace {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

void must(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "%s failed\n", what.c_str());
    std::exit(1);
  }
}

long rss_kib(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

// A client on its own connection (gRPC shares connections between channels
// with equal arguments; a distinct argument keeps them apart).
std::unique_ptr<api::EngineService::Stub> client(const std::string& target, int id) {
  grpc::ChannelArguments args;
  args.SetInt("modhost.bench_client", id);
  return api::EngineService::NewStub(
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
}

bool info(api::EngineService::Stub& stub) {
  grpc::ClientContext ctx;
  google::protobuf::Empty in;
  api::EngineInfo out;
  return stub.Info(&ctx, in, &out).ok();
}

bool list(api::EngineService::Stub& stub) {
  grpc::ClientContext ctx;
  google::protobuf::Empty in;
  api::EnclaveList out;
  return stub.ListEnclaves(&ctx, in, &out).ok();
}

struct Load {
  double seconds = 0;
  size_t calls = 0;
  size_t failed = 0;
  std::vector<double> latencies_us;
};

Load concurrent(const std::string& target, int clients, int calls_each,
                bool (*call)(api::EngineService::Stub&)) {
  std::vector<std::unique_ptr<api::EngineService::Stub>> stubs;
  for (int i = 0; i < clients; ++i) stubs.push_back(client(target, i));
  for (auto& s : stubs) must(info(*s), "connecting a client");  // connected before the clock starts
  std::vector<std::vector<double>> lat(static_cast<size_t>(clients));
  std::atomic<size_t> failed{0};
  std::barrier start(clients + 1);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      for (int c = 0; c < calls_each; ++c) {
        auto t0 = Clock::now();
        if (!call(*stubs[static_cast<size_t>(i)])) ++failed;
        lat[static_cast<size_t>(i)].push_back(us_since(t0));
      }
    });
  }
  auto t0 = Clock::now();
  start.arrive_and_wait();
  for (auto& t : threads) t.join();
  Load l;
  l.seconds = us_since(t0) / 1e6;
  for (auto& v : lat) l.latencies_us.insert(l.latencies_us.end(), v.begin(), v.end());
  l.calls = l.latencies_us.size();
  l.failed = failed;
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  const int clients = argc > 1 ? std::atoi(argv[1]) : 1000;
  const std::string bin = std::string(MODHOST_BIN_DIR) + "/modhost";
  const std::string dir = "/tmp/modhost-bench-engine-" + std::to_string(::getpid());
  const std::string scope = "bench" + std::to_string(::getpid());
  ::setenv("MODHOST_ENGINE_DIR", dir.c_str(), 1);
  ::setenv("MODHOST_SCOPE", scope.c_str(), 1);
  auto started = run_command({bin, "engine", "start"});
  must(started.exit_code == 0, "engine start: " + started.err);
  long pid = 0;
  std::ifstream(dir + "/engine.pid") >> pid;
  const std::string target = "unix:" + dir + "/engine.sock";
  // A few enclaves, so that a list has something to say.
  for (int i = 0; i < 3; ++i)
    must(run_command({bin, "-H", "unix://" + dir + "/engine.sock", "enclave", "add"}).exit_code == 0,
         "enclave add");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const long rss_idle = rss_kib(pid);

  auto one = client(target, -1);
  std::vector<double> info_us, list_us, local_us;
  for (int i = 0; i < 2000; ++i) {
    auto t0 = Clock::now();
    must(info(*one), "Info");
    info_us.push_back(us_since(t0));
  }
  for (int i = 0; i < 300; ++i) {
    auto t0 = Clock::now();
    must(list(*one), "ListEnclaves");
    list_us.push_back(us_since(t0));
  }
  modhost::engine::EngineOptions eo;
  auto local = modhost::engine::Engine::create(eo);
  must(local.ok(), "engine");
  auto backend = local.value()->backend();
  must(backend.ok(), "backend");
  for (int i = 0; i < 300; ++i) {
    auto t0 = Clock::now();
    must(backend.value()->list_enclaves().ok(), "list_enclaves");
    local_us.push_back(us_since(t0));
  }

  Load info_load = concurrent(target, clients, 20, info);
  const long rss_info = rss_kib(pid);
  Load list_load = concurrent(target, clients, 3, list);
  const long rss_loaded = rss_kib(pid);
  std::this_thread::sleep_for(std::chrono::seconds(8));
  const long rss_after = rss_kib(pid);

  std::printf("| engine API over the unix socket | median | p99 |\n|---|---:|---:|\n");
  std::printf("| Info round trip (the API alone) | %.0f µs | %.0f µs |\n", percentile(info_us, 0.5),
              percentile(info_us, 0.99));
  std::printf("| ListEnclaves through the daemon (3 enclaves) | %.0f µs | %.0f µs |\n",
              percentile(list_us, 0.5), percentile(list_us, 0.99));
  std::printf("| the same list from an engine in the client's process | %.0f µs | %.0f µs |\n",
              percentile(local_us, 0.5), percentile(local_us, 0.99));
  std::printf("| daemon overhead on a list (ratio) | %.2fx | |\n\n",
              percentile(list_us, 0.5) / percentile(local_us, 0.5));
  std::printf(
      "| %d concurrent clients, own connection each | calls | failed | throughput | p50 | p99 |\n"
      "|---|---:|---:|---:|---:|---:|\n",
      clients);
  for (auto [name, l] :
       {std::pair<const char*, Load*>{"Info x20 each", &info_load}, {"ListEnclaves x3 each", &list_load}}) {
    std::printf("| %s | %zu | %zu | %.0f calls/s | %.1f ms | %.1f ms |\n", name, l->calls, l->failed,
                static_cast<double>(l->calls) / l->seconds, percentile(l->latencies_us, 0.5) / 1000,
                percentile(l->latencies_us, 0.99) / 1000);
  }
  std::printf(
      "\n| daemon RSS | MiB |\n|---|---:|\n| idle | %.1f |\n| after %d clients x20 Info | %.1f |\n"
      "| after %d clients x3 ListEnclaves | %.1f |\n| idle again, 8 s later | %.1f |\n",
      rss_idle / 1024.0, clients, rss_info / 1024.0, clients, rss_loaded / 1024.0, rss_after / 1024.0);

  run_command({bin, "clean", "--all"});
  run_command({bin, "engine", "stop"});
  run_command({"/bin/rm", "-rf", dir});
  return 0;
}
