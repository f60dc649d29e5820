// greeter: a starter module. It greets someone by name and lists the services
// of its enclave, showing what every module uses: JSON params, the
// EnclaveContext, logging through the context, and errors as values.
//
//   load params:    {"greeting": "Hello"}   (optional; given once, at load)
//   execute params: {"name": "Ada"}         (optional; given to every execute)
//   result:         {"message": "Hello, Ada!", "enclaveId": "...",
//                    "services": [{"name": "db", "status": "running"}]}
#include <boost/json.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "modhost/module.hpp"

namespace {

namespace json = boost::json;

// Parses TEXT as a JSON object; empty text is {}. WHAT names it in errors,
// EXAMPLE shows what is expected.
modhost::Result<json::object> parse_object(std::string_view text, std::string_view what,
                                           std::string_view example) {
  if (text.empty()) return json::object();
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec) {
    return modhost::Error(modhost::ErrorCode::invalid_argument,
                          std::string(what) + " are not valid JSON: " + ec.message());
  }
  if (!value.is_object()) {
    return modhost::Error(modhost::ErrorCode::invalid_argument,
                          std::string(what) + " must be a JSON object, e.g. " + std::string(example));
  }
  return std::move(value.as_object());
}

// The string field KEY of OBJECT, or FALLBACK when it is absent or null.
modhost::Result<std::string> string_field(const json::object& object, std::string_view key,
                                          std::string fallback) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_string()) {
    return modhost::Error(modhost::ErrorCode::invalid_argument,
                          "'" + std::string(key) + "' must be a string");
  }
  return std::string(value->as_string());
}

const char* status_name(modhost::ServiceStatus status) {
  switch (status) {
    case modhost::ServiceStatus::created:
      return "created";
    case modhost::ServiceStatus::running:
      return "running";
    case modhost::ServiceStatus::paused:
      return "paused";
    case modhost::ServiceStatus::stopped:
      return "stopped";
    case modhost::ServiceStatus::exited:
      return "exited";
    case modhost::ServiceStatus::unknown:
      break;
  }
  return "unknown";
}

class Greeter final : public modhost::ExecutableModule {
 public:
  // Called once when the module is loaded; an error here fails the load.
  static modhost::Result<std::unique_ptr<modhost::ExecutableModule>> create(std::string_view load_params) {
    MODHOST_ASSIGN_OR_RETURN(json::object params,
                             parse_object(load_params, "load params", R"({"greeting": "Hello"})"));
    MODHOST_ASSIGN_OR_RETURN(std::string greeting, string_field(params, "greeting", "Hello"));
    return std::unique_ptr<modhost::ExecutableModule>(std::make_unique<Greeter>(std::move(greeting)));
  }

  explicit Greeter(std::string greeting) : greeting_(std::move(greeting)) {}

  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    MODHOST_ASSIGN_OR_RETURN(json::object p, parse_object(params, "execute params", R"({"name": "Ada"})"));
    MODHOST_ASSIGN_OR_RETURN(std::string name, string_field(p, "name", "world"));

    json::object out;
    out["message"] = greeting_ + ", " + name + "!";
    const std::string enclave_id = ctx.enclave_id();
    if (enclave_id.empty()) {
      // A plugin run without --enclave-id has no enclave: greet anyway.
      ctx.log(modhost::LogLevel::info, "no enclave: greeting " + name + " without listing services");
      return json::serialize(out);
    }
    out["enclaveId"] = enclave_id;

    auto services = ctx.list_services();
    if (!services.ok()) {
      return services.error().context("failed to list the services of enclave '" + enclave_id + "'");
    }
    json::array listed;
    for (const modhost::ServiceInfo& service : services.value()) {
      listed.push_back(json::object{{"name", service.name}, {"status", status_name(service.status)}});
    }
    ctx.log(modhost::LogLevel::info, "greeting " + name + " in enclave " + enclave_id + " (" +
                                         std::to_string(listed.size()) + " services)");
    out["services"] = std::move(listed);
    return json::serialize(out);
  }

 private:
  std::string greeting_;
};

}  // namespace

// The module's descriptor: name (a C identifier), class, version, description
// and params format. The host reads it before any other code of the module runs.
MODHOST_MODULE(greeter, Greeter, "0.1.0", "Greets someone and lists the services of its enclave",
               modhost::ParamsFormat::json)
