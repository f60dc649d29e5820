// `hello`: echoes its params. The smallest useful module, and the Quick start's.
#include <boost/json.hpp>

#include "modhost/module.hpp"

namespace {

class HelloModule final : public modhost::ExecutableModule {
 public:
  explicit HelloModule(std::string_view load_params) : load_params_(load_params) {}

  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    boost::json::object out;
    out["greeting"] = "hello from modhost";
    out["params"] = params.empty() ? boost::json::value(nullptr) : boost::json::parse(params);
    if (!load_params_.empty()) out["loadParams"] = boost::json::parse(load_params_);
    std::string id = ctx.enclave_id();
    if (!id.empty()) out["enclaveId"] = id;
    return boost::json::serialize(out);
  }

 private:
  std::string load_params_;
};

}  // namespace

MODHOST_MODULE(hello, HelloModule, "1.0.0", "Echoes its execute params as JSON", modhost::ParamsFormat::json)
