// kiln-server: the master process (DESIGN.md, "Process model").
//
// Today it runs startup steps 1-2 of DESIGN.md: parse the flags and the model repository, then
// load every model (mmap the safetensors weights, load the TorchScript module, rebind its
// tensors to the mapping), logging each phase with its duration. Forking the zygote and the
// workers, and serving gRPC, come next (issue #3); until then it exits after loading.
//
// Flags are gflags, because LibTorch's c10 already registers its own gflags and glog's: one
// parser keeps --v, --vmodule, --logtostderr and friends working.
#include <gflags/gflags.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/model_config_loader.h"
#include "glog/logging.h"
#include "worker/torch_model.h"

DEFINE_string(model_repository, "models",
              "Model repository: one directory per model holding config.pbtxt and "
              "<version>/model.pt (+ model.safetensors, tokenizer). See README.md.");

namespace {

constexpr char kUsage[] =
    "a gRPC model server whose workers are warm before it says ready.\n"
    "\n"
    "Usage: kiln-server --model_repository=DIR [flags]\n"
    "\n"
    "Today kiln-server validates the repository and loads every model the way the master does\n"
    "before forking its workers (map weights, load TorchScript, rebind), logs each phase with\n"
    "its duration, and exits. Serving over gRPC arrives with the next release.";

constexpr char kLogFlagsHelp[] =
    "\nLogging (glog's own flags, also accepted):\n"
    "  --logtostderr (default true here)  --stderrthreshold=N  --minloglevel=N\n"
    "  --v=N (verbose level)  --vmodule=file=N,...  --log_dir=DIR\n";

double MillisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// gflags' built-in --help would list LibTorch's flags too; show only ours plus glog's.
bool HandleHelp(const char* argv0) {
  std::string help, helpshort, version;
  gflags::GetCommandLineOption("help", &help);
  gflags::GetCommandLineOption("helpshort", &helpshort);
  gflags::GetCommandLineOption("version", &version);
  if (version == "true") {
    std::printf("kiln-server %s\n", KILN_VERSION);
    return true;
  }
  if (help != "true" && helpshort != "true") return false;
  gflags::ShowUsageWithFlagsRestrict(argv0, "server/");
  std::fputs(kLogFlagsHelp, stdout);
  return true;
}

int LoadRepository() {
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<kiln::ModelSpec>> specs =
      kiln::LoadModelRepository(FLAGS_model_repository);
  if (!specs.ok()) {
    LOG(ERROR) << "startup: model repository: " << specs.status().message();
    return 1;
  }
  LOG(INFO) << absl::StrFormat("startup: parsed model repository %s: %d model(s) in %.1f ms",
                                FLAGS_model_repository, specs->size(), MillisecondsSince(start));

  std::vector<std::unique_ptr<kiln::TorchModel>> models;
  for (const kiln::ModelSpec& spec : *specs) {
    start = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<kiln::TorchModel>> model = kiln::TorchModel::Load(spec);
    if (!model.ok()) {
      LOG(ERROR) << "startup: load " << spec.config.name() << ": " << model.status().message();
      return 1;
    }
    const kiln::TorchModelLoadStats& stats = (*model)->stats();
    LOG(INFO) << absl::StrFormat(
        "startup: loaded %s v%d in %.1f ms: map %.1f ms (%.1f MB), torchscript %.1f ms, "
        "rebind %.1f ms (%d tensors shared, %d copied)",
        spec.config.name(), spec.version, MillisecondsSince(start), stats.map_ms,
        stats.mapped_bytes / 1e6, stats.load_ms, stats.rebind_ms, stats.tensors_rebound,
        stats.tensors_copied);
    models.push_back(*std::move(model));
  }
  LOG(INFO) << "startup: " << models.size()
            << " model(s) loaded; serving is not implemented yet (issue #3), exiting";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(kUsage);
  gflags::SetVersionString(KILN_VERSION);
  FLAGS_logtostderr = true;  // before parsing, so --logtostderr=false still works
  gflags::ParseCommandLineNonHelpFlags(&argc, &argv, /*remove_flags=*/true);
  if (HandleHelp(argv[0])) return 0;
  if (argc > 1) {
    std::fprintf(stderr,
                 "kiln-server: unexpected argument '%s' (flags are --name=value; see "
                 "--help)\n",
                 argv[1]);
    return 2;
  }
  google::InitGoogleLogging(argv[0]);
  return LoadRepository();
}
