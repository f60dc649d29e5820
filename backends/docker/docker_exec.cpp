// The Docker backend's exec (an exec instance, its multiplexed output),
// logs, readiness waits over the shared probe loop, and the enclave's event
// stream from the engine's /events.
#include <algorithm>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "backends/config_json.hpp"
#include "backends/docker/docker_backend.hpp"
#include "backends/docker/docker_impl.hpp"
#include "backends/docker/mux_stream.hpp"
#include "backends/readiness.hpp"

namespace modhost::backend {

Result<std::string> DockerBackend::Impl::log_tail(const std::string& container_id, int lines) const {
  std::string out;
  docker::StreamDemuxer demux([&out](int, std::string_view payload) {
    out.append(payload);
    return true;
  });
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      client.stream(
          Method::get,
          std::string(docker::kApiPrefix) + "/containers/" + url_encode(container_id) +
              "/logs?stdout=1&stderr=1&tail=" + std::to_string(lines),
          {}, [&demux](std::string_view chunk) { return demux.feed(chunk); }, options.request_timeout));
  if (!is_2xx(r)) return docker::engine_error(r, "cannot read the logs of container " + container_id);
  return out;
}

std::string DockerBackend::Impl::last_output(const std::string& container_id) const {
  auto tail = log_tail(container_id, 20);
  if (!tail.ok()) return "(cannot read its logs: " + tail.error().message() + ")";
  return backend::output_as_one_line(std::move(tail.value()));
}

Result<ExecResult> DockerBackend::Impl::run_exec(const ServiceRef& s, const std::vector<std::string>& argv,
                                                 std::optional<milliseconds> timeout) const {
  const std::string ctx =
      "failed to run a command in service '" + s.name + "' of enclave '" + s.enclave.info.name + "'";
  if (argv.empty()) return Error(ErrorCode::invalid_argument, ctx + ": no command given");
  json::object create;
  create["AttachStdin"] = false;
  create["AttachStdout"] = true;
  create["AttachStderr"] = true;
  create["Tty"] = false;
  json::array cmd;
  for (const auto& a : argv) cmd.emplace_back(a);
  create["Cmd"] = std::move(cmd);
  MODHOST_ASSIGN_OR_RETURN(HttpResponse cr, api(Method::post, "/containers/" + s.container_id + "/exec",
                                                json::serialize(create), timeout));
  if (cr.status == 409) {
    return Error(ErrorCode::failed_precondition,
                 ctx + ": the service is not running (" + docker::engine_message(cr) + ")");
  }
  if (!is_2xx(cr)) return docker::engine_error(cr, ctx);
  MODHOST_ASSIGN_OR_RETURN(json::value created, docker::parse_json(cr.body, "exec create"));
  const std::string exec_id = docker::str_at(created, "Id");

  ExecResult result;
  docker::StreamDemuxer demux([&result](int, std::string_view payload) {
    result.output.append(payload);
    return true;
  });
  MODHOST_ASSIGN_OR_RETURN(HttpResponse sr,
                           client.stream(
                               Method::post, std::string(docker::kApiPrefix) + "/exec/" + exec_id + "/start",
                               R"({"Detach":false,"Tty":false})",
                               [&demux](std::string_view chunk) { return demux.feed(chunk); }, timeout));
  if (!is_2xx(sr)) return docker::engine_error(sr, ctx, ErrorCode::failed_precondition);

  // The stream ends when the process does; the exit code may land a moment later.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    MODHOST_ASSIGN_OR_RETURN(json::value info, api_json(Method::get, "/exec/" + exec_id + "/json", ctx));
    const json::value* code = docker::member(info, "ExitCode");
    if (!docker::bool_at(info, "Running") && code != nullptr && !code->is_null()) {
      result.exit_code = static_cast<int>(docker::int_at(info, "ExitCode"));
      return result;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Error(ErrorCode::timeout, ctx + ": the command's output ended but it did not exit");
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

Result<ExecResult> DockerBackend::exec(std::string_view enclave_id, std::string_view name,
                                       const std::vector<std::string>& argv) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  return impl_->run_exec(s, argv, std::nullopt);
}

Status DockerBackend::logs(std::string_view enclave_id, std::string_view name, bool follow,
                           const LogSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  const json::value* config = docker::member(s.inspect, "Config");
  const bool tty = config != nullptr && docker::bool_at(*config, "Tty");
  docker::StreamDemuxer demux([&sink](int, std::string_view payload) { return sink(payload); });
  docker::ChunkSink chunk_sink = [&](std::string_view chunk) {
    return tty ? sink(chunk) : demux.feed(chunk);
  };
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      impl_->client.stream(
          Method::get,
          std::string(docker::kApiPrefix) + "/containers/" + s.container_id + "/logs?stdout=1&stderr=1" +
              (follow ? "&follow=1" : ""),
          {}, chunk_sink,
          follow ? std::nullopt : std::optional<milliseconds>(impl_->options.request_timeout)));
  if (!is_2xx(r)) {
    return docker::engine_error(
        r, "failed to read the logs of service '" + s.name + "' in enclave '" + s.enclave.info.name + "'");
  }
  return ok_status();
}

Status DockerBackend::wait_ready(std::string_view enclave_id, std::string_view name,
                                 const ReadinessCheck& check) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  const std::string ctx = "service '" + s.name + "' in enclave '" + s.enclave.info.name + "'";
  ReadinessProbes probes;
  probes.current = [&]() -> Result<ServiceInfo> {
    MODHOST_ASSIGN_OR_RETURN(json::value state,
                             impl_->api_json(Method::get, "/containers/" + s.container_id + "/json", ctx));
    return docker::service_info(state, s.enclave);
  };
  probes.tcp = [](std::uint16_t port, milliseconds timeout) {
    return docker::local_tcp_probe(port, timeout);
  };
  probes.http = [](std::uint16_t port, const std::string& path,
                   milliseconds timeout) -> Result<std::pair<int, std::string>> {
    MODHOST_ASSIGN_OR_RETURN(HttpResponse r, docker::local_http_get(port, path, timeout));
    return std::pair<int, std::string>{static_cast<int>(r.status), std::move(r.body)};
  };
  probes.exec = [&](const std::vector<std::string>& argv, milliseconds timeout) {
    return impl_->run_exec(s, argv, timeout);
  };
  probes.log = [&](const std::string& line) { impl_->log->debug("{}", line); };
  probes.last_output = [&] { return impl_->last_output(s.container_id); };
  return wait_until_ready(ctx, check, docker::service_info(s.inspect, s.enclave), probes);
}

Status DockerBackend::events(std::string_view enclave_id, bool follow, const EventSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  const auto created = docker::parse_rfc3339(e.info.created);
  const auto since = created ? std::chrono::system_clock::to_time_t(*created) - 1 : 0;
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()) + 1;
  json::array labels{json::value(std::string(kLabelApp) + "=modhost"),
                     json::value(std::string(kLabelEnclave) + "=" + e.info.id)};
  if (!impl_->options.scope.empty())
    labels.emplace_back(std::string(kLabelScope) + "=" + impl_->options.scope);
  json::object f{{"type", json::array{"container"}}, {"label", std::move(labels)}};
  std::string target = std::string(docker::kApiPrefix) + "/events?since=" + std::to_string(since) +
                       (follow ? std::string() : "&until=" + std::to_string(now)) +
                       "&filters=" + url_encode(json::serialize(f));
  static const std::set<std::string> kActions = {"create", "start",   "kill",    "die", "stop",
                                                 "pause",  "unpause", "restart", "oom", "destroy"};
  // One JSON object per line; a chunk may end inside one.
  std::string pending;
  bool stopped = false;
  docker::ChunkSink chunk_sink = [&](std::string_view chunk) {
    pending.append(chunk);
    for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (ec || !v.is_object()) continue;
      const std::string action = docker::str_at(v, "Action");
      if (!kActions.contains(action)) continue;
      EnclaveEvent ev;
      ev.action = action;
      ev.time_ns = docker::int_at(v, "timeNano");
      bool holder = false;
      if (const json::value* actor = docker::member(v, "Actor")) {
        if (const json::value* attrs = docker::member(*actor, "Attributes"); attrs && attrs->is_object()) {
          for (const auto& [k, x] : attrs->get_object()) {
            if (!x.is_string()) continue;
            if (k == kLabelName) ev.subject = std::string(x.get_string());
            if (k == kLabelKind) ev.kind = std::string(x.get_string());
            if (k == docker::kLabelRole) holder = true;
            if (k == "exitCode" || k == "signal") ev.attributes[std::string(k)] = std::string(x.get_string());
          }
        }
      }
      // The containers that hold artifacts are the backend's own business.
      if (holder || ev.kind == "artifact") continue;
      if (!sink(ev)) {
        stopped = true;
        return false;
      }
    }
    return true;
  };
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      impl_->client.stream(
          Method::get, target, {}, chunk_sink,
          follow ? std::nullopt : std::optional<milliseconds>(impl_->options.request_timeout)));
  if (!is_2xx(r) && !stopped)
    return docker::engine_error(r, "cannot read the events of enclave '" + e.info.name + "'");
  return ok_status();
}

}  // namespace modhost::backend
