"""ONNX export of a videoattn model, with its preprocessing in the file, and onnxruntime runs.

:func:`export_onnx` traces a model with PyTorch's ONNX exporter (``torch.onnx.export(...,
dynamo=True)``: ``torch.export`` then onnxscript's translation, no slice-assignment pitfalls of
the old TorchScript tracer), with a dynamic batch dimension, and writes the file atomically
with the metadata a deployment needs (:data:`METADATA_KEYS`): class names, T, the sampling
and the eval transform (size, resize, mean/std), the model config. :func:`check_parity` runs
the written file in onnxruntime on the same input as PyTorch and returns the max abs
difference; :func:`export_onnx` refuses (:class:`ExportError`, nothing written) a model whose
exported graph differs by more than the tolerance, or that the exporter cannot trace, naming
the model's modules from its config.

Devices: the export traces the model where it is (the tools trace on the CPU: the file does not
depend on the device); ``device=`` of :func:`export_onnx` / :func:`export_streaming_step` moves
the PyTorch side of the parity check there afterwards. Sessions run on the CPU or, with
``device=cuda``, on onnxruntime's ``CUDAExecutionProvider`` (:func:`select_onnx_device` says
which a tool's ``--device`` gets; the provider missing is a one-line error for ``cuda``, never a
silent fall-back to the CPU).

onnx, onnxscript and onnxruntime are the optional ``deploy`` extra (``uv sync --extra deploy``).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..engine.device import select_device
from ..errors import ConfigError
from ..files import atomic_file

if TYPE_CHECKING:
    from ..models import StreamingModel

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "OnnxModel",
    "OnnxStream",
    "check_parity",
    "check_stream_parity",
    "cuda_provider_unavailable",
    "export_onnx",
    "export_streaming_step",
    "providers",
    "read_metadata",
    "require_deploy",
    "select_onnx_device",
]

DEFAULT_OPSET = 20
METADATA_KEYS = ("classes", "num_segments", "sampling", "eval_transform", "model_config", "input", "outputs")


class ExportError(ConfigError):
    """The model cannot be exported faithfully (a user-facing error: one line, exit 2)."""


def require_deploy() -> None:
    """Raise a one-line error naming the extra when onnx / onnxruntime / onnxscript are missing."""
    missing = []
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not installed: ONNX export and onnxruntime need `uv sync --extra deploy`"
        )


def cuda_provider_unavailable() -> str | None:
    """Why onnxruntime cannot run on a GPU here, in a few words with the fix; None when its
    ``CUDAExecutionProvider`` is available (whether it starts shows when a session is made)."""
    require_deploy()
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return None
    return (
        f"this onnxruntime {ort.__version__} has no CUDAExecutionProvider (only {', '.join(available)}): "
        "install onnxruntime-gpu in place of onnxruntime"
    )


def select_onnx_device(name: str, *, selected: torch.device | None = None) -> torch.device:
    """The device an onnxruntime session runs on for ``device: auto | cpu | cuda``: that of
    :func:`~videoattn.engine.device.select_device` (``selected``: its answer, where the caller
    has it already), where a GPU also needs onnxruntime's ``CUDAExecutionProvider``: without it
    ``cuda`` is a :class:`ConfigError` and ``auto`` the CPU with a warning saying why."""
    device = select_device(name) if selected is None else selected
    if device.type != "cuda":
        return device
    why = cuda_provider_unavailable()
    if why is None:
        return device
    if name == "cuda":
        raise ConfigError(f"device=cuda: onnxruntime cannot use the GPU: {why}; or use device=cpu")
    log.warning("device=auto: onnxruntime runs on the CPU because %s (device=cpu silences this)", why)
    return torch.device("cpu")


def providers(device: torch.device | str = "cpu", *, tf32: bool = True) -> list[str | tuple[str, dict[str, str]]]:
    """The onnxruntime execution providers of a session on ``device``: the CPU's, or the CUDA
    provider on that GPU (``tf32``: its ``use_tf32``), the CPU's after it for the nodes it has
    no kernel for."""
    device = torch.device(device)
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise ConfigError(f"device={device}: onnxruntime runs on cpu or cuda")
    options = {"device_id": str(device.index or 0), "use_tf32": "1" if tf32 else "0"}
    return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


def _device_of(module: nn.Module | Callable[..., Any]) -> torch.device:
    """Where a module's first parameter (or buffer) is; the CPU for a module without any."""
    if isinstance(module, nn.Module):
        for t in (*module.parameters(), *module.buffers()):
            return t.device
    return torch.device("cpu")


def _to(x: Tensor | Sequence[Tensor], device: torch.device) -> Tensor | list[Tensor]:
    return [t.to(device) for t in x] if isinstance(x, (list, tuple)) else x.to(device)


def _modules_of(model: nn.Module) -> str:
    cfg = getattr(model, "config", None) or {}
    names = [ins.get("name") if isinstance(ins, Mapping) else str(ins) for ins in cfg.get("inserts", [])]
    arch = cfg.get("arch", type(model).__name__)
    return f"{arch} with {', '.join(names)}" if names else arch


def export_onnx(
    model: nn.Module | Callable[..., Any],
    path: str | Path,
    *,
    example: Sequence[Tensor | Sequence[Tensor]],
    metadata: Mapping[str, Any],
    input_names: Sequence[str] = ("clips",),
    output_names: Sequence[str] = ("logits",),
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
    tolerance: float | None = 1e-4,
    check_inputs: Sequence[Tensor | Sequence[Tensor]] | None = None,
    parity: Callable[[OnnxModel], float] | None = None,
    device: torch.device | str | None = None,
) -> float | None:
    """Export ``model`` (eval mode) called on ``example`` to ``path``; returns the max abs
    difference of onnxruntime against PyTorch on ``check_inputs`` (default: ``example``), or
    the value of ``parity(session)`` when given, or None with ``tolerance=None`` (no check).
    An argument of ``example`` may be a list of tensors (the graph's inputs are the flattened
    list, named by ``input_names``); every input's dimension 0 is the batch. ``metadata``
    values are stored as JSON strings under their keys. Nothing is written when the export or
    the check fails. The model is traced where it is (with ``example`` there); ``device`` moves
    it there after the export, for the PyTorch side of the check (onnxruntime runs on the CPU)."""
    require_deploy()
    import onnx

    path = Path(path)
    if isinstance(model, nn.Module):
        model.eval()
    batch = torch.export.Dim("batch", min=1) if dynamic_batch else None
    axes = {0: batch} if batch is not None else {}
    dynamic = tuple([axes] * len(x) if isinstance(x, (list, tuple)) else axes for x in example)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # inputs that share the batch dimension each get the message "The axis name: batch will not be used"
            warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)
            program = torch.onnx.export(
                model,
                tuple(example),
                dynamo=True,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=dynamic,
                verbose=False,
            )
    except Exception as err:  # torch.export / onnxscript errors: their first line names the op
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ExportError(f"cannot export {_modules_of(model)} to ONNX: {first[:300]}") from err
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"videoattn.{key}", json.dumps(value)
    data = proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    diff = None
    if tolerance is not None:
        if device is not None and isinstance(model, nn.Module):
            model.to(device)
        session = OnnxModel.from_bytes(data)
        diff = parity(session) if parity is not None else check_parity(model, session, check_inputs or example)
        if not diff <= tolerance:  # also NaN
            raise ExportError(
                f"the ONNX graph of {_modules_of(model)} differs from PyTorch by {diff:.3g} (max abs) > "
                f"{tolerance:g}: not written; a module's export is not faithful"
            )
    with atomic_file(path) as f:
        f.write(data)
    return diff


class OnnxModel:
    """An onnxruntime session with the file's videoattn metadata: ``model(*arrays)`` returns the
    outputs as numpy arrays (inputs: numpy arrays or tensors on any device). ``device``: the CPU
    (default) or a CUDA device (onnxruntime's ``CUDAExecutionProvider``, ``tf32`` its
    ``use_tf32``; a session where it does not start is refused); ``threads``: intra-op threads,
    None = onnxruntime's."""

    def __init__(self, session: Any, *, device: torch.device | str = "cpu") -> None:
        self.session = session
        self.device = torch.device(device)
        self.metadata = _ours(session.get_modelmeta().custom_metadata_map.items())
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def load(
        cls, path: str | Path, *, threads: int | None = None, device: torch.device | str = "cpu", tf32: bool = True
    ) -> OnnxModel:
        require_deploy()
        import onnxruntime as ort

        device = torch.device(device)
        chosen = providers(device, tf32=tf32)
        try:
            session = ort.InferenceSession(str(path), _options(threads), providers=chosen)
        except Exception as err:  # a file onnxruntime cannot parse
            why = str(err).splitlines()[0][:200]
            raise ConfigError(f"{path}: not an ONNX model onnxruntime can load ({why})") from err
        return cls(_started(session, device, name=str(path)), device=device)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, threads: int | None = None, device: torch.device | str = "cpu", tf32: bool = True
    ) -> OnnxModel:
        import onnxruntime as ort

        device = torch.device(device)
        session = ort.InferenceSession(data, _options(threads), providers=providers(device, tf32=tf32))
        return cls(_started(session, device, name="the exported graph"), device=device)

    def __call__(self, *inputs: Tensor | np.ndarray | Sequence[Tensor | np.ndarray]) -> list[np.ndarray]:
        flat = [y for x in inputs for y in (x if isinstance(x, (list, tuple)) else [x])]
        feed = {name: _numpy(x) for name, x in zip(self.input_names, flat, strict=True)}
        return self.session.run(self.output_names, feed)


def _started(session: Any, device: torch.device, *, name: str) -> Any:
    """``session``, or a :class:`ConfigError` where onnxruntime left out the GPU provider asked
    for (it falls back to the CPU, logging why, when the CUDA or cuDNN libraries it needs do not load)."""
    if device.type == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise ConfigError(
            f"device=cuda: onnxruntime's CUDAExecutionProvider did not start for {name} (the CUDA / cuDNN "
            "libraries this onnxruntime-gpu build needs did not load: onnxruntime's error above names them); "
            "or use device=cpu"
        )
    return session


def _options(threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: no warnings on the user's terminal
    return options


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def check_parity(
    model: nn.Module | Callable[..., Any], onnx_model: OnnxModel, inputs: Sequence[Tensor | Sequence[Tensor]]
) -> float:
    """Max abs difference of every output, onnxruntime against PyTorch, on ``inputs`` (given to
    PyTorch on the model's device)."""
    device = _device_of(model)
    with torch.no_grad():
        ref = model(*(_to(x, device) for x in inputs))
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    flat: list[Tensor] = []
    for r in refs:
        flat.extend(r if isinstance(r, (tuple, list)) else [r])
    outs = onnx_model(*inputs)
    if len(outs) != len(flat):
        raise ExportError(f"the ONNX graph has {len(outs)} outputs, PyTorch {len(flat)}")
    return max(float(np.abs(o - _numpy(r).astype(o.dtype)).max(initial=0.0)) for o, r in zip(outs, flat, strict=True))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The videoattn metadata of an exported file (without loading it into a session)."""
    require_deploy()
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return _ours((p.key, p.value) for p in proto.metadata_props)


def _ours(items) -> dict[str, Any]:
    """The ``videoattn.*`` entries of an ONNX file's metadata, decoded from JSON."""
    return {k.removeprefix("videoattn."): json.loads(v) for k, v in items if k.startswith("videoattn.")}


# ----------------------------------------------------------------------------- the per-frame step
def export_streaming_step(
    stream: StreamingModel,
    path: str | Path,
    *,
    check_frames: Tensor,
    metadata: Mapping[str, Any],
    opset: int = DEFAULT_OPSET,
    tolerance: float | None = 1e-4,
    device: torch.device | str | None = None,
) -> float | None:
    """Export the functional step of a :class:`~videoattn.models.StreamingModel` to ``path``:
    inputs ``frame`` ``(N, 3, H, W)`` and ``state_0 .. state_{n-1}``, outputs ``logits``
    ``(N, K)`` and ``next_state_0 ..`` (N dynamic; H, W those of ``check_frames``; check with
    an N other than 2, the traced one, to see the batch dimension work). The file is
    checked by streaming ``check_frames`` ``(F, N, 3, H, W)`` through PyTorch and onnxruntime,
    each carrying its own states (:func:`check_stream_parity`: the max abs difference of the
    logits of every frame, returned). ``metadata`` is stored with a ``streaming`` entry that says the
    shapes of the states (without N) and the modules they belong to, for :class:`OnnxStream`.
    The step is traced where the model is; ``device`` moves it there for the check (see :func:`export_onnx`)."""
    frame_shape = (2, *check_frames.shape[2:])  # (N, 3, H, W) traced at N = 2 (torch.export specialises a 1)
    states = stream.initial_states(frame_shape)  # on the model's device
    n = len(states)
    example = torch.randn(frame_shape, generator=torch.Generator().manual_seed(0)).to(_device_of(stream))
    metadata = {
        **metadata,
        "streaming": {
            "frame_size": list(frame_shape[2:]),
            "states": [
                {"module": m, "shape": list(s.shape[1:])} for m, s in zip(stream.state_names, states, strict=True)
            ],
        },
    }
    return export_onnx(
        stream, path, example=[example, states], metadata=metadata, opset=opset, tolerance=tolerance,
        input_names=["frame", *(f"state_{i}" for i in range(n))],
        output_names=["logits", *(f"next_state_{i}" for i in range(n))],
        parity=lambda session: check_stream_parity(stream, session, check_frames), device=device,
    )  # fmt: skip


def check_stream_parity(stream: StreamingModel, onnx_model: OnnxModel, frames: Tensor) -> float:
    """Max abs difference, onnxruntime against PyTorch, of the logits of every frame of
    ``frames`` ``(F, N, 3, H, W)`` streamed through both from zero states, each runtime carrying
    its own states: a state's error shows in every later frame's logits (and compounds as it
    would in a deployment). PyTorch runs on the model's device, ``frames`` moved there one by one."""
    device = _device_of(stream)
    ours = stream.initial_states(frames.shape[1:])  # on the model's device
    theirs = [_numpy(s) for s in ours]
    worst = 0.0
    for frame in frames:  # (N, 3, H, W)
        with torch.no_grad():
            logits, ours = stream(frame.to(device), ours)
        out = onnx_model(frame, *theirs)
        theirs = out[1:]
        worst = max(worst, float(np.abs(out[0] - _numpy(logits)).max(initial=0.0)))
    return worst


class OnnxStream:
    """An exported per-frame step (:func:`export_streaming_step`) run in onnxruntime, its states
    carried between calls: :meth:`step` ``(N, 3, H, W) -> (N, K)`` logits as numpy, :meth:`reset`
    restarts. The state shapes come from the file's ``streaming`` metadata. The states are numpy
    arrays on the host between calls (on a GPU, copied in and out with each frame: a few hundred KiB)."""

    def __init__(self, model: OnnxModel, *, name: str = "the ONNX file") -> None:
        spec = model.metadata.get("streaming")
        if not spec:
            raise ConfigError(
                f"{name} takes whole clips, not one frame: export the per-frame step with "
                "tools/export.py --checkpoint CKPT --out STEP.onnx --streaming"
            )
        self.model = model
        self.frame_size = tuple(spec["frame_size"])
        self.state_shapes = [tuple(s["shape"]) for s in spec["states"]]
        self.reset()

    @classmethod
    def load(
        cls, path: str | Path, *, threads: int | None = None, device: torch.device | str = "cpu", tf32: bool = True
    ) -> OnnxStream:
        """The step of the file at ``path`` in a session on ``device`` (see :class:`OnnxModel`)."""
        return cls(OnnxModel.load(path, threads=threads, device=device, tf32=tf32), name=str(path))

    def reset(self) -> None:
        self.states: list[np.ndarray] | None = None
        self.frames_seen = 0

    def step(self, frame: Tensor | np.ndarray) -> np.ndarray:
        frame = _numpy(frame).astype(np.float32, copy=False)
        if frame.ndim != 4 or tuple(frame.shape[1:]) != (3, *self.frame_size):
            h, w = self.frame_size
            raise ValueError(f"the step takes frames (N, 3, {h}, {w}); got {tuple(frame.shape)}")
        if self.states is None:  # the first frame: zero states
            self.states = [np.zeros((frame.shape[0], *s), np.float32) for s in self.state_shapes]
        logits, *self.states = self.model(frame, *self.states)
        self.frames_seen += 1
        return logits
