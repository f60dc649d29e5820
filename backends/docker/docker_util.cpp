#include <algorithm>
#include <ctime>
#include <random>

#include "backends/docker/docker_impl.hpp"

namespace modhost::backend::docker {

const json::value* member(const json::value& v, std::string_view key) {
  const json::object* o = v.if_object();
  if (o == nullptr) return nullptr;
  return o->if_contains(key);
}

std::string str_at(const json::value& v, std::string_view key) {
  const json::value* m = member(v, key);
  if (m == nullptr) return {};
  if (const json::string* s = m->if_string()) return std::string(*s);
  return {};
}

std::int64_t int_at(const json::value& v, std::string_view key, std::int64_t fallback) {
  const json::value* m = member(v, key);
  if (m == nullptr) return fallback;
  if (const std::int64_t* i = m->if_int64()) return *i;
  if (const std::uint64_t* u = m->if_uint64()) return static_cast<std::int64_t>(*u);
  if (const double* d = m->if_double()) return static_cast<std::int64_t>(*d);
  return fallback;
}

bool bool_at(const json::value& v, std::string_view key) {
  const json::value* m = member(v, key);
  if (m == nullptr) return false;
  if (const bool* b = m->if_bool()) return *b;
  return false;
}

std::string label_of(const json::value& owner, std::string_view key) {
  const json::value* labels = member(owner, "Labels");
  if (labels == nullptr) return {};
  return str_at(*labels, key);
}

Result<json::value> parse_json(std::string_view body, std::string_view what) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    return Error(ErrorCode::unavailable,
                 "the Docker engine sent bad JSON for " + std::string(what) + ": " + ec.message());
  }
  return v;
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) {
  std::tm tm{};
  const std::string copy(s);
  const char* end = strptime(copy.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return std::nullopt;
  const std::time_t t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return std::chrono::system_clock::from_time_t(t);
}

std::string short_id(std::string_view enclave_id) { return std::string(enclave_id.substr(0, 12)); }

std::string engine_message(const HttpResponse& r) {
  if (!r.body.empty()) {
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (!ec) {
      std::string m = str_at(v, "message");
      if (!m.empty()) return m;
    }
    std::string body = r.body;
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' '))
      body.pop_back();
    if (!body.empty()) return body;
  }
  return "the Docker engine answered HTTP " + std::to_string(r.status);
}

Error engine_error(const HttpResponse& r, std::string_view context, ErrorCode conflict) {
  ErrorCode code = ErrorCode::failed_precondition;
  if (r.status == 404) {
    code = ErrorCode::not_found;
  } else if (r.status == 409) {
    code = conflict;
  } else if (r.status == 400) {
    code = ErrorCode::invalid_argument;
  } else if (r.status == 503) {
    code = ErrorCode::unavailable;
  }
  std::string msg = engine_message(r);
  if (context.empty()) return Error(code, std::move(msg));
  return Error(code, std::string(context) + ": " + msg);
}

bool valid_reference(std::string_view ref) {
  if (ref.empty() || ref.size() > 255) return false;
  return std::all_of(ref.begin(), ref.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '/' || c == ':' || c == '@';
  });
}

std::string artifact_volume(std::string_view enclave_id, std::string_view name) {
  return "modhost-" + short_id(enclave_id) + "-artifact-" + std::string(name);
}

std::string artifact_tgz_volume(std::string_view enclave_id, std::string_view name) {
  return "modhost-" + short_id(enclave_id) + "-artifact_tgz-" + std::string(name);
}

}  // namespace modhost::backend::docker
