// The C++ SDK for driving modhost from a program or a test suite: enclaves as
// RAII handles, their services, and the built-in chaos, partition and
// mutation modules with typed options.
//
//   auto client = modhost::Client::embedded();          // the engine in this process
//   (or Client::connect("unix:///run/modhost/engine/engine.sock"), or
//   Client::from_environment(): $MODHOST_HOST when set, else embedded)
//   auto enclave = client->create_enclave("quorum");    // removed when it goes out of scope
//   enclave->add_service({.name = "db", .image = "modhost/datastore:0.1.0"});
//   enclave->partition({.partitions = {{"db", {"db"}}}, .default_connection = {.blocked = true}});
//   enclave->heal();
//
// Heavy headers (gRPC, Boost) stay out of here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/partitioning.hpp"
#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost {

// Params of the built-in chaos module (docs/modules/chaos.md).
struct ChaosOptions {
  std::string action = "kill";  // kill | stop | pause | restart | remove
  std::vector<std::string> services;
  std::string regex;
  std::map<std::string, std::string> labels;
  std::optional<int> signal;
  std::optional<int> grace_seconds;
  std::optional<double> pause_seconds;
  std::optional<std::uint64_t> count;
  std::optional<double> percentage;
  std::optional<double> interval_seconds;
  std::optional<double> duration_seconds;
  std::optional<std::uint64_t> repeat;
  std::optional<std::uint64_t> seed;
  bool dry_run = false;

  std::string to_json() const;
};

// Params of the built-in partition module (docs/modules/partition.md).
struct PartitionOptions {
  std::map<std::string, std::vector<std::string>> partitions;
  std::vector<PartitionConnection> connections;
  Connection default_connection;
  std::optional<double> duration_seconds;
  bool dry_run = false;

  std::string to_json() const;
};

// Params of the built-in mutation module (docs/modules/mutation.md); build
// one with the named constructors.
struct MutationOptions {
  static MutationOptions exec(std::vector<std::string> services, std::vector<std::string> command);
  static MutationOptions write_file(std::vector<std::string> services, std::string path, std::string content);
  static MutationOptions set_env(std::vector<std::string> services, std::map<std::string, std::string> env);
  static MutationOptions scale(std::string service, int replicas);

  std::string json;  // the params as the module takes them
};

// A Starlark package or script run against an enclave (`modhost run`).
struct StarlarkOptions {
  std::string args_json = "{}";  // the run's args, a JSON object
  std::string main_file = "main.star";
  std::string main_function = "run";
  std::vector<std::string> package_dirs;  // where other packages are found
  bool dry_run = false;
  int parallelism = 4;
};

struct StarlarkResult {
  std::string output_json;  // what run() returned, as JSON ("null" for None)
  std::size_t executed = 0;
  std::size_t skipped = 0;  // applied by an earlier run of the same plan
  // One line per instruction and per result, as `modhost run` prints them.
  std::vector<std::string> log;
};

class Client;

// An enclave. Removed (with everything in it) when the handle is destroyed,
// unless released.
class Enclave {
 public:
  Enclave(Enclave&&) noexcept;
  Enclave& operator=(Enclave&&) noexcept;
  Enclave(const Enclave&) = delete;
  Enclave& operator=(const Enclave&) = delete;
  ~Enclave();

  const std::string& id() const;
  const std::string& name() const;
  const std::string& subnet() const;

  Result<ServiceInfo> add_service(const ServiceConfig& config);
  Status remove_service(std::string_view name);
  Result<ServiceInfo> service(std::string_view name);
  Result<std::vector<ServiceInfo>> services();
  Result<ExecResult> exec(std::string_view service, const std::vector<std::string>& argv);
  Status wait_ready(std::string_view service, const ReadinessCheck& check);
  Result<std::string> logs(std::string_view service);

  // Runs a module (builtin:NAME, a .so path, or an image) against this
  // enclave; returns its result.
  Result<std::string> run_module(std::string_view module, std::string_view execute_params);
  Result<std::string> chaos(const ChaosOptions& options);
  Result<std::string> partition(const PartitionOptions& options);
  Status heal();
  Result<std::string> mutate(const MutationOptions& options);

  // Runs a Starlark package (a folder with kurtosis.yml) or a .star script
  // against this enclave: interpreted, validated as a whole, then executed.
  // An error names the instruction's position (main.star:LINE:COL).
  Result<StarlarkResult> run_starlark(const std::string& path, const StarlarkOptions& options = {});

  // Writes each service's inspect data and logs under `dir`.
  Status dump(const std::string& dir);

  // Keeps the enclave when the handle goes.
  void release();

 private:
  friend class Client;
  struct State;
  explicit Enclave(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

struct ClientOptions {
  std::string backend = "auto";
  // Confines the client to resources labelled with this scope (as MODHOST_SCOPE does).
  std::string scope;
  // The engine's log lines at this level and above go to stderr.
  LogLevel log_level = LogLevel::warn;
};

// How to reach an engine daemon over TCP (a unix socket needs neither).
struct ConnectOptions {
  std::string tls_ca_file;  // the engine's tls/cert.pem
  std::string token;        // the engine's token
};

class Client {
 public:
  // An engine in this process, on the default backend.
  static Result<Client> embedded(const ClientOptions& options = {});
  // The engine daemon at ADDRESS (unix:///PATH or tcp://HOST:PORT): the same
  // operations over the engine API. Its backend and scope are the daemon's.
  static Result<Client> connect(const std::string& address, const ConnectOptions& options = {});
  // $MODHOST_HOST (with $MODHOST_TLS_CA and $MODHOST_TOKEN) when set, else
  // an engine in this process.
  static Result<Client> from_environment(const ClientOptions& options = {});

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // Connects the backend; the error says how to make one available.
  Status ping();
  Result<Enclave> create_enclave(std::string_view name = "");
  // An existing enclave, not owned: the handle does not remove it.
  Result<Enclave> open_enclave(std::string_view id_or_name);

  struct Impl;  // opaque; shared with the enclaves a client made

 private:
  explicit Client(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace modhost
