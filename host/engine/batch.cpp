#include "engine/batch.hpp"

#include <atomic>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

namespace modhost::engine {

Result<std::vector<ServiceInfo>> add_services(backend::Backend& backend, const std::string& enclave_id,
                                              const std::vector<ServiceConfig>& configs, int parallelism) {
  std::set<std::string> names;
  for (const auto& c : configs) {
    if (!names.insert(c.name).second) {
      return Error(ErrorCode::invalid_argument, "service '" + c.name + "' appears twice in one batch");
    }
  }
  std::vector<std::optional<ServiceInfo>> added(configs.size());
  std::optional<Error> first_error;
  std::mutex mutex;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};

  auto worker = [&] {
    while (!failed.load()) {
      size_t i = next.fetch_add(1);
      if (i >= configs.size()) return;
      Result<ServiceInfo> r = backend.add_service(enclave_id, configs[i]);
      std::lock_guard lock(mutex);
      if (r.ok()) {
        added[i] = std::move(r).value();
      } else if (!first_error) {
        first_error = std::move(r).error();
        failed = true;
      }
    }
  };
  size_t threads =
      std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(std::max(parallelism, 1)), configs.size()));
  std::vector<std::thread> pool;
  for (size_t t = 0; t + 1 < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();

  if (first_error) {
    for (const auto& a : added) {
      if (a) (void)backend.remove_service(enclave_id, a->name);
    }
    return first_error->context("batch of " + std::to_string(configs.size()) + " services rolled back");
  }
  std::vector<ServiceInfo> out;
  for (auto& a : added) out.push_back(std::move(*a));
  return out;
}

}  // namespace modhost::engine
