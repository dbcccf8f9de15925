#!/usr/bin/python3
"""Build kiln's example model repository with seeded random weights.

What it writes, for each model (mlp, resnet18, resnet50, textcls), in Triton's model repository
form (the PyTorch backend's):

    DIR/<name>/config.pbtxt               Triton's inference.ModelConfig
                                          (proto/triton_model_config.proto), text format, with
                                          backend: "pytorch"
    DIR/<name>/kiln.pbtxt                 kiln.ModelSettings (proto/model_config.proto), text
                                          format: what Triton's config has no field for (warmup,
                                          and textcls's tokenizer); Triton ignores it
    DIR/<name>/1/model.pt                 TorchScript (torch.jit.script), saved in eval() mode
    DIR/<name>/1/model.safetensors        every parameter and buffer of the scripted module, named
                                          as torch::jit::Module::named_parameters()/named_buffers()
    DIR/<name>/1/reference.safetensors    reference pair "input.<name>" / "output.<name>", the
                                          output computed by model.pt loaded back
    DIR/textcls/1/tokenizer.model         SentencePiece unigram model (trained with spm_train)

Each model's forward() takes arguments named as its config's inputs (mlp and the resnets take
`input`, textcls `input_ids` and `attention_mask`), which is how Triton's PyTorch backend binds
named inputs; the script checks the saved TorchScript's forward schema against the config.

Run it with Debian's Python, which has python3-torch 1.13 and python3-torchvision 0.14:

    /usr/bin/python3 scripts/make_models.py [--out DIR] [--models mlp,textcls] [--force]

DIR defaults to models/ at the repository root. Weights are deterministic (torch.manual_seed per
model). A model whose directory already holds every expected file is skipped unless --force. Each
model is built in a hidden sibling directory (.<name>.tmp-<pid>) and renamed into place, so an
interrupted run never leaves a half-written model; a model directory in kiln's old form (a
config.pbtxt without backend: "pytorch") counts as incomplete and is rebuilt. Needs spm_train and spm_encode (Debian package
sentencepiece) for textcls. Exits non-zero with a message on any error.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

REPO_ROOT = Path(__file__).resolve().parent.parent
ALL_MODELS = ("mlp", "resnet18", "resnet50", "textcls")
VERSION = "1"
TOLERANCE = 1e-5  # max abs diff allowed between eager and TorchScript outputs
LICENSES_DIR = Path("/usr/share/common-licenses")


class BuildError(Exception):
    """A check failed or a tool did not run; the message says which."""


# --------------------------------------------------------------------------------------------
# safetensors writer (format: https://github.com/huggingface/safetensors, "Format" section)
# --------------------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
    torch.int32: "I32", torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float32: "F32", torch.float64: "F64",
}


def _tensor_bytes(t):
    """Row-major, contiguous, little-endian bytes of a CPU tensor (bfloat16 is not supported)."""
    array = t.detach().cpu().contiguous().numpy()
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def write_safetensors(path, tensors, metadata):
    """Writes {name: tensor} with string metadata. Tensors are laid out back to back, sorted by
    (element size descending, name), so each one is aligned to its element size given the
    8-byte-aligned data section."""
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    chunks, offset = [], 0
    for name in order:
        t = tensors[name]
        if t.dtype not in _SAFETENSORS_DTYPES or t.dtype == torch.bfloat16:
            raise BuildError(f"{path}: tensor {name}: unsupported dtype {t.dtype}")
        data = _tensor_bytes(t)
        header[name] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-(8 + len(header_bytes)) % 8)
    with open(path, "wb") as f:
        f.write(len(header_bytes).to_bytes(8, "little"))
        f.write(header_bytes)
        for data in chunks:
            f.write(data)


# --------------------------------------------------------------------------------------------
# Model definitions
# --------------------------------------------------------------------------------------------

class Mlp(nn.Module):
    """Linear(16,32) -> BatchNorm1d(32) -> ReLU -> Linear(32,4); BatchNorm gives it buffers."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 4)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # named as the config's input
        return self.fc2(self.relu(self.bn1(self.fc1(input))))


class ResNet(torchvision.models.ResNet):
    """torchvision's ResNet with forward(input): the argument named as the config's input. A
    subclass rather than a wrapper, so parameter names (conv1.weight, fc.bias, ...) and the seeded
    weights stay those of torchvision.models.resnet18/50(weights=None)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._forward_impl(input)


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (the maths of nn.TransformerEncoderLayer with
    norm_first=False, ReLU, no dropout) written with plain ops.

    Why not nn.TransformerEncoder: in PyTorch 1.13, under eval() + no_grad its "fast path"
    converts the input to a nested tensor and pads it back with to_padded_tensor(0.), which
    returns [B, longest real length, D] instead of [B, L, D] when every row ends in padding;
    with enable_nested_tensor=False an all-padding row (e.g. all-zero warmup inputs) gives NaN.
    Here masked keys get a score of -1e9 instead, so the output is finite for any mask, and the
    same ops run with or without grad, in Python and in LibTorch."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.nhead = nhead
        self.head_dim = d_model // nhead
        self.scale = 1.0 / float(self.head_dim) ** 0.5
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D]; keep: bool [B, L], True for real tokens."""
        b, seq, d = x.size(0), x.size(1), x.size(2)
        qkv = self.qkv(x).view(b, seq, 3, self.nhead, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                      # [B, H, L, head_dim]
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        scores = scores.masked_fill(~keep.unsqueeze(1).unsqueeze(2), -1e9)
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        context = context.transpose(1, 2).reshape(b, seq, d)
        x = self.norm1(x + self.out_proj(context))
        return self.norm2(x + self.linear2(torch.relu(self.linear1(x))))


class TextClassifier(nn.Module):
    """Token + learned position embeddings -> 2 encoder layers -> masked mean pool -> Linear.

    forward(input_ids int64 [B, L], attention_mask int64 [B, L], 1 = token, 0 = padding)
    returns logits float32 [B, num_classes]; any B and any L <= max_length."""

    def __init__(self, vocab_size: int, pad_id: int, d_model: int = 128, max_length: int = 128,
                 nhead: int = 4, dim_feedforward: int = 256, num_layers: int = 2,
                 num_classes: int = 4):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.pos_emb = nn.Embedding(max_length, d_model)
        self.layers = nn.ModuleList(
            [EncoderLayer(d_model, nhead, dim_feedforward) for _ in range(num_layers)])
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(positions).unsqueeze(0)
        keep = attention_mask != 0
        for layer in self.layers:
            x = layer(x, keep)
        weights = keep.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.classifier(pooled)


# --------------------------------------------------------------------------------------------
# BatchNorm statistics: make the buffers matter
# --------------------------------------------------------------------------------------------

def calibrate_batchnorm(model, example_batch):
    """Sets every BatchNorm's running stats to the statistics of one random batch (momentum None
    = cumulative average), then perturbs them and the affine parameters a little, so that
    buffers matter while activations stay of moderate size."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.momentum = None
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(example_batch)
        for bn in norms:
            bn.momentum = 0.1
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25))
            bn.running_mean.add_(0.05 * torch.randn_like(bn.running_mean))
            bn.weight.uniform_(0.8, 1.2)
            bn.bias.normal_(0.0, 0.05)
    model.eval()


# --------------------------------------------------------------------------------------------
# config.pbtxt (Triton's inference.ModelConfig) and kiln.pbtxt (kiln.ModelSettings)
# --------------------------------------------------------------------------------------------

_CONFIG_TYPES = {torch.float32: "TYPE_FP32", torch.int64: "TYPE_INT64"}
_HEADER = "# Generated by scripts/make_models.py; rerun it with --force rather than editing."


def _list(values):
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _message(field, fields):
    """`field { k: v ... }`: lists as [ a, b ], strings quoted, nested dicts as messages."""
    parts = []
    for k, v in fields.items():
        if isinstance(v, dict):
            parts.append(_message(k, v))
        else:
            parts.append(f"{k}: {_list(v) if isinstance(v, list) else json.dumps(v)}")
    return f"{field} {{ {' '.join(parts)} }}"


def render_config(name, inputs, outputs, max_batch_size):
    """Triton's config.pbtxt for the PyTorch backend. inputs/outputs: [(name, torch dtype, dims
    without batch)]."""
    lines = [_HEADER, f'name: "{name}"', 'backend: "pytorch"', f"max_batch_size: {max_batch_size}"]
    for field, tensors in (("input", inputs), ("output", outputs)):
        entries = [f'{{ name: "{tname}" data_type: {_CONFIG_TYPES[dtype]} dims: {_list(dims)} }}'
                   for tname, dtype, dims in tensors]
        lines.append(f"{field} [\n  " + ",\n  ".join(entries) + "\n]")
    # No instance_group and no INTRA_OP_THREAD_COUNT parameter: kiln sizes the workers and their
    # threads to the server's CPUs.
    return "\n".join(lines) + "\n"


def render_settings(warmup=None, tokenizer=None):
    """kiln.pbtxt: warmup and tokenizer as {field: value}; None when neither is set."""
    lines = [l for l in (warmup and _message("warmup", warmup),
                         tokenizer and _message("tokenizer", tokenizer)) if l]
    if not lines:
        return None
    return "\n".join([_HEADER, "# kiln's settings beside config.pbtxt (kiln.ModelSettings); "
                      "Triton ignores this file."] + lines) + "\n"


# --------------------------------------------------------------------------------------------
# Per-model builders. Each returns a Built: the eager module (eval mode), the reference inputs
# in forward() order (named as the config's inputs), the output name, the config.pbtxt and
# kiln.pbtxt texts (None: no kiln.pbtxt), extra reference metadata and an optional extra check run
# on (eager, loaded TorchScript).
# --------------------------------------------------------------------------------------------

class Built:
    def __init__(self, module, inputs, output_name, config, settings=None, metadata=None,
                 check=None):
        self.module = module
        self.inputs = inputs              # {config input name: tensor}, in forward() order
        self.output_name = output_name
        self.config = config
        self.settings = settings
        self.metadata = metadata or {}
        self.check = check


def build_mlp(version_dir):
    model = Mlp()
    model.train()
    with torch.no_grad():                 # a few training-mode passes fill the running stats
        for _ in range(5):
            model(torch.randn(64, 16) * 2.0 + 0.5)
    model.eval()
    config = render_config(
        "mlp", [("input", torch.float32, [16])], [("output", torch.float32, [4])],
        max_batch_size=8)
    settings = render_settings(warmup={"batch_sizes": [1, 2, 4, 8]})
    return Built(model, {"input": torch.randn(3, 16)}, "output", config, settings)


def _build_resnet(name, block, layers):
    # What torchvision.models.<name>(weights=None) builds, as the ResNet subclass above.
    model = ResNet(block, layers)
    calibrate_batchnorm(model, torch.randn(4, 3, 224, 224))
    config = render_config(
        name, [("input", torch.float32, [3, 224, 224])], [("logits", torch.float32, [1000])],
        max_batch_size=8)
    settings = render_settings(warmup={"batch_sizes": [1, 4]})
    return Built(model, {"input": torch.randn(2, 3, 224, 224)}, "logits", config, settings)


def build_resnet18(version_dir):
    return _build_resnet("resnet18", torchvision.models.resnet.BasicBlock, [2, 2, 2, 2])


def build_resnet50(version_dir):
    return _build_resnet("resnet50", torchvision.models.resnet.Bottleneck, [3, 4, 6, 3])


TEXTCLS_MAX_LENGTH = 128
TEXTCLS_PAD_ID = 0
TEXTCLS_VOCAB_SIZE = 2000  # trains fine on the ~237 KB of /usr/share/common-licenses
TEXTCLS_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "This program is free software; you can redistribute it and/or modify it under the "
    "terms of the GNU General Public License.",
)


def _run_tool(args, cwd, stdin_text=None):
    """Runs a command, returning stdout; raises BuildError with its stderr if it fails."""
    try:
        result = subprocess.run(args, cwd=cwd, input=stdin_text, capture_output=True,
                                text=True, check=False)
    except FileNotFoundError:
        raise BuildError(f"{args[0]} not found; install Debian's sentencepiece package")
    if result.returncode != 0:
        raise BuildError(f"{' '.join(args)} failed (exit {result.returncode}):\n"
                         f"{result.stderr.strip()[-2000:]}")
    return result.stdout


def train_tokenizer(work_dir):
    """Trains a unigram SentencePiece model on the license texts; returns (model path, vocab
    size). Paths passed to spm_train are relative to work_dir because spm_train stores its
    arguments in the model file; one thread, so the model is byte-for-byte reproducible."""
    files = sorted(p for p in LICENSES_DIR.iterdir() if p.is_file() and not p.is_symlink())
    if not files:
        raise BuildError(f"no training text found in {LICENSES_DIR}")
    with open(work_dir / "corpus.txt", "wb") as corpus:   # symlinks (GPL -> GPL-3) skipped
        for path in files:
            corpus.write(path.read_bytes().rstrip(b"\n") + b"\n")
    _run_tool(["spm_train", "--input=corpus.txt", "--model_prefix=tokenizer",
               f"--vocab_size={TEXTCLS_VOCAB_SIZE}", "--model_type=unigram",
               f"--pad_id={TEXTCLS_PAD_ID}", "--unk_id=1", "--bos_id=-1", "--eos_id=-1",
               "--input_sentence_size=1000000", "--shuffle_input_sentence=false",
               "--random_seed=1", "--num_threads=1", "--minloglevel=1"], cwd=work_dir)
    vocab_lines = (work_dir / "tokenizer.vocab").read_text(encoding="utf-8").splitlines()
    return work_dir / "tokenizer.model", len(vocab_lines)


def encode(model_path, texts):
    """Token ids of each text, via spm_encode (the Python sentencepiece module is absent)."""
    out = _run_tool(["spm_encode", f"--model={model_path}", "--output_format=id"],
                    cwd=model_path.parent, stdin_text="".join(t + "\n" for t in texts))
    rows = [[int(tok) for tok in line.split()] for line in out.splitlines()]
    if len(rows) != len(texts) or not all(rows):
        raise BuildError(f"spm_encode returned {len(rows)} id rows for {len(texts)} texts")
    return rows


def pad_batch(rows):
    """Right-pads id rows (truncated to the max length) to the longest; returns (ids, mask)."""
    rows = [r[:TEXTCLS_MAX_LENGTH] for r in rows]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), TEXTCLS_PAD_ID, dtype=torch.int64)
    mask = torch.zeros((len(rows), length), dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
        mask[i, :len(r)] = 1
    return ids, mask


def check_textcls(eager, loaded, vocab_size, reference_inputs):
    """Shapes must not be baked in: other batch sizes and lengths agree with eager, padding does
    not change a row's logits, and an all-padding batch gives finite logits."""
    gen = torch.Generator().manual_seed(1234)
    lengths = [37, 5, 20]
    ids = torch.randint(2, vocab_size, (len(lengths), max(lengths)), generator=gen)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids * mask + TEXTCLS_PAD_ID * (1 - mask)
    full = torch.randint(2, vocab_size, (1, TEXTCLS_MAX_LENGTH), generator=gen)
    with torch.no_grad():
        for x, m in ((ids, mask), (full, torch.ones_like(full))):
            assert_close(f"textcls B={x.size(0)} L={x.size(1)}", eager(x, m), loaded(x, m))
        ref_ids, ref_mask = reference_inputs["input_ids"], reference_inputs["attention_mask"]
        batched = loaded(ref_ids, ref_mask)
        for row in range(ref_ids.size(0)):
            n = int(ref_mask[row].sum())
            alone = loaded(ref_ids[row:row + 1, :n], ref_mask[row:row + 1, :n])
            assert_close(f"textcls padding invariance, row {row}", alone, batched[row:row + 1])
        zeros = torch.zeros(2, 16, dtype=torch.int64)
        if not torch.isfinite(loaded(zeros, zeros)).all():
            raise BuildError("textcls: all-padding input gives non-finite logits")


def build_textcls(version_dir):
    with tempfile.TemporaryDirectory(prefix="kiln-spm-") as scratch:
        spm_model, vocab_size = train_tokenizer(Path(scratch))
        shutil.copyfile(spm_model, version_dir / "tokenizer.model")
    rows = encode(version_dir / "tokenizer.model", TEXTCLS_SENTENCES)
    if max(max(r) for r in rows) >= vocab_size:
        raise BuildError(f"spm_encode returned an id >= the vocabulary size {vocab_size}")
    ids, mask = pad_batch(rows)
    model = TextClassifier(vocab_size, TEXTCLS_PAD_ID, max_length=TEXTCLS_MAX_LENGTH).eval()
    config = render_config(
        "textcls",
        [("input_ids", torch.int64, [-1]), ("attention_mask", torch.int64, [-1])],
        [("logits", torch.float32, [4])], max_batch_size=8)
    settings = render_settings(
        warmup={"batch_sizes": [1, 4], "sequence_lengths": [16, 32, 64, 128]},
        tokenizer={"model_file": "tokenizer.model", "max_length": TEXTCLS_MAX_LENGTH,
                   "pad_id": TEXTCLS_PAD_ID})
    inputs = {"input_ids": ids, "attention_mask": mask}
    metadata = {f"text.{i}": t for i, t in enumerate(TEXTCLS_SENTENCES)}
    metadata["vocab_size"] = vocab_size
    return Built(model, inputs, "logits", config, settings, metadata,
                 check=lambda eager, loaded: check_textcls(eager, loaded, vocab_size, inputs))


BUILDERS = {"mlp": build_mlp, "resnet18": build_resnet18, "resnet50": build_resnet50,
            "textcls": build_textcls}
SEEDS = {"mlp": 1, "resnet18": 18, "resnet50": 50, "textcls": 7}


# --------------------------------------------------------------------------------------------
# Export and checks
# --------------------------------------------------------------------------------------------

def assert_close(what, expected, actual):
    if expected.shape != actual.shape:
        raise BuildError(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not torch.isfinite(actual).all():
        raise BuildError(f"{what}: non-finite values")
    diff = (expected - actual).abs().max().item()
    if diff > TOLERANCE:
        raise BuildError(f"{what}: max abs diff {diff:.3g} > {TOLERANCE}")


def _storage_ptr(t):
    storage = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return storage.data_ptr()


def module_tensors(loaded, eager):
    """{name: tensor} of the loaded module's parameters and buffers, checked for duplicate
    names, shared storage and equality with the eager module's state_dict."""
    tensors, owners = {}, {}
    for name, t in list(loaded.named_parameters()) + list(loaded.named_buffers()):
        if name in tensors:
            raise BuildError(f"duplicate tensor name {name}")
        ptr = _storage_ptr(t)
        if ptr in owners:
            raise BuildError(f"{name} shares storage with {owners[ptr]}")
        owners[ptr] = name
        tensors[name] = t.detach()
    state = eager.state_dict()
    if set(state) != set(tensors):
        differing = sorted(set(state) ^ set(tensors))
        raise BuildError(f"TorchScript names differ from eager: {differing}")
    for name, t in tensors.items():
        if not torch.equal(state[name], t):
            raise BuildError(f"{name}: TorchScript value differs from eager")
    return tensors


def export(name, built, version_dir):
    """Scripts, saves and reloads the module, then writes the weights and the reference pair."""
    eager = built.module.eval()
    model_path = version_dir / "model.pt"
    torch.jit.save(torch.jit.script(eager), str(model_path))
    loaded = torch.jit.load(str(model_path))
    if any(m.training for m in loaded.modules()):
        raise BuildError(f"{name}: loaded TorchScript module is in training mode")
    # Triton's PyTorch backend binds inputs to forward()'s arguments by name.
    arg_names = [a.name for a in loaded.forward.schema.arguments][1:]   # without self
    if arg_names != list(built.inputs):
        raise BuildError(f"{name}: forward() takes {arg_names}, the config's inputs are "
                         f"{list(built.inputs)}")
    meta = {"format": "pt", "generator": "scripts/make_models.py", "model": name}
    write_safetensors(version_dir / "model.safetensors", module_tensors(loaded, eager), meta)

    args = list(built.inputs.values())
    with torch.no_grad():
        output = loaded(*args)
        assert_close(f"{name}: eager vs TorchScript", eager(*args), output)
    reference = {f"input.{k}": v for k, v in built.inputs.items()}
    reference[f"output.{built.output_name}"] = output
    write_safetensors(version_dir / "reference.safetensors", reference,
                      {**meta, **built.metadata})
    if built.check:
        built.check(eager, loaded)


# --------------------------------------------------------------------------------------------
# Repository handling
# --------------------------------------------------------------------------------------------

def expected_files(name):
    # Every demo model sets warmup, so every one has a kiln.pbtxt.
    files = ["config.pbtxt", "kiln.pbtxt", f"{VERSION}/model.pt", f"{VERSION}/model.safetensors",
             f"{VERSION}/reference.safetensors"]
    if name == "textcls":
        files.append(f"{VERSION}/tokenizer.model")
    return files


def is_complete(model_dir, name):
    """Every expected file is there, non-empty, and config.pbtxt is in Triton's form (an old-form
    directory's model.pt also has forward() argument names that may differ from its inputs)."""
    if not all((model_dir / f).is_file() and (model_dir / f).stat().st_size > 0
               for f in expected_files(name)):
        return False
    config = (model_dir / "config.pbtxt").read_text(encoding="utf-8", errors="replace")
    return 'backend: "pytorch"' in config.splitlines()


def remove_stale_temporaries(out_dir, name):
    """Removes .<name>.tmp-<pid> / .<name>.old-<pid> left by runs that died (pid not alive)."""
    for path in out_dir.glob(f".{name}.*-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_model(out_dir, name):
    """Builds one model in a temporary sibling directory, then swaps it into place."""
    final = out_dir / name
    tmp = out_dir / f".{name}.tmp-{os.getpid()}"
    old = out_dir / f".{name}.old-{os.getpid()}"
    remove_stale_temporaries(out_dir, name)
    try:
        version_dir = tmp / VERSION
        version_dir.mkdir(parents=True)
        torch.manual_seed(SEEDS[name])
        built = BUILDERS[name](version_dir)
        export(name, built, version_dir)
        (tmp / "config.pbtxt").write_text(built.config, encoding="utf-8")
        if built.settings:
            (tmp / "kiln.pbtxt").write_text(built.settings, encoding="utf-8")
        if not is_complete(tmp, name):
            raise BuildError(f"{name}: missing files after build")
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def dir_size(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Write kiln's example model repository (mlp, resnet18, resnet50, textcls) "
                    "with seeded random weights, in Triton's repository form: config.pbtxt "
                    "(Triton's, backend pytorch), kiln.pbtxt (kiln's settings), TorchScript "
                    "model.pt, model.safetensors, reference.safetensors (and tokenizer.model).")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models",
                        help="model repository directory (default: %(default)s)")
    parser.add_argument("--models", default=",".join(ALL_MODELS),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--force", action="store_true",
                        help="rebuild models whose directory is already complete")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in ALL_MODELS]
    if unknown or not args.models:
        parser.error(f"--models: unknown {unknown}; choose from {','.join(ALL_MODELS)}")
    return args


def main(argv):
    args = parse_args(argv)
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    for name in args.models:
        model_dir = out_dir / name
        if not args.force and is_complete(model_dir, name):
            print(f"{name}: skipped, {model_dir} is complete (--force rebuilds it)", flush=True)
            continue
        t0 = time.monotonic()
        build_model(out_dir, name)
        print(f"{name}: built {model_dir} ({dir_size(model_dir) / 1e6:.1f} MB) "
              f"in {time.monotonic() - t0:.1f}s", flush=True)
    print(f"done in {time.monotonic() - start:.1f}s", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (BuildError, OSError, RuntimeError) as e:
        print(f"make_models.py: error: {e}", file=sys.stderr)
        sys.exit(1)
