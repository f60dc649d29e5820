// Validation of a whole plan against the enclave before anything changes:
// every problem at once, each with its position.
#include <map>
#include <set>

#include "backends/common.hpp"
#include "starlark/internal.hpp"
#include "starlark/run.hpp"
#include "starlark/values.hpp"

namespace modhost::starlark {
namespace {

using namespace detail;

constexpr const char* kDefaultPlaceholder = "KURTOSIS_IP_ADDR_PLACEHOLDER";

struct KnownService {
  std::set<std::string> ports;
  bool from_plan = false;
  bool added_by_plan_before = false;  // carries kLabelStarlark: a plan may update it
  std::string position;               // where the plan added it
};

class Validator {
 public:
  Validator(const Plan& plan, Target& target, std::size_t skip) : plan_(plan), target_(target), skip_(skip) {}

  std::vector<Problem> run(const EnclaveSnapshot& enclave) {
    for (const auto& s : enclave.services) {
      KnownService k;
      for (const auto& p : s.ports) k.ports.insert(p.port.name);
      auto l = s.labels.find(kLabelStarlark);
      k.added_by_plan_before = l != s.labels.end() && l->second == "true";
      services_[s.name] = k;
    }
    for (const auto& a : enclave.artifacts) artifacts_.insert(a.name);
    for (const Instruction& i : plan_.instructions) check(i);
    return std::move(problems_);
  }

 private:
  void problem(const Instruction& i, const std::string& message) {
    problems_.push_back({i.position, message});
  }

  void check_references(const Instruction& i) {
    std::vector<Reference> refs;
    collect_references(json::value(i.args), refs);
    for (const auto& r : refs) {
      if (r.index >= i.index) {
        problem(i, "the value " + reference_text(r.index, r.field) + " comes from a later instruction");
      } else if (!produces(plan_.instructions[r.index].kind, plan_.instructions[r.index].args, r.field)) {
        problem(i, "instruction " + std::to_string(r.index) + " (" + plan_.instructions[r.index].kind +
                       " at " + plan_.instructions[r.index].position + ") gives no value '" + r.field + "'");
      }
    }
  }

  bool need_service(const Instruction& i, const std::string& name) {
    if (name.empty()) {
      problem(i, "no service named");
      return false;
    }
    if (!services_.count(name)) {
      problem(i, "there is no service '" + name + "' in enclave '" + target_.enclave_name() +
                     "' (add it with plan.add_service before this instruction)");
      return false;
    }
    return true;
  }

  void need_image(const Instruction& i, const std::string& image) {
    if (image.empty()) {
      problem(i, "no image given");
      return;
    }
    if (i.index < skip_) return;  // applied before: its image was there
    auto cached = images_.find(image);
    if (cached == images_.end()) {
      auto r = target_.image_exists(image);
      cached = images_.emplace(image, r.ok() ? (r.value() ? "" : "missing") : r.error().message()).first;
    }
    if (cached->second == "missing") {
      problem(i, "image '" + image + "' is not on the " + target_.backend_name() +
                     " backend: load it first with 'modhost image load ARCHIVE' (no registry is used)");
    } else if (!cached->second.empty()) {
      problem(i, cached->second);
    }
  }

  void need_artifact(const Instruction& i, const std::string& name) {
    if (!artifacts_.count(name) && !produced_.count(name)) {
      problem(
          i,
          "there is no files artifact '" + name + "' in enclave '" + target_.enclave_name() +
              "' (make it with plan.upload_files, plan.render_templates or plan.store_service_files first)");
    }
  }

  void produce_artifact(const Instruction& i, const std::string& name) {
    if (!backend::valid_name(name)) {  // the backends' own rule
      problem(i, "artifact name '" + name +
                     "' is invalid: 1-63 letters, digits, '.', '_' or '-', starting with "
                     "a letter or digit");
      return;
    }
    if (name == kRecordArtifact) {
      problem(i, "the artifact name '" + name + "' is modhost's own");
      return;
    }
    if (auto p = produced_.find(name); p != produced_.end()) {
      problem(i, "files artifact '" + name + "' is made twice (first at " + p->second + ")");
      return;
    }
    produced_[name] = i.position;
  }

  // A recipe; `ports` are the service's ports (null: unknown).
  void check_recipe(const Instruction& i, const json::object* recipe, const std::set<std::string>* ports,
                    const std::string& service, bool exec_only, bool http_only, const std::string& field) {
    if (recipe == nullptr) {
      problem(i, "no recipe given");
      return;
    }
    const std::string type = str(*recipe, "type");
    if (type == "exec") {
      if (http_only)
        problem(i, "plan.request takes GetHttpRequestRecipe or PostHttpRequestRecipe, not ExecRecipe");
      if (strings(*recipe, "command").empty()) problem(i, "ExecRecipe needs a command");
    } else if (type == "get" || type == "post") {
      if (exec_only) problem(i, "plan.exec takes an ExecRecipe");
      const std::string port = str(*recipe, "port_id");
      if (port.empty()) {
        problem(i, "the HTTP recipe needs a port_id");
      } else if (ports != nullptr && !ports->count(port)) {
        std::string known;
        for (const auto& p : *ports) known += (known.empty() ? "" : ", ") + p;
        problem(i, "service '" + service + "' has no port '" + port +
                       "' (its ports: " + (known.empty() ? "none" : known) + ")");
      }
      const std::string endpoint = str(*recipe, "endpoint");
      if (!endpoint.empty() && endpoint[0] != '/')
        problem(i, "endpoint '" + endpoint + "' must start with '/'");
    } else {
      problem(i, "unknown recipe type '" + type + "'");
      return;
    }
    if (const json::object* extract = object(*recipe, "extract")) {
      for (const auto& [k, v] : *extract) {
        if (!v.is_string()) {
          problem(i, "extract." + std::string(k) + " must be a jq expression string");
          continue;
        }
        auto x = Extractor::compile(v.get_string());
        if (!x.ok()) problem(i, x.error().message());
      }
    }
    if (!field.empty()) {
      const bool known = field == "code" || (type == "exec" ? field == "output" : field == "body") ||
                         (field.rfind("extract.", 0) == 0 && object(*recipe, "extract") &&
                          object(*recipe, "extract")->contains(field.substr(8)));
      if (!known) {
        problem(i, "the recipe gives no field '" + field + "' (it gives code, " +
                       std::string(type == "exec" ? "output" : "body") +
                       " and extract.KEY for its extract keys)");
      }
    }
  }

  void check_ready(const Instruction& i, const json::object* ready, const std::set<std::string>& ports,
                   const std::string& service) {
    if (ready == nullptr) return;
    check_recipe(i, object(*ready, "recipe"), &ports, service, false, false, str(*ready, "field"));
    if (!valid_assertion(str(*ready, "assertion"))) {
      problem(i, "ReadyCondition: unknown assertion '" + str(*ready, "assertion") + "'");
    }
  }

  void check_config(const Instruction& i, const std::string& name, const json::object* config) {
    if (config == nullptr) {
      problem(i, "no config given for service '" + name + "'");
      return;
    }
    if (auto s = services_.find(name); s != services_.end()) {
      if (s->second.from_plan) {
        problem(i, "service '" + name + "' is added twice (first at " + s->second.position + ")");
      } else if (!s->second.added_by_plan_before) {
        problem(i, "a service '" + name + "' already exists in enclave '" + target_.enclave_name() +
                       "' and was not added by a plan: remove it or choose another name");
      }
    }
    need_image(i, str(*config, "image"));
    if (const json::object* files = object(*config, "files")) {
      for (const auto& [dir, fv] : *files) {
        if (!fv.is_object()) continue;
        const auto names = strings(fv.get_object(), "artifact_names");
        if (!str(fv.get_object(), "persistent_key").empty()) {
          problem(i, "files." + std::string(dir) + ": persistent directories are not supported yet");
        }
        if (names.size() > 1) {
          problem(i, "files." + std::string(dir) + ": one artifact per directory is supported, not " +
                         std::to_string(names.size()));
        }
        for (const auto& a : names) need_artifact(i, a);
      }
    }
    if (const json::object* pp = object(*config, "public_ports"); pp && !pp->empty()) {
      problem(i,
              "ServiceConfig.public_ports is not supported: every port is published on 127.0.0.1 at a free "
              "host port (shown after the run)");
    }
    std::string placeholder = str(*config, "private_ip_address_placeholder");
    if (placeholder.empty()) placeholder = kDefaultPlaceholder;
    bool uses_placeholder = false;
    for (const auto& key : {"entrypoint", "cmd"}) {
      for (const auto& a : strings(*config, key))
        uses_placeholder |= a.find(placeholder) != std::string::npos;
    }
    for (const auto& [k, v] : string_map(*config, "env_vars"))
      uses_placeholder |= v.find(placeholder) != std::string::npos;
    if (uses_placeholder) {
      problem(i, "the private IP address placeholder '" + placeholder +
                     "' is not supported yet: read the address from `hostname -i` inside the service");
    }
    const std::string sub = subnetwork(*config);
    if (sub == kImplicitPartition) problem(i, "subnetwork name '" + sub + "' is reserved");
    KnownService k;
    k.from_plan = true;
    k.position = i.position;
    if (const json::object* ports = object(*config, "ports")) {
      for (const auto& [id, pv] : *ports) k.ports.insert(std::string(id));
    }
    check_ready(i, object(*config, "ready_conditions"), k.ports, name);
    services_[name] = std::move(k);
  }

  void check(const Instruction& i) {
    check_references(i);
    const json::object& a = i.args;
    const std::string& kind = i.kind;
    if (kind == "add_service") {
      check_config(i, str(a, "name"), object(a, "config"));
    } else if (kind == "add_services") {
      const json::object* configs = object(a, "configs");
      if (configs == nullptr || configs->empty()) problem(i, "add_services needs at least one config");
      if (configs) {
        for (const auto& [name, c] : *configs)
          check_config(i, std::string(name), c.is_object() ? &c.get_object() : nullptr);
      }
    } else if (kind == "get_service" || kind == "start_service" || kind == "stop_service") {
      need_service(i, str(a, "name"));
    } else if (kind == "remove_service") {
      if (need_service(i, str(a, "name"))) services_.erase(str(a, "name"));
    } else if (kind == "exec" || kind == "request" || kind == "wait") {
      const std::string service = str(a, "service_name");
      const bool known = need_service(i, service);
      check_recipe(i, object(a, "recipe"), known ? &services_[service].ports : nullptr, service,
                   kind == "exec", kind == "request", kind == "wait" ? str(a, "field") : "");
      if (kind == "wait" && !valid_assertion(str(a, "assertion"))) {
        problem(i, "unknown assertion '" + str(a, "assertion") + "'");
      }
    } else if (kind == "verify") {
      if (!valid_assertion(str(a, "assertion")))
        problem(i, "unknown assertion '" + str(a, "assertion") + "'");
    } else if (kind == "upload_files" || kind == "render_templates") {
      produce_artifact(i, str(a, "name"));
    } else if (kind == "store_service_files") {
      need_service(i, str(a, "service_name"));
      if (str(a, "src").empty()) problem(i, "no src path given");
      produce_artifact(i, str(a, "name"));
    } else if (kind == "run_sh") {
      need_image(i, str(a, "image"));
      for (const auto& [dir, art] : string_map(a, "files")) need_artifact(i, art);
      if (const json::value* store = a.if_contains("store"); store && store->is_array()) {
        for (const auto& s : store->get_array()) {
          if (s.is_object()) produce_artifact(i, str(s.get_object(), "name"));
        }
      }
    } else if (kind == "set_connection" || kind == "remove_connection") {
      const auto subs = strings(a, "subnetworks");
      if (kind == "remove_connection" && subs.size() != 2)
        problem(i, "remove_connection needs two subnetworks");
      if (!subs.empty() && (subs.size() != 2 || subs[0] == subs[1])) {
        problem(i, "subnetworks must name two different subnetworks");
      }
      for (const auto& s : subs) {
        if (s == kImplicitPartition) problem(i, "subnetwork name '" + s + "' is reserved");
      }
      if (kind == "set_connection") {
        const json::object* conn = object(a, "config");
        if (conn == nullptr) {
          problem(i, "set_connection needs a ConnectionConfig");
        } else if (Status s = validate(connection(*conn), "config"); !s.ok()) {
          problem(i, s.error().message());
        }
      }
    } else if (kind == "exec_module") {
      if (Status s = target_.check_module(str(a, "module")); !s.ok()) problem(i, s.error().message());
    }
  }

  const Plan& plan_;
  Target& target_;
  std::size_t skip_;
  std::vector<Problem> problems_;
  std::map<std::string, KnownService> services_;
  std::set<std::string> artifacts_;
  std::map<std::string, std::string> produced_;  // artifact -> position
  std::map<std::string, std::string> images_;    // "" present, "missing", or an error
};

}  // namespace

Result<EnclaveSnapshot> snapshot(Target& target) {
  EnclaveSnapshot e;
  if (!target.enclave_exists()) return e;
  MODHOST_ASSIGN_OR_RETURN(e.services, target.list_services());
  MODHOST_ASSIGN_OR_RETURN(e.artifacts, target.list_artifacts());
  return e;
}

std::vector<Problem> validate(const Plan& plan, Target& target, std::size_t skip,
                              const EnclaveSnapshot& enclave) {
  return Validator(plan, target, skip).run(enclave);
}

}  // namespace modhost::starlark
