#include "worker/worker_process.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/arena_tensors.h"
#include "common/clock.h"
#include "common/dtype.h"
#include "glog/logging.h"
#include "proto/worker_frames.pb.h"
#include "worker/warmup.h"

namespace kiln {
namespace {

int64_t PeakRssBytes() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return int64_t{usage.ru_maxrss} * 1024;  // ru_maxrss is in KiB on Linux
}

// Dies with the zygote (and so with the master): the zygote forked us from its only thread.
// Signals: nothing blocked; TERM and HUP ignored like in the zygote (systemd sends TERM to the
// whole cgroup, and a worker must finish its call while the master drains: it leaves when the
// master closes its channel); SIGPIPE ignored (a closed channel is an error, not a death).
void BecomeChildOfZygote() {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_UNBLOCK, &all, nullptr);
  for (int sig : {SIGINT, SIGCHLD, SIGTTIN, SIGTTOU}) signal(sig, SIG_DFL);
  for (int sig : {SIGTERM, SIGHUP, SIGPIPE}) signal(sig, SIG_IGN);
  prctl(PR_SET_NAME, "kiln-worker");
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);  // the zygote died before the prctl took effect
}

[[noreturn]] void Fail(FrameChannel& channel, int worker_id, const absl::Status& status) {
  LOG(ERROR) << "worker " << worker_id << ": " << status;
  internal::FromWorker frame;
  frame.mutable_failed()->set_message(std::string(status.message()));
  (void)channel.Send(frame);
  google::FlushLogFiles(google::GLOG_INFO);
  _exit(1);
}

internal::InferResult Serve(TorchModel& model, const internal::InferCall& call,
                            SharedArena& arena) {
  internal::InferResult result;
  result.set_call_id(call.call_id());
  auto fail = [&result](const absl::Status& status) {
    result.clear_outputs();
    result.set_code(static_cast<int>(status.code()));
    result.set_message(std::string(status.message()));
    return result;
  };
  if (call.deadline_monotonic_ns() != 0 && MonotonicNowNs() >= call.deadline_monotonic_ns()) {
    return fail(absl::DeadlineExceededError("deadline expired before compute; not run"));
  }
  absl::StatusOr<std::vector<TensorView>> inputs = ViewsInArena(call.inputs(), arena);
  if (!inputs.ok()) return fail(inputs.status());
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<Tensor>> outputs = model.Forward(*inputs);
  result.set_compute_ms(MillisecondsSince(start));
  if (!outputs.ok()) return fail(outputs.status());
  std::vector<TensorView> views;
  for (const Tensor& output : *outputs) views.push_back(output.view());
  absl::StatusOr<uint64_t> written =
      WriteToArena(views, call.output_offset(), arena, *result.mutable_outputs());
  if (!written.ok()) return fail(written.status());
  return result;
}

}  // namespace

void RunWorker(const ModelSpec& spec, TorchModel* shared, const WorkerOptions& options,
               FrameChannel channel, std::unique_ptr<SharedArena> arena) {
  BecomeChildOfZygote();
  const int id = options.worker_id;
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<TorchModel> own;
  if (shared == nullptr) {
    absl::StatusOr<std::unique_ptr<TorchModel>> loaded =
        TorchModel::Load(spec, /*map_weights=*/false);
    if (!loaded.ok()) Fail(channel, id, loaded.status());
    own = *std::move(loaded);
  }
  TorchModel& model = shared != nullptr ? *shared : *own;
  TorchModel::SetIntraOpThreads(options.intra_op_threads);
  if (options.device_index >= 0) {
    if (absl::Status device = model.UseCudaDevice(options.device_index); !device.ok()) {
      Fail(channel, id, device);
    }
  }

  internal::FromWorker ready;
  internal::WarmupReport& report = *ready.mutable_ready();
  if (options.warmup) {
    absl::StatusOr<std::vector<internal::ShapeWarmup>> shapes = RunWarmup(model);
    if (!shapes.ok()) Fail(channel, id, shapes.status());
    for (internal::ShapeWarmup& shape : *shapes) *report.add_shapes() = std::move(shape);
  }
  report.set_worker_id(id);
  report.set_pid(getpid());
  report.set_device(model.DeviceName());
  report.set_intra_op_threads(options.intra_op_threads);
  report.set_warmup_ms(MillisecondsSince(start));
  report.set_peak_rss_bytes(PeakRssBytes());
  if (absl::Status sent = channel.Send(ready); !sent.ok()) _exit(1);  // master gone

  while (true) {
    internal::ToWorker frame;
    absl::Status received = channel.Receive(&frame);
    if (absl::IsUnavailable(received)) _exit(0);  // the master closed the channel: we are done
    if (!received.ok()) Fail(channel, id, received);
    if (!frame.has_infer()) continue;
    internal::FromWorker reply;
    *reply.mutable_result() = Serve(model, frame.infer(), *arena);
    if (absl::Status sent = channel.Send(reply); !sent.ok()) {
      _exit(absl::IsUnavailable(sent) ? 0 : 1);
    }
  }
}

}  // namespace kiln
