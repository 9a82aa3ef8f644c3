"""The one checkpoint format, and the one loader every tool uses.

A checkpoint is a ``torch.save``'d dict; the same format holds a training run's ``last.pth`` /
``best.pth`` and an official TSM / TAM / ACTION-Net checkpoint converted by
``tools/convert_checkpoint.py``, so every tool (test, infer, train's fine-tuning and resume,
benchmark) reads both alike:

================  ===============================================================================
key               what
================  ===============================================================================
``format``        ``"videoattn-checkpoint-1"``
``model``         the ``state_dict`` of the :class:`~videoattn.models.VideoClassifier`
``model_config``  the normalised config of :func:`~videoattn.models.build_model` (arch, classes, T,
                  inserts): ``build_model(model_config)`` rebuilds the network
``classes``       the class names, index = logit; ``None`` for a converted checkpoint whose label
                  file was not given (``--classes``)
``data``          how a clip is made for the model: ``sampling`` (``Sampling`` keywords),
                  ``eval_transform`` (``EvalTransform`` keywords), the dataset ``name``
``origin``        where the weights come from: ``{"kind": "training", ...}`` or
                  ``{"kind": "converted", "source": "tsm", "file": ...}``
training state    a training run's checkpoints also hold ``optimizer``, ``scheduler``, ``scaler``,
                  ``epoch``, ``best_top1``, ``history``, ``rng`` and the resolved ``config``
================  ===============================================================================

:func:`load_checkpoint` reads any file a tool is given and answers every mistake in one line
(:class:`~videoattn.errors.CheckpointError`): a missing, empty, truncated or non-PyTorch file;
an official checkpoint not converted yet (with the command that converts it); bare weights.
Checkpoints of earlier versions of this format are upgraded in memory.

**No file runs code.** Every ``torch.save`` file is read with ``torch.load(weights_only=True)``,
in the zip and in the legacy (pre-1.6) format alike, with :func:`safe_globals` allowed for the
read: the harmless Python objects that this toolkit's and the official TSM / TAM / ACTION-Net /
TDN / TAdaConv checkpoints hold besides tensors and plain data. A file that pickles anything else
(which a full unpickle would rebuild by calling what the file names: any command) is refused with
:class:`UntrustedCheckpointError`, naming the file and those globals, before anything is built
from it, unless the user opts in for the run (:func:`trust_checkpoints`: ``--trust-checkpoint``
in the argparse tools, ``trust_checkpoint=true`` in ``train.py`` / ``test.py``); a trusted file
that needs it is then unpickled in full, with a warning naming it.

**The pickle-free form, for sharing:** a *model folder* ``NAME/`` holding ``model.safetensors``
(the weights, ``ckpt["model"]``) and ``config.json`` (everything else a tool reads: the format
``videoattn-model-1``, ``model_config``, ``classes``, ``data``, ``origin``, the training
``history`` / ``epoch`` / ``best_top1`` / ``best_epoch`` when the checkpoint has them, and the
SHA-256 of ``model.safetensors``); no optimiser state: it is for inference and fine-tuning, not
for resuming. :func:`save_model_folder` writes one (``tools/convert_checkpoint.py --format
safetensors``); every reader here takes the folder (or either file in it) where it takes a
``.pth`` file, and neither file can run code. A lone ``.safetensors`` file reads as bare weights.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import contextlib
import contextvars
import hashlib
import io
import json
import logging
import math
import os
import pickle
import pickletools
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError, ConfigError, DataError, MissingFileError, UserError
from .files import atomic_file, write_atomic

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "MODEL_FORMAT",
    "WEIGHTS_FILE",
    "UntrustedCheckpointError",
    "add_classes_command",
    "as_checkpoint",
    "check_classes",
    "check_torch_file",
    "describe",
    "detect_source",
    "official_state_dict_of",
    "input_paths",
    "load_checkpoint",
    "load_model_folder",
    "make_checkpoint",
    "model_folder_of",
    "pickled_globals",
    "read_torch_file",
    "refuse_overwrite",
    "safe_globals",
    "same_path",
    "save_atomic",
    "save_checkpoint",
    "save_model_folder",
    "trust_checkpoints",
]

FORMAT = "videoattn-checkpoint-1"
MODEL_FORMAT = "videoattn-model-1"  # a model folder's config.json
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
DEFAULT_DATA = {"name": None, "sampling": {"mode": "segment"}, "eval_transform": {"size": 224, "resize": 256}}
_REQUIRED = ("model", "model_config", "classes", "data", "origin")
_SHARED_EXTRA = ("epoch", "best_top1", "best_epoch", "history")  # what a model folder keeps of a training state


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through :func:`videoattn.files.atomic_file`: a crash at any
    moment leaves the old file or the new one, never a torn one. The object is serialised in
    memory first, so a full disk is an ``OSError`` (ENOSPC) naming ``path``, not a torch error."""
    with atomic_file(path) as f:
        buf = io.BytesIO()
        torch.save(obj, buf)
        f.write(buf.getbuffer())
    return Path(path)


# ----------------------------------------------------------------------------- what a file may hold
class UntrustedCheckpointError(UserError, ValueError):
    """A checkpoint that pickles Python objects outside :func:`safe_globals`: loading it would run
    whatever the file names. Deliberately not a :class:`CheckpointError`: code that falls back past
    an unreadable checkpoint (resume=auto's older ``last.N.pth``) must stop here; the user decides."""


def safe_globals() -> list[Any]:
    """The Python objects besides tensors and plain data that a checkpoint may hold, for
    ``torch.serialization.safe_globals`` (each entry a global or ``(global, "module.name")`` for a
    name it was pickled under). What real checkpoints hold, and nothing that rebuilding can turn
    into a call of anything else (the values inside are unpickled under the same restrictions):

    - ``argparse.Namespace``: the training ``args`` some official checkpoints keep; rebuilt as an
      empty namespace whose attributes are then set.
    - ``numpy._core.multiarray.scalar`` (also under numpy < 2's name ``numpy.core.multiarray.scalar``,
      as the official checkpoints were written), ``numpy.dtype`` and the numeric dtype classes
      (``numpy.dtypes.Float64DType``, ...): numpy scalars such as an official ``best_prec1``,
      rebuilt from a dtype and raw bytes.
    - ``collections.OrderedDict`` (every ``state_dict``), ``collections.Counter`` (a
      ``MultiStepLR``'s milestones in TDN's scheduler state), ``torch.nn.Parameter``: also in
      PyTorch's own default list, named here so the contract does not depend on it.
    """
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    codes = np.typecodes["AllInteger"] + np.typecodes["Float"] + "?"
    dtypes = {type(np.dtype(c)) for c in codes}
    return [
        argparse.Namespace,
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *sorted(dtypes, key=lambda t: t.__name__),
        collections.OrderedDict,
        collections.Counter,
        torch.nn.Parameter,
    ]


def _allowed_names() -> set[str] | None:
    """``module.name`` of every global a ``weights_only`` read here accepts, or None where this
    PyTorch does not say (then nothing is refused before the read itself)."""
    try:
        from torch import _weights_only_unpickler as unpickler

        names = set(unpickler._get_allowed_globals())
    except Exception:  # noqa: BLE001 (a private helper: without it, the read's own refusal stands)
        return None
    for entry in safe_globals():
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f"{entry.__module__}.{entry.__qualname__}")
    return names


@dataclass(frozen=True)
class _Trust:
    enabled: bool
    how: str  # how the user opts in, for the refusal


_UNTRUSTED = _Trust(False, "trust=True (load_checkpoint / load_model)")
_TRUST: contextvars.ContextVar[_Trust] = contextvars.ContextVar("videoattn_trust_checkpoint", default=_UNTRUSTED)


@contextlib.contextmanager
def trust_checkpoints(enabled: bool, *, how: str = "--trust-checkpoint") -> Iterator[None]:
    """Within the block, the checkpoint readers of this module take ``enabled`` as their
    ``trust`` default (a tool's ``--trust-checkpoint`` / ``trust_checkpoint=true``, for the files
    of that run); ``how`` is how the user opts in, said by the refusal."""
    token = _TRUST.set(_Trust(bool(enabled), how))
    try:
        yield
    finally:
        _TRUST.reset(token)


def _trusted(trust: bool | None) -> bool:
    return _TRUST.get().enabled if trust is None else bool(trust)


_NO_PUSH = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME", "PROTO", "STOP", "MARK", "POP", "POP_MARK"}
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _scan_pickle(stream: io.BufferedIOBase, found: list[str]) -> None:
    """Append the ``module.name`` of every global the pickle at ``stream``'s position refers to
    (a static scan: nothing is imported or called); stops after its STOP."""
    pushed: list[Any] = []  # what each op pushed (a string, or None), to name STACK_GLOBAL's operands
    memo: dict[int, Any] = {}
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            if (module, attr) in _compat_pickle.NAME_MAPPING:  # Python 2 names, as protocol 2 writes them
                module, attr = _compat_pickle.NAME_MAPPING[(module, attr)]
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            found.append(f"{module}.{attr}")
        elif name == "STACK_GLOBAL":
            module, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            ok = isinstance(module, str) and isinstance(attr, str)
            found.append(f"{module}.{attr}" if ok else "a global named at load time")
        elif name in ("EXT1", "EXT2", "EXT4"):
            found.append(f"copyreg extension {arg}")
        if name in ("MEMOIZE",):
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        if name in _STRINGS:
            pushed.append(arg)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif name not in _NO_PUSH:
            pushed.append(None)
        if name == "STOP":
            return


def pickled_globals(path: str | os.PathLike) -> list[str]:
    """The globals (``module.name``) the pickle of a ``torch.save`` file names, zip or legacy
    format, in order, each once; a static scan that stops quietly where the file is not a pickle."""
    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                if names:
                    _scan_pickle(io.BytesIO(archive.read(names[0])), found)
        else:
            with open(path, "rb") as f:
                for _ in range(4):  # magic number, protocol, system info, then the object itself
                    _scan_pickle(f, found)
    except Exception:  # noqa: BLE001 (not a pickle, or a damaged one: the read reports it)
        pass
    return list(dict.fromkeys(found))


def _refused(path: Path, *, err: BaseException | None = None) -> list[str]:
    """The globals of ``path`` that a read here does not allow (from a static scan of its pickle,
    else from PyTorch's refusal ``err``)."""
    allowed = _allowed_names()
    names = [] if allowed is None else [n for n in pickled_globals(path) if n not in allowed]
    if not names and err is not None:
        text = str(err)
        names = re.findall(r"GLOBAL (\S+) was not an allowed global", text)
        names += re.findall(r"but got <class '([^']+)'>", text)
    return names


def _is_torch_file(path: Path) -> bool:
    """Whether ``path`` is a ``torch.save`` file (a zip with its ``data.pkl``, or a legacy file
    that starts with PyTorch's magic number), read without unpickling any object."""

    class _Numbers(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise pickle.UnpicklingError("not a number")

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return any(n == "data.pkl" or n.endswith("/data.pkl") for n in archive.namelist())
        with open(path, "rb") as f:
            return _Numbers(f).load() == torch.serialization.MAGIC_NUMBER
    except Exception:  # noqa: BLE001 (anything unreadable: not one)
        return False


def _refuse(path: Path, names: Sequence[str], *, what: str, reason: str = "") -> UntrustedCheckpointError:
    how = _TRUST.get().how
    if names:
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        held = (
            f"holds {listed}: Python objects that only a full unpickle rebuilds, by running code the file names "
            "(any command)"
        )
    else:
        held = (
            f"uses pickle instructions the safe reader does not take ({reason}), which only a full unpickle reads "
            "(and that can run any command)"
        )
    return UntrustedCheckpointError(
        f"{what} {path} {held}; not loaded. If you trust its source, opt in with {how}, or convert it "
        f"once to a pickle-free model folder that needs no trust: tools/convert_checkpoint.py --src {path} --dst "
        "NAME --format safetensors --trust-checkpoint"
    )


def _warn_trusted(path: Path, names: Sequence[str]) -> None:
    log.warning(
        "%s: unpickling %s in full although it holds %s: any code the file carries runs now (trusted by the user)",
        _TRUST.get().how,
        path,
        ", ".join(names) or "objects outside the allowlist",
    )


# ----------------------------------------------------------------------------- model folders
def model_folder_of(path: str | os.PathLike) -> Path | None:
    """The model folder ``path`` is, or holds ``path`` (its ``config.json`` or ``model.safetensors``),
    or None."""
    path = Path(path).expanduser()
    if path.is_dir():
        return path if (path / CONFIG_FILE).is_file() or (path / WEIGHTS_FILE).is_file() else None
    if path.name in (CONFIG_FILE, WEIGHTS_FILE) and (path.parent / CONFIG_FILE).is_file():
        return path.parent
    return None


def input_paths(path: str | os.PathLike) -> list[Path]:
    """The paths reading ``path`` reads: a model folder and its two files, or the file."""
    folder = model_folder_of(path)
    if folder is None:
        return [Path(path).expanduser()]
    return [folder, folder / CONFIG_FILE, folder / WEIGHTS_FILE]


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are the same file or folder (links followed; either may not exist)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def refuse_overwrite(output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], *, flag: str) -> None:
    """Fail in one line (nothing written yet) if writing ``output`` (a file, or a model folder and
    its files) would replace one of ``inputs`` (name -> path; None skipped)."""
    out = Path(output).expanduser()
    outs = [out, out / CONFIG_FILE, out / WEIGHTS_FILE]  # a model folder is written as its two files
    for name, given in inputs.items():
        if given is None:
            continue
        for target in outs:
            if any(same_path(target, p) for p in input_paths(given)):
                raise ConfigError(
                    f"{flag} {output} is {name} {given} (or a file of it): writing it would replace the input; "
                    "write to a new path"
                )


def _json_plain(value: Any, where: str) -> Any:
    """``value`` as strict JSON data: numpy / tensor scalars as numbers, non-finite floats as null."""
    if isinstance(value, Mapping):
        return {str(k): _json_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_plain(v, where) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"the checkpoint's {where} holds a {type(value).__name__}, which a model folder cannot store")


def save_model_folder(
    ckpt: Mapping[str, Any],
    folder: str | os.PathLike,
    *,
    extra: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write the pickle-free form of a checkpoint (see the module docstring): ``folder/model.safetensors``
    then ``folder/config.json`` (the commit point, holding the weights' SHA-256: a kill between the
    two leaves a folder that reads as a mismatch, never as a mix of two models). ``extra``: more
    entries of ``config.json`` (plain data; :mod:`videoattn.share` adds the preprocessing and the
    measured metrics); ``files``: text files (name -> text, e.g. the model card ``README.md``)
    written before ``config.json``."""
    from safetensors.torch import save as safetensors_bytes

    missing = [k for k in ("format", *_REQUIRED) if k not in ckpt]
    if missing:
        raise ValueError(f"not a complete checkpoint: missing {missing}")
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; a model folder is written to a folder (give a new folder name)")
    config_path = folder / CONFIG_FILE
    if config_path.is_file():
        try:
            theirs = json.loads(config_path.read_text()).get("format")
        except (ValueError, AttributeError, UnicodeDecodeError):
            theirs = None
        if theirs != MODEL_FORMAT:
            raise ConfigError(
                f"{folder} holds a {CONFIG_FILE} that is not a videoattn model's: choose another folder for the model"
            )
    weights = {}
    for key, value in ckpt["model"].items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"the checkpoint's model entry {key!r} is a {type(value).__name__}, not a tensor")
        weights[key] = value.detach().to("cpu").contiguous().clone()  # clones: no shared storage in the file
    data = safetensors_bytes(weights, metadata={"format": "pt", "videoattn": MODEL_FORMAT})
    contract = {
        "format": MODEL_FORMAT,
        "weights": WEIGHTS_FILE,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        **{k: ckpt[k] for k in _REQUIRED if k != "model"},
        **{k: ckpt[k] for k in _SHARED_EXTRA if k in ckpt},
        **(extra or {}),
    }
    text = json.dumps(_json_plain(contract, "config"), indent=2, allow_nan=False) + "\n"
    write_atomic(folder / WEIGHTS_FILE, data)
    for name, body in (files or {}).items():
        write_atomic(folder / name, body)
    write_atomic(config_path, text)
    return folder


def load_model_folder(folder: str | os.PathLike, *, what: str = "checkpoint") -> dict[str, Any]:
    """The checkpoint dict of a model folder (:func:`save_model_folder`), read without unpickling."""
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    folder = Path(folder).expanduser()
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file():
        raise MissingFileError(f"{what} {folder}: a model folder needs its {CONFIG_FILE} beside {WEIGHTS_FILE}")
    try:
        contract = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{what} {config_path} is not valid JSON ({_short(err)})") from err
    if not isinstance(contract, dict) or contract.get("format") != MODEL_FORMAT:
        found = contract.get("format") if isinstance(contract, dict) else None
        raise CheckpointError(
            f"{what} {config_path} is not a videoattn model's config (format {found!r}, expected {MODEL_FORMAT!r})"
        )
    missing = [k for k in _REQUIRED if k != "model" and k not in contract]
    if missing:
        raise CheckpointError(f"{what} {config_path} lacks {missing}; the folder is damaged")
    if not weights_path.is_file():
        raise MissingFileError(f"{what} {folder}: {WEIGHTS_FILE} not found beside its {CONFIG_FILE}")
    data = weights_path.read_bytes()
    if contract.get("weights_sha256") not in (None, hashlib.sha256(data).hexdigest()):
        raise CheckpointError(
            f"{what} {folder}: {WEIGHTS_FILE} is not the file its {CONFIG_FILE} was written with (another SHA-256): "
            "a torn copy or files of two models; copy the folder again"
        )
    try:
        tensors = safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{what} {weights_path} cannot be read: truncated or not safetensors ({_short(err)})"
        ) from err
    extra = {k: v for k, v in contract.items() if k not in ("format", "weights", "weights_sha256")}
    return {"format": FORMAT, "model": tensors, **extra}


def _is_safetensors(head: bytes) -> bool:
    """A safetensors file starts with its header's length (8 bytes, little-endian) and the JSON header."""
    return len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000


def _read_safetensors(path: Path, *, what: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{what} {path} cannot be read: truncated or not safetensors ({_short(err)})") from err


# ----------------------------------------------------------------------------- reading any file
def check_torch_file(path: str | os.PathLike, *, what: str = "checkpoint", trust: bool | None = None) -> Path:
    """Fail early, in one line, unless ``path`` is a file that starts like a ``torch.save``
    archive (a zip) or a legacy pickle, a safetensors file, or a model folder; it reads the first
    bytes and (for a ``torch.save`` file) scans its pickle, nothing more: a file that holds objects
    outside :func:`safe_globals` is refused here (:class:`UntrustedCheckpointError`) unless
    trusted (``trust``, default: :func:`trust_checkpoints`'s)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingFileError(f"{what} {path} not found")
    if model_folder_of(path) is not None:
        return path
    if path.is_dir():
        raise CheckpointError(
            f"{what} {path} is a folder; give the .pth file (e.g. {path}/best.pth), or a model folder (holding "
            f"{CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        raise CheckpointError(f"{what} {path} is an empty file (an interrupted copy or download?)")
    if _is_safetensors(head):
        return path
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip archive, pickle protocol >= 2
        raise CheckpointError(f"{what} {path} is not a PyTorch checkpoint (it does not start like one)")
    if not _trusted(trust):
        refused = _refused(path)
        if refused:
            raise _refuse(path, refused, what=what)
    return path


def read_torch_file(path: str | os.PathLike, *, what: str = "checkpoint", trust: bool | None = None) -> Any:
    """The object in ``path`` on the CPU, read once, with one-line errors for a missing, empty,
    truncated or foreign file: a ``torch.save`` file (zip or legacy format) through
    ``torch.load(weights_only=True)`` with :func:`safe_globals` allowed for the read; a model
    folder (or a file in it) as its checkpoint dict; a lone safetensors file as its tensors.

    A ``torch.save`` file that holds other Python objects is refused
    (:class:`UntrustedCheckpointError`, naming them) unless ``trust`` (default: the enclosing
    :func:`trust_checkpoints`'s setting, off): then it is unpickled in full, with a warning
    naming the file."""
    path = check_torch_file(path, what=what, trust=trust)
    folder = model_folder_of(path)
    if folder is not None:
        return load_model_folder(folder, what=what)
    with open(path, "rb") as f:
        if _is_safetensors(f.read(9)):
            return _read_safetensors(path, what=what)
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused(path, err=err)
        unsupported = "Unsupported operand" in str(err) and _is_torch_file(path)  # a pickle opcode it lacks
        if not refused and not unsupported:
            raise CheckpointError(f"{what} {path} is not a PyTorch checkpoint ({_torch_reason(err)})") from err
        if not _trusted(trust):
            raise _refuse(path, refused, what=what, reason=_torch_reason(err)) from None
        _warn_trusted(path, refused or [f"pickle instructions the safe reader does not take ({_torch_reason(err)})"])
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(
            f"{what} {path} cannot be read: truncated or not a PyTorch checkpoint ({_short(err)})"
        ) from err
    except Exception as err:  # noqa: BLE001 (a pickle that cannot be rebuilt here)
        raise CheckpointError(f"{what} {path} cannot be read ({_short(err)})") from err
    try:  # trusted by the user: the full unpickle
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as err:
        raise CheckpointError(
            f"{what} {path} cannot be read: truncated or not a PyTorch checkpoint ({_short(err)})"
        ) from err
    except Exception as err:  # noqa: BLE001 (classes of another program)
        raise CheckpointError(f"{what} {path} cannot be read ({_short(err)})") from err


def _torch_reason(err: BaseException) -> str:
    """The part of a ``weights_only`` refusal that says what was wrong."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    return _short(re.sub(r"\x1b\[[0-9;]*m", "", text))


def _short(err: BaseException | str) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def make_checkpoint(
    model: nn.Module, *, classes: Sequence[str] | None, data: Mapping[str, Any], origin: Mapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (its ``state_dict`` and ``config``) with the class names,
    the clip settings ``data`` (``sampling``, ``eval_transform``, ``name``), the ``origin`` and any
    ``extra`` entries (a training run's state)."""
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError("make_checkpoint needs a model built by build_model (it has no .config)")
    if classes is not None and len(classes) != config["num_classes"]:
        raise CheckpointError(f"{len(classes)} class names for a model with {config['num_classes']} classes")
    return {
        "format": FORMAT,
        "model": model.state_dict(),
        "model_config": dict(config),
        "classes": None if classes is None else list(classes),
        "data": _data_entry(data),
        "origin": dict(origin),
        **extra,
    }


def _data_entry(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a test of the model reads from the checkpoint: the dataset's name, its sampling, the
    evaluation transform, the test views (``test``) and the training crop size (``train_size``)."""
    entry = {
        "name": data.get("name"),
        "sampling": dict(data.get("sampling") or DEFAULT_DATA["sampling"]),
        "eval_transform": dict(data.get("eval_transform") or DEFAULT_DATA["eval_transform"]),
    }
    if data.get("test"):
        entry["test"] = dict(data["test"])
    train = data.get("train_transform") or {}
    if train.get("size") is not None:
        entry["train_size"] = train["size"]
    return entry


def save_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint made by :func:`make_checkpoint` atomically."""
    missing = [k for k in ("format", *_REQUIRED) if k not in ckpt]
    if missing:
        raise ValueError(f"not a complete checkpoint: missing {missing}")
    return save_atomic(dict(ckpt), path)


def load_checkpoint(path: str | os.PathLike, *, trust: bool | None = None) -> dict[str, Any]:
    """Read a checkpoint for a tool: a training run's or a converted one, a ``.pth`` file or a
    model folder (see the module docstring), earlier versions upgraded. Anything else fails with
    one line saying what the file is and what to do with it; ``trust``: :func:`read_torch_file`."""
    path = Path(path).expanduser()
    obj = read_torch_file(path, trust=trust)
    ckpt = as_checkpoint(obj, path)
    if ckpt is None:
        raise CheckpointError(f"{path}: {describe(obj, path)}")
    return ckpt


def as_checkpoint(obj: Any, path: str | os.PathLike = "checkpoint") -> dict[str, Any] | None:
    """``obj`` (what ``torch.load`` returned) as a checkpoint of the current format, or ``None``
    when it is not a videoattn checkpoint."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _upgrade(obj, Path(path))
    if isinstance(obj, dict) and "converted_from" in obj and "state_dict" in obj:  # converted before format 1 held them
        return _upgrade(
            {
                "format": FORMAT,
                "model": obj["state_dict"],
                "model_config": obj["model_config"],
                "classes": obj.get("class_names"),
                "origin": {"kind": "converted", **obj["converted_from"]},
            },
            Path(path),
        )
    return None


def _upgrade(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    for key in ("model", "model_config"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: a videoattn checkpoint without its {key!r}; the file is damaged")
    ckpt.setdefault("classes", None)
    if "data" not in ckpt:  # training checkpoints before the data entry: the run's data config
        ckpt["data"] = _data_entry((ckpt.get("config") or {}).get("data") or {})
    ckpt.setdefault("origin", {"kind": "training"} if "optimizer" in ckpt else {"kind": "unknown"})
    return ckpt


def add_classes_command(path: str | os.PathLike) -> str:
    """The command that stores class names in a copy of the checkpoint ``path`` (a new file or
    folder beside it: no tool writes over its input)."""
    path = Path(path)
    folder = model_folder_of(path)
    if folder is not None:
        return (
            f"tools/convert_checkpoint.py --src {folder} --dst {folder.with_name(folder.name + '_named')} "
            "--format safetensors --classes LABEL_FILE"
        )
    stem, suffix = (path.name.split(".", 1) + [""])[:2]
    dst = path.with_name(f"{stem}_named{'.' + suffix if suffix else '.pth'}")
    return f"tools/convert_checkpoint.py --src {path} --dst {dst} --classes LABEL_FILE"


def official_state_dict_of(obj: Any) -> Any:
    """The weights in an official checkpoint object: its ``state_dict`` (TSN / TSM / TAM /
    ACTION-Net / TDN), its ``model_state`` (TAdaConv's ``.pyth``), or the object itself (bare
    weights); None for what is not a dict."""
    if not isinstance(obj, dict):
        return None
    return obj.get("state_dict", obj.get("model_state", obj))


def describe(obj: Any, path: str | os.PathLike) -> str:
    """What ``obj`` (a loaded file that is not a videoattn checkpoint) is, and what to do with it."""
    path = Path(path)
    sd = official_state_dict_of(obj)
    if isinstance(sd, dict) and sd and all(isinstance(v, torch.Tensor) for v in sd.values()):
        source = detect_source({k.removeprefix("module."): v for k, v in sd.items()})
        if source != "unknown":
            return (
                f"an official {source.upper()} checkpoint, not converted yet: run tools/convert_checkpoint.py "
                f"--src {path} --dst {path.parent / 'converted.pth'} --classes LABEL_FILE, then use the converted file"
            )
        return (
            "bare weights (a state_dict), not a videoattn checkpoint: to initialise a model for training use it as "
            f"model.pretrained={path}"
        )
    return "not a videoattn checkpoint (tools write them with tools/train.py or tools/convert_checkpoint.py)"


def detect_source(sd: Mapping[str, torch.Tensor]) -> str:
    """Which official implementation's layout a (``module.``-stripped) state_dict has: ``tsm``,
    ``tam``, ``action``, ``tdn`` (MCG-NJU/TDN: ``base_model.conv1_5.*``, ``layerN_bak.B.mse.*``),
    ``tada2d`` (TAdaConv: ``backbone.conv1.a.weight``, ``conv_branch.b_rf.*``) or ``unknown``
    (recognising a file; :mod:`videoattn.models.convert` converts it)."""
    keys = list(sd)
    if any(k.startswith("base_model.conv1_5.") for k in keys) or any("_bak." in k and ".mse." in k for k in keys):
        return "tdn"
    if "backbone.conv1.a.weight" in sd or any(".conv_branch.b_rf." in k for k in keys):
        return "tada2d"
    if any(".tam." in k for k in keys):
        return "tam"
    if any(".action_shift." in k for k in keys):
        return "action"
    if any(k.endswith(".conv1.net.weight") for k in keys):
        return "tsm"
    return "unknown"


def check_classes(
    ckpt: Mapping[str, Any], data_classes: Sequence[str], *, checkpoint: str | os.PathLike, dataset: str
) -> bool:
    """Fail unless the checkpoint predicts the dataset's classes: the same names in the same
    order (the message names the first difference). A checkpoint without names is checked by
    its number of classes only; returns whether the names were compared."""
    theirs, ours = list(data_classes), ckpt["classes"]
    if ours is None:
        k = ckpt["model_config"]["num_classes"]
        if k != len(theirs):
            raise DataError(
                f"{checkpoint} predicts {k} classes, {dataset} has {len(theirs)}; use the dataset the "
                "model was trained on"
            )
        return False
    ours = list(ours)
    if ours == theirs:
        return True
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))
    a = repr(ours[first]) if first < len(ours) else "nothing"
    b = repr(theirs[first]) if first < len(theirs) else "nothing"
    raise DataError(
        f"{checkpoint} predicts other classes than {dataset}: {len(ours)} vs {len(theirs)} classes, the first "
        f"difference at index {first}: {a} in the checkpoint, {b} in the dataset; use the dataset the model was "
        "trained on (for a converted checkpoint: convert it again with --classes <that dataset's label file>)"
    )
