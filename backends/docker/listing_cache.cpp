#include "backends/docker/listing_cache.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <string_view>
#include <system_error>
#include <utility>

#include "backends/docker/docker_impl.hpp"

namespace modhost::backend::docker {
namespace {

using std::chrono::milliseconds;

// Docker sends some events before the listing shows their change: "die" goes
// out before the engine tears down the container's network and mounts, and
// only then updates what GET /containers/json reads (measured on Docker
// 20.10: up to ~180 ms after "die", up to ~30 ms after the teardown's last
// event). A listing fetched sooner than this after a change is used, not kept.
constexpr milliseconds kSettle{250};
// A listing kept within this of a change is fetched once more after it, in
// case the engine was slower still.
constexpr milliseconds kRecheck{2000};
// Docker flushes the response headers of GET /events before it subscribes;
// events from a moment before the request are sent again, so none falls in
// between. (Whole seconds, and a margin for the engine's clock.)
constexpr std::chrono::seconds kReplay{2};
// Reconnecting after the stream ended: first wait, the most, and how long a
// subscription must have lasted for the next wait to start small again.
constexpr milliseconds kMinBackoff{100};
constexpr milliseconds kMaxBackoff{5000};
constexpr std::chrono::seconds kHealthy{10};
// Over tcp a connection can die without a word (a NAT forgetting it): a
// subscription quiet for this long is made again.
constexpr std::chrono::seconds kTcpIdle{60};

// Container events that change nothing a listing shows.
constexpr std::array<std::string_view, 9> kQuietActions = {
    "attach", "detach", "resize", "top", "archive-path", "extract-to-dir", "export", "commit", "copy"};

}  // namespace

ListingCache::ListingCache(const EngineClient& client, std::string scope, std::shared_ptr<spdlog::logger> log)
    : client_(client), scope_(std::move(scope)), log_(std::move(log)) {}

ListingCache::~ListingCache() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  canceller_.cancel();
  wake_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

void ListingCache::start_locked() {
  if (started_ || stopping_) return;
  started_ = true;
  try {
    watcher_ = std::thread([this] { watch(); });
  } catch (const std::system_error& e) {
    log_->warn("cannot start the Docker event watcher ({}); listings are not cached", e.what());
  }
}

void ListingCache::changed_locked(Clock::time_point now) {
  ++generation_;
  last_change_ = now;
  entries_.clear();
}

std::shared_ptr<const boost::json::value> ListingCache::find(const std::string& key) {
  std::lock_guard lock(mutex_);
  start_locked();
  if (!subscribed_) return nullptr;
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.generation != generation_) return nullptr;
  const auto recheck = last_change_ + kRecheck;
  if (it->second.fetched < recheck && Clock::now() >= recheck) {
    entries_.erase(it);
    return nullptr;
  }
  ++hits_;
  return it->second.value;
}

ListingCache::Ticket ListingCache::ticket() {
  std::lock_guard lock(mutex_);
  Ticket t;
  t.generation = generation_;
  t.started = Clock::now();
  t.storable = subscribed_ && t.started >= last_change_ + kSettle;
  return t;
}

void ListingCache::store(const Ticket& t, const std::string& key,
                         std::shared_ptr<const boost::json::value> value) {
  if (!t.storable) return;
  std::lock_guard lock(mutex_);
  if (stopping_ || !subscribed_ || generation_ != t.generation) return;
  entries_.insert_or_assign(key, Entry{t.generation, t.started, std::move(value)});
}

void ListingCache::note_change() {
  std::lock_guard lock(mutex_);
  changed_locked(Clock::now());
}

ListingCache::Stats ListingCache::stats() const {
  std::lock_guard lock(mutex_);
  return Stats{hits_, subscribed_};
}

void ListingCache::hold_events(bool hold) {
  std::lock_guard lock(mutex_);
  held_ = hold;
  if (!held_ && held_change_) {
    held_change_ = false;
    changed_locked(Clock::now());
  }
}

bool ListingCache::relevant(const boost::json::value& event) const {
  const std::string type = str_at(event, "Type");
  const std::string action = str_at(event, "Action");
  static const json::value kNone;
  const json::value* actor = member(event, "Actor");
  const json::value* attrs = actor != nullptr ? member(*actor, "Attributes") : nullptr;
  auto attribute = [&](std::string_view key) { return str_at(attrs != nullptr ? *attrs : kNone, key); };
  if (type == "container") {
    // Container events carry the container's labels as attributes.
    if (attribute(kLabelApp) != "modhost") return false;
    if (!scope_.empty() && attribute(kLabelScope) != scope_) return false;
    if (action.starts_with("exec_")) return false;
    return std::find(kQuietActions.begin(), kQuietActions.end(), action) == kQuietActions.end();
  }
  if (type == "network") {
    // Network events carry no labels. Joining or leaving a network other than
    // an enclave's changes nothing a listing shows.
    if (action == "connect" || action == "disconnect") return attribute("name").starts_with("modhost-");
    return true;
  }
  // Images: a tag moved away from a container's image makes the container
  // listing show the image id instead.
  return true;
}

void ListingCache::watch() {
  const bool tcp = client_.address().kind == EngineAddress::Kind::tcp;
  // Network events carry no labels, so they cannot be filtered by label here.
  const std::string filters = "filters=" + url_encode(R"({"type":["container","image","network"]})");
  milliseconds backoff = kMinBackoff;
  while (true) {
    const auto since =
        std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()) - kReplay.count();
    const std::string target =
        std::string(kApiPrefix) + "/events?since=" + std::to_string(since) + "&" + filters;
    std::string pending;
    const ChunkSink sink = [this, &pending](std::string_view chunk) {
      pending.append(chunk);
      bool changed = false;
      for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
        boost::system::error_code ec;
        const json::value event = json::parse(std::string_view(pending.data(), nl), ec);
        // A line that cannot be read counts as a change.
        if (ec || relevant(event)) changed = true;
        pending.erase(0, nl + 1);
      }
      if (changed) {
        std::lock_guard lock(mutex_);
        if (held_) {
          held_change_ = true;
        } else {
          changed_locked(Clock::now());
        }
      }
      return true;
    };
    StreamHooks hooks;
    hooks.canceller = &canceller_;
    hooks.on_headers = [this](unsigned status) {
      if (status < 200 || status >= 300) return;
      std::lock_guard lock(mutex_);
      subscribed_ = true;
      ++generation_;
    };
    const auto began = Clock::now();
    auto r = client_.stream(Method::get, target, {}, sink,
                            tcp ? std::optional<milliseconds>(kTcpIdle) : std::nullopt, hooks);
    {
      std::lock_guard lock(mutex_);
      subscribed_ = false;
      ++generation_;
      entries_.clear();
      if (stopping_) return;
    }
    if (Clock::now() - began >= kHealthy) backoff = kMinBackoff;
    const std::string why = !r.ok() ? r.error().message()
                            : !is_2xx(r.value())
                                ? "HTTP " + std::to_string(r->status) + ": " + engine_message(r.value())
                                : std::string("the engine ended it");
    log_->debug("Docker event stream: {}; listings are not cached, subscribing again in {} ms", why,
                backoff.count());
    std::unique_lock lock(mutex_);
    if (wake_.wait_for(lock, backoff, [this] { return stopping_; })) return;
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

}  // namespace modhost::backend::docker
