// `datastore_army`: starts N datastore services in its enclave.
//   execute params: {"numDatastores": N}
//   result:         {"createdServiceIdsToPortIds": {"datastore-0": "http", ...}}
// Built as a plugin, a built-in and the image modhost/datastore_army-module.
#include <boost/json.hpp>

#include "modhost/module.hpp"

namespace {

constexpr const char* kImage = "modhost/datastore:0.1.0";

class DatastoreArmy final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    boost::json::value v = params.empty() ? boost::json::object() : boost::json::parse(params);
    const boost::json::value* n = v.is_object() ? v.as_object().if_contains("numDatastores") : nullptr;
    if (!n || !n->is_int64() || n->as_int64() < 0 || n->as_int64() > 100) {
      return modhost::Error(modhost::ErrorCode::invalid_argument,
                            "params need \"numDatastores\": a whole number from 0 to 100");
    }
    auto existing = ctx.list_services();
    if (!existing.ok()) return existing.error();
    // Numbering continues after datastores an earlier run made.
    int next = 0;
    for (const auto& s : existing.value()) {
      if (s.name.rfind("datastore-", 0) == 0) next = std::max(next, std::atoi(s.name.c_str() + 10) + 1);
    }
    boost::json::object created;
    for (std::int64_t i = 0; i < n->as_int64(); ++i) {
      modhost::ServiceConfig c;
      c.name = "datastore-" + std::to_string(next + i);
      c.image = kImage;
      c.ports.push_back({"http", 1323, "tcp"});
      auto added = ctx.add_service(c);
      if (!added.ok())
        return added.error().context("after creating " + std::to_string(created.size()) + " datastores");
      ctx.log(modhost::LogLevel::info, "started " + c.name + " at " + added->ip);
      created[c.name] = "http";
    }
    return boost::json::serialize(boost::json::object{{"createdServiceIdsToPortIds", created}});
  }
};

}  // namespace

MODHOST_MODULE(datastore_army, DatastoreArmy, "1.0.0", "Starts N datastore services in its enclave",
               modhost::ParamsFormat::json)
