// WorkerPool's calls (docs/ARCHITECTURE.md, "A request's path"): dispatching queued jobs to idle
// workers (a batch when dynamic batching forms one), sending them, stopping hung calls, expiring
// queued jobs, and completing each job from its worker's result. The rest of the pool is in
// worker_pool.cc.
#include <algorithm>
#include <csignal>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/arena_tensors.h"
#include "common/clock.h"
#include "common/shape.h"
#include "glog/logging.h"
#include "server/supervisor/batch_plan.h"
#include "server/supervisor/worker_pool.h"
#include "server/supervisor/worker_pool_worker.h"

namespace kiln {

void WorkerPool::StopHungLocked(std::vector<Completion>& done) {
  const int64_t now = MonotonicNowNs();
  for (auto& [id, worker] : workers_) {
    if (worker->state != WorkerState::kBusy || now < worker->call_deadline_ns) continue;
    const double timeout_ms = worker->compute_timeout_ms;
    // Killed, not asked: a hung or stopped worker answers nothing. Its EOF then finds an
    // Exited worker, and the zygote's `exited` event is only logged.
    if (worker->pid > 0) kill(worker->pid, SIGKILL);
    WorkerGoneLocked(
        *worker,
        absl::StrFormat("its call ran past the compute timeout (%.0f ms); killed", timeout_ms),
        done,
        absl::UnavailableError(absl::StrFormat(
            "worker %d (pid %d) was still computing this request after the compute timeout of "
            "%.0f ms (supervision.compute_timeout_ms); it was killed and is being replaced; "
            "retry it",
            worker->id, worker->pid, timeout_ms)));
  }
}

void WorkerPool::ExpireLocked(std::vector<Completion>& done) {
  const int64_t now = MonotonicNowNs();
  for (const auto& model : versions_.all()) {
    for (auto& [job, why] : model->queue->TakeTimedOut(now)) {
      done.push_back(Completion::Unsent(std::move(job.done), std::move(why)));
    }
  }
}

void WorkerPool::DispatchLocked(ServedVersion& model, std::vector<Transfer>& sends) {
  while (!model.queue->empty()) {
    // Least loaded: an idle worker (each serves one call at a time); among those, the one idle
    // the longest, so every worker keeps serving and stays warm.
    Worker* idle = nullptr;
    for (auto& [id, worker] : workers_) {
      if (worker->model == &model && worker->state == WorkerState::kReady &&
          (idle == nullptr || worker->call_id < idle->call_id)) {
        idle = worker.get();
      }
    }
    if (idle == nullptr) return;
    const int take = PlanBatch(model.spec->config,
                               model.queue->Front(std::max(1, model.spec->config.max_batch_size())),
                               idle->costs);
    idle->jobs = model.queue->PopFront(take);
    const int64_t now = MonotonicNowNs();
    // The call ends by the latest deadline of its jobs (none when one has none): a job whose own
    // deadline passes meanwhile is answered DEADLINE_EXCEEDED by its RPC, not by cutting the
    // others' call short.
    int64_t deadline = 0;
    bool unbounded = false;
    for (InferJob& job : idle->jobs) {
      job.sent_ns = now;
      unbounded = unbounded || job.deadline_monotonic_ns == 0;
      deadline = std::max(deadline, job.deadline_monotonic_ns);
    }
    Transfer& transfer = sends.emplace_back();
    transfer.worker = idle;
    transfer.spec = model.spec;
    const uint64_t half = idle->arena->size() / 2;
    transfer.begin = idle->upper_half ? half : 0;
    transfer.end = transfer.begin + half;
    idle->upper_half = !idle->upper_half;
    internal::InferCall& call = *transfer.frame.mutable_infer();
    call.set_call_id(next_call_id_++);
    call.set_deadline_monotonic_ns(unbounded ? 0 : deadline);
    idle->call_id = call.call_id();
    idle->call_deadline_ns = now + static_cast<int64_t>(idle->compute_timeout_ms * 1e6);
    SetStateLocked(*idle, WorkerState::kBusy);
  }
}

void WorkerPool::SendCalls(std::vector<Transfer>& sends) {
  for (Transfer& transfer : sends) {
    Worker& worker = *transfer.worker;
    const InferJob& first = worker.jobs.front();
    internal::InferCall& call = *transfer.frame.mutable_infer();
    const int64_t start_ns = MonotonicNowNs();
    absl::StatusOr<uint64_t> output_offset;
    if (first.text != nullptr) {
      std::vector<const std::vector<std::string>*> texts;
      for (const InferJob& job : worker.jobs) texts.push_back(job.text);
      output_offset =
          WriteTextBatchToArena(transfer.spec->config.tokenizer().text_input(), texts,
                                transfer.begin, *worker.arena, *call.mutable_text(), transfer.end);
    } else {
      std::vector<const std::vector<TensorView>*> requests;
      for (const InferJob& job : worker.jobs) requests.push_back(&job.inputs);
      output_offset = WriteBatchToArena(requests, transfer.begin, *worker.arena,
                                        *call.mutable_inputs(), transfer.end);
    }
    transfer.written = output_offset.status();
    if (!output_offset.ok()) continue;
    call.set_output_offset(*output_offset);
    call.set_output_end(transfer.end);
    const double input_ms = (MonotonicNowNs() - start_ns) / 1e6;
    for (InferJob& job : worker.jobs) job.input_ms = input_ms;
    transfer.sent = worker.channel.Send(transfer.frame);
  }
}

void WorkerPool::EndJobs(Worker& worker, const absl::Status& why, std::vector<Completion>& done) {
  for (InferJob& job : worker.jobs) done.emplace_back(std::move(job.done), why);
  worker.jobs.clear();
}

void WorkerPool::CompleteJobs(Worker& worker, InferOutcome outcome, std::vector<Completion>& done) {
  std::vector<InferJob> jobs = std::move(worker.jobs);
  worker.jobs.clear();
  std::vector<int64_t> rows;  // each job's, in the call's order
  for (const InferJob& job : jobs) rows.push_back(JobRows(job));
  outcome.call_jobs = static_cast<int>(jobs.size());
  for (int64_t n : rows) outcome.call_rows += n;
  // A batch's outputs must hold every job's rows; else each job fails with why.
  if (outcome.outputs.ok() && jobs.size() > 1) {
    for (const TensorView& output : *outcome.outputs) {
      if (output.shape.empty() || output.shape[0] != outcome.call_rows ||
          (outcome.call_rows > 0 && output.nbytes % outcome.call_rows != 0)) {
        outcome.outputs = absl::InternalError(absl::StrCat(
            "the worker returned output '", output.name, "' of shape ", ShapeString(output.shape),
            " for a batch of ", jobs.size(), " requests of ", outcome.call_rows, " rows"));
        break;
      }
    }
  }
  int64_t begin = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    InferOutcome mine = outcome;
    if (jobs.size() > 1 && outcome.outputs.ok()) {
      std::vector<TensorView> slices;
      for (const TensorView& output : *outcome.outputs) {
        slices.push_back(SliceRows(output, begin, rows[j]));
      }
      mine.outputs = std::move(slices);
    }
    begin += rows[j];
    mine.first_in_call = j == 0;
    mine.queue_ms = (jobs[j].sent_ns - jobs[j].queued_ns) / 1e6;
    mine.input_ms = jobs[j].input_ms;
    done.emplace_back(std::move(jobs[j].done), std::move(mine));
  }
}

void WorkerPool::FinishSendsLocked(std::vector<Transfer>& sends, std::vector<Completion>& done) {
  for (Transfer& transfer : sends) {
    Worker& worker = *transfer.worker;
    if (!transfer.written.ok()) {  // nothing was sent: the worker is idle again
      EndJobs(worker, transfer.written, done);
      SetStateLocked(worker, WorkerState::kReady);
      Wake();  // it may take the next queued job
    } else if (!transfer.sent.ok()) {
      WorkerGoneLocked(worker,
                       absl::StrCat("sending a call failed (", transfer.sent.message(), ")"), done);
    }
  }
}

}  // namespace kiln
