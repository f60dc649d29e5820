// `modhost image pack|load|ls|rm`: images without a registry.
#include <unistd.h>

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

struct PackArgs {
  std::string name, entrypoint, output;
  std::vector<std::string> add, args, env;
  bool no_load = false;
};

Status load_archive(const GlobalOptions& g, const std::string& path) {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, get_backend(g));
  return b->load_image(path);
}

int run_pack(const GlobalOptions& g, const PackArgs& a) {
  if (a.name.find(':') == std::string::npos || a.name.front() == ':' || a.name.back() == ':') {
    return fail(g,
                Error(ErrorCode::invalid_argument, "invalid image name '" + a.name + "': expected NAME:TAG"));
  }
  if (a.no_load && a.output.empty()) {
    return fail(
        g, Error(ErrorCode::invalid_argument, "--no-load needs --output FILE, or the image goes nowhere"));
  }
  image::PackSpec spec;
  spec.reference = a.name;
  spec.entrypoint = a.entrypoint;
  spec.args = a.args;
  spec.env = a.env;
  for (const auto& item : a.add) {
    auto colon = item.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= item.size()) {
      return fail(g, Error(ErrorCode::invalid_argument, "invalid --add '" + item + "': expected SRC:DEST"));
    }
    spec.add.emplace_back(item.substr(0, colon), item.substr(colon + 1));
  }
  progress(g, "Packing " + a.entrypoint + " with its libraries into " + a.name + "...");
  auto archive = image::pack(spec);
  if (!archive.ok()) return fail(g, archive.error());

  std::string path = a.output;
  bool temporary = path.empty();
  if (temporary) {
    std::error_code ec;
    path = (fs::temp_directory_path(ec) / ("modhost-image-" + std::to_string(::getpid()) + ".tar")).string();
  }
  {
    std::ofstream out(path, std::ios::binary);
    out.write(archive->data(), static_cast<std::streamsize>(archive->size()));
    if (!out) return fail(g, Error(ErrorCode::unavailable, "cannot write '" + path + "'"));
  }
  Status loaded = ok_status();
  if (!a.no_load) {
    progress(g, "Loading " + a.name + " into the backend...");
    loaded = load_archive(g, path);
  }
  if (temporary) {
    std::error_code ec;
    fs::remove(path, ec);
  }
  if (!loaded.ok()) return fail(g, loaded.error());
  if (g.json()) {
    print_json(boost::json::object{{"image", a.name},
                                   {"sizeBytes", archive->size()},
                                   {"loaded", !a.no_load},
                                   {"archive", temporary ? "" : path}});
  } else {
    std::printf("Packed %s (%zu bytes)%s%s\n", a.name.c_str(), archive->size(), a.no_load ? "" : ", loaded",
                temporary ? "" : (", written to " + path).c_str());
  }
  return kExitOk;
}

int run_image_ls(const GlobalOptions& g) {
  auto b = get_backend(g);
  if (!b.ok()) return fail(g, b.error());
  auto images = b.value()->list_images();
  if (!images.ok()) return fail(g, images.error());
  if (g.json()) {
    boost::json::array arr;
    for (const auto& i : images.value()) {
      boost::json::array refs;
      for (const auto& r : i.references) refs.emplace_back(r);
      arr.push_back(boost::json::object{{"id", i.id}, {"references", refs}, {"sizeBytes", i.size_bytes}});
    }
    print_json(boost::json::object{{"images", arr}});
    return kExitOk;
  }
  Table t({"ID", "REFERENCES", "SIZE"});
  for (const auto& i : images.value()) {
    std::string refs;
    for (const auto& r : i.references) refs += (refs.empty() ? "" : ", ") + r;
    t.row({i.id.substr(0, 12), refs.empty() ? "<none>" : refs, std::to_string(i.size_bytes / 1024) + " KiB"});
  }
  t.print();
  return kExitOk;
}

}  // namespace

void add_image_commands(CLI::App& app, GlobalOptions& g) {
  CLI::App* image = app.add_subcommand("image", "Make and load images without a registry");
  image->require_subcommand(1);

  auto a = std::make_shared<PackArgs>();
  CLI::App* pack = image->add_subcommand(
      "pack", "Pack an executable, the shared libraries it needs and extra files into an image, and load it");
  pack->add_option("--name", a->name, "Image reference NAME:TAG")->required();
  pack->add_option("--entrypoint", a->entrypoint, "The executable (a path, or a name on $PATH)")->required();
  pack->add_option("--add", a->add, "Extra file or directory SRC:DEST (repeatable)");
  pack->add_option("--arg", a->args, "Default argument (repeatable)");
  pack->add_option("--env", a->env, "Environment KEY=VALUE (repeatable)");
  pack->add_option("--output,-O", a->output, "Also write the image archive (docker-save format) to FILE");
  pack->add_flag("--no-load", a->no_load, "Only write the archive");
  pack->callback([&g, a] { g_exit_code = run_pack(g, *a); });

  auto file = std::make_shared<std::string>();
  CLI::App* load =
      image->add_subcommand("load", "Load an image archive (docker-save format) into the backend");
  load->add_option("file", *file, "Image archive")->required()->check(CLI::ExistingFile);
  load->callback([&g, file] {
    progress(g, "Loading " + *file + "...");
    if (Status s = load_archive(g, *file); !s.ok()) return void(g_exit_code = fail(g, s.error()));
    if (g.json())
      print_json(boost::json::object{{"loaded", *file}});
    else
      std::printf("Loaded %s\n", file->c_str());
  });

  image
      ->add_subcommand("ls",
                       "List the images of the backend (native; Docker's are listed by 'docker images')")
      ->callback([&g] { g_exit_code = run_image_ls(g); });

  auto refs = std::make_shared<std::vector<std::string>>();
  CLI::App* rm =
      image->add_subcommand("rm", "Remove images (native backend): a reference, or the image with its last");
  rm->add_option("reference", *refs, "Image reference NAME:TAG or id")->required();
  rm->callback([&g, refs] {
    auto b = get_backend(g);
    if (!b.ok()) return void(g_exit_code = fail(g, b.error()));
    for (const auto& r : *refs) {
      if (Status s = b.value()->remove_image(r); !s.ok()) return void(g_exit_code = fail(g, s.error()));
      if (!g.json()) std::printf("Removed %s\n", r.c_str());
    }
    if (g.json()) print_json(boost::json::object{{"removed", boost::json::value_from(*refs)}});
  });
}

}  // namespace modhost::cli
