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
#include "common/arena_tensors.h"
#include "common/clock.h"
#include "common/dtype.h"
#include "common/idle_priority.h"
#include "common/memory_probe.h"
#include "glog/logging.h"
#include "proto/worker_frames.pb.h"
#include "worker/shape_guard.h"
#include "worker/text_batch.h"
#include "worker/warmup.h"

namespace kiln {
namespace {

// The worker's peak resident bytes: the largest of the shapes' peaks (VmHWM is reset before each
// shape) and the current VmHWM.
int64_t PeakRssBytes(const WarmupOutcome& warm) {
  int64_t peak = 0;
  for (const internal::ShapeWarmup& shape : warm.shapes) {
    peak = std::max(peak, shape.peak_rss_bytes());
  }
  absl::StatusOr<ResidentMemory> now = ReadResidentMemory();
  return std::max(peak, now.ok() ? now->peak_resident_bytes : 0);
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

// The sequence length of a request: the size of the first variable (-1) dim of the config's
// inputs, 0 when there is none.
int32_t SequenceLength(const ModelConfig& config, const std::vector<TensorView>& inputs) {
  const size_t offset = config.max_batch_size() > 0 ? 1 : 0;
  for (int i = 0; i < config.input_size() && i < static_cast<int>(inputs.size()); ++i) {
    const TensorConfig& input = config.input(i);
    for (int d = 0; d < input.dims_size(); ++d) {
      if (input.dims(d) == -1 && d + offset < inputs[i].shape.size()) {
        return static_cast<int32_t>(inputs[i].shape[d + offset]);
      }
    }
  }
  return 0;
}

// Runs `inputs` in passes of at most `rows` rows along the batch dim and joins the outputs.
absl::StatusOr<std::vector<Tensor>> ForwardInPasses(TorchModel& model,
                                                    const std::vector<TensorView>& inputs,
                                                    int32_t batch, int32_t rows) {
  if (rows >= batch) return model.Forward(inputs);
  std::vector<std::vector<Tensor>> passes;
  for (int32_t begin = 0; begin < batch; begin += rows) {
    const int32_t count = std::min(rows, batch - begin);
    std::vector<TensorView> slice;
    for (const TensorView& input : inputs) slice.push_back(SliceRows(input, begin, count));
    absl::StatusOr<std::vector<Tensor>> outputs = model.Forward(slice);
    if (!outputs.ok()) return outputs.status();
    passes.push_back(*std::move(outputs));
  }
  std::vector<Tensor> joined;
  for (size_t o = 0; o < passes.front().size(); ++o) {
    std::vector<const Tensor*> parts;
    for (const std::vector<Tensor>& pass : passes) parts.push_back(&pass[o]);
    absl::StatusOr<Tensor> output = ConcatRows(parts);
    if (!output.ok()) return output.status();
    joined.push_back(*std::move(output));
  }
  return joined;
}

internal::InferResult Serve(TorchModel& model, const ShapeGuard& guard, const EncodeFn& tokenize,
                            const internal::InferCall& call, SharedArena& arena) {
  const ModelConfig& config = model.spec().config;
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
  std::vector<TensorView> inputs;
  TextBatch text;  // owns the tokenized inputs of a text call
  if (call.has_text()) {
    if (tokenize == nullptr) {
      return fail(absl::InvalidArgumentError(config.name() + " has no tokenizer for text"));
    }
    absl::StatusOr<std::vector<std::string>> texts = TextInArena(call.text(), arena);
    if (!texts.ok()) return fail(texts.status());
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<TextBatch> batch =
        TokenizeBatch(*texts, tokenize, config, guard.SequenceBuckets());
    result.set_tokenize_ms(MillisecondsSince(start));
    if (!batch.ok()) return fail(batch.status());
    text = *std::move(batch);
    for (const Tensor& input : text.inputs) inputs.push_back(input.view());
    result.set_unpadded_length(text.longest);
  } else {
    absl::StatusOr<std::vector<TensorView>> views = ViewsInArena(call.inputs(), arena);
    if (!views.ok()) return fail(views.status());
    inputs = *std::move(views);
  }
  const bool batched = config.max_batch_size() > 0;
  const int32_t batch =
      batched && !inputs.empty() && !inputs[0].shape.empty() ? inputs[0].shape[0] : 1;
  const int32_t length = SequenceLength(config, inputs);
  absl::StatusOr<int32_t> rows = guard.RowsPerPass(batch, length);
  if (!rows.ok()) return fail(rows.status());
  // One pass of an unwarmed batch size: pad it with zero rows up to a warmed one.
  const int32_t padded = *rows == batch ? guard.PaddedBatch(batch, length) : batch;
  std::vector<Tensor> padded_inputs;
  if (padded > batch) {
    for (const TensorView& input : inputs) padded_inputs.push_back(PadRows(input, padded));
    inputs.clear();
    for (const Tensor& input : padded_inputs) inputs.push_back(input.view());
    result.set_padded_rows(padded - batch);
  }
  const int32_t per_pass = padded > batch ? padded : *rows;
  result.set_batch_size(per_pass);
  result.set_sequence_length(length);
  result.set_chunks((batch + per_pass - 1) / per_pass);
  const int32_t last = batch - (result.chunks() - 1) * per_pass;
  result.set_cold_shape(!guard.Warmed(per_pass, length) ||
                        (padded == batch && !guard.Warmed(last, length)));

  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<Tensor>> outputs =
      ForwardInPasses(model, inputs, padded > batch ? padded : batch, per_pass);
  result.set_compute_ms(MillisecondsSince(start));
  if (!outputs.ok()) return fail(outputs.status());
  if (padded > batch) {
    for (Tensor& output : *outputs) KeepRows(output, batch);
  }
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
  if (options.warmup) {
    WarmupOptions warmup{options.memory_budget_bytes, options.replay, options.tokenize,
                         options.samples};
    absl::StatusOr<WarmupOutcome> outcome = RunWarmup(model, warmup);
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
                         options.warmup ? options.memory_budget_bytes : 0);
  report.set_worker_id(id);
  report.set_pid(getpid());
  report.set_device(model.DeviceName());
  report.set_intra_op_threads(options.intra_op_threads);
  report.set_warmup_ms(MillisecondsSince(start));
  report.set_peak_rss_bytes(PeakRssBytes(warm));
  report.set_budget_bytes(options.memory_budget_bytes);
  report.set_baseline_rss_bytes(warm.baseline_bytes);
  report.set_tokenizer_texts(warm.tokenizer_texts);
  report.set_tokenizer_first_ms(warm.tokenizer_first_ms);
  report.set_tokenizer_steady_ms(warm.tokenizer_steady_ms);
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
    internal::FromWorker reply;
    *reply.mutable_result() = Serve(model, guard, options.tokenize, frame.infer(), *arena);
    if (absl::Status sent = channel.Send(reply); !sent.ok()) {
      _exit(absl::IsUnavailable(sent) ? 0 : 1);
    }
  }
}

}  // namespace kiln
