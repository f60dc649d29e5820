// `modhost files upload|ls|download|store-from-service`.
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "backends/image/image.hpp"
#include "cli/cli.hpp"
#include "cli/views.hpp"
#include "engine/engine.hpp"

namespace modhost::cli {
namespace {

namespace fs = std::filesystem;

struct FilesArgs {
  std::string enclave, path, name, service, dest, tgz;
};

void print_artifact(const GlobalOptions& g, const backend::ArtifactInfo& a, const char* verb) {
  if (g.json())
    print_json(to_json(a));
  else
    std::printf("%s files artifact '%s' (%llu bytes)\n", verb, a.name.c_str(),
                static_cast<unsigned long long>(a.size_bytes));
}

int run_upload(const GlobalOptions& g, const FilesArgs& a) {
  std::error_code ec;
  if (!fs::exists(a.path, ec)) return fail(g, Error(ErrorCode::not_found, "'" + a.path + "' not found"));
  std::string name = a.name.empty() ? fs::path(a.path).lexically_normal().filename().string() : a.name;
  if (name.empty() || name == "." || name == "..") name = "files";
  auto tar = image::tar_tree(a.path);
  if (!tar.ok()) return fail(g, tar.error());
  auto tgz = image::gzip_compress(tar.value());
  if (!tgz.ok()) return fail(g, tgz.error());
  auto enc = open_enclave(g, a.enclave);
  if (!enc.ok()) return fail(g, enc.error());
  progress(g, "Uploading '" + a.path + "' as files artifact '" + name + "'...");
  auto stored = enc->backend->store_artifact(enc->id, name, tgz.value());
  if (!stored.ok()) return fail(g, stored.error());
  print_artifact(g, stored.value(), "Stored");
  return kExitOk;
}

int run_ls(const GlobalOptions& g, const std::string& enclave) {
  auto enc = open_enclave(g, enclave);
  if (!enc.ok()) return fail(g, enc.error());
  auto list = enc->backend->list_artifacts(enc->id);
  if (!list.ok()) return fail(g, list.error());
  if (g.json()) {
    boost::json::array arr;
    for (const auto& a : list.value()) arr.push_back(to_json(a));
    print_json(boost::json::object{{"artifacts", arr}});
    return kExitOk;
  }
  Table t({"NAME", "SIZE", "CREATION TIME"});
  for (const auto& a : list.value()) t.row({a.name, std::to_string(a.size_bytes) + " B", a.created});
  t.print();
  return kExitOk;
}

int run_download(const GlobalOptions& g, const FilesArgs& a) {
  auto enc = open_enclave(g, a.enclave);
  if (!enc.ok()) return fail(g, enc.error());
  auto bytes = enc->backend->download_artifact(enc->id, a.name);
  if (!bytes.ok()) return fail(g, bytes.error());
  if (!a.tgz.empty()) {
    std::ofstream out(a.tgz, std::ios::binary);
    out.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
    if (!out) return fail(g, Error(ErrorCode::unavailable, "cannot write '" + a.tgz + "'"));
  }
  if (!a.dest.empty()) {
    auto tar = image::gzip_decompress(bytes.value());
    if (!tar.ok()) return fail(g, tar.error());
    if (auto s = image::extract_tar(tar.value(), a.dest); !s.ok()) return fail(g, s.error());
  }
  if (g.json()) {
    print_json(boost::json::object{
        {"name", a.name}, {"sizeBytes", bytes->size()}, {"directory", a.dest}, {"tgz", a.tgz}});
  } else {
    std::printf("Downloaded files artifact '%s' (%zu bytes)%s%s\n", a.name.c_str(), bytes->size(),
                a.dest.empty() ? "" : (" into " + a.dest).c_str(),
                a.tgz.empty() ? "" : (" as " + a.tgz).c_str());
  }
  return kExitOk;
}

int run_store_from_service(const GlobalOptions& g, const FilesArgs& a) {
  auto enc = open_enclave(g, a.enclave);
  if (!enc.ok()) return fail(g, enc.error());
  std::string name = a.name.empty() ? fs::path(a.path).filename().string() : a.name;
  if (name.empty()) name = a.service + "-files";
  progress(g, "Copying '" + a.path + "' out of service '" + a.service + "'...");
  auto stored = enc->backend->store_from_service(enc->id, a.service, a.path, name);
  if (!stored.ok()) return fail(g, stored.error());
  print_artifact(g, stored.value(), "Stored");
  return kExitOk;
}

int run_rm(const GlobalOptions& g, const FilesArgs& a) {
  auto enc = open_enclave(g, a.enclave);
  if (!enc.ok()) return fail(g, enc.error());
  if (auto s = enc->backend->remove_artifact(enc->id, a.name); !s.ok()) return fail(g, s.error());
  if (g.json())
    print_json(boost::json::object{{"removed", a.name}});
  else
    std::printf("Removed files artifact '%s'\n", a.name.c_str());
  return kExitOk;
}

}  // namespace

void add_files_commands(CLI::App& app, GlobalOptions& g) {
  CLI::App* files =
      app.add_subcommand("files", "Files artifacts: upload, list, download, remove, copy out of services");
  files->require_subcommand(1);
  auto a = std::make_shared<FilesArgs>();

  CLI::App* upload = files->add_subcommand("upload", "Store a file or directory as a files artifact (.tgz)");
  upload->add_option("enclave", a->enclave, "Enclave UUID, UUID prefix or name")->required();
  upload->add_option("path", a->path, "File or directory to upload")->required();
  upload->add_option("--name", a->name, "Artifact name (default: the file or directory name)");
  upload->callback([&g, a] { g_exit_code = run_upload(g, *a); });

  CLI::App* ls = files->add_subcommand("ls", "List the files artifacts of an enclave");
  ls->add_option("enclave", a->enclave, "Enclave UUID, UUID prefix or name")->required();
  ls->callback([&g, a] { g_exit_code = run_ls(g, a->enclave); });

  CLI::App* download =
      files->add_subcommand("download", "Extract a files artifact into DIR (or save the .tgz)");
  download->add_option("enclave", a->enclave, "Enclave UUID, UUID prefix or name")->required();
  download->add_option("name", a->name, "Artifact name")->required();
  download->add_option("dir", a->dest, "Directory to extract into");
  download->add_option("--tgz", a->tgz, "Also write the artifact's .tgz to this file");
  download->callback([&g, a] {
    if (a->dest.empty() && a->tgz.empty()) {
      g_exit_code =
          fail(g, Error(ErrorCode::invalid_argument, "give a directory to extract into, or --tgz FILE"));
      return;
    }
    g_exit_code = run_download(g, *a);
  });

  CLI::App* rm =
      files->add_subcommand("rm", "Remove a files artifact (services that mount it keep their files)");
  rm->add_option("enclave", a->enclave, "Enclave UUID, UUID prefix or name")->required();
  rm->add_option("name", a->name, "Artifact name")->required();
  rm->callback([&g, a] { g_exit_code = run_rm(g, *a); });

  CLI::App* store =
      files->add_subcommand("store-from-service", "Copy PATH out of a service into a new files artifact");
  store->add_option("enclave", a->enclave, "Enclave UUID, UUID prefix or name")->required();
  store->add_option("service", a->service, "Service name")->required();
  store->add_option("path", a->path, "Absolute path inside the service")->required();
  store->add_option("--name", a->name, "Artifact name (default: the last path component)");
  store->callback([&g, a] { g_exit_code = run_store_from_service(g, *a); });
}

}  // namespace modhost::cli
