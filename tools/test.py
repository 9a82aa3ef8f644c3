"""Test a checkpoint with the standard multi-view protocols.

    uv run python tools/test.py checkpoint=runs/demo/tsm/best.pth
    uv run python tools/test.py checkpoint=CKPT data=ssv2 data.root=/data/ssv2 split=val       # the checkpoint's views
    uv run python tools/test.py checkpoint=CKPT data=ssv2 data.root=/data/ssv2 split=val protocol=tsm_accurate
    uv run python tools/test.py checkpoint=CKPT data=ssv2 data.root=/data/ssv2 split=test      # + submission file
    uv run python tools/test.py checkpoint=CKPT data=kinetics data.root=/data/k400 split=val protocol=tsm_dense
    torchrun --nproc_per_node 8 tools/test.py checkpoint=CKPT ...                              # sharded, no padding
    uv run python tools/test.py checkpoint=CKPT out_dir=fp32_test                               # then bf16 vs fp32:
    uv run python tools/test.py checkpoint=CKPT precision=bf16 reference=fp32_test/predictions.csv

CKPT is a ``.pth`` file or a model folder (model.safetensors + config.json); a ``.pth`` that
pickles objects beyond tensors and the allowlist is refused unless ``trust_checkpoint=true``.
The views travel with the checkpoint (the sampling, crop sizes and test views of the run that
trained it); ``protocol=NAME`` picks a paper's (videoattn/data/protocols.py) and ``data.sampling.*``
/ ``data.eval_transform.*`` / ``data.test.*`` on the command line win over both.

Writes to OUT_DIR (default: beside the checkpoint, named by checkpoint, dataset and its root,
split, views, precision: tests of two dataset roots never share one; never the checkpoint or the
``reference`` file): metrics.json (top-1, top-5, mean class accuracy, per-class accuracy),
predictions.csv (one line per video: id, label, top-5 classes and probabilities),
confusion.png, and for unlabelled splits submission.csv (``id;class``). With
``reference=PATH`` (the predictions.csv of another run on the same split, e.g. in fp32),
metrics.json also gets the fraction of videos whose top-1 class is the same in both.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from videoattn.checkpoint import check_classes, model_folder_of, refuse_overwrite, trust_checkpoints
from videoattn.compose import run_tool
from videoattn.data.build import (
    build_dataset,
    check_shared_memory,
    loader_options,
    normalize_data_config,
    order_dependent_indices,
)
from videoattn.data.formats import format_of
from videoattn.data.protocols import resolve_views
from videoattn.engine.device import configure_backends
from videoattn.engine.distributed import collective_failure, init_distributed, shutdown
from videoattn.engine.evaluate import ShardSampler, evaluate, set_inference_layout
from videoattn.engine.interrupt import StopRequests, ignore_stop_signals
from videoattn.engine.memory import cache_freed_memory
from videoattn.errors import DataError, MissingFileError
from videoattn.files import write_atomic
from videoattn.models import load_model
from videoattn.progress import track

log = logging.getLogger("test")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def plural(n: int, word: str) -> str:
    """``1 view``, ``2 views``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def main() -> None:
    """Compose the config once from the command line (a mistake: one line, exit 2), then test."""
    run_tool(run, config_dir=CONFIGS, config_name="test", refuse=REFUSED)


def run(cfg: DictConfig) -> float:
    """Test with ``cfg``, the checked config (:func:`videoattn.compose.run_tool`)."""
    with trust_checkpoints(cfg.trust_checkpoint, how="trust_checkpoint=true"):
        return test(cfg)


def test(cfg: DictConfig) -> float:
    # device=auto on a CUDA build without a usable GPU says why; a rank stuck for dist_timeout ends the job
    world = init_distributed(cfg.device, timeout_s=cfg.dist_timeout)
    configure_backends(world.device, tf32=cfg.tf32)
    if world.device.type == "cpu" and cfg.malloc_cache:
        cache_freed_memory()  # far fewer page faults per step (videoattn.engine.memory)
    reference = (
        read_reference(Path(cfg.reference)) if cfg.reference else None
    )  # a bad file fails now, not after the split
    if cfg.out_dir:  # before anything is read: a given out_dir that would replace an input is refused
        check_out_dir(Path(cfg.out_dir), cfg)
    model, ckpt = load_model(cfg.checkpoint)  # a training run's or a converted checkpoint
    model_cfg = ckpt["model_config"]
    model.to(world.device)
    channels_last = set_inference_layout(model, precision=cfg.precision, channels_last=cfg.channels_last)
    runner = torch.compile(model) if cfg.compile else model

    # the views travel with the checkpoint (its sampling, crop sizes, test protocol); protocol=NAME or
    # data.sampling / data.eval_transform / data.test keys on the command line replace them
    data_cfg, notes = resolve_views(
        normalize_data_config(cfg.data), checkpoint=ckpt["data"], protocol=cfg.protocol, explicit=explicit_keys()
    )
    data_cfg = normalize_data_config(data_cfg)
    split_file_of_run(data_cfg, Path(cfg.checkpoint))
    test = data_cfg["test"]
    out_dir = Path(cfg.out_dir or default_out_dir(cfg, data_cfg))
    check_out_dir(out_dir, cfg)
    dataset = build_dataset(
        data_cfg,
        cfg.split,
        mode="test",
        num_segments=model_cfg["num_segments"],
        frames_per_segment=model.frames_per_segment,  # F frames per segment on the channels (TDN's 5)
        report=out_dir / "bad_files.jsonl",
    )
    named = check_classes(ckpt, dataset.classes, checkpoint=cfg.checkpoint, dataset=f"{data_cfg['name']}/{cfg.split}")
    classes = dataset.classes
    if not named and world.main:
        print(
            f"note: {cfg.checkpoint} carries no class names; its {len(classes)} outputs are read as the dataset's "
            "classes in sorted order (convert it with --classes to have them checked)"
        )
    options = loader_options(
        data_cfg["backend"],
        workers=cfg.workers,
        pin_memory=world.device.type == "cuda",
        persistent=cfg.persistent_workers,
        prefetch=cfg.prefetch_factor,
    )
    # the views of a batch in flight must fit in /dev/shm (Docker's 64 MB: a bus error mid-test)
    check_shared_memory(dataset.probe(), batch_size=cfg.batch_size, options=options)
    if options["num_workers"]:
        options["worker_init_fn"] = ignore_stop_signals  # Ctrl-C reaches every process: the main one stops them
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=ShardSampler(len(dataset), world), **options)
    views = len(dataset[0][0]) if len(dataset) else 0
    if world.main:
        for note in notes:
            log.info("note: %s", note)
        log.info(
            "%s: %d videos of %s/%s, %s each (%s x %s)",
            cfg.checkpoint,
            len(dataset),
            data_cfg["name"],
            cfg.split,
            plural(views, "view"),
            plural(test["num_clips"], "clip"),
            plural(test["num_crops"], "crop"),
        )
    norm = (dataset.transform.mean, dataset.transform.std)  # for uint8 batches (normalize: false)
    with StopRequests().installed() as stop:  # Ctrl-C / SIGTERM: one line, exit 130 / 143, nothing written
        try:
            result = evaluate(
                runner,
                track(loader, total=len(loader), desc="test", unit="batch", enabled=world.main),  # 10% lines off a tty
                num_classes=len(classes),
                world=world,
                precision=cfg.precision,
                keep_probs=True,
                norm=norm,
                stop=stop,
            )
            stop.agreed(world, "during the test: nothing was written")
        except RuntimeError as err:  # a collective that a stuck or dead rank left waiting
            failed = collective_failure(err, world, timeout_s=cfg.dist_timeout)
            if failed is None:
                raise
            raise failed from None

    if world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        labelled = result.num_clips > 0
        per_class = result.per_class().tolist()
        metrics = {
            "checkpoint": str(cfg.checkpoint),
            "data": data_cfg["name"],
            "split": cfg.split,
            "data_root": str(data_cfg["root"]),
            "protocol": cfg.protocol,
            "num_clips": test["num_clips"],
            "num_crops": test["num_crops"],
            "views": {k: data_cfg[k] for k in ("sampling", "eval_transform", "test")},
            "videos": len(dataset),
            "videos_evaluated": len(result.probs),
            "unreadable": result.substituted,
            "skipped_annotations": dataset.report_skipped(),
            "precision": cfg.precision,
            "channels_last": channels_last,
            "compile": cfg.compile,
            "top1": result.top1,
            "top5": result.top5,
            "mean_class_accuracy": result.mean_class,
            "per_class_accuracy": {c: a for c, a in zip(classes, per_class, strict=True)},
        }
        order = order_dependent_indices(data_cfg["order_dependent"], classes)
        if order:
            metrics["top1_order_dependent"] = result.subset_top1(order)
        if cfg.reference:
            metrics["reference"] = agreement(result.probs, dataset, reference, Path(cfg.reference))
        rows = (
            io.StringIO()
        )  # every file is written whole or not at all; metrics.json last, as the mark of a finished test
        w = csv.writer(rows)
        w.writerow(["video_id", "label", "top1", "top5", "top5_probs"])
        for i, probs in sorted(result.probs.items()):
            rec = dataset.records[i]
            top = probs.topk(min(5, len(classes)))
            w.writerow(
                [
                    rec.video_id,
                    rec.label,
                    int(top.indices[0]),
                    " ".join(map(str, top.indices.tolist())),
                    " ".join(f"{p:.4f}" for p in top.values.tolist()),
                ]
            )
        write_atomic(out_dir / "predictions.csv", rows.getvalue())
        if not labelled:  # the SSv2 test split: the challenge's "id;class" submission
            write_atomic(
                out_dir / "submission.csv",
                "".join(
                    f"{dataset.records[i].video_id};{classes[top1(probs)]}\n"
                    for i, probs in sorted(result.probs.items())
                ),
            )
        else:
            plot_confusion(
                result.confusion,
                classes,
                out_dir / "confusion.png",
                title=f"{model_cfg.get('name')} on {data_cfg['name']}/{cfg.split}: top-1 {result.top1:.3f}",
            )
        write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if labelled:
            print(
                f"top-1 {result.top1:.4f}  top-5 {result.top5:.4f}  mean class {result.mean_class:.4f}"
                + (f"  order-dependent {metrics['top1_order_dependent']:.4f}" if order else "")
                + f"  ({_coverage(len(result.probs), len(dataset), result.substituted)}, "
                f"{test['num_clips']}x{test['num_crops']} views)"
            )
        else:
            print(f"{len(result.probs)} unlabelled videos predicted; submission in {out_dir / 'submission.csv'}")
        if cfg.reference:
            ref = metrics["reference"]
            print(f"top-1 agreement with {ref['path']}: {ref['top1_agreement']:.4f} ({ref['videos']} videos)")
        if result.substituted or metrics["skipped_annotations"]:
            print(
                f"{result.substituted} unreadable videos left out, {metrics['skipped_annotations']} annotation entries "
                f"skipped; see {out_dir / 'bad_files.jsonl'}"
            )
        print(f"wrote {out_dir}")
    shutdown(world)
    return result.top1


def _coverage(evaluated: int, total: int, unreadable: int) -> str:
    return f"{evaluated} of {total} videos" + (f", {unreadable} unreadable" if unreadable else "")


def explicit_keys() -> set[str]:
    """The keys set on the command line (``data.test.num_clips=1`` -> ``data.test.num_clips``)."""
    if not HydraConfig.initialized():
        return set()
    return {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task if "=" in o}


def top1(probs: torch.Tensor) -> int:
    """The predicted class, as the ``top1`` column of predictions.csv has it (``topk``: with
    bf16's coarse probabilities exact ties happen, and ``argmax`` may break them otherwise)."""
    return int(probs.topk(1).indices[0])


OUTPUTS = ("metrics.json", "predictions.csv", "confusion.png", "submission.csv", "bad_files.jsonl")


def default_out_dir(cfg: DictConfig, data_cfg: dict) -> Path:
    """``<checkpoint folder>/test_<checkpoint>_<data>[_<root folder>-<hash>]_<split>_<clips>x<crops>
    [_bf16][_compiled]``, beside the checkpoint (a model folder: beside the folder): tests of other
    checkpoints in the same folder, other datasets, dataset roots (the hash is of the root's resolved
    path: two roots of one format never share a folder; none for the built-in demo data), protocols
    or precisions do not overwrite each other."""
    test, ckpt = data_cfg["test"], Path(cfg.checkpoint).expanduser()
    ckpt = model_folder_of(ckpt) or ckpt
    views = cfg.protocol or f"{test['num_clips']}x{test['num_crops']}"
    data = data_cfg["name"]
    if data_cfg["root"]:
        root = Path(data_cfg["root"]).expanduser().resolve()
        data += f"_{root.name or 'root'}-{hashlib.sha1(str(root).encode()).hexdigest()[:6]}"
    name = f"test_{ckpt.name.split('.')[0]}_{data}_{cfg.split}_{views}"
    name += ("" if cfg.precision == "fp32" else f"_{cfg.precision}") + ("_compiled" if cfg.compile else "")
    return ckpt.parent / name


def check_out_dir(out_dir: Path, cfg: DictConfig) -> None:
    """Refuse an ``out_dir`` that is the checkpoint (a file, or a model folder) or whose files would
    replace an input (the checkpoint, the reference predictions)."""
    inputs = {"checkpoint": cfg.checkpoint, "reference": cfg.reference}
    refuse_overwrite(out_dir, inputs, flag="out_dir")
    for name in OUTPUTS:
        refuse_overwrite(out_dir / name, inputs, flag="out_dir's file")


def split_file_of_run(data_cfg: dict, checkpoint: Path) -> None:
    """A format that draws its own split (``data=folders``) tests the split of the run that
    trained the checkpoint: ``split.json`` beside it (the run folder), unless
    ``data.annotations.split_file`` names one. Without either the split is drawn again from
    ``split_seed`` / ``val_fraction``: the run's own while the folder has not changed (a warning
    says so)."""
    fmt = format_of(data_cfg["source"])
    if fmt is None or "split_file" not in fmt.keywords or data_cfg["annotations"].get("split_file") is not None:
        return
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    stored = folder / "split.json"
    if stored.is_file():
        data_cfg["annotations"]["split_file"] = str(stored)
        log.info("the split of the run that trained the checkpoint: %s", stored)
    else:
        log.warning(
            "no split.json beside %s: the split is drawn again (data.annotations.split_seed / val_fraction), the "
            "run's own only while the folder is unchanged; give data.annotations.split_file=RUN_DIR/split.json",
            checkpoint,
        )


def read_reference(path: Path) -> dict[str, int]:
    """``video_id -> top1`` of a predictions.csv written by another run of this tool."""
    if not path.is_file():
        raise MissingFileError(
            f"reference={path}: no such predictions file; run tools/test.py on the same split "
            "first (e.g. with precision=fp32) and pass its predictions.csv"
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"video_id", "top1"} <= set(rows[0]):
        raise DataError(f"reference={path}: not a predictions.csv of tools/test.py (needs video_id and top1 columns)")
    try:
        return {r["video_id"]: int(r["top1"]) for r in rows}
    except (TypeError, ValueError) as err:
        raise DataError(f"reference={path}: a top1 value is not a class index ({err})") from err


def agreement(probs: dict[int, torch.Tensor], dataset, ref: dict[str, int], path: Path) -> dict:
    """Fraction of the videos predicted here whose top-1 class equals the one in ``ref`` (the
    predictions of another run: another precision, a compiled model)."""
    ours = {dataset.records[i].video_id: top1(p) for i, p in probs.items()}
    common = ours.keys() & ref.keys()
    if not common:
        raise DataError(
            f"reference={path}: none of its {len(ref)} videos are among the {len(ours)} tested here; "
            "was it written for another split or dataset?"
        )
    same = sum(ours[v] == ref[v] for v in common)
    return {"path": str(path), "videos": len(common), "top1_agreement": same / len(common)}


def plot_confusion(cm: torch.Tensor, classes: list[str], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    norm = cm.double() / cm.sum(1, keepdim=True).clamp_min(1)
    size = min(4 + 0.35 * k, 40)
    fig, ax = plt.subplots(figsize=(size, size), constrained_layout=True)
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 60:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.savefig(path, dpi=80)
    plt.close(fig)


REFUSED = {  # overrides that cannot apply to a trained model: test.py would run without them
    "num_segments": "test.py takes T (num_segments) from the checkpoint: its model was trained for it (TAM's and the "
    "global branches' weights depend on it); test another T with a checkpoint trained for it",
    "model": "test.py builds the model from the checkpoint's model_config; to test another model, pass its checkpoint",
    "data.train_transform": "test.py does not train: its views come from data.eval_transform and data.test",
}

if __name__ == "__main__":
    main()
