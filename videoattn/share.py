"""Models another person picks up: the shareable model folder, its model card, and the loader
behind ``hubconf.py``.

A *shareable folder* (``tools/export.py --format folder``) is the pickle-free model folder of
:func:`videoattn.checkpoint.save_model_folder` (``model.safetensors`` + ``config.json``) with
three more entries in ``config.json`` and a model card:

===================  ============================================================================
``preprocessing``    what turns a video into the model's input: ``num_segments`` (T),
                     ``frames_per_clip``, the validation ``sampling`` and the ``eval_transform``
                     resolved (``size``, ``resize``, ``mean``, ``std``), and the ``input`` layout
``metrics``          what was measured: ``val`` (the training run's best epoch: its val top-1 and
                     top-5) and ``test`` (one entry per ``tools/test.py`` ``metrics.json`` given
                     or found beside the checkpoint: data, split, views, top-1, top-5, ...)
``recipe``           how it was trained (data, epochs, optimiser, lr, batch, pretrained weights,
                     the official recipe followed) or where it was converted from
``README.md``        a model card in the Hugging Face Hub's format: YAML front matter
                     (``library_name``, ``tags``, ``datasets`` when known, ``metrics``,
                     ``model-index`` with the measured results), then the classes, the recipe,
                     the accuracy and how to load it in one line
===================  ============================================================================

:func:`load_shared` is what ``torch.hub.load(REPO, "model", checkpoint=PATH_OR_FOLDER,
source="local")`` returns: the model in eval mode, read through the same safe reader as every
tool (``weights_only`` with an allowlist for ``.pth`` files, safetensors + JSON for folders: no
code runs from the file), with ``model.classes`` (index = logit) and ``model.preprocess``
(:class:`Preprocess`: ``model.preprocess.read(VIDEO)`` is the ``(1, T, 3, S, S)`` clip
``tools/infer.py`` feeds the model).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model_folder, model_folder_of, save_model_folder
from .data.sampling import Sampling
from .data.transforms import EvalTransform
from .errors import ConfigError

__all__ = [
    "CARD_FILE",
    "Preprocess",
    "find_test_metrics",
    "load_shared",
    "model_card",
    "preprocess_of",
    "share_entries",
    "write_shareable_folder",
]

CARD_FILE = "README.md"
INPUT = "clips (N, T, 3, S, S) float32 RGB, (x / 255 - mean) / std"
# what a shareable folder keeps of a test.py metrics.json (the per-class accuracies stay in it)
_TEST_KEYS = ("data", "split", "protocol", "num_clips", "num_crops", "videos", "videos_evaluated", "precision",
              "top1", "top5", "mean_class_accuracy", "top1_order_dependent")  # fmt: skip


# ----------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocess:
    """Video -> the model's input, as ``tools/infer.py`` makes it: the validation ``sampling``
    (T segment centres, or the dense clip) and the centre crop of ``transform`` (resize, crop,
    ``(x / 255 - mean) / std``)."""

    sampling: Sampling
    transform: EvalTransform

    def indices(self, num_frames: int) -> np.ndarray:
        """The frames of a ``num_frames``-frame video the model sees, ``(T*F,)``."""
        return self.sampling.val(num_frames)

    def __call__(self, frames: Tensor) -> Tensor:
        """``(T, 3, H, W)`` uint8 frames (those of :meth:`indices`) -> ``(1, T, 3, S, S)`` float32."""
        return self.transform(frames, squeeze=True).unsqueeze(0)  # (T, 3, S, S) -> (1, T, 3, S, S)

    def read(self, video: str | os.PathLike, *, backend: str = "auto") -> Tensor:
        """Read the frames of :meth:`indices` from ``video`` (a file or a JPEG folder) ->
        ``(1, T, 3, S, S)`` float32, ready for ``model(clip)``."""
        from .data.video import read_clip

        frames, _ = read_clip(video, self.sampling.val, backend=backend)  # (T, 3, H, W) uint8
        return self(frames)


def preprocess_of(ckpt: Mapping[str, Any]) -> Preprocess:
    """The :class:`Preprocess` of a checkpoint (its T, ``data.sampling``, ``data.eval_transform``)."""
    sampling = Sampling(num_segments=ckpt["model_config"]["num_segments"], **ckpt["data"].get("sampling", {}))
    transform = EvalTransform(**{**ckpt["data"]["eval_transform"], "normalize": True})
    return Preprocess(sampling=sampling, transform=transform)


def load_shared(checkpoint: str | os.PathLike, *, trust: bool = False) -> torch.nn.Module:
    """The model of ``checkpoint`` (a model folder or a ``.pth`` file) in eval mode on the CPU,
    with ``classes`` (the class names, or None for a checkpoint without them) and ``preprocess``
    (:class:`Preprocess`) attached. Read safely (see the module docstring); ``trust``: as
    :func:`videoattn.checkpoint.read_torch_file`'s, for a ``.pth`` that pickles more."""
    from .models import load_model

    model, ckpt = load_model(Path(checkpoint).expanduser(), trust=trust)
    model.classes = None if ckpt["classes"] is None else list(ckpt["classes"])
    model.preprocess = preprocess_of(ckpt)
    return model.eval()


# ----------------------------------------------------------------------------- config.json's entries
def find_test_metrics(checkpoint: str | os.PathLike) -> list[Path]:
    """The ``metrics.json`` of ``tools/test.py`` runs of ``checkpoint``, in the folders test.py
    writes beside it by default (``test_<name>_*``), those that name this checkpoint."""
    path = Path(checkpoint).expanduser()
    path = model_folder_of(path) or path
    stem = path.name.split(".")[0]
    found = []
    for metrics in sorted(path.parent.glob(f"test_{stem}_*/metrics.json")):
        try:
            named = json.loads(metrics.read_text()).get("checkpoint")
        except (ValueError, UnicodeDecodeError, AttributeError):
            continue
        if named is not None and _same(named, path):
            found.append(metrics)
    return found


def _same(a: str | os.PathLike, b: Path) -> bool:
    a = Path(a).expanduser()
    a = model_folder_of(a) or a
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _test_entry(path: Path) -> dict[str, Any]:
    try:
        metrics = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"--metrics {path}: no such file (the metrics.json tools/test.py writes)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"--metrics {path}: not JSON ({err})") from None
    if not isinstance(metrics, dict) or "top1" not in metrics:
        raise ConfigError(f"--metrics {path}: not a metrics.json of tools/test.py (no top1)")
    return {**{k: metrics[k] for k in _TEST_KEYS if k in metrics}, "file": str(path)}


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def share_entries(ckpt: Mapping[str, Any], *, tests: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """``preprocessing``, ``metrics`` and ``recipe`` of the shareable ``config.json`` (see the
    module docstring), from the checkpoint and the test.py ``metrics.json`` files ``tests``. A
    checkpoint that is itself a shareable folder keeps what it holds where it cannot be measured
    again (its recipe, its val metrics)."""
    pre = preprocess_of(ckpt)
    t = ckpt["model_config"]["num_segments"]
    t_f = t * pre.sampling.frames_per_segment
    preprocessing = {
        "num_segments": t,
        "frames_per_clip": t_f,
        "sampling": {k: getattr(pre.sampling, k) for k in ("mode", "rules", "stride", "frames_per_segment")},
        "eval_transform": {
            "size": pre.transform.size,
            "resize": pre.transform.resize,
            "crops": "center",
            "mean": list(pre.transform.mean),
            "std": list(pre.transform.std),
        },
        "input": INPUT,
    }
    held = ckpt.get("metrics") or {}
    val = held.get("val")
    best = ckpt.get("best_epoch")
    history = ckpt.get("history") or []
    if best is not None and 0 <= best < len(history):
        row = history[best]
        val = {
            "data": ckpt["data"].get("name"),
            "epoch": best + 1,
            "top1": _finite(row.get("val_top1")),
            "top5": _finite(row.get("val_top5")),
            "mean_class_accuracy": _finite(row.get("val_mean_class")),
            "videos": row.get("val_videos"),
        }
    test = [_test_entry(Path(p)) for p in tests] or list(held.get("test") or [])
    return {"preprocessing": preprocessing, "metrics": {"val": val, "test": test}, "recipe": _recipe(ckpt)}


def _recipe(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """How the weights were made: a training run's settings, or the converted file's origin."""
    cfg, origin = ckpt.get("config"), dict(ckpt.get("origin") or {})
    if not isinstance(cfg, Mapping):
        return dict(ckpt.get("recipe") or {"origin": origin.pop("kind", "unknown"), **origin})
    optim, data, model = cfg.get("optim") or {}, cfg.get("data") or {}, cfg.get("model") or {}
    return {
        "origin": origin.get("kind", "training"),
        "data": data.get("name"),
        "epochs_trained": len(ckpt.get("history") or []),
        "epochs": optim.get("epochs"),
        "optimizer": optim.get("name"),
        "lr": optim.get("lr"),
        "base_batch_size": optim.get("base_batch_size"),
        "schedule": optim.get("schedule"),
        "weight_decay": optim.get("weight_decay"),
        "batch_size": cfg.get("batch_size"),
        "precision": cfg.get("precision"),
        "pretrained": model.get("pretrained"),
        "recipe": cfg.get("recipe"),
        "seed": cfg.get("seed"),
    }


# ----------------------------------------------------------------------------- the model card
def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f}"


def model_card(ckpt: Mapping[str, Any], entries: Mapping[str, Any], *, name: str) -> str:
    """The model card ``README.md`` of a shareable folder ``name``: Hugging Face Hub front matter,
    then the classes, how to load it, the preprocessing, the recipe and the accuracy."""
    import yaml

    cfg, classes = ckpt["model_config"], ckpt.get("classes")
    pre, metrics, recipe = entries["preprocessing"], entries["metrics"], entries["recipe"]
    modules = sorted({i["name"] for i in cfg.get("inserts") or []})
    data_name = ckpt["data"].get("name") or recipe.get("data")
    results = []
    if metrics.get("val"):
        results.append(("val (best epoch)", metrics["val"], data_name))
    for test in metrics.get("test") or []:
        views = f"{test.get('num_clips', '?')}x{test.get('num_crops', '?')} views"
        results.append((f"{test.get('split', 'test')} ({test.get('protocol') or views})", test, test.get("data")))
    front: dict[str, Any] = {
        "library_name": "videoattn",
        "license": "apache-2.0",
        "pipeline_tag": "video-classification",
        "tags": ["video-classification", "action-recognition", "pytorch", "videoattn", cfg["arch"], *modules],
    }
    datasets = sorted({d for _, _, d in results if d} | ({data_name} if data_name else set()))
    if datasets:
        front["datasets"] = datasets
    front["metrics"] = ["accuracy"]
    index = [
        {
            "task": {"type": "video-classification", "name": "Video classification"},
            "dataset": {"name": data, "type": data, "split": split.split(" ")[0]},
            "metrics": [
                {"type": "accuracy", "name": "top-1 accuracy", "value": round(100 * float(m["top1"]), 2)},
                *(
                    [{"type": "top_5_accuracy", "name": "top-5 accuracy", "value": round(100 * float(m["top5"]), 2)}]
                    if m.get("top5") is not None
                    else []
                ),
            ],
        }
        for split, m, data in results
        if data and m.get("top1") is not None
    ]
    if index:
        front["model-index"] = [{"name": name, "results": index}]
    title = f"{cfg['name']}: {cfg['arch']}" if cfg.get("name") and cfg["name"] != cfg["arch"] else cfg["arch"]
    k = cfg["num_classes"]
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [
        f"# {name}",
        "",
        f"A video action classifier ({title}, T={cfg['num_segments']} frames, {k} classes"
        + (f", modules {', '.join(modules)}" if modules else "")
        + ") made with videoattn (TSN/TSM-style 2D networks with temporal and static excitation modules).",
        "",
        "## Load it",
        "",
        "```python",
        "import torch",
        f'model = torch.hub.load("PATH/TO/videoattn", "model", checkpoint="{name}", source="local")',
        'clip = model.preprocess.read("video.mp4")  # (1, T, 3, S, S): sampled, resized, cropped, normalised',
        "probs = model(clip).softmax(-1)[0]",
        "print([(model.classes[i], float(p)) for p, i in zip(*probs.topk(5))])",
        "```",
        "",
        f"From the command line: `uv run python tools/infer.py VIDEO --checkpoint {name}` (also `tools/test.py "
        f"checkpoint={name}`, `tools/export.py --checkpoint {name}`). The weights are `{WEIGHTS_FILE}`; "
        f"`{CONFIG_FILE}` holds the model config, the classes, the preprocessing, the test views and the metrics. "
        "Neither file can run code when read.",
        "",
        "## Preprocessing",
        "",
        f"- frames: {pre['frames_per_clip']} per clip, sampling `{pre['sampling']['mode']}` "
        f"(rules `{pre['sampling']['rules']}`; validation: the segment centres)",
        f"- resize the short side to {pre['eval_transform']['resize']} px, centre crop "
        f"{pre['eval_transform']['size']} px",
        f"- RGB, `(x / 255 - mean) / std` with mean {pre['eval_transform']['mean']}, "
        f"std {pre['eval_transform']['std']}",
        f"- input: {pre['input']}; output: logits `(N, {k})`",
    ]
    test_views = ckpt["data"].get("test")
    if test_views:
        lines.append(f"- test views: {', '.join(f'{a}={b}' for a, b in test_views.items())}")
    lines += ["", "## Training recipe", ""]
    lines += [f"- {key}: {value}" for key, value in recipe.items() if value is not None]
    lines += ["", "## Accuracy", ""]
    if results:
        lines += ["| data | split | top-1 (%) | top-5 (%) | mean class (%) | videos |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {data or '?'} | {split} | {_pct(m.get('top1'))} | {_pct(m.get('top5'))} | "
            f"{_pct(m.get('mean_class_accuracy'))} | {m.get('videos_evaluated', m.get('videos')) or '?'} |"
            for split, m, data in results
        ]
    else:
        lines.append("Not measured (no validation in the checkpoint and no tools/test.py metrics.json given).")
    lines += ["", f"## Classes ({k})", ""]
    if classes:
        lines += [f"{i}. {c}" for i, c in enumerate(classes)]
    else:
        lines.append("The checkpoint carries no class names: logits are shown by index.")
    return "\n".join(lines) + "\n"


def write_shareable_folder(
    ckpt: Mapping[str, Any], folder: str | os.PathLike, *, tests: Sequence[str | os.PathLike] = ()
) -> dict[str, Any]:
    """Write the shareable folder of ``ckpt`` (``model.safetensors``, ``config.json`` with
    :func:`share_entries`, the model card ``README.md``); returns the entries."""
    folder = Path(folder).expanduser()
    entries = share_entries(ckpt, tests=tests)
    card = model_card(ckpt, entries, name=folder.name)
    save_model_folder(ckpt, folder, extra=entries, files={CARD_FILE: card})
    load_model_folder(folder)  # read back: the folder is what every reader takes
    return entries
