// The master's side of its workers, the supervisor (docs/ARCHITECTURE.md, "A request's path" and
// "State machines"): who serves. It spawns workers through the zygotes, reads their frames,
// replaces the dead and the hung, and dispatches each version's queued calls to them. What is
// served (the versions, their queues, quorums, phases and counters, routing, a reload's staging)
// is its VersionTable (server/supervisor/version_table.h), which it guards with its own lock.
//
// A request's bytes, in and out (docs/ARCHITECTURE.md, "A request's path"): the master copies
// them once each way, both outside the pool's lock: the inputs from the gRPC request into the
// worker's arena (SendCalls), the outputs from the arena into the gRPC response (the job's `done`,
// EncodeInferResponse). A worker's calls alternate between the two halves of its arena, so it may
// run its next call while `done` reads the last one's outputs, and an exited worker's arena stays
// mapped until the turn after (exited_).
//
// Dynamic batching: DispatchLocked forms one call from several of a version's queued jobs when
// its config asks for it (server/supervisor/batch_plan.h), and a batch's outputs are split back
// into each job's rows when its call returns.
//
// Each worker goes through the state machine of server/supervisor/worker_state.h.
//
// A worker that exits is replaced by a fresh fork through the zygote (from the model's warm
// template where there is one; never a reload), which warms or confirms its warmup and rejoins; the
// call it was serving ends with UNAVAILABLE. A worker scaled away is not replaced.
//
// Each served version of a model (ModelSpec::key()) has its own workers, queue and readiness; a
// request is routed to one (Route) before it is decoded against that version's config.
//
// Reload (make-before-break): Stage() adds the versions a reload loads, in a new generation with
// its own zygote, beside the served ones; they warm and pass the readiness check while the served
// ones keep serving; Commit() then switches routing in one step (VersionPhase, worker_state.h).
//
// A model is ready once its quorum of workers is warm, and from then on while at least
// min_ready of them are (ModelReadiness): a worker being replaced degrades the model, it does not
// take it out.
//
// Workers that warm at idle CPU priority stay there while Ready until StartServing(): then, and
// from then on as soon as one becomes Ready, the pool sends it Promote (normal priority) ahead of
// any call.
#ifndef KILN_SERVER_SUPERVISOR_WORKER_POOL_H_
#define KILN_SERVER_SUPERVISOR_WORKER_POOL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/frame_channel.h"
#include "common/memory_probe.h"
#include "common/model_config_loader.h"
#include "common/shape.h"
#include "common/shared_arena.h"
#include "common/tensor.h"
#include "common/thread_plan.h"
#include "proto/worker_frames.pb.h"
#include "server/supervisor/infer_job.h"
#include "server/supervisor/job_queue.h"
#include "server/supervisor/version_table.h"
#include "server/supervisor/worker_state.h"
#include "server/supervisor/zygote_generation.h"

namespace kiln {

struct WorkerPoolOptions {
  // Workers and intra-op threads per model (common/thread_plan.h); a model missing here gets
  // one worker of one thread.
  std::map<std::string, ModelThreads> threads;
  bool warmup = true;  // false: the --warmup=off baseline
  // Workers warm at SCHED_IDLE (common/idle_priority.h) and return to normal priority on
  // StartServing(), or once ready after it.
  bool warm_at_idle_priority = false;
  // The memory the whole server lives under (cgroup limit or physical memory; bytes 0 =
  // unknown: no budgets and no check before forking).
  MemoryLimit memory_limit;
  // What the kernel charges against it now; default ChargedMemory(memory_limit, this process).
  std::function<absl::StatusOr<MemoryUsage>()> memory_usage;
  // Recorded traffic shapes to warm per model, on top of each config's plan.
  std::map<std::string, std::vector<Shape>> replay;
  // CPU workers of one intra-op thread are forked from their model's warm template
  // (server/zygote/warm_template.h) and only confirm its warmup; false: each worker warms by itself
  // (--warm_template=off).
  bool warm_template = true;
  bool cold_calls_for_test = false;  // --test_only_cold_calls
  // Called on the pool's thread, its lock held, when the zygote of a generation that serves
  // closes its channel (the zygote died): starts a new zygote for that generation and returns the
  // new zygote (the pool has reaped the old one). Live workers keep serving meanwhile;
  // kMaxZygoteRestarts deaths of one generation's zygote within kZygoteRestartWindow are a crash
  // loop and fatal. Unset: a lost zygote is fatal at once. (A staged generation's zygote is not
  // restarted: its staging fails.) `models` are the keys of the generation's versions that still
  // serve: what the new zygote must load.
  std::function<absl::StatusOr<ZygoteProcess>(int generation,
                                              const std::vector<std::string>& models)>
      restart_zygote;
  // Reap every exited child of this process that is no zygote (ReapAdoptedChildren): set by the
  // master, which is the subreaper of the workers whose zygote died. Off in tests, whose process
  // has children of its own.
  bool reap_adopted = false;
  // Called on the pool's thread, its lock held, when a worker becomes ready and when the pool
  // turns fatal, so that a waiting master need not poll (it must not block or call the pool).
  std::function<void()> on_change;
  // For the metrics (server/metrics/metrics.h), on the pool's thread with its lock held (they must
  // only record): a worker of `spec` died (not one scaled away or retired) and is to be replaced;
  // the replacement of its slot became ready `seconds` after that death.
  std::function<void(const ModelSpec& spec)> on_worker_died;
  std::function<void(const ModelSpec& spec, double seconds)> on_worker_respawned;
  // A worker of `spec` started for `cause` became ready: `fork_seconds` from the pool's spawn
  // command until it was forked (a template's own warmup included, when its first worker waited
  // for it), then `warm_seconds` until its warmup report (its own warmup, or its confirmation of
  // the template's).
  std::function<void(const ModelSpec& spec, WorkerStart cause, double fork_seconds,
                     double warm_seconds)>
      on_worker_ready;
};

// One version's state, for the metrics: a copy taken under the pool's lock.
struct VersionState {
  SharedSpec spec;
  VersionPhase phase = VersionPhase::kLive;
  ModelReadiness readiness;
  int queued = 0;  // requests waiting for a worker
  int64_t budget_bytes = 0;
  std::map<WorkerState, int> workers;  // its workers by state (Exited ones are not counted)
};

// The most workers one model may have (SetWorkers; the --workers flag has the same bound).
inline constexpr int kMaxWorkersPerModel = 256;

// A copy of one worker's row, for logs, metrics and tests.
struct WorkerInfo {
  int id = 0;
  std::string model;  // the model's name
  int64_t version = 0;
  SharedSpec spec;     // the served version it belongs to
  int generation = 0;  // of the zygote that forked it
  pid_t pid = 0;
  WorkerState state = WorkerState::kSpawning;
  int slot = 0;                   // position among the model's workers; kept across respawns
  internal::WarmupReport warmup;  // empty until Ready
};

// Ownership: owns every zygote generation (ZygoteGeneration: pid, channel, deaths), every
// worker's channel and arena, and its loop thread; it reaps the zygotes and the workers the master
// adopts as their subreaper.
// Thread-safety: every public method is safe from any thread; all state is guarded by mu_, and
// job callbacks run on the loop thread without mu_ held (they must not call StartServing, Commit
// or Abort). transfer_mu_ (taken before mu_) keeps claimed workers as they are while their bytes
// move without mu_.
class WorkerPool {
 public:
  // Takes `zygote` as generation 1 (it reaps it, also when Start fails), asks it for every model's
  // workers and starts the loop thread.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Start(ZygoteProcess zygote,
                                                           const std::vector<ModelSpec>& specs,
                                                           const WorkerPoolOptions& options);
  ~WorkerPool();  // Stop()

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // The Live version of `name` a request for `version` ("" = the newest that is ready, or the
  // newest when none is) goes to; with `staged`, the Staged version instead (the readiness check
  // of a reload). NotFound, naming what is served, for an unknown model or a version that is not
  // served; InvalidArgument for a version that is not a number.
  absl::StatusOr<SharedSpec> Route(const std::string& name, const std::string& version,
                                   bool staged = false) const;
  // Every Live version (Staged ones with `staged`), sorted by name and then version.
  std::vector<SharedSpec> Served(bool staged = false) const;

  // Queues a job for the version job.spec it was routed to. Aborted when that version stopped
  // taking requests since (a reload switched away from it: route it again); NotFound when it was
  // never served; ResourceExhausted at once when its queue (dynamic_batching.max_queue_size) is
  // full; Unavailable once stopping. On an error `done` is not called.
  absl::Status Submit(InferJob job);

  // Whether the version has its quorum (readiness.quorum) of Ready or Busy workers, or, once it
  // had it, at least readiness.min_ready of them; for kEveryVersion, whether each served version
  // is. False for an unknown model or version and once stopping.
  bool ModelReady(const std::string& name, int64_t version = kEveryVersion) const;
  // Summed over the versions for kEveryVersion (serving: every one is).
  ModelReadiness Readiness(const std::string& name, int64_t version = kEveryVersion) const;
  bool AllModelsReady() const;
  // Non-OK once the pool cannot serve: a worker failed its warmup, workers of a model keep dying
  // before ready, or the zygote died.
  absl::Status fatal_error() const;

  // --- Reload (make-before-break; docs/ARCHITECTURE.md, "Versions and reload") ---
  // Adds `specs` as Staged versions of generation `generation`, whose zygote (`zygote`, started by
  // the caller, loading exactly those versions) forks their workers (`threads` by
  // ModelSpec::key(); one worker of one thread when missing); they warm at idle priority where
  // allowed and take only the readiness check's requests. FailedPrecondition while another
  // staging is under way; ResourceExhausted, with the numbers and nothing staged, when their
  // workers do not fit in memory beside the served ones.
  absl::Status Stage(ZygoteProcess zygote, int generation, const std::vector<ModelSpec>& specs,
                     const std::map<std::string, ModelThreads>& threads);
  // Where a staging stands: `ready` once every Staged version reached its quorum; `failed` once
  // it cannot (its zygote could not load a version or died, a worker failed its warmup, workers
  // kept dying before ready).
  using Staging = VersionTable::Staging;
  Staging StagingState() const;
  // In one step: every Staged version turns Live (its ready workers return to normal priority),
  // and every Live version in `retire` (by identity) turns Retiring: it takes no new request,
  // serves what was queued on it, and its workers then leave. A generation left without versions
  // has its zygote's channel closed (it exits). With nothing staged, it only retires (unload).
  void Commit(const std::vector<SharedSpec>& retire);
  // Drops the Staged versions: their workers leave (a warming one is killed), their generation's
  // channel is closed.
  void Abort();
  // The generations that still have a zygote channel (1 until the first reload).
  std::vector<int> Generations() const;
  // Each generation's zygote pid (for the memory sampler); a zygote being replaced is missing.
  std::map<int, pid_t> ZygotePids() const;
  // SIGKILL to every zygote, without waiting (SIGINT: the master exits at once).
  void KillZygotes() const;

  // Stops the loop: queued and running jobs end with UNAVAILABLE, worker channels close (workers
  // exit on EOF), and the zygotes' channels close (they exit too); then reaps each zygote (killed
  // after 5 s). Idempotent.
  void Stop();

  std::vector<WorkerInfo> Workers() const;
  // Every version, whatever its phase (two may share a key while one is staged).
  std::vector<VersionState> VersionStates() const;
  ModelCounters Counters(const std::string& name, int64_t version = kEveryVersion) const;
  // Zeroes every model's counters (the master does when the port opens, after the readiness
  // check's requests).
  void ResetCounters();

  // The master is about to open the port: every Ready or Busy worker, and from now on every
  // worker as soon as it is Ready, returns to normal CPU priority (a Promote frame, ahead of any
  // call). Only with WorkerPoolOptions::warm_at_idle_priority; idempotent.
  void StartServing();
  // Sets the worker count of `name`'s Live version (of each for kEveryVersion) at runtime. More:
  // the new workers are forked through the zygote and take calls only once warm; ResourceExhausted,
  // with the numbers, when they do not all fit in memory (then none is started). Fewer: the highest
  // slots leave, an idle worker at once, a busy one after its call; they are not replaced. NotFound
  // for an unknown model, InvalidArgument for a count outside [1, kMaxWorkersPerModel], Unavailable
  // once stopping.
  absl::Status SetWorkers(const std::string& name, int count, int64_t version = kEveryVersion);

  // The per-worker memory budget of `name`'s version (the largest for kEveryVersion; 0 = none).
  int64_t BudgetBytes(const std::string& name, int64_t version = kEveryVersion) const;

 private:
  struct Worker;
  // A job's callback with its outcome, called once mu_ is released.
  struct Completion {
    Completion(InferDone done, InferOutcome outcome)
        : done(std::move(done)), outcome(std::move(outcome)) {}
    Completion(InferDone done, absl::Status error) : done(std::move(done)), outcome{error, {}} {}
    // A job that ends in the queue with `error` (InferOutcome::never_sent).
    static Completion Unsent(InferDone done, absl::Status error) {
      Completion completion(std::move(done), std::move(error));
      completion.outcome.never_sent = true;
      return completion;
    }
    InferDone done;
    InferOutcome outcome;
  };
  // A call claimed for a worker under mu_ (the worker Busy, the job its own), whose inputs are
  // written into the worker's arena and whose frame is sent outside mu_ (SendCalls).
  struct Transfer {
    Worker* worker = nullptr;
    SharedSpec spec;
    uint64_t begin = 0, end = 0;  // the half of the worker's arena the call uses
    internal::ToWorker frame;
    absl::Status written;  // writing the inputs into the arena
    absl::Status sent;     // sending the frame
  };

  explicit WorkerPool(const WorkerPoolOptions& options);
  void Loop();
  absl::Status SpawnLocked(ServedVersion& model, int slot, WorkerStart cause)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleZygoteLocked(int generation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Generation `generation`'s zygote channel closed with `why`: forgets the spawns it never
  // answered (their slots are refilled) and starts a new zygote (options.restart_zygote), unless
  // it is a crash loop or the generation is staged (then the staging fails).
  void ZygoteLostLocked(int generation, const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether an event (or EOF) of generation `generation`'s zygote is waiting to be read.
  bool ZygoteHasEventLocked(int generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A failure of a Staged version (or of its zygote): the staging fails with `why` (the first
  // reason is kept); never fatal to the pool.
  void StagingFailedLocked(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retiring versions: once their queue is empty their idle workers leave (busy ones after their
  // call); a version without workers is dropped, and a generation without versions closed.
  void DrainRetiringLocked(std::vector<Completion>& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the exited workers (their slots are refilled, unless they were retired) into
  // exited_, which keeps their arenas mapped until the next turn: a completion of this turn may
  // still read one.
  void ForgetExitedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseUnusedGenerationsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reaps the zygotes of closed generations that have left, and the children the master adopted
  // as subreaper (workers orphaned by a zygote that died), which no zygote will reap.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleWorkerLocked(Worker& worker, std::vector<Completion>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes `worker`'s channel and marks it Exited; its call (if any) ends with `job_error`, or
  // UNAVAILABLE "died while serving" when that is OK.
  void WorkerGoneLocked(Worker& worker, const std::string& why, std::vector<Completion>& done,
                        absl::Status job_error = absl::OkStatus())
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Kills and drops the workers whose call ran past its compute timeout; the call ends
  // UNAVAILABLE naming the timeout.
  void StopHungLocked(std::vector<Completion>& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Claims an idle worker (least recently used first) for the next call of `model`'s queue while
  // there is one: one job, or with dynamic batching the jobs PlanBatch picks for that worker
  // (server/supervisor/batch_plan.h). The worker turns Busy with them; their bytes move in
  // SendCalls.
  void DispatchLocked(ServedVersion& model, std::vector<Transfer>& sends)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Outside mu_, with transfer_mu_ held: writes each claimed call's inputs into its worker's
  // arena (the one copy of a request's bytes in the master; a batch's jobs each straight to their
  // rows) and sends the call.
  void SendCalls(std::vector<Transfer>& sends) ABSL_EXCLUSIVE_LOCKS_REQUIRED(transfer_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);
  // After SendCalls: a call that could not be written ends with the error (its worker is idle
  // again), one that could not be sent ends the worker.
  void FinishSendsLocked(std::vector<Transfer>& sends, std::vector<Completion>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked(std::vector<Completion>& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends every job of `worker`'s call with `why` (none is left with it).
  static void EndJobs(Worker& worker, const absl::Status& why, std::vector<Completion>& done);
  // The outcome of `worker`'s call, one per job: a batch's outputs are split into each job's
  // rows (views into the arena, no copy).
  static void CompleteJobs(Worker& worker, InferOutcome outcome, std::vector<Completion>& done);
  // The one place a worker's state changes: checks the transition and keeps its version's
  // count of workers by state.
  void SetStateLocked(Worker& worker, WorkerState next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The recorded traffic shapes to warm `spec` with (WorkerPoolOptions::replay).
  std::vector<Shape> ReplayFor(const ModelSpec& spec) const;
  // Sends Promote; a failed send is the worker's end (as for a call).
  void PromoteLocked(Worker& worker, std::vector<Completion>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int PollTimeoutMsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SetWorkersLocked(ServedVersion& model, int count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake();
  // Whether the memory has room for `count` more workers of `model` (common/memory_budget.h,
  // CheckRoomForWorkers): what the kernel charges now, plus a reservation for each worker still
  // spawning or warming and for each new one, plus the model's headroom, within the limit.
  // ResourceExhausted with the numbers when not. A usage that cannot be read admits (logged).
  absl::Status CheckRoomLocked(const ServedVersion& model, int count = 1) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The memory a new worker of `model` is expected to add: the largest private peak its warm
  // workers measured (set `measured`), or its budget while none has.
  int64_t ReservationBytesLocked(const ServedVersion& model, bool* measured = nullptr) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the channel of a worker scaled away (it exits on EOF; a warming one is killed) and
  // marks it Exited; it is not replaced.
  void RetireLocked(Worker& worker, const char* why = "scaled down")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const WorkerPoolOptions options_;
  const int wake_fd_;  // eventfd: Submit and Stop wake the loop
  std::thread loop_;

  // Held by the loop while a turn's bytes move outside mu_ (SendCalls, and the completions that
  // read outputs from the arenas), and by the methods that may close a worker's channel or
  // destroy a worker from another thread (StartServing, Commit, Abort): so a claimed worker, its
  // channel and its arena stay as they are while the loop uses them without mu_. Route, Submit
  // and the queries never take it: no gRPC thread waits on a copy.
  absl::Mutex transfer_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  // The one owner of each zygote (pid, channel, deaths), by generation number.
  std::map<int, ZygoteGeneration> generations_ ABSL_GUARDED_BY(mu_);
  // Generations closed since, whose zygotes have not left yet.
  std::vector<ZygoteGeneration> closing_ ABSL_GUARDED_BY(mu_);
  VersionTable versions_ ABSL_GUARDED_BY(mu_);                           // what is served
  std::map<int, std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);  // by id
  std::vector<std::unique_ptr<Worker>> exited_ ABSL_GUARDED_BY(mu_);  // freed at the next turn
  int next_worker_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_call_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;  // StartServing() was called
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  bool fatal_told_ ABSL_GUARDED_BY(mu_) = false;  // on_change was called for fatal_
  std::chrono::steady_clock::time_point last_reap_ ABSL_GUARDED_BY(mu_);  // ReapLocked's last look
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_WORKER_POOL_H_
