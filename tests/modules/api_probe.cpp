// Test module: performs one enclave API operation named in its params and
// returns what it got, so tests can check what a module can and cannot reach.
//   {"op": "list"}                      -> {"services": ["a", "b"]}
//   {"op": "inspect", "service": "x"}   -> {"name": "x", "ip": "..."}
//   {"op": "bench", "calls": N, "call": "list"|"log"}
//                                       -> {"medianMicros": M} over N calls
//   {"op": "compose", "module": "builtin:hello", "params": "{...}"}
//                                       -> {"inner": RESULT} of that module run by the host
//   {"op": "artifact", "service": "x", "path": "/p", "name": "n"}
//                                       -> {"bytes": N}: stored from the service, downloaded back
#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <vector>

#include "modhost/module.hpp"

namespace {

class ApiProbe final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    auto v = boost::json::parse(params).as_object();
    std::string op(v.at("op").as_string());
    if (op == "list") {
      auto list = ctx.list_services();
      if (!list.ok()) return list.error();
      boost::json::array names;
      for (const auto& s : list.value()) names.push_back(boost::json::string(s.name));
      return boost::json::serialize(boost::json::object{{"services", names}});
    }
    if (op == "inspect") {
      auto s = ctx.inspect_service(std::string(v.at("service").as_string()));
      if (!s.ok()) return s.error();
      return boost::json::serialize(boost::json::object{{"name", s->name}, {"ip", s->ip}});
    }
    if (op == "bench") {
      std::vector<double> micros;
      bool log = v.contains("call") && v.at("call").as_string() == "log";
      for (std::int64_t i = 0; i < v.at("calls").as_int64(); ++i) {
        auto t0 = std::chrono::steady_clock::now();
        if (log) {
          ctx.log(modhost::LogLevel::trace, "bench");
        } else {
          auto list = ctx.list_services();
          if (!list.ok()) return list.error();
        }
        micros.push_back(
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(micros.begin(), micros.end());
      return boost::json::serialize(boost::json::object{{"medianMicros", micros[micros.size() / 2]}});
    }
    if (op == "compose") {
      auto r = ctx.execute_module(std::string(v.at("module").as_string()), "",
                                  std::string(v.at("params").as_string()));
      if (!r.ok()) return r.error();
      return boost::json::serialize(boost::json::object{{"inner", r.value()}});
    }
    if (op == "artifact") {
      const std::string name(v.at("name").as_string());
      if (auto s = ctx.store_from_service(std::string(v.at("service").as_string()),
                                          std::string(v.at("path").as_string()), name);
          !s.ok()) {
        return s.error();
      }
      auto tgz = ctx.download_artifact(name);
      if (!tgz.ok()) return tgz.error();
      return boost::json::serialize(boost::json::object{{"bytes", tgz->size()}});
    }
    return modhost::Error(modhost::ErrorCode::invalid_argument, "unknown op '" + op + "'");
  }
};

}  // namespace

MODHOST_MODULE(api_probe, ApiProbe, "0.0.1", "Calls the enclave API as told", modhost::ParamsFormat::json)
