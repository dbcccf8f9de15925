#include "tests/server/fake_zygote.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "common/arena_tensors.h"

namespace kiln::testing {

FakeZygote::FakeZygote(FrameChannel zygote, Outputs outputs)
    : outputs_(std::move(outputs)), zygote_(std::move(zygote)) {
  thread_ = std::thread([this] { Loop(); });
}

FakeZygote::~FakeZygote() {
  stop_ = true;
  thread_.join();
}

void FakeZygote::SetBehaviour(const Behaviour& behaviour) {
  absl::MutexLock lock(&mu_);
  behaviour_ = behaviour;
}

int FakeZygote::spawns() const {
  absl::MutexLock lock(&mu_);
  return spawns_;
}

std::vector<int> FakeZygote::live() const {
  absl::MutexLock lock(&mu_);
  std::vector<int> ids;
  for (const auto& [id, worker] : workers_) ids.push_back(id);
  return ids;
}

int FakeZygote::held_calls() const {
  absl::MutexLock lock(&mu_);
  int held = 0;
  for (const auto& [id, worker] : workers_) held += static_cast<int>(worker.held.size());
  return held;
}

void FakeZygote::Kill(int id) {
  Run([this, id]() { KillLocked(id); });
}

void FakeZygote::AnswerHeld() {
  Run([this]() {
    for (auto& [id, worker] : workers_) {
      for (const internal::InferCall& call : worker.held) Answer(worker, call);
      worker.held.clear();
    }
    held_by_.clear();
  });
}

void FakeZygote::AnswerNewestHeld() {
  Run([this]() {
    while (!held_by_.empty()) {
      const int id = held_by_.back();
      held_by_.pop_back();
      auto it = workers_.find(id);
      if (it == workers_.end() || it->second.held.empty()) continue;  // gone since
      Answer(it->second, it->second.held.back());
      it->second.held.pop_back();
      return;
    }
  });
}

void FakeZygote::SendStrayResult(int id) {
  Run([this, id]() {
    auto it = workers_.find(id);
    internal::InferCall stray;
    stray.set_call_id(987654321);
    if (it != workers_.end()) Answer(it->second, stray);
  });
}

void FakeZygote::Run(std::function<void()> action) {
  absl::MutexLock lock(&mu_);
  actions_.push_back(std::move(action));
}

void FakeZygote::Loop() {
  while (!stop_) {
    std::vector<pollfd> fds;
    std::vector<int> ids;
    {
      absl::MutexLock lock(&mu_);
      while (!actions_.empty()) {
        actions_.front()();
        actions_.pop_front();
      }
      fds.push_back({zygote_.fd(), POLLIN, 0});
      for (const auto& [id, worker] : workers_) {
        fds.push_back({worker.channel.fd(), POLLIN, 0});
        ids.push_back(id);
      }
    }
    if (poll(fds.data(), fds.size(), /*timeout_ms=*/2) <= 0) continue;
    absl::MutexLock lock(&mu_);
    if (fds[0].revents & (POLLIN | POLLHUP)) HandleZygoteFrame();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (fds[i + 1].revents & (POLLIN | POLLHUP)) HandleWorkerFrame(ids[i]);
    }
  }
}

void FakeZygote::HandleZygoteFrame() {
  internal::ZygoteCommand command;
  std::vector<int> fds;
  if (!zygote_.Receive(&command, &fds).ok()) {
    zygote_.Close();  // the pool stopped
    return;
  }
  if (!command.has_spawn() || fds.size() != 2) {
    for (int fd : fds) close(fd);
    return;
  }
  ++spawns_;
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Adopt(fds[1]);
  const int id = command.spawn().worker_id();
  internal::ZygoteEvent started;
  started.mutable_started()->set_worker_id(id);
  started.mutable_started()->set_pid(0);  // no process: the pool never signals pid 0
  (void)zygote_.Send(started);
  if (behaviour_.die_at_start) {
    close(fds[0]);
    return;
  }
  Worker& worker = workers_[id];
  worker.behaviour = behaviour_;
  worker.channel = FrameChannel(fds[0]);
  if (arena.ok()) worker.arena = *std::move(arena);
  if (behaviour_.report_ready) {
    internal::FromWorker ready;
    ready.mutable_ready()->set_worker_id(id);
    ready.mutable_ready()->set_device("fake");
    ready.mutable_ready()->set_private_peak_bytes(behaviour_.private_peak_bytes);
    ready.mutable_ready()->set_intra_op_threads(behaviour_.intra_op_threads);
    for (int batch : behaviour_.warmed_batches) {
      internal::ShapeWarmup& shape = *ready.mutable_ready()->add_shapes();
      shape.set_batch_size(batch);
      shape.set_steady_ms(behaviour_.steady_ms);
      shape.set_steady_cpu_ms(behaviour_.steady_cpu_ms);
    }
    (void)worker.channel.Send(ready);
  }
}

void FakeZygote::HandleWorkerFrame(int id) {
  Worker& worker = workers_.at(id);
  internal::ToWorker frame;
  if (!worker.channel.Receive(&frame).ok()) {
    workers_.erase(id);  // the pool closed it
    return;
  }
  if (!frame.has_infer()) return;  // Promote
  if (worker.behaviour.answer_calls) {
    Answer(worker, frame.infer());
  } else {
    worker.held.push_back(frame.infer());
    held_by_.push_back(id);
  }
}

void FakeZygote::Answer(Worker& worker, const internal::InferCall& call) {
  if (worker.behaviour.answer_delay_ms > 0) usleep(worker.behaviour.answer_delay_ms * 1000);
  internal::FromWorker reply;
  internal::InferResult& result = *reply.mutable_result();
  result.set_call_id(call.call_id());
  const std::vector<double>& first = worker.behaviour.first_calls_cpu_ms;
  result.set_compute_cpu_ms(worker.answered < first.size() ? first[worker.answered]
                                                           : worker.behaviour.call_cpu_ms);
  ++worker.answered;
  const int64_t rows =
      call.inputs_size() > 0 && call.inputs(0).shape_size() > 0 ? call.inputs(0).shape(0) : 1;
  result.mutable_ran_as()->set_batch_size(static_cast<int32_t>(rows));
  if (!outputs_.output.empty() && worker.arena != nullptr) {
    std::vector<float> values(rows * outputs_.elements_per_row, 0.0f);
    absl::StatusOr<std::vector<TensorView>> inputs = ViewsInArena(call.inputs(), *worker.arena);
    if (outputs_.echo && inputs.ok() && !inputs->empty()) {
      const TensorView& x = inputs->front();
      const int64_t width =
          static_cast<int64_t>(x.nbytes / sizeof(float)) / std::max<int64_t>(rows, 1);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t e = 0; e < outputs_.elements_per_row && e < width; ++e) {
          std::memcpy(&values[r * outputs_.elements_per_row + e],
                      static_cast<const char*>(x.data) + (r * width + e) * sizeof(float),
                      sizeof(float));
        }
      }
    }
    const TensorView output{outputs_.output,
                            DType::kFloat32,
                            {rows, outputs_.elements_per_row},
                            values.data(),
                            values.size() * sizeof(float)};
    if (!WriteToArena({output}, call.output_offset(), *worker.arena, *result.mutable_outputs(),
                      call.output_end())
             .ok()) {
      result.set_code(static_cast<int>(absl::StatusCode::kInternal));
    }
  }
  (void)worker.channel.Send(reply);
}

void FakeZygote::KillLocked(int id) {
  if (workers_.erase(id) == 0) return;  // closes its channel
  internal::ZygoteEvent exited;
  exited.mutable_exited()->set_worker_id(id);
  exited.mutable_exited()->set_signal(9);
  (void)zygote_.Send(exited);
}

ModelSpec FakeModelSpec(int max_queue_size, int quorum, int64_t version) {
  ModelSpec spec;
  ModelConfig& config = spec.config;
  config.set_name("m");
  spec.version = version;
  config.set_version(version);
  config.set_max_batch_size(4);
  TensorConfig& input = *config.add_input();
  input.set_name("x");
  input.set_data_type(TYPE_FP32);
  input.add_dims(4);
  TensorConfig& output = *config.add_output();
  output.set_name("y");
  output.set_data_type(TYPE_FP32);
  output.add_dims(2);
  config.mutable_dynamic_batching()->set_max_queue_size(max_queue_size);
  config.mutable_readiness()->set_quorum(quorum);
  config.mutable_warmup()->set_enabled(true);
  return spec;
}

bool WaitUntil(const std::function<bool()>& condition, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    usleep(1000);
  }
  return true;
}

}  // namespace kiln::testing
