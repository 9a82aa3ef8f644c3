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

onnx, onnxscript and onnxruntime are the optional ``deploy`` extra (``uv sync --extra deploy``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..files import atomic_file

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "OnnxModel",
    "check_parity",
    "export_onnx",
    "read_metadata",
    "require_deploy",
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


def _modules_of(model: nn.Module) -> str:
    cfg = getattr(model, "config", None) or {}
    names = [ins.get("name") if isinstance(ins, Mapping) else str(ins) for ins in cfg.get("inserts", [])]
    arch = cfg.get("arch", type(model).__name__)
    return f"{arch} with {', '.join(names)}" if names else arch


def export_onnx(
    model: nn.Module | Callable[..., Any],
    path: str | Path,
    *,
    example: Sequence[Tensor],
    metadata: Mapping[str, Any],
    input_names: Sequence[str] = ("clips",),
    output_names: Sequence[str] = ("logits",),
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
    tolerance: float | None = 1e-4,
    check_inputs: Sequence[Tensor] | None = None,
) -> float | None:
    """Export ``model`` (eval mode) called on ``example`` to ``path``; returns the max abs
    difference of onnxruntime against PyTorch on ``check_inputs`` (default: ``example``), or
    None with ``tolerance=None`` (no check). ``metadata`` values are stored as JSON strings
    under their keys. Nothing is written when the export or the check fails."""
    require_deploy()
    import onnx

    path = Path(path)
    if isinstance(model, nn.Module):
        model.eval()
    batch = torch.export.Dim("batch", min=1) if dynamic_batch else None
    dynamic = tuple({0: batch} if batch is not None else {} for _ in example)
    try:
        with torch.no_grad():
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
        diff = check_parity(model, OnnxModel.from_bytes(data), check_inputs or example)
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
    outputs as numpy arrays (CPU by default; ``threads``: intra-op threads, None = onnxruntime's)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.metadata = _ours(session.get_modelmeta().custom_metadata_map.items())
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, path: str | Path, *, threads: int | None = None) -> OnnxModel:
        require_deploy()
        import onnxruntime as ort

        try:
            return cls(ort.InferenceSession(str(path), _options(threads), providers=["CPUExecutionProvider"]))
        except Exception as err:  # a file onnxruntime cannot parse
            why = str(err).splitlines()[0][:200]
            raise ConfigError(f"{path}: not an ONNX model onnxruntime can load ({why})") from err

    @classmethod
    def from_bytes(cls, data: bytes, *, threads: int | None = None) -> OnnxModel:
        import onnxruntime as ort

        return cls(ort.InferenceSession(data, _options(threads), providers=["CPUExecutionProvider"]))

    def __call__(self, *inputs: Tensor | np.ndarray) -> list[np.ndarray]:
        feed = {name: _numpy(x) for name, x in zip(self.input_names, inputs, strict=True)}
        return self.session.run(self.output_names, feed)


def _options(threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: no warnings on the user's terminal
    return options


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def check_parity(model: nn.Module | Callable[..., Any], onnx_model: OnnxModel, inputs: Sequence[Tensor]) -> float:
    """Max abs difference of every output, onnxruntime against PyTorch, on ``inputs``."""
    with torch.no_grad():
        ref = model(*inputs)
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
