#include "starlark/plan.hpp"

#include <algorithm>
#include <boost/json.hpp>

namespace modhost::starlark {
namespace json = boost::json;

const std::vector<std::string>& known_kinds() {
  static const std::vector<std::string> kinds = {"add_service",
                                                 "add_services",
                                                 "get_service",
                                                 "remove_service",
                                                 "start_service",
                                                 "stop_service",
                                                 "exec",
                                                 "request",
                                                 "wait",
                                                 "verify",
                                                 "print",
                                                 "upload_files",
                                                 "render_templates",
                                                 "store_service_files",
                                                 "run_sh",
                                                 "set_connection",
                                                 "remove_connection",
                                                 "exec_module"};
  return kinds;
}

std::string Instruction::fingerprint() const { return kind + "\n" + json::serialize(args); }

Error at(const Instruction& i, ErrorCode code, const std::string& message) {
  return Error(code, (i.position.empty() ? std::string() : i.position + ": ") + message);
}

namespace {

Error malformed(const std::string& why) {
  return Error(ErrorCode::invalid_argument, "the interpreter's plan is malformed: " + why);
}

std::string string_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

Result<Plan> parse_plan(std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return malformed("not JSON (" + ec.message() + ")");
  if (!root.is_object()) return malformed("not an object");
  json::object& o = root.as_object();
  Plan p;
  if (const json::value* v = o.if_contains("version"); v && v->is_int64())
    p.version = static_cast<int>(v->as_int64());
  if (p.version != 1)
    return malformed("version " + std::to_string(p.version) + " (this engine reads version 1)");
  p.package = string_at(o, "package");
  p.main_file = string_at(o, "main_file");
  if (json::value* out = o.if_contains("output")) p.output = std::move(*out);
  json::value* list = o.if_contains("instructions");
  if (list == nullptr || !list->is_array()) return malformed("no instructions array");
  std::size_t index = 0;
  for (json::value& iv : list->as_array()) {
    if (!iv.is_object()) return malformed("instruction " + std::to_string(index) + " is not an object");
    json::object& io = iv.as_object();
    Instruction i;
    i.index = index;
    i.kind = string_at(io, "kind");
    if (i.kind == "assert") i.kind = "verify";
    i.position = string_at(io, "position");
    i.text = string_at(io, "text");
    i.description = string_at(io, "description");
    if (std::find(known_kinds().begin(), known_kinds().end(), i.kind) == known_kinds().end()) {
      return malformed((i.position.empty() ? "" : i.position + ": ") + "unknown instruction '" + i.kind +
                       "'");
    }
    json::value* args = io.if_contains("args");
    if (args == nullptr || !args->is_object())
      return malformed("instruction " + std::to_string(index) + " has no args");
    i.args = std::move(args->as_object());
    p.instructions.push_back(std::move(i));
    ++index;
  }
  return p;
}

json::value to_json(const Plan& p) {
  json::array list;
  for (const auto& i : p.instructions) {
    list.push_back(json::object{{"kind", i.kind},
                                {"position", i.position},
                                {"text", i.text},
                                {"description", i.description},
                                {"args", i.args}});
  }
  return json::object{{"version", p.version},
                      {"package", p.package},
                      {"main_file", p.main_file},
                      {"instructions", std::move(list)},
                      {"output", p.output}};
}

}  // namespace modhost::starlark
