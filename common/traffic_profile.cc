#include "common/traffic_profile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/bytes_form.h"
#include "common/dtype.h"
#include "common/safetensors.h"
#include "common/safetensors_writer.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/text_proto_file.h"
#include "google/protobuf/text_format.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Most requested first; ties: smaller batch, then shorter sequence.
bool MoreRequested(const std::pair<Shape, int64_t>& a, const std::pair<Shape, int64_t>& b) {
  if (a.second != b.second) return a.second > b.second;
  return a.first < b.first;
}

// a + b, saturated at INT64_MAX (INT64_MIN): request counts come from files, and a profile may
// hold counts (by hand, or after a very long life) whose sum int64 cannot hold.
int64_t AddCounts(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return sum;
}

std::vector<std::pair<Shape, int64_t>> SortedByRequests(const std::map<Shape, int64_t>& counts) {
  std::vector<std::pair<Shape, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end(), MoreRequested);
  return sorted;
}

TrafficProfile MakeProfile(const std::string& model, const std::map<Shape, int64_t>& counts,
                           int64_t other_requests) {
  TrafficProfile profile;
  profile.set_model(model);
  profile.set_updated_unix_ms(NowUnixMs());
  for (const auto& [shape, requests] : SortedByRequests(counts)) {
    ShapeCount* count = profile.add_shapes();
    count->set_batch_size(shape.batch_size);
    count->set_sequence_length(shape.sequence_length);
    count->set_requests(requests);
  }
  profile.set_other_requests(other_requests);
  return profile;
}

// A model name that is one plain file name component, so its files stay in the state directory.
absl::Status CheckModelName(const std::string& model) {
  if (model.empty() || model == "." || model == ".." ||
      model.find_first_of(std::string("/\0", 2)) != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("traffic profile: model name \"", model, "\" is not a plain file name"));
  }
  return absl::OkStatus();
}

// Names, dtypes and shapes of all inputs, in order; equal exactly when those are equal.
std::string Signature(const std::vector<TensorView>& inputs) {
  std::string signature;
  for (const TensorView& input : inputs) {
    absl::StrAppend(&signature, input.name.size(), ":", input.name, " ", DTypeName(input.dtype),
                    ShapeString(input.shape), ";");
  }
  return signature;
}

// kiln neither reads nor writes its state through a link: one planted in the state directory could
// point at any file.
absl::Status RefuseLink(const std::string& path) {
  std::error_code error;
  if (fs::is_symlink(fs::symlink_status(path, error))) {
    return absl::FailedPreconditionError(
        absl::StrCat(path,
                     " is a symbolic link; kiln does not read or write its state through "
                     "links (remove it if it is not yours)"));
  }
  return absl::OkStatus();
}

// Durably replaces `path` with `contents`: writes a fresh temp file beside it, fsyncs it, renames
// it over `path` and fsyncs the directory. On failure the temp file is removed and `path` is
// left as it was.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  static std::atomic<uint64_t> next_temp{0};
  const std::string temp = absl::StrCat(path, ".tmp.", getpid(), ".", next_temp++);
  RETURN_IF_ERROR(RefuseLink(path));
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat(temp, ": cannot create"));

  absl::Status status;
  for (size_t written = 0; written < contents.size() && status.ok();) {
    const ssize_t n = write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = ErrnoStatus(errno, absl::StrCat(temp, ": write failed"));
    } else {
      written += static_cast<size_t>(n);
    }
  }
  if (status.ok() && fsync(fd) != 0) {
    status = ErrnoStatus(errno, absl::StrCat(temp, ": fsync failed"));
  }
  if (close(fd) != 0 && status.ok()) {
    status = ErrnoStatus(errno, absl::StrCat(temp, ": close failed"));
  }
  if (status.ok() && rename(temp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus(errno, absl::StrCat(path, ": cannot rename ", temp, " onto it"));
  }
  if (!status.ok()) {
    unlink(temp.c_str());
    return status;
  }

  // The rename is durable only once the directory is: fsync it (EINVAL: not supported there).
  const std::string dir = fs::path(path).parent_path().string();
  const int dir_fd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus(errno, absl::StrCat(dir, ": cannot open directory to fsync"));
  if (fsync(dir_fd) != 0 && errno != EINVAL) {
    status = ErrnoStatus(errno, absl::StrCat(dir, ": fsync failed"));
  }
  close(dir_fd);
  return status;
}

// "path:line:col" of a location the parser recorded, or just "path" when it recorded none.
std::string Where(const std::string& path, google::protobuf::TextFormat::ParseLocation location) {
  if (location.line < 0) return path;
  return absl::StrCat(path, ":", location.line + 1, ":", location.column + 1);
}

// Adds `delta` to the profile at `path` (none yet: an empty one) and writes it back, bounded to
// kMaxShapesPerModel shapes: the most requested stay, the rest join other_requests.
absl::Status MergeProfile(const std::string& path, const std::string& model,
                          const std::map<Shape, int64_t>& delta, int64_t other_delta) {
  std::map<Shape, int64_t> counts = delta;
  int64_t other_requests = other_delta;
  std::error_code ec;
  if (fs::exists(path, ec)) {
    ASSIGN_OR_RETURN(const TrafficProfile existing, LoadTrafficProfile(path));
    if (!existing.model().empty() && existing.model() != model) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": holds the profile of model \"",
                                                     existing.model(), "\", not \"", model, "\""));
    }
    for (const ShapeCount& shape : existing.shapes()) {
      int64_t& count = counts[{shape.batch_size(), shape.sequence_length()}];
      count = AddCounts(count, shape.requests());
    }
    other_requests = AddCounts(other_requests, existing.other_requests());
  } else if (ec) {
    return absl::UnavailableError(absl::StrCat(path, ": ", ec.message()));
  }

  if (counts.size() > static_cast<size_t>(kMaxShapesPerModel)) {
    const std::vector<std::pair<Shape, int64_t>> sorted = SortedByRequests(counts);
    for (size_t i = kMaxShapesPerModel; i < sorted.size(); ++i) {
      other_requests = AddCounts(other_requests, sorted[i].second);
      counts.erase(sorted[i].first);
    }
  }
  const TrafficProfile profile = MakeProfile(model, counts, other_requests);
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(profile, &text)) {
    return absl::InternalError(absl::StrCat(path, ": cannot print the profile"));
  }
  return WriteFileAtomically(
      path, absl::StrCat("# kiln traffic profile (kiln.TrafficProfile), written by kiln-server.\n"
                         "# Counts accumulate across restarts.\n",
                         text));
}

// Writes `samples` (distinct already: the recorder told them apart) to `path`, followed by those
// already there whose Signature differs from all before them, up to `max_samples` in all. (A
// text request's Signature is its size in the BYTES form, not the shape it ran as, which the
// file does not keep: across restarts two of one shape may both stay.)
absl::Status MergeSamples(const std::string& path, const std::string& model,
                          const std::vector<std::vector<Tensor>>& samples, int max_samples) {
  std::vector<const std::vector<Tensor>*> merged;
  std::set<std::string> signatures;
  for (const std::vector<Tensor>& sample : samples) {
    if (merged.size() >= static_cast<size_t>(max_samples)) break;
    signatures.insert(Signature(Views(sample)));
    merged.push_back(&sample);
  }
  std::vector<std::vector<Tensor>> existing;
  std::error_code ec;
  if (fs::exists(path, ec)) {
    ASSIGN_OR_RETURN(existing, LoadTrafficSamples(path));
  } else if (ec) {
    return absl::UnavailableError(absl::StrCat(path, ": ", ec.message()));
  }
  for (const std::vector<Tensor>& sample : existing) {
    if (merged.size() >= static_cast<size_t>(max_samples)) break;
    if (signatures.insert(Signature(Views(sample))).second) merged.push_back(&sample);
  }

  std::vector<TensorView> views;
  for (size_t i = 0; i < merged.size(); ++i) {
    for (const Tensor& input : *merged[i]) {
      TensorView view = input.view();
      view.name = absl::StrCat(i, ".", input.name);
      views.push_back(std::move(view));
    }
  }
  absl::StatusOr<std::string> image = SerializeSafetensors(views, {{"model", model}});
  if (!image.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", image.status().message()));
  }
  return WriteFileAtomically(path, *image);
}

}  // namespace

std::string TrafficProfilePath(const std::string& state_dir, const std::string& model) {
  return (fs::path(state_dir) / (model + ".traffic.pbtxt")).string();
}

std::string TrafficSamplesPath(const std::string& state_dir, const std::string& model) {
  return (fs::path(state_dir) / (model + ".samples.safetensors")).string();
}

Tensor TextSampleTensor(const std::string& text_input, const std::vector<std::string>& texts) {
  Tensor tensor{text_input, DType::kUInt8, {}, std::vector<uint8_t>(BytesFormSize(texts))};
  tensor.shape = {static_cast<int64_t>(tensor.bytes.size())};
  WriteBytesForm(texts, tensor.bytes.data());
  return tensor;
}

absl::StatusOr<std::optional<std::vector<std::string>>> TextSampleTexts(
    const std::vector<Tensor>& sample, const std::string& text_input) {
  if (sample.size() != 1 || sample[0].name != text_input || sample[0].dtype != DType::kUInt8) {
    return std::nullopt;
  }
  absl::StatusOr<std::vector<std::string>> texts =
      SplitBytesForm(absl::string_view(reinterpret_cast<const char*>(sample[0].bytes.data()),
                                       sample[0].bytes.size()),
                     -1);
  if (!texts.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("recorded text request '", text_input, "': ", texts.status().message()));
  }
  if (texts->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("recorded text request '", text_input, "' holds no text"));
  }
  return std::optional<std::vector<std::string>>(*std::move(texts));
}

TrafficRecorder::TrafficRecorder(int max_samples_per_model)
    : max_samples_per_model_(std::max(0, max_samples_per_model)) {}

void TrafficRecorder::Record(const std::string& model, const Shape& shape) {
  if (shape.batch_size < 1 || shape.sequence_length < 0) return;
  absl::MutexLock lock(&mu_);
  ModelTraffic& traffic = models_[model];
  const auto it = traffic.requests.find(shape);
  if (it != traffic.requests.end()) {
    ++it->second;
  } else if (traffic.requests.size() < static_cast<size_t>(kMaxShapesPerModel)) {
    traffic.requests.emplace(shape, 1);
  } else {
    ++traffic.other_requests;
  }
}

bool TrafficRecorder::WantsSample(const std::string& model, const std::string* signature) const {
  if (max_samples_per_model_ == 0) return false;
  absl::MutexLock lock(&mu_);
  const auto it = models_.find(model);
  return it == models_.end() ||
         (it->second.samples.size() < static_cast<size_t>(max_samples_per_model_) &&
          (signature == nullptr || it->second.sample_signatures.count(*signature) == 0));
}

void TrafficRecorder::KeepSample(const std::string& model, std::shared_ptr<Sample> sample) {
  absl::MutexLock lock(&mu_);
  ModelTraffic& traffic = models_[model];
  if (traffic.samples.size() >= static_cast<size_t>(max_samples_per_model_) ||
      !traffic.sample_signatures.insert(sample->signature).second) {
    return;
  }
  traffic.samples.push_back(std::move(sample));
  traffic.samples_saved = false;
}

void TrafficRecorder::RecordSample(const std::string& model,
                                   const std::vector<TensorView>& inputs) {
  if (inputs.empty() || !WantsSample(model)) return;  // the common case once full: one lock
  size_t total_bytes = 0;
  std::set<absl::string_view> names;
  for (const TensorView& input : inputs) {
    if (input.name.empty() || !names.insert(input.name).second ||
        ByteSize(input.dtype, input.shape) != input.nbytes ||
        (input.data == nullptr && input.nbytes > 0)) {
      return;
    }
    total_bytes += input.nbytes;
  }
  if (total_bytes > kMaxSampleBytes) return;
  std::string signature = Signature(inputs);
  if (!WantsSample(model, &signature)) return;

  // Copy outside the lock: gRPC threads recording other requests must not wait on a memcpy.
  auto sample = std::make_shared<Sample>();
  sample->signature = std::move(signature);
  sample->inputs.reserve(inputs.size());
  for (const TensorView& input : inputs) {
    const uint8_t* data = static_cast<const uint8_t*>(input.data);
    sample->inputs.push_back(Tensor{input.name, input.dtype, input.shape,
                                    std::vector<uint8_t>(data, data + input.nbytes)});
  }
  KeepSample(model, std::move(sample));
}

void TrafficRecorder::RecordTextSample(const std::string& model, const std::string& text_input,
                                       const std::vector<std::string>& texts, const Shape& ran_as) {
  if (texts.empty() || text_input.empty() || !WantsSample(model)) return;
  std::string signature = absl::StrCat(text_input.size(), ":", text_input, " text ran as ",
                                       ran_as.batch_size, "x", ran_as.sequence_length);
  if (BytesFormSize(texts) > kMaxSampleBytes || !WantsSample(model, &signature)) return;
  auto sample = std::make_shared<Sample>();
  sample->signature = std::move(signature);
  sample->inputs.push_back(TextSampleTensor(text_input, texts));
  KeepSample(model, std::move(sample));
}

TrafficProfile TrafficRecorder::Snapshot(const std::string& model) const {
  absl::MutexLock lock(&mu_);
  const auto it = models_.find(model);
  if (it == models_.end()) return MakeProfile(model, {}, 0);
  return MakeProfile(model, it->second.requests, it->second.other_requests);
}

std::vector<std::vector<Tensor>> TrafficRecorder::Samples(const std::string& model) const {
  std::vector<std::shared_ptr<const Sample>> samples;
  {
    absl::MutexLock lock(&mu_);
    const auto it = models_.find(model);
    if (it != models_.end()) samples = it->second.samples;
  }
  std::vector<std::vector<Tensor>> copies;
  copies.reserve(samples.size());
  for (const std::shared_ptr<const Sample>& sample : samples) copies.push_back(sample->inputs);
  return copies;
}

absl::Status TrafficRecorder::Save(const std::string& state_dir) {
  absl::MutexLock save_lock(&save_mu_);

  // What is not yet in the files, copied under mu_ (samples by pointer: they are immutable).
  struct Pending {
    std::string model;
    std::map<Shape, int64_t> requests;
    int64_t other_requests = 0;
    bool write_samples = false;
    std::vector<std::shared_ptr<const Sample>> samples;
  };
  std::vector<Pending> pending;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [model, traffic] : models_) {
      Pending entry;
      entry.model = model;
      for (const auto& [shape, requests] : traffic.requests) {
        const auto saved = traffic.saved.find(shape);
        const int64_t delta = requests - (saved == traffic.saved.end() ? 0 : saved->second);
        if (delta > 0) entry.requests.emplace(shape, delta);
      }
      entry.other_requests = traffic.other_requests - traffic.saved_other_requests;
      entry.write_samples = max_samples_per_model_ > 0 && !traffic.samples_saved;
      if (entry.write_samples) entry.samples = traffic.samples;
      if (!entry.requests.empty() || entry.other_requests > 0 || entry.write_samples) {
        pending.push_back(std::move(entry));
      }
    }
  }
  if (pending.empty()) return absl::OkStatus();

  std::error_code ec;
  fs::create_directories(state_dir, ec);
  if (ec || !fs::is_directory(state_dir, ec)) {
    return absl::UnavailableError(
        absl::StrCat("traffic state directory ", state_dir,
                     ": cannot create: ", ec ? ec.message() : std::string("not a directory")));
  }

  std::vector<absl::Status> errors;
  for (const Pending& entry : pending) {
    if (absl::Status valid = CheckModelName(entry.model); !valid.ok()) {
      errors.push_back(std::move(valid));
      continue;
    }
    if (!entry.requests.empty() || entry.other_requests > 0) {
      absl::Status saved = MergeProfile(TrafficProfilePath(state_dir, entry.model), entry.model,
                                        entry.requests, entry.other_requests);
      if (saved.ok()) {
        absl::MutexLock lock(&mu_);
        ModelTraffic& traffic = models_[entry.model];
        for (const auto& [shape, delta] : entry.requests) traffic.saved[shape] += delta;
        traffic.saved_other_requests += entry.other_requests;
      } else {
        errors.push_back(std::move(saved));
      }
    }
    if (entry.write_samples) {
      std::vector<std::vector<Tensor>> samples;
      samples.reserve(entry.samples.size());
      for (const std::shared_ptr<const Sample>& sample : entry.samples) {
        samples.push_back(sample->inputs);
      }
      absl::Status saved = MergeSamples(TrafficSamplesPath(state_dir, entry.model), entry.model,
                                        samples, max_samples_per_model_);
      if (saved.ok()) {
        absl::MutexLock lock(&mu_);
        ModelTraffic& traffic = models_[entry.model];
        // Samples kept while this save ran are still to be written.
        if (traffic.samples.size() == entry.samples.size()) traffic.samples_saved = true;
      } else {
        errors.push_back(std::move(saved));
      }
    }
  }
  if (errors.empty()) return absl::OkStatus();
  std::vector<std::string> messages;
  for (const absl::Status& error : errors) messages.emplace_back(error.message());
  return absl::Status(errors.front().code(), absl::StrJoin(messages, "\n"));
}

absl::StatusOr<TrafficProfile> LoadTrafficProfile(const std::string& path) {
  RETURN_IF_ERROR(RefuseLink(path));
  TrafficProfile profile;
  google::protobuf::TextFormat::ParseInfoTree locations;
  if (absl::Status parsed = ParseTextProtoFile(path, &profile, &locations); !parsed.ok()) {
    return parsed;
  }

  const google::protobuf::Descriptor* descriptor = TrafficProfile::descriptor();
  const google::protobuf::FieldDescriptor* shapes_field = descriptor->FindFieldByName("shapes");
  const google::protobuf::Descriptor* shape_descriptor = ShapeCount::descriptor();
  std::vector<std::string> defects;
  // Where field `name` of shapes[i] is, or shapes[i] itself when the field was left out.
  const auto shape_where = [&](int i, const char* name) {
    const google::protobuf::TextFormat::ParseInfoTree* nested =
        locations.GetTreeForNested(shapes_field, i);
    google::protobuf::TextFormat::ParseLocation location;
    if (nested != nullptr) {
      location = nested->GetLocation(shape_descriptor->FindFieldByName(name), -1);
    }
    if (location.line < 0) location = locations.GetLocation(shapes_field, i);
    return Where(path, location);
  };
  std::map<Shape, int> first_index;
  for (int i = 0; i < profile.shapes_size(); ++i) {
    const ShapeCount& shape = profile.shapes(i);
    const std::string field = absl::StrCat("shapes[", i, "]");
    if (shape.batch_size() < 1) {
      defects.push_back(absl::StrCat(shape_where(i, "batch_size"), ": field '", field,
                                     ".batch_size': expected a size >= 1, got ",
                                     shape.batch_size()));
    }
    if (shape.sequence_length() < 0) {
      defects.push_back(absl::StrCat(shape_where(i, "sequence_length"), ": field '", field,
                                     ".sequence_length': expected a length >= 0, got ",
                                     shape.sequence_length()));
    }
    if (shape.requests() < 0) {
      defects.push_back(absl::StrCat(shape_where(i, "requests"), ": field '", field,
                                     ".requests': expected a count >= 0, got ", shape.requests()));
    }
    const auto [first, inserted] =
        first_index.emplace(Shape{shape.batch_size(), shape.sequence_length()}, i);
    if (!inserted) {
      defects.push_back(absl::StrCat(
          shape_where(i, "batch_size"), ": field '", field,
          "': expected each shape once, got batch_size ", shape.batch_size(), ", sequence_length ",
          shape.sequence_length(), " again (as in shapes[", first->second, "])"));
    }
  }
  if (profile.other_requests() < 0) {
    defects.push_back(absl::StrCat(
        Where(path, locations.GetLocation(descriptor->FindFieldByName("other_requests"), -1)),
        ": field 'other_requests': expected a count >= 0, got ", profile.other_requests()));
  }
  if (!defects.empty()) return absl::InvalidArgumentError(absl::StrJoin(defects, "\n"));
  return profile;
}

absl::StatusOr<std::vector<std::vector<Tensor>>> LoadTrafficSamples(const std::string& path) {
  RETURN_IF_ERROR(RefuseLink(path));
  ASSIGN_OR_RETURN(const std::unique_ptr<MappedSafetensors> file, MappedSafetensors::Open(path));
  std::map<int64_t, std::vector<Tensor>> by_index;
  for (const SafetensorsTensor& entry : file->index().tensors()) {
    const size_t dot = entry.name.find('.');
    int64_t index = -1;
    if (dot == std::string::npos || dot == 0 || dot + 1 == entry.name.size() ||
        !std::all_of(entry.name.begin(), entry.name.begin() + static_cast<ptrdiff_t>(dot),
                     [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
        !absl::SimpleAtoi(absl::string_view(entry.name).substr(0, dot), &index)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", entry.name, "': expected a name \"<sample index>.<input name>\""));
    }
    by_index[index].push_back(
        Tensor{entry.name.substr(dot + 1), entry.dtype, entry.shape,
               std::vector<uint8_t>(entry.data, entry.data + entry.nbytes())});
  }
  std::vector<std::vector<Tensor>> samples;
  samples.reserve(by_index.size());
  for (auto& [index, inputs] : by_index) samples.push_back(std::move(inputs));
  return samples;
}

std::vector<Shape> ShapesToReplay(const TrafficProfile& profile, int max_shapes, double min_share) {
  std::map<Shape, int64_t> counts;
  int64_t total = std::max<int64_t>(profile.other_requests(), 0);
  for (const ShapeCount& shape : profile.shapes()) {
    if (shape.requests() <= 0 || shape.batch_size() < 1 || shape.sequence_length() < 0) continue;
    int64_t& count = counts[{shape.batch_size(), shape.sequence_length()}];
    count = AddCounts(count, shape.requests());
    total = AddCounts(total, shape.requests());
  }
  std::vector<Shape> shapes;
  if (max_shapes <= 0 || total == 0) return shapes;
  for (const auto& [shape, requests] : SortedByRequests(counts)) {
    if (shapes.size() >= static_cast<size_t>(max_shapes)) break;
    if (static_cast<double>(requests) / static_cast<double>(total) < min_share) break;
    shapes.push_back(shape);
  }
  return shapes;
}

}  // namespace kiln
