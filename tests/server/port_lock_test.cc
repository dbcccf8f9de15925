// The port lock's file is written by kiln, often as root: these tests plant what an unprivileged
// user could plant (a symbolic link, a hard link, a file of their own, a directory anyone can
// write to) and check that kiln refuses, says why, and writes nothing through it.
#include "server/port_lock.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/skip.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::TempDir;

constexpr int kPort = 18661;

std::string Contents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string LockPath(const TempDir& dir) {
  return absl::StrCat(dir.path(), "/kiln-server-", kPort, ".lock");
}

TEST_CASE("the port lock holds the port and names the holder's pid", "[port_lock]") {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<PortLock>> first = PortLock::Acquire(dir.path(), kPort);
  REQUIRE(first.ok());
  CHECK(Contents(LockPath(dir)) == absl::StrCat(getpid(), "\n"));
  struct stat st {};
  REQUIRE(stat(LockPath(dir).c_str(), &st) == 0);
  CHECK((st.st_mode & 077) == 0);  // 0600: nobody else reads or writes it
  const absl::StatusOr<std::unique_ptr<PortLock>> second = PortLock::Acquire(dir.path(), kPort);
  REQUIRE(second.status().code() == absl::StatusCode::kAlreadyExists);
  CHECK_THAT(std::string(second.status().message()), Contains(absl::StrCat("pid ", getpid())));
}

TEST_CASE(
    "a symbolic link planted at the lock path is refused and nothing is written through "
    "it",
    "[port_lock]") {
  TempDir dir, elsewhere;
  const std::string victim = elsewhere.WriteFile("precious", "do not truncate me\n");
  REQUIRE(symlink(victim.c_str(), LockPath(dir).c_str()) == 0);
  const absl::StatusOr<std::unique_ptr<PortLock>> lock = PortLock::Acquire(dir.path(), kPort);
  REQUIRE(lock.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(lock.status().message()), Contains("is a symbolic link"));
  CHECK(Contents(victim) == "do not truncate me\n");
}

TEST_CASE("a hard link planted at the lock path is refused and nothing is written through it",
          "[port_lock]") {
  TempDir dir;
  const std::string victim = dir.WriteFile("precious", "do not truncate me\n");
  REQUIRE(link(victim.c_str(), LockPath(dir).c_str()) == 0);
  const absl::StatusOr<std::unique_ptr<PortLock>> lock = PortLock::Acquire(dir.path(), kPort);
  REQUIRE(lock.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(lock.status().message()), Contains("links 2"));
  CHECK(Contents(victim) == "do not truncate me\n");
}

TEST_CASE("a lock file of another user is refused", "[port_lock]") {
  if (geteuid() != 0) KILN_SKIP("only root can make a file of another user");
  TempDir dir;
  const std::string planted = dir.WriteFile(absl::StrCat("kiln-server-", kPort, ".lock"), "1\n");
  REQUIRE(chown(planted.c_str(), 65534, 65534) == 0);
  const absl::StatusOr<std::unique_ptr<PortLock>> lock = PortLock::Acquire(dir.path(), kPort);
  REQUIRE(lock.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(lock.status().message()), Contains("owner uid 65534"));
  CHECK(Contents(planted) == "1\n");
}

TEST_CASE("a lock directory other users can write to is refused, the sticky /tmp too",
          "[port_lock]") {
  TempDir dir;
  for (const mode_t mode : {01777, 0777, 0775, 0757}) {
    INFO("mode " << std::oct << mode);
    REQUIRE(chmod(dir.path().c_str(), mode) == 0);
    const absl::StatusOr<std::unique_ptr<PortLock>> lock = PortLock::Acquire(dir.path(), kPort);
    REQUIRE(lock.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(lock.status().message()), Contains("lets other users create files"));
  }
  CHECK_FALSE(CheckPrivateDirectory("/tmp", "lock directory").ok());
  REQUIRE(chmod(dir.path().c_str(), 0755) == 0);
  CHECK(PortLock::Acquire(dir.path(), kPort).ok());
  CHECK(PortLock::Acquire(dir.path() + "/missing", kPort).status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE(
    "the state directory is made private when missing and refused when others can write "
    "to it",
    "[port_lock]") {
  TempDir dir;
  const std::string state = dir.path() + "/parent/state";
  REQUIRE(PrepareStateDirectory(state).ok());
  struct stat st {};
  REQUIRE(stat(state.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(chmod(state.c_str(), 0777) == 0);
  const absl::Status open_to_all = PrepareStateDirectory(state);
  CHECK(open_to_all.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(open_to_all.message()),
             Contains("state directory " + state + " (owner uid"));
}

TEST_CASE(
    "without --lock_dir the lock goes to systemd's or the session's runtime directory, "
    "else a directory of kiln's own",
    "[port_lock]") {
  CHECK(DefaultLockDir("/run/kiln-a:/run/kiln-b", "/run/user/1000", 0) == "/run/kiln-a");
  CHECK(DefaultLockDir("", "/run/user/1000", 1000) == "/run/user/1000");
  CHECK(DefaultLockDir(nullptr, nullptr, 0) == "/run/kiln");
  CHECK(DefaultLockDir(nullptr, "", 1000) == "/tmp/kiln-1000");
  CHECK(IsOwnLockDir("/tmp/kiln-1000", 1000));
  CHECK_FALSE(IsOwnLockDir("/run/user/1000", 1000));
}

TEST_CASE(
    "kiln's own directory is made private, and refused when someone else made it or it "
    "is a link",
    "[port_lock]") {
  TempDir dir;
  const std::string own = dir.path() + "/kiln-own";
  REQUIRE(EnsureOwnDirectory(own).ok());
  struct stat st {};
  REQUIRE(lstat(own.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(EnsureOwnDirectory(own).ok());  // again: already there and fine

  REQUIRE(chmod(own.c_str(), 0755) == 0);
  absl::Status readable = EnsureOwnDirectory(own);
  CHECK(readable.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(readable.message()), Contains("mode 0755"));

  const std::string link_path = dir.path() + "/kiln-link";
  REQUIRE(symlink(own.c_str(), link_path.c_str()) == 0);
  const absl::Status linked = EnsureOwnDirectory(link_path);
  CHECK(linked.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(linked.message()), Contains("a symbolic link"));

  if (geteuid() != 0) KILN_SKIP("a directory of another user: only root can make one");
  const std::string theirs = dir.path() + "/kiln-theirs";
  REQUIRE(mkdir(theirs.c_str(), 0700) == 0);
  REQUIRE(chown(theirs.c_str(), 65534, 65534) == 0);
  const absl::Status taken = EnsureOwnDirectory(theirs);
  CHECK(taken.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(taken.message()), Contains("owned by uid 65534"));
}

}  // namespace
}  // namespace kiln
