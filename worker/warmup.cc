#include "worker/warmup.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/dtype.h"
#include "common/memory_probe.h"
#include "common/stats.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/traffic_profile.h"

namespace kiln {

absl::StatusOr<SettleResult> SettleShape(const std::function<absl::StatusOr<CallTime>()>& call,
                                         const SettlePlan& plan) {
  SettleResult result;
  auto agree = [&plan](double a, double b) {
    return std::abs(a - b) <= plan.tolerance * std::max(a, b);
  };
  for (int n = 1; n <= plan.max_calls; ++n) {
    ASSIGN_OR_RETURN(const CallTime time, call());
    result.calls.push_back(time);
    if (n >= std::max(plan.min_calls, 2) && agree(result.calls[n - 2].cpu_ms, time.cpu_ms)) {
      result.settled_after = n;
      break;
    }
  }
  // The pair that agreed is steady already: it counts toward the steady calls.
  std::vector<double> wall;
  std::vector<double> cpu;
  if (result.settled_after > 0) {
    for (size_t i = result.calls.size() - 2; i < result.calls.size(); ++i) {
      wall.push_back(result.calls[i].wall_ms);
      cpu.push_back(result.calls[i].cpu_ms);
    }
  }
  while (static_cast<int>(wall.size()) < plan.steady_calls) {
    ASSIGN_OR_RETURN(const CallTime time, call());
    result.calls.push_back(time);
    wall.push_back(time.wall_ms);
    cpu.push_back(time.cpu_ms);
  }
  result.first = result.calls.front();
  result.steady = CallTime{Median(wall), Median(cpu)};
  return result;
}

SettlePlan PlanSettling(const WarmupConfig& warmup, bool new_plan) {
  const int floor = new_plan ? kNewPlanMinCalls : 0;
  return SettlePlan{std::max(warmup.calls_per_shape(), floor),
                    std::max(warmup.max_calls_per_shape(), floor), warmup.settle_tolerance(),
                    warmup.steady_calls()};
}

namespace {

// Warms the tokenizer on sample texts of every warmed length: the first call, then the median of
// five rounds.
absl::Status WarmTokenizer(const EncodeFn& tokenize, const std::vector<Shape>& shapes,
                           WarmupOutcome& outcome) {
  std::set<int32_t> lengths;
  for (const Shape& shape : shapes) lengths.insert(std::max(shape.sequence_length, 1));
  std::vector<double> rounds;
  for (int round = 0; round < 6; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int32_t length : lengths) {
      RETURN_IF_ERROR(tokenize(SampleText(length)).status());
      if (round == 0 && outcome.tokenizer_texts == 0) {
        outcome.tokenizer_first_ms = MillisecondsSince(start);
      }
      ++outcome.tokenizer_texts;
    }
    if (round > 0) rounds.push_back(MillisecondsSince(start) / lengths.size());
  }
  outcome.tokenizer_steady_ms = Median(rounds);
  return absl::OkStatus();
}

// A text model's recorded request and the sequence length its texts pad to.
struct RecordedText {
  std::vector<std::string> texts;
  int32_t length = 0;
};

// The text requests among `samples` (other samples are skipped, as are texts beyond the model's
// batch and requests the tokenizer fails on: recorded traffic never stops a start), each with
// the length it pads to among the plan's lengths, as serving would pad it.
std::vector<RecordedText> RecordedTexts(const ModelConfig& config, const EncodeFn& tokenize,
                                        const std::vector<Shape>& shapes,
                                        const std::vector<std::vector<Tensor>>* samples) {
  std::vector<RecordedText> recorded;
  if (samples == nullptr) return recorded;
  std::vector<int32_t> lengths;
  for (const Shape& shape : shapes) lengths.push_back(shape.sequence_length);
  const size_t max_rows = std::max(config.max_batch_size(), 1);
  for (const std::vector<Tensor>& sample : *samples) {
    absl::StatusOr<std::optional<std::vector<std::string>>> texts =
        TextSampleTexts(sample, config.tokenizer().text_input());
    if (!texts.ok() || !texts->has_value()) continue;  // the master logged a broken one
    RecordedText& text = recorded.emplace_back();
    text.texts = std::move(**texts);
    if (text.texts.size() > max_rows) text.texts.resize(max_rows);
    absl::StatusOr<TextBatch> batch = TokenizeBatch(text.texts, tokenize, config, lengths);
    if (batch.ok()) {
      text.length = batch->length;
    } else {
      recorded.pop_back();
    }
  }
  return recorded;
}

// The recorded texts that pad to `shape`'s length, the one whose row count is nearest its batch
// size (the first of equals), or null.
const RecordedText* MatchingText(const Shape& shape, const std::vector<RecordedText>& recorded) {
  const RecordedText* best = nullptr;
  const auto distance = [&shape](const RecordedText& text) {
    return std::abs(static_cast<int64_t>(text.texts.size()) - shape.batch_size);
  };
  for (const RecordedText& text : recorded) {
    if (text.length == shape.sequence_length &&
        (best == nullptr || distance(text) < distance(*best))) {
      best = &text;
    }
  }
  return best;
}

// A text model's inputs for `shape`: `texts` (cycled or cut to the batch size; null: sample text
// of the shape's length) tokenized and cut to exactly the shape's length.
absl::StatusOr<std::vector<Tensor>> TextWarmupInputs(const ModelConfig& config,
                                                     const EncodeFn& tokenize, const Shape& shape,
                                                     const std::vector<std::string>* texts) {
  const int32_t length = std::max(shape.sequence_length, 1);
  const EncodeFn cut = [&](absl::string_view text) -> absl::StatusOr<std::vector<int32_t>> {
    absl::StatusOr<std::vector<int32_t>> ids = tokenize(text);
    if (ids.ok() && static_cast<int32_t>(ids->size()) > length) ids->resize(length);
    return ids;
  };
  std::vector<std::string> rows(std::max(shape.batch_size, 1));
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i] = texts != nullptr ? (*texts)[i % texts->size()] : SampleText(length);
  }
  ASSIGN_OR_RETURN(TextBatch batch, TokenizeBatch(rows, cut, config, {length}));
  return std::move(batch.inputs);
}

// The recorded request whose inputs have exactly the shapes of `shape`, or null.
const std::vector<Tensor>* MatchingSample(const ModelConfig& config, const Shape& shape,
                                          const std::vector<std::vector<Tensor>>* samples) {
  if (samples == nullptr) return nullptr;
  for (const std::vector<Tensor>& sample : *samples) {
    bool match = static_cast<int>(sample.size()) == config.input_size();
    for (int i = 0; match && i < config.input_size(); ++i) {
      const std::optional<DType> dtype = DTypeFromDataType(config.input(i).data_type());
      match = sample[i].name == config.input(i).name() && dtype == sample[i].dtype &&
              sample[i].shape == ConcreteShape(config.input(i), config, shape);
    }
    if (match) return &sample;
  }
  return nullptr;
}

}  // namespace

namespace {

// A warmup call's inputs for one shape, and whether they are a recorded request.
struct ShapeInputs {
  std::vector<Tensor> tensors;
  bool recorded = false;
};

// What every shape's inputs are made from (RunWarmup's comment says in which order).
class WarmupInputs {
 public:
  WarmupInputs(const ModelConfig& config, const WarmupOptions& options,
               const std::vector<Shape>& shapes)
      : config_(config),
        options_(options),
        text_(config.has_tokenizer() && options.tokenize != nullptr) {
    if (text_) recorded_texts_ = RecordedTexts(config, options.tokenize, shapes, options.samples);
  }

  bool text() const { return text_; }

  absl::StatusOr<ShapeInputs> For(const Shape& shape) {
    ShapeInputs inputs;
    const std::vector<Tensor>* sample = MatchingSample(config_, shape, options_.samples);
    const RecordedText* recorded_text = text_ ? MatchingText(shape, recorded_texts_) : nullptr;
    inputs.recorded = sample != nullptr || recorded_text != nullptr;
    if (sample != nullptr) {
      inputs.tensors = *sample;
    } else if (text_) {
      ASSIGN_OR_RETURN(
          inputs.tensors,
          TextWarmupInputs(config_, options_.tokenize, shape,
                           recorded_text != nullptr ? &recorded_text->texts : nullptr));
    } else {
      ASSIGN_OR_RETURN(inputs.tensors, MakeWarmupInputs(config_, shape, seed_++));
    }
    return inputs;
  }

 private:
  const ModelConfig& config_;
  const WarmupOptions& options_;
  const bool text_;
  std::vector<RecordedText> recorded_texts_;
  uint32_t seed_ = 1;
};

// `inputs` (every input of the model) with each combination of its optional inputs left out, as a
// request may send them: one list of tensors per non-empty combination (2^k - 1 for k optional
// inputs, at most 15: the loader allows 4), none that leaves no input at all. Each is its own
// call to the TorchScript executor (an argument that is None takes another path through the
// graph), so warmup runs every one.
std::vector<std::vector<Tensor>> WithoutOptionalInputs(const ModelConfig& config,
                                                       const std::vector<Tensor>& inputs) {
  std::vector<std::string> optional;
  for (const TensorConfig& input : config.input()) {
    if (input.optional()) optional.push_back(input.name());
  }
  std::vector<std::vector<Tensor>> variants;
  for (uint32_t left_out = 1; left_out < (uint32_t{1} << optional.size()); ++left_out) {
    std::vector<Tensor> variant;
    for (const Tensor& tensor : inputs) {
      const auto at = std::find(optional.begin(), optional.end(), tensor.name);
      if (at == optional.end() || (left_out & (uint32_t{1} << (at - optional.begin()))) == 0) {
        variant.push_back(tensor);
      }
    }
    if (!variant.empty()) variants.push_back(std::move(variant));
  }
  return variants;
}

// A worker confirming its template's warmup calls a shape at most this often, until a call costs
// the template's steady CPU time within the settle tolerance plus this slack.
constexpr int kMaxConfirmCalls = 5;
constexpr double kConfirmSlackMs = 0.05;
// Beyond the smallest shape, a worker confirms the shapes whose steady call costs at most this
// much CPU time. A first call pays for the pages it writes first, a cost per page and not per
// unit of work: once the smallest shape's confirmation has copied the pages every pass writes, a
// long pass pays a small share of its time for the rest (resnet50's batch 4 on one thread: 554 vs
// 520 ms, 6.5 %), and confirming it would cost the whole pass again in every worker; a short one
// pays a large share (textcls's b4 s128: 9.4 vs 6.8 ms) and costs little to confirm.
constexpr double kConfirmCostlyCpuMs = 100;

// Every shape of `outcome`, refused ones included, in its order.
std::vector<Shape> ShapesOf(const WarmupOutcome& outcome) {
  std::vector<Shape> shapes;
  for (const internal::ShapeWarmup& entry : outcome.shapes) {
    shapes.push_back({entry.batch_size(), entry.sequence_length()});
  }
  return shapes;
}

// One forward pass of `shape` on `inputs`, timed.
absl::StatusOr<CallTime> TimedForward(TorchModel& model, const Shape& shape,
                                      const std::vector<Tensor>& inputs) {
  const CallTimer timer(TorchModel::IntraOpThreads());
  if (absl::Status ran = model.Forward(Views(inputs)).status(); !ran.ok()) {
    return Annotate(
        ran, absl::StrCat("warmup batch ", shape.batch_size, " length ", shape.sequence_length));
  }
  return timer.Elapsed();
}

}  // namespace

absl::StatusOr<WarmupOutcome> RunWarmup(TorchModel& model, const WarmupOptions& options) {
  const ModelConfig& config = model.spec().config;
  const WarmupConfig& warmup = config.warmup();
  // On a GPU every shape gets a plan of its own (kNewPlanMinCalls); on the CPU only the first.
  const bool plan_per_shape = model.DeviceName() != "cpu";
  bool first_plan = true;
  const std::vector<Shape> shapes = PlanShapes(config, options.replay);

  WarmupOutcome outcome;
  if (config.has_tokenizer() && options.tokenize != nullptr) {
    RETURN_IF_ERROR(WarmTokenizer(options.tokenize, shapes, outcome));
  }
  WarmupInputs inputs_for(config, options, shapes);
  ASSIGN_OR_RETURN(const ResidentMemory before, ReadResidentMemory());
  outcome.baseline_bytes = before.anon_bytes;
  outcome.memory = ShapeMemoryModel(outcome.baseline_bytes);
  if (options.budget_bytes > 0 && outcome.baseline_bytes > options.budget_bytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: the worker already holds %.0f MB before warmup, over its memory budget of %.0f MB; "
        "raise memory.limit_bytes or memory.cgroup_share, or run fewer workers",
        config.name(), outcome.baseline_bytes / 1e6, options.budget_bytes / 1e6));
  }

  for (const Shape& shape : shapes) {
    internal::ShapeWarmup& entry = outcome.shapes.emplace_back();
    entry.set_batch_size(shape.batch_size);
    entry.set_sequence_length(shape.sequence_length);
    const int64_t units = ShapeUnits(shape.batch_size, shape.sequence_length);
    entry.set_projected_peak_bytes(outcome.memory.Projected(units));
    if (options.budget_bytes > 0 && entry.projected_peak_bytes() > options.budget_bytes) {
      entry.set_refused(true);
      continue;
    }
    const SettlePlan plan = PlanSettling(warmup, first_plan || plan_per_shape);
    first_plan = false;
    ASSIGN_OR_RETURN(const ShapeInputs inputs, inputs_for.For(shape));
    entry.set_recorded_request(inputs.recorded);
    auto call = [&]() { return TimedForward(model, shape, inputs.tensors); };
    // A failed reset (e.g. /proc/self not writable) leaves VmHWM at the peak so far: still an
    // upper bound for this shape, so the projection stays conservative.
    (void)ResetPeakResident();
    ASSIGN_OR_RETURN(const SettleResult settled, SettleShape(call, plan));
    // The same shape with optional inputs left out: settled as well; the shape's reported
    // timings stay those of all its inputs.
    for (const std::vector<Tensor>& variant : WithoutOptionalInputs(config, inputs.tensors)) {
      RETURN_IF_ERROR(
          SettleShape([&]() { return TimedForward(model, shape, variant); }, plan).status());
    }
    ASSIGN_OR_RETURN(const ResidentMemory after, ReadResidentMemory());
    outcome.memory.Add(units, after.PeakAnonBytes());
    entry.set_peak_anon_bytes(after.PeakAnonBytes());
    entry.set_refused(options.budget_bytes > 0 && entry.peak_anon_bytes() > options.budget_bytes);
    entry.set_calls(static_cast<int32_t>(settled.calls.size()));
    entry.set_first_ms(settled.first.wall_ms);
    entry.set_steady_ms(settled.steady.wall_ms);
    entry.set_first_cpu_ms(settled.first.cpu_ms);
    entry.set_steady_cpu_ms(settled.steady.cpu_ms);
    entry.set_settled_after(settled.settled_after);
  }
  if (options.budget_bytes > 0 && !shapes.empty() && WarmedShapes(outcome).empty()) {
    const internal::ShapeWarmup& smallest = outcome.shapes.front();
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: no warmup shape fits the worker's memory budget of %.0f MB (the smallest, batch %d%s, "
        "peaked at %.0f MB): it could serve nothing; raise memory.limit_bytes or "
        "memory.cgroup_share, or run fewer workers",
        config.name(), options.budget_bytes / 1e6, smallest.batch_size(),
        smallest.sequence_length() > 0 ? absl::StrCat(" length ", smallest.sequence_length()) : "",
        std::max(smallest.peak_anon_bytes(), smallest.projected_peak_bytes()) / 1e6));
  }
  return outcome;
}

absl::StatusOr<WarmupOutcome> ConfirmWarmup(TorchModel& model, const WarmupOptions& options,
                                            const WarmupOutcome& warmed) {
  WarmupOutcome outcome = warmed;
  WarmupInputs inputs_for(model.spec().config, options, ShapesOf(warmed));
  const double tolerance = model.spec().config.warmup().settle_tolerance();
  bool first = true;
  for (internal::ShapeWarmup& entry : outcome.shapes) {
    if (entry.refused()) continue;
    if (!first && entry.steady_cpu_ms() > kConfirmCostlyCpuMs) {
      entry.set_from_template(true);
      entry.set_calls(0);  // not confirmed: the template's warmup stands for it
      continue;
    }
    first = false;
    const Shape shape{entry.batch_size(), entry.sequence_length()};
    ASSIGN_OR_RETURN(const ShapeInputs inputs, inputs_for.For(shape));
    (void)ResetPeakResident();
    ASSIGN_OR_RETURN(const CallTime first, TimedForward(model, shape, inputs.tensors));
    // A pass can write more of the template's pages than the first call copied (allocations land
    // elsewhere): call again, up to kMaxConfirmCalls, until one costs the template's steady CPU
    // time (within the settle tolerance and kConfirmSlackMs), so no client pays for the copies.
    int calls = 1;
    for (CallTime last = first;
         calls < kMaxConfirmCalls &&
         last.cpu_ms > entry.steady_cpu_ms() * (1 + tolerance) + kConfirmSlackMs;
         ++calls) {
      ASSIGN_OR_RETURN(last, TimedForward(model, shape, inputs.tensors));
    }
    for (const std::vector<Tensor>& variant :
         WithoutOptionalInputs(model.spec().config, inputs.tensors)) {
      RETURN_IF_ERROR(TimedForward(model, shape, variant).status());
    }
    ASSIGN_OR_RETURN(const ResidentMemory after, ReadResidentMemory());
    entry.set_from_template(true);
    entry.set_calls(calls);
    entry.set_first_ms(first.wall_ms);
    entry.set_first_cpu_ms(first.cpu_ms);
    entry.set_peak_anon_bytes(std::max(entry.peak_anon_bytes(), after.PeakAnonBytes()));
  }
  return outcome;
}

absl::StatusOr<WarmupOutcome> ResettleWarmup(TorchModel& model, const WarmupOptions& options,
                                             const WarmupOutcome& warmed) {
  WarmupOutcome outcome = warmed;
  WarmupInputs inputs_for(model.spec().config, options, ShapesOf(warmed));
  bool first = true;
  for (internal::ShapeWarmup& entry : outcome.shapes) {
    if (entry.refused()) continue;
    const Shape shape{entry.batch_size(), entry.sequence_length()};
    ASSIGN_OR_RETURN(const ShapeInputs inputs, inputs_for.For(shape));
    ASSIGN_OR_RETURN(const SettleResult settled,
                     SettleShape([&]() { return TimedForward(model, shape, inputs.tensors); },
                                 PlanSettling(model.spec().config.warmup(), /*new_plan=*/first)));
    first = false;
    entry.set_calls(entry.calls() + static_cast<int32_t>(settled.calls.size()));
    entry.set_steady_ms(settled.steady.wall_ms);
    entry.set_steady_cpu_ms(settled.steady.cpu_ms);
    entry.set_settled_after(settled.settled_after);
  }
  return outcome;
}

double SteadyWallMs(const WarmupOutcome& outcome) {
  double total = 0;
  for (const internal::ShapeWarmup& shape : outcome.shapes) {
    if (!shape.refused()) total += shape.steady_ms();
  }
  return total;
}

bool TriesOneThread(const WarmupOutcome& planned) {
  std::vector<double> steady;
  for (const internal::ShapeWarmup& shape : planned.shapes) {
    if (!shape.refused()) steady.push_back(shape.steady_ms());
  }
  if (steady.empty()) return false;
  const auto median = steady.begin() + steady.size() / 2;
  std::nth_element(steady.begin(), median, steady.end());
  return *median <= kOneThreadTrialMaxMs && SteadyWallMs(planned) <= kOneThreadTrialMaxTotalMs;
}

bool KeepsOneThread(const WarmupOutcome& planned, const WarmupOutcome& one) {
  return WarmedShapes(one) == WarmedShapes(planned) &&
         SteadyWallMs(one) <= SteadyWallMs(planned) * (1 + kOneThreadMargin);
}

int64_t UnconfirmedPeakGrowthBytes(const WarmupOutcome& outcome) {
  int64_t confirmed = 0;
  int64_t unconfirmed = 0;
  for (const internal::ShapeWarmup& shape : outcome.shapes) {
    if (shape.refused() || !shape.from_template()) continue;
    int64_t& peak = shape.calls() > 0 ? confirmed : unconfirmed;
    peak = std::max(peak, shape.peak_anon_bytes());
  }
  return std::max<int64_t>(0, unconfirmed - confirmed);
}

std::set<Shape> WarmedShapes(const WarmupOutcome& outcome) {
  std::set<Shape> warmed;
  for (const internal::ShapeWarmup& shape : outcome.shapes) {
    if (!shape.refused()) warmed.insert({shape.batch_size(), shape.sequence_length()});
  }
  return warmed;
}

}  // namespace kiln
