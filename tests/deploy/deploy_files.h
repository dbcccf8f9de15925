// What the deploy tests share: the files of the source tree they check, and the flags the built
// kiln-server accepts.
#ifndef KILN_TESTS_DEPLOY_DEPLOY_FILES_H_
#define KILN_TESTS_DEPLOY_DEPLOY_FILES_H_

#include <set>
#include <string>

namespace kiln::testing {

// <source tree>/relative.
std::string SourcePath(const std::string& relative);

// The whole file; fails the test when it cannot be read.
std::string ReadSourceFile(const std::string& relative);

// `text` with its first `from` replaced by `to`; fails the test when `from` is not in it, so a
// broken copy can never silently equal the original.
std::string ReplaceOnce(const std::string& text, const std::string& from, const std::string& to);

// The flags `kiln-server --help` lists (kiln's and glog's), without their dashes.
std::set<std::string> KilnServerFlags(const std::string& server_binary);

}  // namespace kiln::testing

#endif  // KILN_TESTS_DEPLOY_DEPLOY_FILES_H_
