// What network control keeps on the host per enclave: the timeline of
// applies and heals, the namespace pid of each service at the last look, the
// rules each namespace holds; and the small file and thread helpers the
// other parts share.
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/json.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/network_parts.hpp"

namespace modhost::engine::netctl {

namespace json = boost::json;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Status write_file(const fs::path& p, const std::string& content) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out.good()) return Error(ErrorCode::internal, "cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) return Error(ErrorCode::internal, "cannot write " + p.string() + ": " + ec.message());
  return ok_status();
}

int read_pid(const fs::path& p) {
  try {
    return std::stoi(read_file(p));
  } catch (const std::exception&) {
    return 0;
  }
}

bool alive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

std::string last_lines(const std::string& text, int n) {
  std::size_t pos = text.size();
  while (n-- > 0 && pos > 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

Status parallel(std::size_t n, int parallelism, const std::function<Status(std::size_t)>& work) {
  std::vector<Status> results(n, ok_status());
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i = next++; i < n; i = next++) results[i] = work(i);
  };
  std::vector<std::thread> threads;
  const std::size_t k = std::min<std::size_t>(n, static_cast<std::size_t>(std::max(1, parallelism)));
  for (std::size_t t = 1; t < k; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  for (Status& s : results) {
    if (!s.ok()) return s;
  }
  return ok_status();
}

Status State::make_dir(const std::string& enclave_id) const {
  const fs::path d = dir(enclave_id);
  std::error_code ec;
  fs::create_directories(d, ec);
  if (ec) return Error(ErrorCode::failed_precondition, "cannot create " + d.string() + ": " + ec.message());
  ::chmod(d.c_str(), 0700);
  return ok_status();
}

void State::drop(const std::string& enclave_id) const {
  std::error_code ec;
  fs::remove_all(dir(enclave_id), ec);
}

void State::record_event(const std::string& enclave_id, const std::string& action,
                         const std::string& detail) const {
  std::error_code ec;
  fs::create_directories(root_, ec);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::ofstream out(events_file(enclave_id), std::ios::app);
  out << json::serialize(json::object{{"time_ns", ns}, {"action", action}, {"detail", detail}}) << "\n";
}

std::vector<NetworkControl::Event> State::events(const std::string& enclave_id) const {
  std::vector<NetworkControl::Event> out;
  std::ifstream in(events_file(enclave_id));
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) continue;
    const json::object& o = v.as_object();
    if (!o.contains("time_ns") || !o.contains("action")) continue;
    NetworkControl::Event e;
    e.time_ns = o.at("time_ns").to_number<std::int64_t>();
    e.action = std::string(o.at("action").as_string());
    if (const json::value* d = o.if_contains("detail"); d && d->is_string())
      e.detail = std::string(d->as_string());
    out.push_back(std::move(e));
  }
  return out;
}

std::map<std::string, State::KnownPid> State::read_pids(const std::string& enclave_id) const {
  std::map<std::string, KnownPid> out;
  try {
    json::value v = json::parse(read_file(dir(enclave_id) / "pids.json"));
    for (const auto& [name, p] : v.as_object()) {
      out[std::string(name)] = KnownPid{std::string(p.at("id").as_string()),
                                        static_cast<int>(p.at("pid").to_number<std::int64_t>()),
                                        std::string(p.at("start").as_string())};
    }
  } catch (const std::exception&) {
    out.clear();
  }
  return out;
}

void State::write_pids(const std::string& enclave_id, const std::map<std::string, KnownPid>& pids) const {
  json::object o;
  for (const auto& [name, p] : pids) o[name] = json::object{{"id", p.id}, {"pid", p.pid}, {"start", p.start}};
  std::error_code ec;
  fs::create_directories(dir(enclave_id), ec);
  (void)write_file(dir(enclave_id) / "pids.json", json::serialize(o));
}

State::Record State::read_record(const std::string& enclave_id) const {
  Record r;
  try {
    json::value v = json::parse(read_file(dir(enclave_id) / "rules.json"));
    for (const auto& [key, rules] : v.as_object()) r[std::string(key)] = std::string(rules.as_string());
  } catch (const std::exception&) {
    r.clear();
  }
  return r;
}

Status State::write_record(const std::string& enclave_id, const Record& r) const {
  json::object o;
  for (const auto& [key, rules] : r) o[key] = rules;
  return write_file(dir(enclave_id) / "rules.json", json::serialize(o));
}

}  // namespace modhost::engine::netctl
