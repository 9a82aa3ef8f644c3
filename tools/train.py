"""Train a video classifier (TSN / TSM / TAM / ACTION-Net / any excitation by name).

    uv run python tools/train.py                                  # TSM on the built-in demo data
    uv run python tools/train.py model=tsn                        # ... the same without temporal modelling
    uv run python tools/train.py --config-name ssv2 data.root=/data/ssv2 model=tam
    torchrun --nproc_per_node 8 tools/train.py --config-name kinetics data.root=/data/k400

Reads top to bottom: config -> processes -> run folder -> data -> model -> optimiser -> resume
-> epochs. One training at a time writes a run folder (a lock names the one that holds it).
Every epoch writes RUN_DIR/last.pth atomically (keeping the one before it as last.1.pth), then
best.pth on a new best val top-1, metrics.csv and results.json (videoattn.engine.run_folder);
`resume=auto` (the default) continues from last.pth after any interruption, with the same
data order, augmentation and RNG state as an uninterrupted run, and repairs what a kill left.
Starting again from scratch in a folder that holds a run takes `resume=none overwrite=true`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import math
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from videoattn.checkpoint import (
    check_classes,
    check_torch_file,
    load_checkpoint,
    load_model_state,
    make_checkpoint,
    trust_checkpoints,
)
from videoattn.cli import check_overrides, user_errors
from videoattn.config import check_config
from videoattn.data.build import (
    build_dataset,
    check_shared_memory,
    dataset_root,
    loader_options,
    normalize_data_config,
    order_dependent_indices,
)
from videoattn.data.dataset import read_report_entries
from videoattn.data.transforms import ToDevice
from videoattn.engine.checkpoint import restore_rng, restore_scaler, rng_state
from videoattn.engine.device import configure_backends, explain_nondeterministic
from videoattn.engine.distributed import (
    World,
    barrier,
    broadcast_buffers,
    collective_failure,
    init_distributed,
    on_main,
    shutdown,
)
from videoattn.engine.evaluate import EvalResult, ShardSampler, evaluate
from videoattn.engine.interrupt import Interrupted, StopRequests, ignore_stop_signals
from videoattn.engine.loop import NonFiniteGuard, WithLoss, train_one_epoch
from videoattn.engine.memory import cache_freed_memory
from videoattn.engine.optim import build_optimizer, build_scheduler, load_optimizer_state, normalize_optim_config
from videoattn.engine.run_folder import RunFolder, RunFolderError, best_epoch
from videoattn.errors import CheckpointError, ConfigError, DataError
from videoattn.files import write_atomic
from videoattn.models import build_model, to_channels_last
from videoattn.summary import count_macs, count_params

log = logging.getLogger("train")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@hydra.main(config_path="../configs", config_name="train", version_base=None)
def main(cfg: DictConfig) -> float:
    with user_errors(), trust_checkpoints(cfg.trust_checkpoint, how="trust_checkpoint=true"):
        return train(cfg)


def train(cfg: DictConfig) -> float:
    # ---------------------------------------------------------------- config and processes
    check_config(cfg)  # the typed schema (videoattn.config.TrainConfig): keys, types, ranges
    # device=auto on a CUDA build without a usable GPU says why; a rank stuck for dist_timeout ends the job
    world = init_distributed(cfg.device, timeout_s=cfg.dist_timeout)
    configure_backends(world.device, tf32=cfg.tf32, deterministic=cfg.deterministic)  # before the first kernel
    if world.device.type == "cpu" and cfg.malloc_cache:
        cache_freed_memory()  # far fewer page faults per step (videoattn.engine.memory)
    if cfg.sync_bn and world.device.type != "cuda":
        raise ConfigError("sync_bn needs CUDA; on CPU processes use sync_bn=false")
    data_cfg = normalize_data_config(cfg.data)
    optim_cfg = normalize_optim_config(cfg.optim)
    if cfg.model.get("pretrained") not in (None, "imagenet", "imagenet_v2"):
        check_torch_file(cfg.model.pretrained, what="model.pretrained")  # before the data: fail in seconds
    folder = RunFolder(cfg.run_dir, keep_last=cfg.keep_last)
    log_buffer = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
    with contextlib.ExitStack() as held:
        if world.main:  # the records of the start, for train.log, written once the folder is ours
            logging.getLogger().addHandler(log_buffer)
            held.callback(logging.getLogger().removeHandler, log_buffer)

        def take_folder() -> Path | None:  # rank 0: lock the folder, then decide where the run starts
            held.enter_context(folder.lock())
            return folder.resume_point(cfg.resume, overwrite=cfg.overwrite)

        resume_from = on_main(world, take_folder)
        # Ctrl-C / SIGTERM: stop at the next safe point (videoattn.engine.interrupt), never mid-checkpoint
        stop = held.enter_context(StopRequests().installed())
        try:
            return _train(cfg, world, folder, data_cfg, optim_cfg, resume_from, log_buffer, held, stop)
        except Interrupted as err:
            last = _epochs_saved(folder)
            err.where += (
                f"; the last checkpoint is epoch {last}'s ({folder.path / 'last.pth'}): rerun the same command to "
                "resume from it"
                if last
                else "; no epoch was saved: rerun the same command to start again"
            )
            raise
        except RuntimeError as err:  # a collective that a stuck or dead rank left waiting
            failed = collective_failure(err, world, timeout_s=cfg.dist_timeout)
            if failed is None:
                raise
            raise failed from None


def _train(
    cfg: DictConfig,
    world: World,
    folder: RunFolder,
    data_cfg: dict,
    optim_cfg: dict,
    resume_from: Path | None,
    log_buffer: logging.handlers.MemoryHandler,
    held: contextlib.ExitStack,
    stop: StopRequests,
) -> float:
    run_dir = folder.path
    T = cfg.num_segments

    # ---------------------------------------------------------------- data
    if world.main:  # the demo data is written on first use, by one process
        dataset_root(data_cfg)
    barrier(world)
    train_set = build_dataset(data_cfg, "train", mode="train", num_segments=T, seed=cfg.seed, report=folder.report)
    val_set = build_dataset(data_cfg, "val", mode="val", num_segments=T, seed=cfg.seed, report=folder.report)
    # one clip each: a transform that cannot apply to these videos fails before the run starts
    items = [dataset.probe() for dataset in (train_set, val_set)]
    classes = train_set.classes
    if val_set.classes != classes:
        raise DataError("the train and val splits have different class lists")
    order_dependent = order_dependent_indices(data_cfg["order_dependent"], classes)  # an unknown class: one line
    train_sampler = DistributedSampler(
        train_set, num_replicas=world.size, rank=world.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader_kw = loader_options(
        data_cfg["backend"],
        workers=cfg.workers,
        pin_memory=world.device.type == "cuda",
        persistent=cfg.persistent_workers,
        prefetch=cfg.prefetch_factor,
    )
    for item in items:  # batches in flight must fit in /dev/shm (Docker's 64 MB: a bus error mid-epoch)
        check_shared_memory(item, batch_size=cfg.batch_size, options=loader_kw)
    loader_kw["generator"] = torch.Generator().manual_seed(cfg.seed)  # not the global RNG: resuming must not shift it
    if loader_kw["num_workers"]:
        loader_kw["worker_init_fn"] = ignore_stop_signals  # Ctrl-C reaches every process: the main one stops them
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=train_sampler, drop_last=True, **loader_kw)
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, sampler=ShardSampler(len(val_set), world), **loader_kw)
    accumulate = optim_cfg["accumulate"]  # batches per update: each epoch holds whole updates
    steps_per_epoch = len(train_loader) // accumulate  # updates
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise DataError(
            f"the training split has {len(train_set)} clips, "
            f"fewer than one global batch of {cfg.batch_size * world.size * accumulate}"
        )

    # ---------------------------------------------------------------- model, and the checkpoint it continues
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = build_model(
        {**OmegaConf.to_container(cfg.model, resolve=True), "num_classes": len(classes), "num_segments": T},
        classes=classes,
    )  # model.pretrained: ImageNet, a state_dict, or a checkpoint to fine-tune
    params, macs = count_params(model), _macs(model, T, data_cfg)
    ckpt = None
    epochs = optim_cfg["epochs"]
    if resume_from is not None:  # checked before anything is written to the run folder
        ckpt = load_checkpoint(resume_from)
        if "optimizer" not in ckpt:
            raise CheckpointError(
                f"resume={resume_from} holds weights but no training state (optimiser, epoch); "
                f"to start a run from its weights use model.pretrained={resume_from}"
            )
        try:
            load_model_state(model, ckpt, path=resume_from)
        except CheckpointError as err:
            if resume_from.parent.resolve() != run_dir.resolve():
                raise
            raise RunFolderError(
                f"{err}. run_dir={run_dir} holds a run of another model: choose another run_dir (by "
                "default runs/<data>/<model>), or pass resume=none overwrite=true to replace it"
            ) from None
        check_classes(ckpt, classes, checkpoint=resume_from, dataset=f"{data_cfg['name']}/train")
        _check_resumed_settings(ckpt, cfg, resume_from)
        if epochs < ckpt["epoch"] + 1:
            raise ConfigError(
                f"optim.epochs={epochs}: the run in {resume_from} has trained {ckpt['epoch'] + 1} epochs "
                "already; give at least as many (more to train on)"
            )
    results = _Results(
        model=model.config["name"], data=data_cfg["name"], params=params, macs=macs, epochs=epochs, report=folder.report
    )
    if world.main:  # the folder is ours and the run fits it: from here on the run writes it
        source = folder.start()  # overwrite=true: the old run goes; a fall-back: the unreadable files are set aside
        handler = logging.FileHandler(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        log_buffer.setTarget(handler)
        log_buffer.flush()
        logging.getLogger().removeHandler(log_buffer)
        logging.getLogger().addHandler(handler)
        held.callback(handler.close)
        held.callback(logging.getLogger().removeHandler, handler)
        write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        for dataset in (train_set, val_set):
            dataset.report_skipped()  # data.on_error=skip: the skipped annotation entries, with their split
        if ckpt is not None:
            folder.repair(ckpt, source or resume_from)
            folder.write_results(results(ckpt))
        log.info("run folder %s; %d process(es) on %s", run_dir, world.size, world.device)
        if cfg.recipe:
            log.info("recipe: %s", cfg.recipe)  # the official script whose settings the run takes
    model.to(world.device)
    if cfg.channels_last:
        model = to_channels_last(model)  # 4-D weights NHWC, 5-D (ACTION's Conv3d) NDHWC
    if cfg.sync_bn and world.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # partial BN keeps its frozen layers (by name)
    net: nn.Module = WithLoss(model, label_smoothing=optim_cfg["label_smoothing"])  # (clips, labels) -> (loss, logits)
    if world.distributed:
        net = DistributedDataParallel(net, device_ids=[world.local_rank] if world.device.type == "cuda" else None)
    eval_net: nn.Module = model
    if cfg.compile:  # after DDP: its optimiser splits the graph at the gradient buckets
        net, eval_net = torch.compile(net), torch.compile(model)
    torch.manual_seed(cfg.seed + world.rank)  # different dropout masks per rank

    # ---------------------------------------------------------------- optimiser and schedule
    global_batch = cfg.batch_size * world.size * accumulate
    report = model.pretrained_report  # fine-tuning that keeps the classifier: no official x5 / x10 for it
    classifier_is_new = report is None or "fc.weight" in report.not_initialised
    optimizer = build_optimizer(model, optim_cfg, global_batch=global_batch, classifier_is_new=classifier_is_new)
    scheduler = build_scheduler(optimizer, optim_cfg, steps_per_epoch=steps_per_epoch)
    scaler = torch.amp.GradScaler(world.device.type, enabled=cfg.precision == "fp16")

    # ---------------------------------------------------------------- resume
    start_epoch, best_top1, best_at, history = 0, -1.0, None, []
    guard = NonFiniteGuard(world)
    if ckpt is not None:
        load_optimizer_state(optimizer, ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        restore_scaler(scaler, ckpt.get("scaler"))
        start_epoch, best_top1, best_at, history = (
            ckpt["epoch"] + 1,
            ckpt["best_top1"],
            best_epoch(ckpt),
            ckpt["history"],
        )
        if (
            not restore_rng(ckpt["rng"], rank=world.rank, world_size=world.size, seed=cfg.seed, epoch=start_epoch)
            and world.main
        ):
            log.warning(
                "the run was saved by %d process(es) and resumes on %d: each rank's random draws (dropout) are "
                "seeded anew; the data order follows the sampler's seed and epoch",
                len(ckpt["rng"]),
                world.size,
            )
        if world.main:
            log.info("resumed from %s at epoch %d (best val top-1 %.4f)", resume_from, start_epoch, best_top1)
        del ckpt
    if world.main:
        log.info(
            "%s: %.2fM params, %.2f GMACs/clip; %d classes, %d train / %d val clips; global batch %d, peak lr %.4g",
            model.config["name"] or "model",
            params / 1e6,
            macs / 1e9,
            len(classes),
            len(train_set),
            len(val_set),
            global_batch,
            optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"]),
        )
    tb = _tensorboard(run_dir, purge_step=start_epoch * steps_per_epoch + 1) if world.main and cfg.tensorboard else None

    # ---------------------------------------------------------------- epochs
    val: EvalResult | None = None
    to_device = ToDevice(world.device, train_set.transform.mean, train_set.transform.std)  # uint8 -> normalised
    params = list(model.parameters())
    for epoch in range(start_epoch, epochs):
        train_sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        net.train()
        with tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not (world.main and cfg.progress),
            dynamic_ncols=True,
            leave=False,
        ) as bar:  # closed on any exit: an error line starts a line of its own
            started = time.perf_counter()

            def on_log(
                step: int, sums: dict, timer, epoch: int = epoch, bar: tqdm = bar, started: float = started
            ) -> None:
                # every log_every steps: the one read of the device's counters (videoattn.engine.loop)
                clips, spent = max(sums["clips"], 1), timer.data_s + timer.compute_s
                elapsed = time.perf_counter() - started
                bar.set_postfix(
                    loss=f"{sums['loss_sum'] / clips:.3f}",
                    top1=f"{sums['correct'] / clips:.3f}",
                    clips_s=f"{(step + 1) * global_batch / elapsed:.1f}",
                    data=f"{timer.data_s / max(spent, 1e-9):.0%}",  # of the step time spent waiting for clips
                    eta=_hms(elapsed / (step + 1) * (steps_per_epoch * (epochs - epoch) - step - 1)),
                    refresh=False,
                )
                bar.update(step + 1 - bar.n)  # tqdm redraws at most 10 times a second
                if tb is not None:
                    global_step = epoch * steps_per_epoch + step + 1
                    tb.add_scalar("train/loss", sums["loss_sum"] / clips, global_step)
                    tb.add_scalar("train/lr", optimizer.param_groups[0]["lr"], global_step)

            try:
                stats = train_one_epoch(
                    net,
                    train_loader,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    guard=guard,
                    to_device=to_device,
                    params=params,
                    epoch=epoch,
                    steps=steps_per_epoch,
                    accumulate=accumulate,
                    precision=cfg.precision,
                    clip_grad_norm=optim_cfg["clip_grad_norm"],
                    log_every=cfg.log_every,
                    on_log=on_log,
                    stop=stop,
                    world=world,
                )
            except RuntimeError as err:
                refused = explain_nondeterministic(err)  # deterministic=true and an op without a deterministic kernel
                if refused is None:
                    raise
                raise refused from None
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": stats.loss,
            "train_top1": stats.top1,
            "train_clips_per_s": stats.steps * global_batch / stats.seconds,
            "train_skipped_steps": stats.skipped,
            "train_data_s_per_step": stats.data_s_per_step,
            "train_compute_s_per_step": stats.compute_s_per_step,
            "val_loss": math.nan,
            "val_top1": math.nan,
            "val_top5": math.nan,
            "val_mean_class": math.nan,
            "val_videos": 0,
            "val_unreadable": 0,
        }
        if order_dependent:
            row.update(val_top1_order=math.nan, val_top1_appearance=math.nan)

        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == epochs:
            broadcast_buffers(model, world)  # every rank validates with the statistics that rank 0 saves
            stop.where = f"in the validation of epoch {epoch + 1}"
            val = evaluate(
                eval_net,
                val_loader,
                num_classes=len(classes),
                world=world,
                precision=cfg.precision,
                norm=(val_set.transform.mean, val_set.transform.std),
                stop=stop,
            )
            stop.where = None
            row.update(val.as_dict("val_"), val_videos=val.num_clips, val_unreadable=val.substituted)
            if order_dependent:
                row["val_top1_order"] = val.subset_top1(order_dependent)
                row["val_top1_appearance"] = val.subset_top1(
                    [k for k in range(len(classes)) if k not in order_dependent]
                )
        history.append(row)
        improved = row["val_top1"] > best_top1  # False for NaN (no validation this epoch)
        if improved:
            best_top1, best_at = row["val_top1"], epoch

        states = _gather_rng(world)
        if world.main:
            ckpt = make_checkpoint(
                model,
                classes=classes,
                data=data_cfg,
                origin={"kind": "training", "run_dir": str(run_dir)},
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                epoch=epoch,
                best_top1=best_top1,
                best_epoch=best_at,
                history=history,
                rng=states,
                config=OmegaConf.to_container(cfg, resolve=True),
            )
            folder.save_epoch(ckpt, improved=improved, results=results(ckpt))  # last.pth, best.pth, metrics, results
            del ckpt
            if tb is not None:
                for k, v in row.items():
                    if k != "epoch":
                        tb.add_scalar(f"epoch/{k}", v, epoch + 1)
            text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            tqdm.write(f"epoch {epoch + 1}/{epochs}: {text}{' (best)' if improved else ''}")
            if row["val_unreadable"]:
                log.warning(
                    "validation of epoch %d covers %d of %d videos: %d could not be read (see %s)",
                    epoch + 1,
                    row["val_videos"],
                    len(val_set),
                    row["val_unreadable"],
                    folder.report,
                )
        barrier(world)
        if epoch + 1 < epochs:
            stop.agreed(world, f"after epoch {epoch + 1}")  # a safe point: its checkpoint is written

    # ---------------------------------------------------------------- summary
    if world.distributed:
        _check_replicas(model, world)
    if world.main:
        last = history[-1] if history else {}
        bad = read_report_entries(folder.report)
        if bad:
            print(
                f"{len(bad)} bad files were skipped (unreadable videos, malformed annotation entries); "
                f"see {folder.report}"
            )
        covered = ""
        if last.get("val_videos"):
            covered = f" over {last['val_videos']} of {len(val_set)} val videos" + (
                f" ({last['val_unreadable']} unreadable)" if last["val_unreadable"] else ""
            )
        print(
            f"val top-1 {last.get('val_top1', float('nan')):.4f} (best {best_top1:.4f}){covered}"
            + (f", order-dependent classes {last['val_top1_order']:.4f}" if "val_top1_order" in last else "")
            + f"; checkpoints in {run_dir}"
        )
        if tb is not None:
            tb.close()
    shutdown(world)
    return best_top1


class _Results:
    """``results.json`` from a checkpoint: the run's summary, complete or not, derived from the
    checkpoint's history (so a resumed run rewrites it to agree with ``last.pth``)."""

    def __init__(self, *, report: Path, **fixed) -> None:
        self.report, self.fixed = report, fixed

    def __call__(self, ckpt: dict) -> dict:
        history = ckpt["history"]
        last = history[-1] if history else {}
        best = best_epoch(ckpt)
        bad = read_report_entries(self.report)
        per_split: dict[str, int] = {}
        for entry in bad:
            split = entry.get("split") or "unknown"
            per_split[split] = per_split.get(split, 0) + 1
        return {
            **self.fixed,
            "epochs_done": len(history),
            "complete": len(history) >= self.fixed["epochs"],
            "best_val_top1": ckpt["best_top1"],
            "best_epoch": None if best is None else best + 1,
            **{f"last_{k}": v for k, v in last.items() if k != "epoch"},
            "bad_files": sorted({e["path"] for e in bad}),
            "bad_files_per_split": per_split,
        }


def _epochs_saved(folder: RunFolder) -> int:
    """The epochs the run folder's last checkpoint holds (its results.json, rewritten with it)."""
    try:
        return int(json.loads((folder.path / "results.json").read_text())["epochs_done"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _gather_rng(world: World) -> list:
    """The RNG states of every rank (rank order), so that a resumed run continues each one."""
    state = rng_state()
    if not world.distributed:
        return [state]
    out: list = [None] * world.size
    torch.distributed.all_gather_object(out, state)
    return out


def _check_replicas(model: nn.Module, world: World) -> None:
    """DDP keeps the ranks' parameters identical; verify it (a cheap guard against silent
    divergence). BatchNorm running statistics are per rank between DDP's buffer broadcasts."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    ref = flat.clone()
    torch.distributed.broadcast(ref, src=0)
    diff = torch.tensor([float((flat - ref).abs().max())], device=flat.device)
    torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX)
    if world.main:
        print(f"weights identical on all {world.size} ranks: max abs difference {diff.item():.3g}")
    if diff.item() != 0:
        raise RuntimeError(f"the ranks' weights diverged (max abs difference {diff.item():.3g})")


def _macs(model: nn.Module, t: int, data_cfg: dict) -> float:
    size = data_cfg["train_transform"].get("size", 224)
    with torch.no_grad():
        return count_macs(model, torch.zeros(1, t, 3, size, size))


def _tensorboard(run_dir: Path, *, purge_step: int):
    """TensorBoard's writer; a resumed run drops the points a killed one wrote beyond the checkpoint."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tb"), purge_step=purge_step if purge_step > 1 else None)


# Settings a resumed run may change: where and how it runs, not what it trains (the optimiser
# and schedule state in the checkpoint hold lr, weight decay, batch scaling, seed-driven order).
RESUME_MAY_CHANGE = (
    "resume",
    "trust_checkpoint",
    "overwrite",
    "keep_last",
    "run_dir",
    "workers",
    "progress",
    "device",
    "tensorboard",
    "log_every",
    "malloc_cache",
    "tf32",
    "compile",
    "recipe",
    "eval_every",
    "precision",
    "channels_last",
    "deterministic",
    "optim.epochs",
    "data.root",
    "data.backend",
    "data.max_retries",
    "data.on_error",
    "data.annotations",
    "data.test",
)


def _check_resumed_settings(ckpt: dict, cfg: DictConfig, path: Path) -> None:
    """A resumed run continues with the settings it was trained with: a changed one would be
    ignored (or break the exact continuation), so it is refused, naming each."""
    if not isinstance(ckpt.get("config"), dict):
        return
    old, new = _flat(ckpt["config"]), _flat(OmegaConf.to_container(cfg, resolve=True))
    # a key only one side has is a setting another version of the toolkit added or dropped: not a change of the run
    changed = [
        f"{k}: {old[k]!r} -> {new[k]!r}"
        for k in sorted(old.keys() & new.keys())
        if old[k] != new[k] and not any(k == m or k.startswith(m + ".") for m in RESUME_MAY_CHANGE)
    ]
    if changed:
        raise ConfigError(
            f"resume: {path} was trained with other settings ({'; '.join(changed[:6])}"
            f"{'; ...' if len(changed) > 6 else ''}); a resumed run keeps its own (its optimiser and "
            "schedule state hold them): drop these overrides to continue it, or start another run "
            f"(another run_dir, or model.pretrained={path} to start from its weights)"
        )


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


if __name__ == "__main__":
    check_overrides(CONFIGS, "train")
    main()
