#include "common/process.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_util.h"

namespace kiln {
namespace {

// NULL-terminated pointers into `strings`, for exec*(); valid while `strings` is unchanged.
std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Writes "<prefix><error>)\n" to stderr; async-signal-safe (no allocation, no locale).
void WriteExecFailure(const std::string& prefix, int error) {
  char digits[16];
  size_t n = sizeof(digits);
  digits[--n] = '\n';
  digits[--n] = ')';
  unsigned value = error < 0 ? 0u : static_cast<unsigned>(error);
  do {
    digits[--n] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0 && n > 0);
  (void)!write(STDERR_FILENO, prefix.data(), prefix.size());
  (void)!write(STDERR_FILENO, digits + n, sizeof(digits) - n);
}

}  // namespace

// --- starting a child --------------------------------------------------------------------------

std::vector<std::string> InCgroup(const std::string& cgroup_dir, std::vector<std::string> argv) {
  std::vector<std::string> wrapped = {"/bin/sh", "-c", "echo $$ > \"$0\" && exec \"$@\"",
                                      cgroup_dir + "/cgroup.procs"};
  wrapped.insert(wrapped.end(), std::make_move_iterator(argv.begin()),
                 std::make_move_iterator(argv.end()));
  return wrapped;
}

absl::StatusOr<pid_t> SpawnInProcessGroup(const std::vector<std::string>& argv_strings,
                                          const std::vector<std::string>* env,
                                          const std::string& log_path) {
  if (argv_strings.empty()) return absl::InvalidArgumentError("no command to start");
  // Everything the child needs is prepared here: after fork() in a multi-threaded process (gRPC's
  // threads, say) only async-signal-safe calls are allowed.
  std::vector<std::string> args = argv_strings;
  std::vector<char*> argv = CStrings(args);
  std::vector<std::string> env_strings = env != nullptr ? *env : std::vector<std::string>();
  std::vector<char*> envp = CStrings(env_strings);
  const std::string exec_failed = absl::StrCat("exec of ", args[0], " failed (errno ");
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot open ", log_path));
  }
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    const int error = errno;
    close(log_fd);
    return ErrnoStatus(error, "cannot open /dev/null");
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    close(log_fd);
    close(null_fd);
    return ErrnoStatus(error, "fork");
  }
  if (pid == 0) {
    setpgid(0, 0);  // the child and all it starts are one process group
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // the parent died before prctl took effect
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (env != nullptr) {
      execve(argv[0], argv.data(), envp.data());
    } else {
      execv(argv[0], argv.data());
    }
    WriteExecFailure(exec_failed, errno);
    _exit(127);
  }
  setpgid(pid, pid);  // also here, so that the group exists before the child runs
  close(log_fd);
  close(null_fd);
  return pid;
}

std::string ExitStatus::Describe() const {
  if (!signaled) return absl::StrCat("exit code ", code);
  return absl::StrCat("killed by signal ", code, " (", strsignal(code), ")");
}

namespace {

// How a child ended, from what waitid says of it.
ExitStatus ExitStatusOf(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return ExitStatus{false, info.si_status};
  return ExitStatus{true, info.si_status};  // CLD_KILLED, CLD_DUMPED
}

}  // namespace

std::optional<ExitStatus> PeekChildExit(pid_t pid) {
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != pid) {
    return std::nullopt;
  }
  return ExitStatusOf(info);
}

bool TryReapChild(pid_t pid) {
  const pid_t reaped = waitpid(pid, nullptr, WNOHANG);
  return reaped == pid || (reaped < 0 && errno == ECHILD);
}

void ReapChild(pid_t pid, std::chrono::milliseconds grace) {
  if (PollUntil([pid] { return TryReapChild(pid); }, grace)) return;
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

std::vector<std::pair<pid_t, ExitStatus>> ReapAdoptedChildren(const std::set<pid_t>& owned) {
  std::vector<std::pair<pid_t, ExitStatus>> reaped;
  while (true) {
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) break;
    const pid_t pid = info.si_pid;
    if (owned.count(pid) > 0) break;
    if (waitpid(pid, nullptr, WNOHANG) != pid) break;
    reaped.emplace_back(pid, ExitStatusOf(info));
  }
  return reaped;
}

// --- /proc -------------------------------------------------------------------------------------

std::vector<std::string> ProcStatFields(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!in || !std::getline(in, line)) return {};
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return {};
  return absl::StrSplit(line.substr(close + 1), ' ', absl::SkipEmpty());
}

std::optional<double> SecondsSinceProcessStart() {
  const std::vector<std::string> fields = ProcStatFields(getpid());
  constexpr size_t kStartTime = 19;  // field 22, counted after the command's ')' from field 3
  uint64_t ticks = 0;
  timespec now{};
  const long hertz = sysconf(_SC_CLK_TCK);
  if (fields.size() <= kStartTime || !absl::SimpleAtoi(fields[kStartTime], &ticks) || hertz <= 0 ||
      clock_gettime(CLOCK_BOOTTIME, &now) != 0) {
    return std::nullopt;
  }
  const double age = now.tv_sec + now.tv_nsec / 1e9 - static_cast<double>(ticks) / hertz;
  return std::max(age, 0.0);
}

std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> children;
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return children;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream in(absl::StrCat(tasks, "/", entry->d_name, "/children"));
    for (pid_t child; in >> child;) children.push_back(child);
  }
  closedir(dir);
  return children;
}

std::vector<pid_t> ProcessTree(pid_t root) {
  std::vector<pid_t> tree;
  if (ProcStatFields(root).empty()) return tree;
  std::set<pid_t> seen = {root};
  tree.push_back(root);
  for (size_t i = 0; i < tree.size(); ++i) {
    for (pid_t child : ChildrenOf(tree[i])) {
      if (seen.insert(child).second) tree.push_back(child);
    }
  }
  return tree;
}

// --- odds and ends -----------------------------------------------------------------------------

absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int error = errno;
    close(fd);
    return ErrnoStatus(error, "cannot bind 127.0.0.1:0");
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

}  // namespace kiln
