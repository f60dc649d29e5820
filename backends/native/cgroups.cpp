#include "backends/native/cgroups.hpp"

#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace modhost::backend::native {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_text(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  if (!out) return Error(ErrorCode::internal, "cannot write '" + value + "' to " + path);
  return ok_status();
}

Status make_dir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return Error(ErrorCode::internal, "cannot make cgroup " + path + ": " + ec.message());
  return ok_status();
}

// The device rules of a cgroup v2 service, as the BPF program the kernel
// runs on every device access (v2 has no devices.allow): Docker's defaults,
// as on v1. Any node may be made (mknod); only these are opened: null zero
// full random urandom (1:3,5,7,8,9), tty console ptmx (5:0-2), pts (136:*),
// tun (10:200), all character devices.
class DeviceFilter {
 public:
  DeviceFilter() {
    // r2 = access << 16 | type; r3 = type; r2 = access; r4 = major; r5 = minor
    load(2, 0);
    mov(3, 2);
    alu(BPF_AND, 3, 0xFFFF);
    alu(BPF_RSH, 2, 16);
    load(4, 4);
    load(5, 8);
    // mknod alone: allowed.
    mov(6, 2);
    alu(BPF_AND, 6, ~static_cast<std::int32_t>(BPF_DEVCG_ACC_MKNOD));
    jump(BPF_JEQ, 6, 0, "allow");
    jump(BPF_JNE, 3, BPF_DEVCG_DEV_CHAR, "deny");
    jump(BPF_JEQ, 4, 136, "allow");
    jump(BPF_JNE, 4, 10, "not10");
    jump(BPF_JEQ, 5, 200, "allow");
    jump_always("deny");
    label("not10");
    jump(BPF_JNE, 4, 5, "not5");
    jump(BPF_JLE, 5, 2, "allow");
    jump_always("deny");
    label("not5");
    jump(BPF_JNE, 4, 1, "deny");
    for (int minor : {3, 5, 7, 8, 9}) jump(BPF_JEQ, 5, minor, "allow");
    label("deny");
    ret(0);
    label("allow");
    ret(1);
    for (const auto& [at, target] : fixups_) {
      insns_[at].off = static_cast<std::int16_t>(labels_.at(target) - static_cast<int>(at) - 1);
    }
  }

  // Loads the program and attaches it to the cgroup directory `dir`.
  Status attach(const std::string& dir) const {
    char log[4096] = {};
    union bpf_attr load {};
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = reinterpret_cast<std::uint64_t>(insns_.data());
    load.insn_cnt = static_cast<std::uint32_t>(insns_.size());
    load.license = reinterpret_cast<std::uint64_t>("GPL");
    load.log_buf = reinterpret_cast<std::uint64_t>(log);
    load.log_size = sizeof log;
    load.log_level = 1;
    const int prog = static_cast<int>(::syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load));
    if (prog < 0) {
      return Error(
          ErrorCode::failed_precondition,
          std::string("cannot load the device filter of cgroup v2 (the kernel needs CONFIG_CGROUP_BPF): ") +
              std::strerror(errno) + (log[0] ? std::string(": ") + log : std::string()));
    }
    const int cg = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    union bpf_attr at {};
    at.target_fd = static_cast<std::uint32_t>(cg);
    at.attach_bpf_fd = static_cast<std::uint32_t>(prog);
    at.attach_type = BPF_CGROUP_DEVICE;
    const bool attached = cg >= 0 && ::syscall(SYS_bpf, BPF_PROG_ATTACH, &at, sizeof at) == 0;
    const int err = errno;
    if (cg >= 0) ::close(cg);
    ::close(prog);  // the attachment holds the program
    if (!attached) {
      return Error(ErrorCode::internal,
                   "cannot attach the device filter to cgroup " + dir + ": " + std::strerror(err));
    }
    return ok_status();
  }

 private:
  void emit(std::uint8_t code, int dst, int src, std::int16_t off, std::int32_t imm) {
    bpf_insn i{};
    i.code = code;
    i.dst_reg = static_cast<std::uint8_t>(dst);
    i.src_reg = static_cast<std::uint8_t>(src);
    i.off = off;
    i.imm = imm;
    insns_.push_back(i);
  }
  void load(int dst, std::int16_t off) { emit(BPF_LDX | BPF_MEM | BPF_W, dst, 1, off, 0); }
  void mov(int dst, int src) { emit(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
  void alu(std::uint8_t op, int dst, std::int32_t imm) { emit(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm); }
  void jump(std::uint8_t op, int dst, std::int32_t imm, const std::string& target) {
    fixups_.emplace_back(insns_.size(), target);
    emit(BPF_JMP | op | BPF_K, dst, 0, 0, imm);
  }
  void jump_always(const std::string& target) {
    fixups_.emplace_back(insns_.size(), target);
    emit(BPF_JMP | BPF_JA, 0, 0, 0, 0);
  }
  void label(const std::string& name) { labels_[name] = static_cast<int>(insns_.size()); }
  void ret(std::int32_t value) {
    emit(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, value);
    emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
  }

  std::vector<bpf_insn> insns_;
  std::map<std::string, int> labels_;
  std::vector<std::pair<std::size_t, std::string>> fixups_;
};

}  // namespace

Result<Cgroups> Cgroups::detect() {
  Cgroups c;
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) {
    c.v2_ = true;
    c.unified = "/sys/fs/cgroup";
    // Controllers a v1 hierarchy still holds are missing here: a service
    // runs without them, and a limit that needs one is refused.
    std::istringstream controllers(read_text("/sys/fs/cgroup/cgroup.controllers"));
    for (std::string name; controllers >> name;) {
      if (name == "memory" || name == "pids" || name == "cpu") c.v2_controllers_.push_back(name);
    }
    return c;
  }
  // v1: one mount per controller, found in mountinfo.
  std::ifstream mi("/proc/self/mountinfo");
  for (std::string line; std::getline(mi, line);) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream after(line.substr(dash + 3));
    std::string type, source, options;
    after >> type >> source >> options;
    if (type != "cgroup") continue;
    std::istringstream before(line.substr(0, dash));
    std::string id, parent, dev, root, mount;
    before >> id >> parent >> dev >> root >> mount;
    std::stringstream opts(options);
    for (std::string o; std::getline(opts, o, ',');) {
      if (o == "memory") c.memory = mount;
      if (o == "pids") c.pids_root = mount;
      if (o == "cpu") c.cpu = mount;
      if (o == "freezer") c.freezer = mount;
      if (o == "devices") c.devices = mount;
    }
  }
  if (c.memory.empty() || c.pids_root.empty() || c.cpu.empty() || c.freezer.empty()) {
    return Error(
        ErrorCode::failed_precondition,
        "cgroups: neither a cgroup v2 hierarchy nor v1 hierarchies with memory, pids, cpu and freezer "
        "are mounted");
  }
  return c;
}

std::vector<std::string> Cgroups::dirs(const std::string& relative) const {
  if (v2_) return {unified + "/" + relative};
  std::vector<std::string> out;
  for (const std::string* root : {&memory, &pids_root, &cpu, &freezer, &devices}) {
    if (root->empty()) continue;  // no devices hierarchy
    std::string d = *root + "/" + relative;
    if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(std::move(d));
  }
  return out;
}

Status Cgroups::create(const std::string& relative, const CgroupLimits& limits) const {
  if (v2_) {
    for (const auto& [limit, controller] :
         {std::pair{limits.memory_bytes > 0, "memory"}, std::pair{limits.pids > 0, "pids"},
          std::pair{limits.cpus > 0, "cpu"}}) {
      if (limit &&
          std::find(v2_controllers_.begin(), v2_controllers_.end(), controller) == v2_controllers_.end()) {
        return Error(ErrorCode::failed_precondition,
                     std::string("cannot apply the limit: the cgroup v2 controller '") + controller +
                         "' is not available on this host (a cgroup v1 hierarchy holds it)");
      }
    }
    // Controllers are enabled for the children of every level on the way,
    // one by one (a write naming one that is missing enables none).
    std::string path = unified;
    const auto parts = fs::path(relative);
    for (const auto& part : parts) {
      for (const auto& controller : v2_controllers_)
        (void)write_text(path + "/cgroup.subtree_control", "+" + controller);
      path += "/" + part.string();
      MODHOST_TRY(make_dir(path));
    }
    static const DeviceFilter device_filter;
    MODHOST_TRY(device_filter.attach(path));
    if (limits.memory_bytes > 0) {
      MODHOST_TRY(write_text(path + "/memory.max", std::to_string(limits.memory_bytes)));
      (void)write_text(path + "/memory.swap.max", "0");
    }
    if (limits.pids > 0) MODHOST_TRY(write_text(path + "/pids.max", std::to_string(limits.pids)));
    if (limits.cpus > 0) {
      const long period = 100000;
      MODHOST_TRY(write_text(path + "/cpu.max", std::to_string(static_cast<long>(limits.cpus * period)) +
                                                    " " + std::to_string(period)));
    }
    return ok_status();
  }
  for (const auto& d : dirs(relative)) MODHOST_TRY(make_dir(d));
  if (!devices.empty()) {
    // Docker's default device rules: any node may be made (CAP_MKNOD is not
    // in the default set anyway), only these opened. A second wall behind
    // the missing capability: a node of the host's disk cannot be read.
    const std::string d = devices + "/" + relative;
    MODHOST_TRY(write_text(d + "/devices.deny", "a"));
    for (const char* rule :
         {"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
          "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"}) {
      MODHOST_TRY(write_text(d + "/devices.allow", rule));
    }
  }
  if (limits.memory_bytes > 0) {
    const std::string m = memory + "/" + relative;
    MODHOST_TRY(write_text(m + "/memory.limit_in_bytes", std::to_string(limits.memory_bytes)));
    // Swap counts against the limit too (where swap accounting exists).
    (void)write_text(m + "/memory.memsw.limit_in_bytes", std::to_string(limits.memory_bytes));
    (void)write_text(m + "/memory.swappiness", "0");
  }
  if (limits.pids > 0)
    MODHOST_TRY(write_text(pids_root + "/" + relative + "/pids.max", std::to_string(limits.pids)));
  if (limits.cpus > 0) {
    const long period = 100000;
    MODHOST_TRY(write_text(cpu + "/" + relative + "/cpu.cfs_period_us", std::to_string(period)));
    MODHOST_TRY(write_text(cpu + "/" + relative + "/cpu.cfs_quota_us",
                           std::to_string(static_cast<long>(limits.cpus * period))));
  }
  return ok_status();
}

Status Cgroups::remove(const std::string& relative) const {
  MODHOST_TRY(remove_one(relative));
  // Its scope's directory (modhost/SCOPE) goes with its last service; a busy
  // one (other services) stays.
  if (const auto slash = relative.rfind('/');
      slash != std::string::npos && relative.rfind("modhost/", 0) == 0 && relative.find('/', 8) == slash) {
    for (const auto& d : dirs(relative.substr(0, slash))) ::rmdir(d.c_str());
  }
  return ok_status();
}

Status Cgroups::remove_one(const std::string& relative) const {
  for (const auto& d : dirs(relative)) {
    // The kernel may take a moment to let go of exited processes.
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || attempt == 49) {
        return Error(ErrorCode::internal, "cannot remove cgroup " + d + ": " + std::strerror(errno));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  return ok_status();
}

std::vector<int> Cgroups::pids(const std::string& relative) const {
  std::vector<int> out;
  for (const auto& d : dirs(relative)) {
    std::ifstream in(d + "/cgroup.procs");
    for (int pid = 0; in >> pid;) {
      if (std::find(out.begin(), out.end(), pid) == out.end()) out.push_back(pid);
    }
  }
  return out;
}

Status Cgroups::freeze(const std::string& relative, bool frozen_state) const {
  if (v2_) {
    MODHOST_TRY(write_text(unified + "/" + relative + "/cgroup.freeze", frozen_state ? "1" : "0"));
    // cgroup.events says "frozen 1" once every task stopped.
    for (int i = 0; i < 200 && frozen_state; ++i) {
      if (read_text(unified + "/" + relative + "/cgroup.events").find("frozen 1") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return ok_status();
  }
  const std::string state = freezer + "/" + relative + "/freezer.state";
  MODHOST_TRY(write_text(state, frozen_state ? "FROZEN" : "THAWED"));
  // FREEZING until every task stopped.
  for (int i = 0; i < 200 && frozen_state; ++i) {
    if (read_text(state).rfind("FROZEN", 0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ok_status();
}

bool Cgroups::frozen(const std::string& relative) const {
  if (v2_) {
    const std::string events = read_text(unified + "/" + relative + "/cgroup.events");
    return events.find("frozen 1") != std::string::npos;
  }
  const std::string s = read_text(freezer + "/" + relative + "/freezer.state");
  return s.rfind("FROZEN", 0) == 0 || s.rfind("FREEZING", 0) == 0;
}

std::string Cgroups::oom_file(const std::string& relative) const {
  return v2_ ? unified + "/" + relative + "/memory.events" : memory + "/" + relative + "/memory.oom_control";
}

std::vector<std::string> Cgroups::children(const std::string& relative) const {
  std::vector<std::string> out;
  for (const auto& d : dirs(relative)) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec)) {
      if (!e.is_directory()) continue;
      std::string rel = relative + "/" + e.path().filename().string();
      if (std::find(out.begin(), out.end(), rel) == out.end()) out.push_back(std::move(rel));
    }
  }
  return out;
}

}  // namespace modhost::backend::native
