// Listings of the backend's own resources (the enclave networks, an enclave's
// containers) kept for as long as Docker's event stream says nothing they
// show has changed. Internal to the Docker backend; no Beast/Asio here.
//
// A watcher thread, started by the first find(), follows GET /events. Each
// relevant event, each change made through the backend (note_change()) and
// each (re)subscription bumps a generation; a listing is stored with the
// generation read before it was fetched and served only while that is still
// the generation and the watcher is subscribed.
#pragma once

#include <boost/json/fwd.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "backends/docker/http_client.hpp"

namespace spdlog {
class logger;
}

namespace modhost::backend::docker {

class ListingCache {
 public:
  using Clock = std::chrono::steady_clock;

  // No I/O: the watcher starts with the first find().
  ListingCache(const EngineClient& client, std::string scope, std::shared_ptr<spdlog::logger> log);
  // Stops the watcher (its connection is shut down, not waited out) and joins it.
  ~ListingCache();
  ListingCache(const ListingCache&) = delete;
  ListingCache& operator=(const ListingCache&) = delete;

  // Taken before a fetch, handed to store() after it.
  struct Ticket {
    std::uint64_t generation = 0;
    Clock::time_point started;
    bool storable = false;
  };

  // The listing stored under `key` (the request path) if it is still current; null otherwise.
  std::shared_ptr<const boost::json::value> find(const std::string& key);
  Ticket ticket();
  // Keeps `value` unless something changed since `t` was taken.
  void store(const Ticket& t, const std::string& key, std::shared_ptr<const boost::json::value> value);
  // A change made through the backend: every listing is stale from now on.
  void note_change();

  struct Stats {
    std::uint64_t hits = 0;
    bool subscribed = false;
  };
  Stats stats() const;
  // For tests: while held, events change nothing until released, as if they were late.
  void hold_events(bool hold);

 private:
  struct Entry {
    std::uint64_t generation = 0;
    Clock::time_point fetched;
    std::shared_ptr<const boost::json::value> value;
  };

  void start_locked();
  void changed_locked(Clock::time_point now);
  void watch();
  bool relevant(const boost::json::value& event) const;

  const EngineClient& client_;
  const std::string scope_;
  std::shared_ptr<spdlog::logger> log_;
  StreamCanceller canceller_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool started_ = false;
  bool stopping_ = false;
  bool subscribed_ = false;
  std::uint64_t generation_ = 0;
  Clock::time_point last_change_{};
  std::uint64_t hits_ = 0;
  bool held_ = false;
  bool held_change_ = false;
  std::map<std::string, Entry, std::less<>> entries_;
  std::thread watcher_;
};

}  // namespace modhost::backend::docker
