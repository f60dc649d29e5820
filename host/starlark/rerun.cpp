// The record of what runs applied to an enclave: a tgz artifact holding
// plan.json, the fingerprint, kind and produced values of each instruction
// applied, in order.
#include "starlark/rerun.hpp"

#include <boost/json.hpp>

#include "backends/image/image.hpp"
#include "backends/image/sha256.hpp"
#include "starlark/internal.hpp"
#include "starlark/run.hpp"

namespace modhost::starlark::detail {
namespace {

constexpr const char* kRecordFile = "plan.json";

}  // namespace

std::string fingerprint_hash(const Instruction& i) { return image::sha256_hex(i.fingerprint()); }

std::vector<RecordEntry> load_record(Target& t) {
  std::vector<RecordEntry> out;
  if (!t.enclave_exists()) return out;
  auto tgz = t.download_artifact(kRecordArtifact);
  if (!tgz.ok()) return out;
  auto tar = image::gzip_decompress(tgz.value());
  if (!tar.ok()) return out;
  auto entries = image::read_tar(tar.value());
  if (!entries.ok()) return out;
  for (const auto& e : entries.value()) {
    if (e.path != kRecordFile) continue;
    boost::system::error_code ec;
    json::value v = json::parse(e.content, ec);
    if (ec || !v.is_object()) break;
    const json::value* list = v.get_object().if_contains("instructions");
    if (list == nullptr || !list->is_array()) break;
    for (const auto& iv : list->get_array()) {
      if (!iv.is_object()) continue;
      const json::object& o = iv.get_object();
      RecordEntry r{str(o, "fingerprint"), str(o, "kind"), {}};
      if (const json::object* vals = object(o, "values")) r.values = *vals;
      out.push_back(std::move(r));
    }
  }
  return out;
}

Status save_record(Target& t, const std::vector<RecordEntry>& record) {
  json::array list;
  for (const auto& r : record) {
    list.push_back(json::object{{"fingerprint", r.fingerprint}, {"kind", r.kind}, {"values", r.values}});
  }
  image::TarWriter w;
  w.add_file(kRecordFile, json::serialize(json::object{{"version", 1}, {"instructions", std::move(list)}}));
  MODHOST_ASSIGN_OR_RETURN(std::string tgz, image::gzip_compress(w.finish()));
  (void)t.remove_artifact(kRecordArtifact);
  return t.store_artifact(kRecordArtifact, tgz);
}

bool still_applied(const Instruction& i, const std::set<std::string>& services,
                   const std::set<std::string>& artifacts) {
  const json::object& a = i.args;
  if (i.kind == "add_service") return services.count(str(a, "name")) > 0;
  if (i.kind == "add_services") {
    const json::object* configs = object(a, "configs");
    if (!configs) return false;
    for (const auto& [name, c] : *configs) {
      if (!services.count(std::string(name))) return false;
    }
    return true;
  }
  if (i.kind == "remove_service") return services.count(str(a, "name")) == 0;
  if (i.kind == "upload_files" || i.kind == "render_templates" || i.kind == "store_service_files") {
    return artifacts.count(str(a, "name")) > 0;
  }
  if (i.kind == "run_sh") {
    if (const json::value* store = a.if_contains("store"); store && store->is_array()) {
      for (const auto& s : store->get_array()) {
        if (s.is_object() && !artifacts.count(str(s.get_object(), "name"))) return false;
      }
    }
  }
  return true;
}

}  // namespace modhost::starlark::detail
