#include "enclave_convert.hpp"

namespace modhost::convert {

grpc::Status to_status(const Error& e) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (e.code()) {
    case ErrorCode::invalid_argument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case ErrorCode::not_found:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case ErrorCode::already_exists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case ErrorCode::failed_precondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case ErrorCode::unavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case ErrorCode::timeout:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case ErrorCode::cancelled:
      code = grpc::StatusCode::CANCELLED;
      break;
    case ErrorCode::internal:
      code = grpc::StatusCode::INTERNAL;
      break;
    case ErrorCode::abi_mismatch:
    case ErrorCode::module_failed:
    case ErrorCode::crashed:
      code = grpc::StatusCode::UNKNOWN;
      break;
  }
  return grpc::Status(code, e.message());
}

Error to_error(const grpc::Status& s) {
  ErrorCode code = ErrorCode::module_failed;
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      code = ErrorCode::invalid_argument;
      break;
    case grpc::StatusCode::NOT_FOUND:
      code = ErrorCode::not_found;
      break;
    case grpc::StatusCode::ALREADY_EXISTS:
      code = ErrorCode::already_exists;
      break;
    case grpc::StatusCode::FAILED_PRECONDITION:
      code = ErrorCode::failed_precondition;
      break;
    case grpc::StatusCode::UNAVAILABLE:
      code = ErrorCode::unavailable;
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      code = ErrorCode::timeout;
      break;
    case grpc::StatusCode::CANCELLED:
      code = ErrorCode::cancelled;
      break;
    case grpc::StatusCode::INTERNAL:
      code = ErrorCode::internal;
      break;
    default:
      break;
  }
  return Error(code, s.error_message());
}

ServiceStatus status_from_word(const std::string& s) {
  for (ServiceStatus v : {ServiceStatus::created, ServiceStatus::running, ServiceStatus::paused,
                          ServiceStatus::stopped, ServiceStatus::exited}) {
    if (s == to_string(v)) return v;
  }
  return ServiceStatus::unknown;
}

namespace {

void port_to_proto(const PortSpec& p, enclave_api::Port* out) {
  out->set_name(p.name);
  out->set_number(p.number);
  out->set_protocol(p.protocol);
}

PortSpec port_from_proto(const enclave_api::Port& p) {
  return PortSpec{p.name(), static_cast<std::uint16_t>(p.number()),
                  p.protocol().empty() ? "tcp" : p.protocol()};
}

}  // namespace

void to_proto(const ServiceConfig& in, enclave_api::AddServiceArgs* out) {
  out->set_name(in.name);
  out->set_image(in.image);
  for (const auto& e : in.entrypoint) out->add_entrypoint(e);
  for (const auto& c : in.cmd) out->add_cmd(c);
  for (const auto& [k, v] : in.env) (*out->mutable_env())[k] = v;
  for (const auto& p : in.ports) port_to_proto(p, out->add_ports());
  for (const auto& f : in.files) {
    auto* m = out->add_files();
    m->set_artifact(f.artifact);
    m->set_path(f.path);
  }
  out->set_cpus(in.cpus);
  out->set_memory_bytes(in.memory_bytes);
  for (const auto& [k, v] : in.labels) (*out->mutable_labels())[k] = v;
  out->set_user(in.user);
  for (const auto& c : in.cap_add) out->add_cap_add(c);
  out->set_privileged(in.privileged);
  for (const auto& o : in.security_opt) out->add_security_opt(o);
}

ServiceConfig from_proto(const enclave_api::AddServiceArgs& in) {
  ServiceConfig c;
  c.name = in.name();
  c.image = in.image();
  c.entrypoint.assign(in.entrypoint().begin(), in.entrypoint().end());
  c.cmd.assign(in.cmd().begin(), in.cmd().end());
  for (const auto& [k, v] : in.env()) c.env[k] = v;
  for (const auto& p : in.ports()) c.ports.push_back(port_from_proto(p));
  for (const auto& f : in.files()) c.files.push_back({f.artifact(), f.path()});
  c.cpus = in.cpus();
  c.memory_bytes = in.memory_bytes();
  for (const auto& [k, v] : in.labels()) c.labels[k] = v;
  c.user = in.user();
  c.cap_add.assign(in.cap_add().begin(), in.cap_add().end());
  c.privileged = in.privileged();
  c.security_opt.assign(in.security_opt().begin(), in.security_opt().end());
  return c;
}

void to_proto(const ServiceInfo& in, enclave_api::ServiceInfo* out) {
  out->set_name(in.name);
  out->set_id(in.id);
  out->set_enclave_id(in.enclave_id);
  out->set_image(in.image);
  out->set_status(to_string(in.status));
  out->set_ip(in.ip);
  for (const auto& p : in.ports) {
    auto* o = out->add_ports();
    port_to_proto(p.port, o);
    o->set_host_ip(p.host_ip);
    o->set_host_port(p.host_port);
  }
  for (const auto& [k, v] : in.labels) (*out->mutable_labels())[k] = v;
  out->set_has_exit_code(in.exit_code.has_value());
  out->set_exit_code(in.exit_code.value_or(0));
}

ServiceInfo from_proto(const enclave_api::ServiceInfo& in) {
  ServiceInfo s;
  s.name = in.name();
  s.id = in.id();
  s.enclave_id = in.enclave_id();
  s.image = in.image();
  s.status = status_from_word(in.status());
  s.ip = in.ip();
  for (const auto& p : in.ports()) {
    s.ports.push_back(
        PublishedPort{port_from_proto(p), p.host_ip(), static_cast<std::uint16_t>(p.host_port())});
  }
  for (const auto& [k, v] : in.labels()) s.labels[k] = v;
  if (in.has_exit_code()) s.exit_code = in.exit_code();
  return s;
}

namespace {

void connection_to_proto(const Connection& in, enclave_api::Connection* out) {
  out->set_blocked(in.blocked);
  out->set_loss_percent(in.loss_percent);
  out->set_delay_us(in.delay.count());
  out->set_jitter_us(in.jitter.count());
  out->set_correlation_percent(in.correlation_percent);
  out->set_distribution(in.distribution == Connection::Distribution::normal ? "normal" : "uniform");
  out->set_rate_bytes_per_second(in.rate_bytes_per_second);
}

Connection connection_from_proto(const enclave_api::Connection& in) {
  Connection c;
  c.blocked = in.blocked();
  c.loss_percent = in.loss_percent();
  c.delay = std::chrono::microseconds(in.delay_us());
  c.jitter = std::chrono::microseconds(in.jitter_us());
  c.correlation_percent = in.correlation_percent();
  c.distribution =
      in.distribution() == "normal" ? Connection::Distribution::normal : Connection::Distribution::uniform;
  c.rate_bytes_per_second = in.rate_bytes_per_second();
  return c;
}

}  // namespace

void to_proto(const NetworkPartitioning& in, enclave_api::Partitioning* out) {
  for (const auto& [name, members] : in.partitions) {
    auto& m = (*out->mutable_partitions())[name];
    for (const std::string& s : members) m.add_services(s);
  }
  for (const PartitionConnection& c : in.connections) {
    auto* o = out->add_connections();
    o->set_a(c.a);
    o->set_b(c.b);
    connection_to_proto(c.connection, o->mutable_connection());
  }
  connection_to_proto(in.default_connection, out->mutable_default_connection());
  out->set_temporary(in.temporary);
}

NetworkPartitioning from_proto(const enclave_api::Partitioning& in) {
  NetworkPartitioning p;
  for (const auto& [name, members] : in.partitions()) {
    p.partitions[name].assign(members.services().begin(), members.services().end());
  }
  for (const auto& c : in.connections()) {
    p.connections.push_back(PartitionConnection{c.a(), c.b(), connection_from_proto(c.connection())});
  }
  p.default_connection = connection_from_proto(in.default_connection());
  p.temporary = in.temporary();
  return p;
}

void to_proto(const ReadinessCheck& in, enclave_api::WaitReadyArgs* out) {
  out->set_kind(in.kind == ReadinessCheck::Kind::http   ? "http"
                : in.kind == ReadinessCheck::Kind::exec ? "exec"
                                                        : "tcp");
  out->set_port(in.port);
  out->set_path(in.path);
  out->set_expected_status(in.expected_status);
  out->set_body_contains(in.body_contains);
  for (const auto& c : in.command) out->add_command(c);
  out->set_initial_delay_ms(in.initial_delay.count());
  out->set_retries(in.retries);
  out->set_interval_ms(in.interval.count());
  out->set_timeout_ms(in.timeout.count());
}

ReadinessCheck from_proto(const enclave_api::WaitReadyArgs& in) {
  ReadinessCheck c;
  c.kind = in.kind() == "http"   ? ReadinessCheck::Kind::http
           : in.kind() == "exec" ? ReadinessCheck::Kind::exec
                                 : ReadinessCheck::Kind::tcp;
  c.port = in.port();
  c.path = in.path();
  c.expected_status = in.expected_status();
  c.body_contains = in.body_contains();
  c.command.assign(in.command().begin(), in.command().end());
  c.initial_delay = std::chrono::milliseconds(in.initial_delay_ms());
  c.retries = in.retries();
  c.interval = std::chrono::milliseconds(in.interval_ms());
  c.timeout = std::chrono::milliseconds(in.timeout_ms());
  return c;
}

}  // namespace modhost::convert
