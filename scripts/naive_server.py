#!/usr/bin/python3
"""naive_server.py: the NAIVE baseline kiln's time to SERVING is compared with (issue #29).

What it is: the model server most people would write first in Python, with Debian's
python3-torch and python3-grpcio, answering the same Open Inference Protocol (KServe v2) subset
and gRPC health as kiln-server, so that `kiln-bench coldstart --naive_server=THIS_FILE` measures it
exactly as it measures kiln (fork -> health Watch SERVING, first request, steady, idle, PSS), and
scripts/bench.sh step 14 sets the two side by side.

How it starts (the "naive" recipe: load in the parent, fork the workers, three calls per warmed
shape):

  1. The parent reads DIR/NAME/config.pbtxt (Triton's ModelConfig) and DIR/NAME/kiln.pbtxt
     (kiln.ModelSettings), with Python modules that `protoc --python_out` generates at run time
     from kiln's own proto/ files (cached, keyed by the files' hash), and torch.jit.load()s the
     highest numeric version's model.pt. It runs no forward pass: OpenMP must not start its
     threads before fork().
  2. It forks --workers workers. Each sets torch.set_num_threads(--threads), runs
     --calls_per_shape forward passes (default 3; 0 with --warmup=off) per warmed shape on
     generated inputs under torch.inference_mode(), and tells the parent through a pipe.
  3. Once EVERY worker is warm the parent tells them all to go; only then does each worker import
     grpc (no gRPC object ever exists before a fork) and serve the same port with SO_REUSEPORT.
     So the port opens only once all workers are warm, and health says SERVING from then on.

Why it is naive, i.e. what kiln does and this does not: the weights are not memory-mapped from
safetensors (each worker's pages are shared copy-on-write only until the allocator or autograd
touches them); warmup is a fixed count of calls per shape, not calls until the CPU time settles,
and runs at normal priority with every worker's threads at once; no readiness check through the
whole path; no warm template (each worker warms itself); OpenMP waits with libgomp's defaults
(kiln sets OMP_WAIT_POLICY=PASSIVE); the kernel spreads connections over the workers
(SO_REUSEPORT), not requests over idle workers; a worker that dies is not replaced; one call at a
time per worker (a lock), no batching, no queue, no metrics, no padding of a batch to a warmed one.

What it serves (one model):
  grpc.health.v1.Health: Check and Watch, SERVING for "" and for the model's name.
  inference.GRPCInferenceService: ServerLive, ServerReady, ModelReady, ModelMetadata (what
    kiln-server answers for the same config: server/codec/infer_codec.cc FillModelMetadata) and
    ModelInfer (raw_input_contents or typed contents in; raw_output_contents out). A text model
    (a kiln.pbtxt `tokenizer`) takes its BYTES text input alone, tokenized with SentencePiece as
    kiln's worker does (worker/text_batch.cc), or its token inputs.
  Errors: INVALID_ARGUMENT (a bad input, with a message naming it), NOT_FOUND (another model).

Run it with Debian's Python (the python3 first on some PATHs has no torch):

  /usr/bin/python3 scripts/naive_server.py --model_repository=models --model=mlp --port=8001

SIGTERM or SIGINT to the parent terminate the workers, wait for them and exit 0. A worker exits
when its parent dies (PR_SET_PDEATHSIG). Needs python3-torch, python3-grpcio, python3-protobuf,
python3-sentencepiece and protoc (protobuf-compiler): scripts/setup.sh installs them.
"""

import argparse
import ctypes
import hashlib
import importlib
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROG = "naive_server"
REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO_ROOT / "proto"
# grpc-proto's health.proto, where kiln's build takes it from too (proto/CMakeLists.txt).
HEALTH_PROTO = Path("/usr/share/grpc-proto/grpc/health/v1/health.proto")
MAX_MESSAGE_BYTES = 64 << 20
PR_SET_PDEATHSIG = 1

# Triton's data types (inference.DataType names) -> (Open Inference Protocol datatype, struct
# format of one element for typed contents' field, the typed contents field).
OIP_NAMES = {
    "TYPE_BOOL": "BOOL", "TYPE_UINT8": "UINT8", "TYPE_UINT16": "UINT16",
    "TYPE_UINT32": "UINT32", "TYPE_UINT64": "UINT64", "TYPE_INT8": "INT8",
    "TYPE_INT16": "INT16", "TYPE_INT32": "INT32", "TYPE_INT64": "INT64", "TYPE_FP16": "FP16",
    "TYPE_FP32": "FP32", "TYPE_FP64": "FP64", "TYPE_BF16": "BF16", "TYPE_STRING": "BYTES",
}
TYPED_FIELDS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def log(message):
    print(f"{PROG} (pid {os.getpid()}): {message}", file=sys.stderr, flush=True)


class BadRequest(Exception):
    """An invalid request: answered INVALID_ARGUMENT with this message."""


class NotFound(Exception):
    """Another model or version: answered NOT_FOUND with this message."""


# --- protobuf modules, generated at run time ------------------------------------------------


def proto_modules():
    """Generates (once per content of the .proto files) and imports the Python messages.

    The cache lives in $XDG_CACHE_HOME/kiln-naive/<hash> or /tmp/kiln-naive-<uid>/<hash>, made
    0700 and refused when another user owns it. health.proto is copied flat into the source
    folder so that its module is health_pb2, not grpc.health.v1 (which would shadow the grpc
    package); its proto package, and so the service's name, stays grpc.health.v1."""
    sources = [PROTO_DIR / "triton_model_config.proto", PROTO_DIR / "model_config.proto",
               PROTO_DIR / "grpc_service.proto", HEALTH_PROTO]
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) / "kiln-naive" if cache else Path(f"/tmp/kiln-naive-{os.getuid()}")
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    if base.stat().st_uid != os.getuid():
        raise SystemExit(f"{PROG}: {base} belongs to another user; set XDG_CACHE_HOME")
    out = base / digest.hexdigest()[:16]
    if not (out / "done").exists():
        # Built beside it and renamed into place: concurrent starts never see half a module.
        work = Path(tempfile.mkdtemp(prefix=".gen-", dir=base))
        src = work / "src"
        src.mkdir()
        for source in sources:
            shutil.copy(source, src / source.name)
        subprocess.run(["protoc", f"-I{src}", f"--python_out={work}"] +
                       [str(src / s.name) for s in sources], check=True)
        (work / "done").write_text("")
        shutil.rmtree(src)
        try:
            os.rename(work, out)
        except OSError:  # another start renamed its own first
            shutil.rmtree(work, ignore_errors=True)
    sys.path.insert(0, str(out))
    return (importlib.import_module("triton_model_config_pb2"),
            importlib.import_module("model_config_pb2"),
            importlib.import_module("grpc_service_pb2"),
            importlib.import_module("health_pb2"))


# --- the model's description -----------------------------------------------------------------


class Tensor:
    """One input or output of the config: name, OIP datatype, dims (without the batch dim)."""

    def __init__(self, name, datatype, dims, optional=False):
        self.name, self.datatype, self.dims, self.optional = name, datatype, list(dims), optional


class Spec:
    """What the parent read: the config, the version, the warmed shapes, the tokenizer."""


def default_warmup_batch_sizes(triton):
    """kiln's DefaultWarmupBatchSizes (common/triton_config.cc): [1], or with batching 1, the
    dynamic_batching preferred sizes between 1 and max, and max_batch_size."""
    sizes = {1}
    if triton.max_batch_size > 1:
        sizes.update(s for s in triton.dynamic_batching.preferred_batch_size
                     if 1 < s < triton.max_batch_size)
        sizes.add(triton.max_batch_size)
    return sorted(sizes)


def warm_shapes(triton, settings, spec):
    """The shapes kiln warms for this model, as (batch, length) pairs, length 0 without a -1 dim.

    Replicates kiln's rule (common/model_config_loader.cc ResolveWarmup, common/triton_config.cc
    DefaultWarmupBatchSizes and AddTritonWarmup, common/shape.cc WarmupShapes): batch sizes are
    kiln.pbtxt's warmup.batch_sizes, else [1] (+ dynamic_batching's preferred sizes) + max_batch_size
    (just [1] without a batch dim); sequence lengths kiln.pbtxt's warmup.sequence_lengths, else the
    tokenizer's max_length for a text model; config.pbtxt's model_warmup samples add their batch
    size and the length their dims give a -1 dim. Every batch size x every length (length 0 when no
    input has a -1 dim), smallest batch x length first. A repository without kiln.pbtxt gets the
    defaults, as in kiln."""
    warmup = settings.warmup
    batches = set(warmup.batch_sizes) or set(default_warmup_batch_sizes(triton))
    lengths = set(warmup.sequence_lengths)
    if not lengths and spec.tokenizer is not None:
        lengths.add(spec.tokenizer["max_length"])
    batched = triton.max_batch_size > 0
    for sample in triton.model_warmup:
        if batched:
            batches.add(max(sample.batch_size, 1))
        for tensor in spec.inputs:
            if tensor.name not in sample.inputs:
                continue
            for dim, size in zip(tensor.dims, sample.inputs[tensor.name].dims):
                if dim == -1:
                    lengths.add(int(size))
    if not batched:
        batches = {1}
    variable = any(-1 in t.dims for t in spec.inputs)
    if not variable:
        lengths = {0}
    shapes = [(b, n) for b in batches for n in lengths]
    return sorted(shapes, key=lambda s: (s[0] * max(s[1], 1), s))


def read_spec(repository, name, pb):
    """Parses the model's config.pbtxt and kiln.pbtxt and finds its version and files."""
    from google.protobuf import text_format

    triton_pb2, model_config_pb2 = pb[0], pb[1]
    model_dir = Path(repository) / name
    triton = triton_pb2.ModelConfig()
    text_format.Parse((model_dir / "config.pbtxt").read_text(), triton)
    settings = model_config_pb2.ModelSettings()
    if (model_dir / "kiln.pbtxt").exists():
        text_format.Parse((model_dir / "kiln.pbtxt").read_text(), settings)

    spec = Spec()
    spec.name = name
    spec.max_batch_size = triton.max_batch_size
    dtype_name = triton_pb2.DataType.Name
    spec.inputs = [Tensor(t.name, OIP_NAMES[dtype_name(t.data_type)], t.dims, t.optional)
                   for t in triton.input]
    spec.outputs = [Tensor(t.name, OIP_NAMES[dtype_name(t.data_type)], t.dims)
                    for t in triton.output]
    filename = triton.default_model_filename or "model.pt"
    versions = sorted(int(d.name) for d in model_dir.iterdir()
                      if d.is_dir() and d.name.isdigit() and (d / filename).is_file())
    if not versions:
        raise SystemExit(f"{PROG}: no numeric version directory with {filename} in {model_dir}")
    spec.version = str(versions[-1])
    version_dir = model_dir / spec.version
    spec.model_path = version_dir / filename

    spec.tokenizer = None
    if settings.HasField("tokenizer"):
        t = settings.tokenizer
        # kiln's defaults (proto/model_config.proto TokenizerConfig).
        spec.tokenizer = {
            "model_file": str(version_dir / t.model_file),
            "max_length": t.max_length or 128,
            "pad_id": t.pad_id,
            "text_input": t.text_input or "text",
            "ids_input": t.ids_input or "input_ids",
            "mask_input": t.mask_input or "attention_mask",
        }
    spec.warmup_enabled = not settings.warmup.HasField("enabled") or settings.warmup.enabled
    spec.shapes = warm_shapes(triton, settings, spec)
    spec.lengths = sorted({n for _, n in spec.shapes if n > 0})
    return spec


def metadata_tensors(spec):
    """(inputs, outputs) as kiln's ModelMetadata lists them: a text model's BYTES text input
    ([-1, 1]) first, then the config's inputs; each shape with -1 for the batch dim."""
    inputs = list(spec.inputs)
    if spec.tokenizer is not None:
        inputs.insert(0, Tensor(spec.tokenizer["text_input"], "BYTES", [1]))
    return inputs, spec.outputs


# --- tensors ----------------------------------------------------------------------------------


def torch_dtype(datatype):
    import torch

    return {"BOOL": torch.bool, "UINT8": torch.uint8, "INT8": torch.int8, "INT16": torch.int16,
            "INT32": torch.int32, "INT64": torch.int64, "FP16": torch.float16,
            "FP32": torch.float32, "FP64": torch.float64, "BF16": torch.bfloat16}.get(datatype)


def oip_datatype(dtype):
    import torch

    return {torch.bool: "BOOL", torch.uint8: "UINT8", torch.int8: "INT8", torch.int16: "INT16",
            torch.int32: "INT32", torch.int64: "INT64", torch.float16: "FP16",
            torch.float32: "FP32", torch.float64: "FP64", torch.bfloat16: "BF16"}[dtype]


def tensor_bytes(tensor):
    """The tensor's elements, row-major, little-endian (the raw form)."""
    import torch

    tensor = tensor.detach().contiguous().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.numpy().tobytes()


def tokenize(spec, sp, texts):
    """Token ids and attention mask for `texts`, as kiln's worker makes them
    (worker/text_batch.cc TokenizeBatch): each row truncated to max_length, all padded with pad_id
    to the smallest warmed sequence length that holds the longest row (common/shape.cc
    PaddedLength; the longest row's own length when none does), mask 1 for a token, 0 for padding;
    in the config's input order and integer type."""
    import torch

    tok = spec.tokenizer
    rows = [sp.encode(text)[:tok["max_length"]] for text in texts]
    longest = max(len(r) for r in rows)
    fits = [n for n in spec.lengths if n >= longest]
    length = min(fits) if fits else max(longest, 1)
    ids = [r + [tok["pad_id"]] * (length - len(r)) for r in rows]
    mask = [[1] * len(r) + [0] * (length - len(r)) for r in rows]
    by_name = {tok["ids_input"]: ids, tok["mask_input"]: mask}
    out = {}
    for tensor in spec.inputs:
        if tensor.name in by_name:
            value = torch.tensor(by_name[tensor.name], dtype=torch_dtype(tensor.datatype))
            out[tensor.name] = value if spec.max_batch_size > 0 else value[0]
    return out


def warm_inputs(spec, shape, vocab_size):
    """Generated inputs at `shape`: random floats; small ints (token ids below the vocabulary
    for a text model's ids input, ones for its mask)."""
    import torch

    batch, length = shape
    inputs = {}
    for tensor in spec.inputs:
        dims = ([batch] if spec.max_batch_size > 0 else []) + \
               [length if d == -1 else d for d in tensor.dims]
        dtype = torch_dtype(tensor.datatype)
        if spec.tokenizer is not None and tensor.name == spec.tokenizer["mask_input"]:
            inputs[tensor.name] = torch.ones(dims, dtype=dtype)
        elif spec.tokenizer is not None and tensor.name == spec.tokenizer["ids_input"]:
            inputs[tensor.name] = torch.randint(1, max(2, min(vocab_size, 1000)), dims, dtype=dtype)
        elif dtype.is_floating_point:
            inputs[tensor.name] = torch.rand(dims, dtype=dtype)
        elif dtype == torch.bool:
            inputs[tensor.name] = torch.zeros(dims, dtype=dtype)
        else:
            inputs[tensor.name] = torch.randint(0, 2, dims, dtype=dtype)
    return inputs


def model_outputs(spec, result):
    """The forward's result as {output name: tensor}: one tensor is the first output, a tuple or
    list the outputs in config order, a dict by name."""
    if isinstance(result, dict):
        return {t.name: result[t.name] for t in spec.outputs if t.name in result}
    if not isinstance(result, (tuple, list)):
        result = [result]
    return {t.name: value for t, value in zip(spec.outputs, result)}


# --- a worker ---------------------------------------------------------------------------------


class Worker:
    """One forked worker's model and its request handling (one forward at a time)."""

    def __init__(self, spec, model, sp, pb):
        self.spec, self.model, self.sp, self.pb = spec, model, sp, pb[2]
        self.lock = threading.Lock()
        self.meta_inputs, _ = metadata_tensors(spec)

    def forward(self, inputs):
        import torch

        with self.lock, torch.inference_mode():
            return model_outputs(self.spec, self.model(**inputs))

    def warm(self, calls):
        """--calls_per_shape forward passes per warmed shape; returns the wall ms."""
        start = time.monotonic()
        vocab = self.sp.get_piece_size() if self.sp is not None else 0
        if self.sp is not None and calls > 0:
            self.sp.encode("warm the tokenizer once")
        for shape in self.spec.shapes:
            inputs = warm_inputs(self.spec, shape, vocab)
            for _ in range(calls):
                self.forward(inputs)
        return (time.monotonic() - start) * 1000

    def check_model(self, name, version):
        if name != self.spec.name:
            raise NotFound(f"unknown model '{name}'")
        if version not in ("", self.spec.version):
            raise NotFound(f"model '{self.spec.name}' has no version '{version}'"
                           f" (serving {self.spec.version})")

    def decode(self, request):
        """The request's inputs as {name: tensor}, checked against the model."""
        import torch

        self.check_model(request.model_name, request.model_version)
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise BadRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
        known = {t.name: t for t in self.meta_inputs}
        text_name = self.spec.tokenizer["text_input"] if self.spec.tokenizer else None
        names = [i.name for i in request.inputs]
        if text_name in names and len(names) != 1:
            raise BadRequest(f"send either the text input '{text_name}' alone or the token inputs")
        decoded = {}
        batch = None
        for index, given in enumerate(request.inputs):
            tensor = known.get(given.name)
            if tensor is None or (text_name is not None and given.name != text_name and
                                  text_name in names):
                raise BadRequest(f"input '{given.name}': the model has no such input")
            if given.name in decoded:
                raise BadRequest(f"input '{given.name}': given twice")
            if given.datatype != tensor.datatype:
                raise BadRequest(f"input '{given.name}': datatype {given.datatype} does not match "
                                 f"the model's {tensor.datatype}")
            shape = list(given.shape)
            expected_rank = len(tensor.dims) + (1 if self.spec.max_batch_size > 0 else 0)
            dims = shape[1:] if self.spec.max_batch_size > 0 else shape
            if len(shape) != expected_rank or any(
                    d < 0 or (want != -1 and d != want) for d, want in zip(dims, tensor.dims)):
                raise BadRequest(f"input '{given.name}': shape {shape} does not match the model's "
                                 f"{([-1] if self.spec.max_batch_size > 0 else []) + tensor.dims}")
            if self.spec.max_batch_size > 0:
                if not 1 <= shape[0] <= self.spec.max_batch_size:
                    raise BadRequest(f"input '{given.name}': batch {shape[0]} is not in "
                                     f"1..max_batch_size={self.spec.max_batch_size}")
                if batch is not None and shape[0] != batch:
                    raise BadRequest(f"input '{given.name}': batch {shape[0]}, other inputs {batch}")
                batch = shape[0]
            elements = 1
            for d in shape:
                elements *= d
            if tensor.datatype == "BYTES":
                decoded[given.name] = self.decode_bytes(given, raw[index] if raw else None,
                                                        elements)
                continue
            dtype = torch_dtype(tensor.datatype)
            if raw:
                data = raw[index]
                size = elements * torch.empty((), dtype=dtype).element_size()
                if len(data) != size:
                    raise BadRequest(f"input '{given.name}': {len(data)} bytes of raw content, "
                                     f"expected {size} for {tensor.datatype} {shape}")
                value = torch.frombuffer(bytearray(data), dtype=dtype) if size else \
                    torch.empty(0, dtype=dtype)
            else:
                field = TYPED_FIELDS.get(tensor.datatype)
                if field is None:
                    raise BadRequest(f"input '{given.name}': {tensor.datatype} has no typed "
                                     "contents field; send it in raw_input_contents")
                values = list(getattr(given.contents, field))
                if len(values) != elements:
                    raise BadRequest(f"input '{given.name}': {len(values)} values in {field}, "
                                     f"expected {elements}")
                value = torch.tensor(values, dtype=dtype)
            decoded[given.name] = value.reshape(shape)
        if text_name in decoded:
            return tokenize(self.spec, self.sp, decoded[text_name])
        for tensor in self.spec.inputs:
            if tensor.name not in decoded and not tensor.optional:
                raise BadRequest(f"input '{tensor.name}' is missing")
        return decoded

    @staticmethod
    def decode_bytes(given, data, elements):
        """BYTES elements: each a 4-byte little-endian length and its bytes (raw), or
        bytes_contents; decoded as UTF-8 text."""
        if data is None:
            values = list(given.contents.bytes_contents)
        else:
            values, offset = [], 0
            while offset < len(data):
                if offset + 4 > len(data):
                    raise BadRequest(f"input '{given.name}': malformed BYTES (a cut length prefix)")
                (size,) = struct.unpack_from("<I", data, offset)
                offset += 4
                if offset + size > len(data):
                    raise BadRequest(f"input '{given.name}': malformed BYTES (an element runs "
                                     "past the end)")
                values.append(bytes(data[offset:offset + size]))
                offset += size
        if len(values) != elements:
            raise BadRequest(f"input '{given.name}': {len(values)} BYTES elements, expected "
                             f"{elements}")
        try:
            return [v.decode("utf-8") for v in values]
        except UnicodeDecodeError as error:
            raise BadRequest(f"input '{given.name}': not UTF-8 text: {error}") from None

    # --- the RPCs (context: grpc.ServicerContext) ---

    def model_infer(self, request, context):
        import grpc

        try:
            outputs = self.forward(self.decode(request))
        except BadRequest as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except NotFound as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        except RuntimeError as error:  # the model refused the inputs
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the model failed: {error}")
        response = self.pb.ModelInferResponse(model_name=self.spec.name,
                                              model_version=self.spec.version, id=request.id)
        for name, value in outputs.items():
            out = response.outputs.add(name=name, datatype=oip_datatype(value.dtype))
            out.shape.extend(value.shape)
            response.raw_output_contents.append(tensor_bytes(value))
        return response

    def model_metadata(self, request, context):
        import grpc

        try:
            self.check_model(request.name, request.version)
        except NotFound as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        response = self.pb.ModelMetadataResponse(name=self.spec.name, versions=[self.spec.version],
                                                 platform="pytorch_libtorch")
        inputs, outputs = metadata_tensors(self.spec)
        for tensors, field in ((inputs, response.inputs), (outputs, response.outputs)):
            for t in tensors:
                entry = field.add(name=t.name, datatype=t.datatype)
                entry.shape.extend(([-1] if self.spec.max_batch_size > 0 else []) + t.dims)
        return response

    def model_ready(self, request, context):
        ready = request.name == self.spec.name and request.version in ("", self.spec.version)
        return self.pb.ModelReadyResponse(ready=ready)


def serve(worker, pb, host, port):
    """Serves the worker's port (shared with the other workers: SO_REUSEPORT) until killed.
    grpc is imported here, in the worker, after every fork."""
    from concurrent import futures

    import grpc

    service_pb, health_pb = pb[2], pb[3]
    serving = health_pb.HealthCheckResponse.SERVING

    def status_of(service):
        return serving if service in ("", worker.spec.name) else None

    def check(request, context):
        status = status_of(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service '{request.service}'")
        return health_pb.HealthCheckResponse(status=status)

    def watch(request, context):
        status = status_of(request.service)
        yield health_pb.HealthCheckResponse(
            status=status if status is not None else health_pb.HealthCheckResponse.SERVICE_UNKNOWN)
        ended = threading.Event()
        context.add_callback(ended.set)  # the client cancelled, or the server stops
        while context.is_active() and not ended.wait(1.0):
            pass

    def unary(fn, request_type, response_type):
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString)

    inference = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ServerLive": unary(lambda r, c: service_pb.ServerLiveResponse(live=True),
                            service_pb.ServerLiveRequest, service_pb.ServerLiveResponse),
        "ServerReady": unary(lambda r, c: service_pb.ServerReadyResponse(ready=True),
                             service_pb.ServerReadyRequest, service_pb.ServerReadyResponse),
        "ModelReady": unary(worker.model_ready, service_pb.ModelReadyRequest,
                            service_pb.ModelReadyResponse),
        "ModelMetadata": unary(worker.model_metadata, service_pb.ModelMetadataRequest,
                               service_pb.ModelMetadataResponse),
        "ModelInfer": unary(worker.model_infer, service_pb.ModelInferRequest,
                            service_pb.ModelInferResponse),
    })
    health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": unary(check, health_pb.HealthCheckRequest, health_pb.HealthCheckResponse),
        "Watch": grpc.unary_stream_rpc_method_handler(
            watch, request_deserializer=health_pb.HealthCheckRequest.FromString,
            response_serializer=health_pb.HealthCheckResponse.SerializeToString),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         handlers=[inference, health],
                         options=[("grpc.so_reuseport", 1),
                                  ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    address = f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"{PROG}: cannot listen on {address}")
    server.start()
    log(f"serving gRPC on {address}")
    server.wait_for_termination()


def worker_main(index, parent, spec, model, sp, pb, args, threads, ready_fd, go_fd):
    """A forked worker's whole life; never returns (os._exit)."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C goes to the parent
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(1)
        import torch

        torch.set_num_threads(threads)
        worker = Worker(spec, model, sp, pb)
        calls = args.calls_per_shape if args.warmup == "on" and spec.warmup_enabled else 0
        ms = worker.warm(calls)
        log(f"worker {index}: {len(spec.shapes)} shape(s) x {calls} call(s) on {threads} "
            f"thread(s) in {ms:.0f} ms")
        os.write(ready_fd, b"R")
        if os.read(go_fd, 1) != b"G":  # the parent went away
            os._exit(1)
        serve(worker, pb, args.host, args.port)
        code = 0
    except BaseException as error:  # noqa: BLE001 - a worker must never return into the parent's code
        if not isinstance(error, SystemExit):
            log(f"worker {index} failed: {error!r}")
        else:
            print(error, file=sys.stderr, flush=True)
    finally:
        os._exit(code)


# --- the parent -------------------------------------------------------------------------------


class Stop(Exception):
    """SIGTERM or SIGINT reached the parent."""


def stop_workers(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        time.sleep(0.02)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="naive_server.py",
        description="The naive baseline server of scripts/bench.sh: loads one TorchScript model in "
                    "the parent, forks its workers, each runs a fixed number of calls per warmed "
                    "shape, then all serve the Open Inference Protocol and gRPC health on one "
                    "port (SO_REUSEPORT). Run with /usr/bin/python3.",
        epilog="example: /usr/bin/python3 scripts/naive_server.py --model_repository=models "
               "--model=mlp --port=8001 --workers=2")
    parser.add_argument("--model_repository", required=True, help="Triton model repository")
    parser.add_argument("--model", required=True, help="the model to serve (one)")
    parser.add_argument("--port", type=int, required=True, help="gRPC port (0 is not allowed)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--workers", type=int, default=1, help="forked workers, >= 1 (default 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads per worker; default max(1, CPUs // workers)")
    parser.add_argument("--warmup", choices=("on", "off"), default="on",
                        help="off: no warmup calls (the port opens as soon as workers forked)")
    parser.add_argument("--calls_per_shape", type=int, default=3,
                        help="forward passes per warmed shape and worker (default 3)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.workers > 256:
        parser.error(f"--workers must be in 1..256, got {args.workers}")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    if args.threads < 0 or args.calls_per_shape < 0:
        parser.error("--threads and --calls_per_shape must be >= 0")
    if not (Path(args.model_repository) / args.model / "config.pbtxt").is_file():
        parser.error(f"no {args.model}/config.pbtxt in {args.model_repository}")
    return args


def main(argv):
    args = parse_args(argv)
    start = time.monotonic()
    pb = proto_modules()
    spec = read_spec(args.model_repository, args.model, pb)
    import torch

    # Weights loaded once, in the parent; no forward pass here (OpenMP starts at the first one).
    model = torch.jit.load(str(spec.model_path), map_location="cpu")
    model.eval()
    sp = None
    if spec.tokenizer is not None:
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=spec.tokenizer["model_file"])
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    log(f"loaded {spec.name} v{spec.version} in {(time.monotonic() - start) * 1000:.0f} ms; "
        f"warmed shapes {spec.shapes}; forking {args.workers} worker(s) of {threads} thread(s)")

    def on_signal(signum, frame):
        # Once: a second TERM (or ^C) while the workers are being stopped changes nothing.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = os.getpid()
    pids, ready_fds, go_fds = [], {}, []
    try:
        for index in range(args.workers):
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                os.close(go_w)
                for fd in list(ready_fds) + go_fds:
                    os.close(fd)
                worker_main(index + 1, parent, spec, model, sp, pb, args, threads, ready_w, go_r)
            os.close(ready_w)
            os.close(go_r)
            pids.append(pid)
            ready_fds[ready_r] = pid
            go_fds.append(go_w)
        # Every worker warm (one byte each), or one died (EOF): then the whole server fails.
        waiting = set(ready_fds)
        while waiting:
            readable, _, _ = select.select(list(waiting), [], [])
            for fd in readable:
                if os.read(fd, 1) != b"R":
                    log(f"worker pid {ready_fds[fd]} died while warming")
                    stop_workers(pids)
                    return 1
                waiting.discard(fd)
        for fd in go_fds:
            os.write(fd, b"G")
        log(f"{args.workers} worker(s) warm in {(time.monotonic() - start) * 1000:.0f} ms since "
            f"start; serving on {args.host}:{args.port}")
        # Naive: a worker that dies is not replaced; the server ends once none is left.
        alive = set(pids)
        while alive:
            pid, status = os.wait()
            if pid in alive:
                alive.discard(pid)
                log(f"worker pid {pid} ended ({status:#x}); {len(alive)} left, none replaced")
        return 1
    except Stop:
        stop_workers(pids)
        log("stopped")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
