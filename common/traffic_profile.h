// Traffic-shaped warmup, recording side: the master counts the shapes it serves (and, when
// enabled, keeps a bounded sample of real requests) and saves them into a state directory, one
// profile per model; at the next start warmup replays the most requested shapes (and the
// samples) on top of the configured plan.
//
// Files, per model, in the state directory:
//   <model>.traffic.pbtxt         kiln.TrafficProfile (proto/traffic_profile.proto), text format;
//                                 counts accumulate across restarts.
//   <model>.samples.safetensors   recorded requests; tensor "<sample index>.<input name>", the
//                                 inputs of one sample in the order the request carried them.
//                                 A text model's request is one UINT8 tensor named after its
//                                 text input, holding the texts in the BYTES form
//                                 (common/bytes_form.h): TextSampleTensor.
// Both are replaced atomically (temp file in the same directory, fsync, rename), so a reader
// sees the old file or the new one, never a torn one.
#ifndef KILN_COMMON_TRAFFIC_PROFILE_H_
#define KILN_COMMON_TRAFFIC_PROFILE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "proto/traffic_profile.pb.h"

namespace kiln {

// Distinct (batch_size, sequence_length) shapes kept per model, in memory and in the file.
// Requests of further shapes are counted in TrafficProfile.other_requests.
inline constexpr int kMaxShapesPerModel = 64;

// A request whose inputs hold more bytes than this is never kept as a sample.
inline constexpr size_t kMaxSampleBytes = size_t{8} << 20;

// "<state_dir>/<model>.traffic.pbtxt" and "<state_dir>/<model>.samples.safetensors".
std::string TrafficProfilePath(const std::string& state_dir, const std::string& model);
std::string TrafficSamplesPath(const std::string& state_dir, const std::string& model);

// A text request kept as a sample: one UINT8 tensor named `text_input` holding `texts` in the
// BYTES form.
Tensor TextSampleTensor(const std::string& text_input, const std::vector<std::string>& texts);

// The texts of `sample` when it is a text request of a model whose text input is `text_input`
// (one UINT8 tensor of that name), else nullopt. InvalidArgument when it is one but its bytes
// are not the BYTES form. A text model's own inputs can never be named like its text input (the
// config loader refuses it), so the name tells the two kinds apart.
absl::StatusOr<std::optional<std::vector<std::string>>> TextSampleTexts(
    const std::vector<Tensor>& sample, const std::string& text_input);

// Counts the shapes served per model and keeps a bounded sample of requests, for Save to merge
// into the state directory.
//
// Sampling keeps, per model, the first `max_samples_per_model` requests of distinct input
// signatures (names, dtypes and shapes of all inputs; for text requests, the shape they ran
// as), not a reservoir: warmup gains from
// replaying different shapes, not from repeating one, and the first-N rule is deterministic
// and costs one lock and a size check per request once full. Save merges them with the samples
// already on disk: this run's samples first, then earlier ones of other signatures, up to N.
//
// The caller records only models it serves (names come from the model repository): the number
// of models is not bounded here, the shapes and samples per model are.
//
// Ownership: a plain object owned by the master; it copies everything it keeps (sample bytes
// included) and holds no pointer into a request. Thread-safety: all methods are safe from any
// thread. Record and RecordSample take `mu_` briefly (sample bytes are copied outside it); Save
// holds `save_mu_` throughout so that two saves never merge into the same file at once, and
// takes `mu_` only to copy and then to acknowledge what it wrote, never across file I/O. Lock
// order: save_mu_, then mu_.
class TrafficRecorder {
 public:
  // `max_samples_per_model` == 0 turns sampling off (RecordSample does nothing, Save writes no
  // samples file).
  explicit TrafficRecorder(int max_samples_per_model = 0);

  TrafficRecorder(const TrafficRecorder&) = delete;
  TrafficRecorder& operator=(const TrafficRecorder&) = delete;

  // Counts one request of `model` that ran as `shape`. A shape with batch_size < 1 or
  // sequence_length < 0 is ignored. Once the model has kMaxShapesPerModel distinct shapes, a new
  // shape is counted as "other".
  void Record(const std::string& model, const Shape& shape);

  // Keeps a copy of `inputs` as a sample of `model` when sampling is on, fewer than N samples
  // are kept, no kept sample has the same signature, and the inputs hold at most
  // kMaxSampleBytes. Inputs whose bytes do not match their dtype and shape are not kept.
  void RecordSample(const std::string& model, const std::vector<TensorView>& inputs);

  // Keeps a copy of `texts`, a request of text model `model` that ran as `ran_as` after
  // tokenizing, as a sample (TextSampleTensor(text_input, texts)) when
  // sampling is on, fewer than N samples are kept, no kept text sample ran as that shape, and
  // the texts hold at most kMaxSampleBytes.
  void RecordTextSample(const std::string& model, const std::string& text_input,
                        const std::vector<std::string>& texts, const Shape& ran_as);

  // The counts recorded for `model` since construction (not those of earlier runs), shapes
  // most requested first; `updated_unix_ms` is now. An empty profile for an unknown model.
  TrafficProfile Snapshot(const std::string& model) const;

  // Copies of the samples kept for `model`, in the order they were recorded.
  std::vector<std::vector<Tensor>> Samples(const std::string& model) const;

  // For every model with requests or samples not yet saved: adds the counts recorded since the
  // last successful save of that model to TrafficProfilePath(state_dir, model) (creating the
  // file, and `state_dir` itself, when missing) and, when sampling is on and new samples were
  // kept, merges them into TrafficSamplesPath. Each file is replaced atomically. Saving again
  // without new requests changes nothing, so it can run periodically and at shutdown.
  // Errors name the path; a model that fails (e.g. its existing profile is malformed: its
  // counts are not thrown away) does not stop the others, and its counts stay pending.
  absl::Status Save(const std::string& state_dir) ABSL_LOCKS_EXCLUDED(save_mu_, mu_);

 private:
  struct Sample {
    std::string signature;  // names, dtypes and shapes of all inputs; text: the shape it ran as
    std::vector<Tensor> inputs;
  };

  // Whether a sample would be kept now: sampling is on, `model` has room and, when `signature`
  // is given, no sample of it.
  bool WantsSample(const std::string& model, const std::string* signature = nullptr) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Keeps `sample` unless, since WantsSample, the model filled up or got its signature.
  void KeepSample(const std::string& model, std::shared_ptr<Sample> sample)
      ABSL_LOCKS_EXCLUDED(mu_);

  struct ModelTraffic {
    std::map<Shape, int64_t> requests;  // since construction; at most kMaxShapesPerModel keys
    int64_t other_requests = 0;
    std::map<Shape, int64_t> saved;  // the part of `requests` already added to the file
    int64_t saved_other_requests = 0;
    std::vector<std::shared_ptr<const Sample>> samples;  // at most max_samples_per_model_
    std::set<std::string> sample_signatures;
    bool samples_saved = true;  // no sample kept since the last successful save
  };

  const int max_samples_per_model_;
  absl::Mutex save_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, ModelTraffic> models_ ABSL_GUARDED_BY(mu_);
};

// Reads and checks a profile written by TrafficRecorder::Save (or by hand). Errors name the
// file and, for a syntax error or a bad value, the line and column ("path:line:col: ...").
absl::StatusOr<TrafficProfile> LoadTrafficProfile(const std::string& path);

// Reads a samples file written by TrafficRecorder::Save: one vector per sample, by increasing
// sample index, each holding that sample's inputs (named without the "<index>." prefix) in the
// order they were recorded. Errors name the file (and the tensor, for a badly named one).
absl::StatusOr<std::vector<std::vector<Tensor>>> LoadTrafficSamples(const std::string& path);

// The shapes warmup should replay: those whose share of
// all the profile's requests (other_requests included) is >= `min_share` and > 0, most
// requested first (ties: smaller batch, then shorter sequence, first), at most `max_shapes`.
// Shapes listed more than once are summed first. Sums saturate at INT64_MAX.
std::vector<Shape> ShapesToReplay(const TrafficProfile& profile, int max_shapes, double min_share);

}  // namespace kiln

#endif  // KILN_COMMON_TRAFFIC_PROFILE_H_
