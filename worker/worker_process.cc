#include "worker/worker_process.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/arena_tensors.h"
#include "common/clock.h"
#include "common/dtype.h"
#include "common/idle_priority.h"
#include "common/memory_probe.h"
#include "common/shape.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "proto/worker_frames.pb.h"
#include "worker/call_inputs.h"
#include "worker/shape_guard.h"
#include "worker/warmup.h"

namespace kiln {
namespace {

// The worker's peak anonymous memory: the largest of the shapes' peaks (VmHWM is reset before
// each shape) and the peak since the last reset.
int64_t PeakAnonBytes(const WarmupOutcome& warm) {
  int64_t peak = 0;
  for (const internal::ShapeWarmup& shape : warm.shapes) {
    peak = std::max(peak, shape.peak_anon_bytes());
  }
  absl::StatusOr<ResidentMemory> now = ReadResidentMemory();
  return std::max(peak, now.ok() ? now->PeakAnonBytes() : 0);
}

// Dies with its parent when `die_with_parent` (the zygote, which dies with the master; a worker
// forked from a warm template outlives it, and leaves when the master closes its channel).
// Signals: nothing blocked; TERM, HUP, TTIN and TTOU ignored like in the zygote (they are the
// master's, and `systemctl kill` sends them to the whole cgroup: a worker must finish its call
// while the master drains, and TTIN's default action would stop it); SIGPIPE ignored (a closed
// channel is an error, not a death).
void BecomeWorker(bool die_with_parent) {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_UNBLOCK, &all, nullptr);
  for (int sig : {SIGINT, SIGCHLD}) signal(sig, SIG_DFL);
  for (int sig : {SIGTERM, SIGHUP, SIGTTIN, SIGTTOU, SIGPIPE}) signal(sig, SIG_IGN);
  prctl(PR_SET_NAME, "kiln-worker");
  if (!die_with_parent) return;
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);  // the zygote died before the prctl took effect
}

// Warms as WorkerOptions says: confirms the template's warmup, or runs its own.
// With `threads_note` set when it tried one intra-op thread beside its planned ones
// (TriesOneThread), and on which it serves: this process's intra-op threads when it returns.
absl::StatusOr<WarmupOutcome> WarmWorker(TorchModel& model, const WorkerOptions& options,
                                         std::string& threads_note) {
  if (options.from_template != nullptr && options.intra_op_threads == 1 &&
      options.device_index < 0) {
    return ConfirmWarmup(model, options.warm, *options.from_template->outcome);
  }
  ASSIGN_OR_RETURN(WarmupOutcome planned, RunWarmup(model, options.warm));
  if (!options.intra_op_threads_automatic || options.intra_op_threads <= 1 ||
      options.device_index >= 0 || !TriesOneThread(planned)) {
    return planned;
  }
  TorchModel::SetIntraOpThreads(1);
  ASSIGN_OR_RETURN(WarmupOutcome one, ResettleWarmup(model, options.warm, planned));
  const bool keep_one = KeepsOneThread(planned, one);
  threads_note =
      absl::StrFormat("%s of %d planned: steady %.1f ms in all on one vs %.1f ms on %d",
                      keep_one ? "one" : "not one", options.intra_op_threads, SteadyWallMs(one),
                      SteadyWallMs(planned), options.intra_op_threads);
  if (keep_one) return one;
  TorchModel::SetIntraOpThreads(options.intra_op_threads);
  return planned;
}

// This worker's private memory at its peak, estimated after warmup: its private pages now plus
// what its resident memory peaked above its resident memory now (pages freed since the peak were
// its own: every page it allocated is private).
int64_t PrivatePeakBytes() {
  const absl::StatusOr<ProportionalMemory> own = ReadProportionalMemory();
  const absl::StatusOr<ResidentMemory> resident = ReadResidentMemory();
  if (!own.ok() || !resident.ok()) return 0;
  return own->private_bytes + resident->FreedSincePeakBytes();
}

[[noreturn]] void Fail(FrameChannel& channel, int worker_id, const absl::Status& status) {
  LOG(ERROR) << "worker " << worker_id << ": " << status;
  internal::FromWorker frame;
  frame.mutable_failed()->set_message(std::string(status.message()));
  (void)channel.Send(frame);
  google::FlushLogFiles(google::GLOG_INFO);
  _exit(1);
}

// Runs `inputs` (rows along the batch dim) in forward passes of at most `rows` rows, and joins
// the passes' outputs.
absl::StatusOr<std::vector<Tensor>> ForwardInPasses(TorchModel& model,
                                                    const std::vector<TensorView>& inputs,
                                                    int32_t batch, int32_t rows) {
  if (rows >= batch) return model.Forward(inputs);
  std::vector<std::vector<Tensor>> passes;
  for (int32_t begin = 0; begin < batch; begin += rows) {
    const int32_t count = std::min(rows, batch - begin);
    std::vector<TensorView> slice;
    for (const TensorView& input : inputs) slice.push_back(SliceRows(input, begin, count));
    ASSIGN_OR_RETURN(passes.emplace_back(), model.Forward(slice));
  }
  std::vector<Tensor> joined;
  for (size_t o = 0; o < passes.front().size(); ++o) {
    std::vector<const Tensor*> parts;
    for (const std::vector<Tensor>& pass : passes) parts.push_back(&pass[o]);
    ASSIGN_OR_RETURN(joined.emplace_back(), ConcatRows(parts));
  }
  return joined;
}

// Serves one call straight down: its inputs, the guard's plan for their shape, the forward
// passes, the outputs into the arena. What it ran is noted in `result`.
absl::Status ServeCall(TorchModel& model, const ShapeGuard& guard, const EncodeFn& tokenize,
                       const internal::InferCall& call, SharedArena& arena,
                       internal::InferResult& result) {
  const ModelConfig& config = model.spec().config;
  if (call.deadline_monotonic_ns() != 0 && MonotonicNowNs() >= call.deadline_monotonic_ns()) {
    return absl::DeadlineExceededError("deadline expired before compute; not run");
  }
  CallInputs inputs;
  RETURN_IF_ERROR(PrepareCall(config, tokenize, guard, call, arena, inputs, result));
  const Shape& request = inputs.request;
  const PassPlan& plan = inputs.plan;
  *result.mutable_ran_as() = ToProto(plan.pass);
  result.set_chunks(plan.passes);
  result.set_padded_rows(plan.padded_rows);
  result.set_cold_shape(plan.cold);

  const CallTimer timer(TorchModel::IntraOpThreads());
  absl::StatusOr<std::vector<Tensor>> computed = ForwardInPasses(
      model, inputs.views, request.batch_size + plan.padded_rows, plan.pass.batch_size);
  const CallTime time = timer.Elapsed();
  result.set_compute_ms(time.wall_ms);
  result.set_compute_cpu_ms(time.cpu_ms);
  ASSIGN_OR_RETURN(std::vector<Tensor> outputs, std::move(computed));
  std::vector<TensorView> views;
  for (Tensor& output : outputs) {
    if (plan.padded_rows > 0) KeepRows(output, request.batch_size);
    views.push_back(output.view());
  }
  return WriteToArena(views, call.output_offset(), arena, *result.mutable_outputs(),
                      call.output_end())
      .status();
}

internal::InferResult Serve(TorchModel& model, const ShapeGuard& guard, const EncodeFn& tokenize,
                            const internal::InferCall& call, SharedArena& arena) {
  internal::InferResult result;
  result.set_call_id(call.call_id());
  if (absl::Status served = ServeCall(model, guard, tokenize, call, arena, result); !served.ok()) {
    result.clear_outputs();
    result.set_code(static_cast<int>(served.code()));
    result.set_message(std::string(served.message()));
  }
  return result;
}

}  // namespace

void RunWorker(const ModelSpec& spec, TorchModel* shared, const WorkerOptions& options,
               FrameChannel channel, std::unique_ptr<SharedArena> arena) {
  BecomeWorker(/*die_with_parent=*/options.from_template == nullptr);
  const int id = options.worker_id;
  const auto start = std::chrono::steady_clock::now();
  // Loading (in the --share_weights=off baseline) and warming take only the CPU left over.
  std::unique_ptr<IdleWarming> idle;
  std::string priority_note;
  if (options.warm_at_idle_priority) {
    absl::StatusOr<std::unique_ptr<IdleWarming>> started = IdleWarming::Start({});
    if (started.ok()) {
      idle = *std::move(started);
    } else {
      priority_note = std::string(started.status().message());
    }
  }
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
  WarmupOutcome warm;
  std::string threads_note;
  if (options.warmup) {
    absl::StatusOr<WarmupOutcome> outcome = WarmWorker(model, options, threads_note);
    if (!outcome.ok()) Fail(channel, id, outcome.status());
    warm = *std::move(outcome);
    for (const internal::ShapeWarmup& shape : warm.shapes) *report.add_shapes() = shape;
  }
  if (idle != nullptr) {
    // It stays idle (the watchdog still on) through the readiness check, until Promote.
    const IdleWarmingReport so_far = idle->SoFar();
    report.set_idle_priority(true);
    report.set_idle_ms(so_far.idle_ms);
    report.set_idle_starved(so_far.starved);
    report.set_idle_starved_cpu_share(so_far.starved_cpu_share);
  }
  report.set_priority_note(priority_note);
  const ShapeGuard guard(model.spec().config, WarmedShapes(warm), warm.memory,
                         options.warmup ? options.warm.budget_bytes : 0);
  report.set_worker_id(id);
  report.set_pid(getpid());
  report.set_device(model.DeviceName());
  report.set_intra_op_threads(TorchModel::IntraOpThreads());
  report.set_threads_note(threads_note);
  report.set_warmup_ms(MillisecondsSince(start));
  report.set_peak_anon_bytes(PeakAnonBytes(warm));
  report.set_budget_bytes(options.warm.budget_bytes);
  report.set_baseline_anon_bytes(warm.baseline_bytes);
  report.set_tokenizer_texts(warm.tokenizer_texts);
  report.set_tokenizer_first_ms(warm.tokenizer_first_ms);
  report.set_tokenizer_steady_ms(warm.tokenizer_steady_ms);
  // With the shapes it did not confirm, which it has not run yet (the memory admission of the next
  // worker counts on this peak).
  report.set_private_peak_bytes(PrivatePeakBytes() + UnconfirmedPeakGrowthBytes(warm));
  if (const TemplateWarmth* warmth = options.from_template) {
    report.set_template_pid(warmth->pid);
    report.set_template_warmup_ms(warmth->warmup_ms);
    report.set_template_private_bytes(warmth->private_bytes);
  }
  if (absl::Status sent = channel.Send(ready); !sent.ok()) _exit(1);  // master gone

  while (true) {
    internal::ToWorker frame;
    absl::Status received = channel.Receive(&frame);
    if (absl::IsUnavailable(received)) _exit(0);  // the master closed the channel: we are done
    if (!received.ok()) Fail(channel, id, received);
    if (frame.has_promote() && idle != nullptr) {
      absl::StatusOr<IdleWarmingReport> finished = idle->Finish();
      if (!finished.ok()) {
        Fail(channel, id,
             absl::FailedPreconditionError(absl::StrCat(
                 "cannot return to normal CPU priority after warming at idle priority: ",
                 finished.status().message(), " (run kiln-server with --warmup_priority=normal)")));
      }
      idle.reset();
    }
    if (!frame.has_infer()) continue;
    std::unique_ptr<TorchModel> cold;
    if (options.cold_calls_for_test) {
      absl::StatusOr<std::unique_ptr<TorchModel>> loaded = TorchModel::Load(spec);
      if (!loaded.ok()) Fail(channel, id, loaded.status());
      cold = *std::move(loaded);
    }
    internal::FromWorker reply;
    *reply.mutable_result() =
        Serve(cold != nullptr ? *cold : model, guard, options.warm.tokenize, frame.infer(), *arena);
    if (absl::Status sent = channel.Send(reply); !sent.ok()) {
      _exit(absl::IsUnavailable(sent) ? 0 : 1);
    }
  }
}

}  // namespace kiln
