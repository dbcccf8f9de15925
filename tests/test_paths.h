// Where tests find their inputs.
#ifndef KILN_TESTS_TEST_PATHS_H_
#define KILN_TESTS_TEST_PATHS_H_

#include <string>

namespace kiln::testing {

// The demo model repository written by scripts/make_models.py: $KILN_MODELS_DIR if set, else
// the build's default (<source>/models).
std::string ModelsDir();

class TempDir;

// A repository under dir/repo with the demo `model` alone: its config.pbtxt, its kiln.pbtxt
// (when it has one) and its version files, as symlinks into ModelsDir(); returns dir/repo.
std::string OneDemoModelRepository(const TempDir& dir, const std::string& model);

// A fresh, empty directory under $TMPDIR (or /tmp) that is removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `contents` to path()/relative, creating parent directories; returns the full path.
  std::string WriteFile(const std::string& relative, const std::string& contents) const;

 private:
  std::string path_;
};

}  // namespace kiln::testing

#endif  // KILN_TESTS_TEST_PATHS_H_
