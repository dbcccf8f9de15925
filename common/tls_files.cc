#include "common/tls_files.h"

#include <fstream>
#include <sstream>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiln {
namespace {

// The PEM text of `path`, read for `flag`.
absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", path, ": cannot be read"));
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (!absl::StrContains(text.str(), "-----BEGIN ")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", path, ": no PEM block (-----BEGIN ...) in it"));
  }
  return text.str();
}

}  // namespace

absl::Status ValidateTlsFiles(const TlsFiles& files) {
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together: set both or neither");
  }
  if (!files.ca.empty() && files.cert.empty()) {
    return absl::InvalidArgumentError(
        "--tls_ca (require client certificates) needs --tls_cert and --tls_key");
  }
  return absl::OkStatus();
}

absl::StatusOr<TlsPem> ReadTlsFiles(const TlsFiles& files) {
  if (absl::Status valid = ValidateTlsFiles(files); !valid.ok()) return valid;
  TlsPem pem;
  if (!files.enabled()) return pem;
  for (auto [flag, path, text] :
       {std::tuple("tls_cert", &files.cert, &pem.cert), std::tuple("tls_key", &files.key, &pem.key),
        std::tuple("tls_ca", &files.ca, &pem.ca)}) {
    if (path->empty()) continue;
    absl::StatusOr<std::string> read = ReadPem(flag, *path);
    if (!read.ok()) return read.status();
    *text = *std::move(read);
  }
  return pem;
}

}  // namespace kiln
