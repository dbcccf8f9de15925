// The zygote (DESIGN.md, "Why a zygote"): a frozen, single-threaded copy of the master taken
// right after the models were loaded. It forks a worker whenever the master asks (startup,
// respawn, scale-up), so a new worker costs a fork plus its own warmup, never a reload, and it
// tells the master when a worker exits.
#ifndef KILN_SERVER_ZYGOTE_H_
#define KILN_SERVER_ZYGOTE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/frame_channel.h"
#include "common/model_config_loader.h"
#include "worker/tokenizer.h"
#include "worker/torch_model.h"

namespace kiln {

// What a worker may be forked for: the model's spec, the master's loaded copy (null in the
// --share_weights=off baseline, where each worker loads its own) and its tokenizer (text models;
// always loaded by the master). All inherited by the fork, pages shared.
struct ZygoteModel {
  const ModelSpec* spec = nullptr;
  TorchModel* loaded = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const std::vector<std::vector<Tensor>>* samples = nullptr;  // recorded requests to warm with
};

// Runs the zygote loop in the current, freshly forked process and never returns. `models` holds
// the repository's models by name. It exits when the master closes `master` or dies
// (PR_SET_PDEATHSIG), and its workers die with it.
//
// Protocol: the master sends ZygoteCommand{spawn} with two fds (the worker's channel end and
// its arena memfd); the zygote forks, answers ZygoteEvent{started} with the pid, and later
// ZygoteEvent{exited} with the exit status.
[[noreturn]] void RunZygote(const std::map<std::string, ZygoteModel>& models, FrameChannel master);

}  // namespace kiln

#endif  // KILN_SERVER_ZYGOTE_H_
