"""A training run, read top to bottom: :func:`fit` (what ``tools/train.py`` runs).

config and processes -> run folder -> data -> model -> resume -> optimiser -> epochs -> summary,
in one function; the sections that are long are the small helpers below it.

One training at a time writes a run folder (a lock names the one that holds it). Every epoch
writes ``RUN_DIR/last.pth`` atomically (keeping the one before it as ``last.1.pth``), then
``best.pth`` on a new best val top-1, ``metrics.csv`` and ``results.json``
(:mod:`videoattn.engine.run_folder`); ``resume=auto`` (the default) continues from ``last.pth``
after any interruption, with the same data order, augmentation and RNG state as an uninterrupted
run, and repairs what a kill left. Starting again from scratch in a folder that holds a run takes
``resume=none overwrite=true``. What a resumed run may change: :mod:`videoattn.engine.resume`.

Logs: rank 0 logs through :mod:`logging` (Hydra's job logging prints the records on stdout);
``RUN_DIR/train.log`` holds every record of the run, from its start (kept in memory until the
folder is the run's) to the epoch lines and the result line. The progress bar (loss, top-1,
clips/s, share of the step spent waiting for data, ETA) shows on rank 0 with ``progress=true``
when stderr is a terminal; elsewhere (a log file, a batch job) the epoch lines are the progress.

Ctrl-C / SIGTERM stop the run at the next safe point (:mod:`videoattn.engine.interrupt`),
never inside a checkpoint write, naming the last checkpoint; a collective that a stuck or dead
rank left waiting ends every rank in one line after ``dist_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..checkpoint import (
    check_classes,
    check_torch_file,
    load_checkpoint,
    make_checkpoint,
    trust_checkpoints,
)
from ..data.build import (
    build_dataset,
    check_shared_memory,
    dataset_root,
    load_split,
    loader_options,
    normalize_data_config,
    order_dependent_indices,
)
from ..data.dataset import VideoDataset, read_report_entries
from ..data.formats import format_of
from ..data.transforms import ToDevice
from ..errors import CheckpointError, ConfigError, DataError
from ..files import write_atomic
from ..models import build_model, frames_per_segment, load_model_state, to_channels_last
from ..summary import count_macs, count_params
from .checkpoint import restore_rng, restore_scaler, rng_state
from .device import configure_backends, explain_nondeterministic
from .distributed import (
    World,
    barrier,
    broadcast_buffers,
    collective_failure,
    init_distributed,
    on_main,
    shutdown,
)
from .evaluate import ShardSampler, evaluate
from .interrupt import Interrupted, StopRequests, ignore_stop_signals
from .loop import EpochStats, NonFiniteGuard, StepTimer, train_one_epoch
from .memory import cache_freed_memory
from .optim import build_optimizer, build_scheduler, load_optimizer_state, normalize_optim_config
from .resume import check_resumed_settings
from .run_folder import Results, RunFolder, RunFolderError, best_epoch
from .trackers import Trackers, open_trackers, resolve_loggers

__all__ = ["fit"]

log = logging.getLogger("train")  # the name train.log and the console have always shown


def fit(cfg: DictConfig) -> float:
    """Train the model of ``cfg`` (the config of ``configs/train.yaml`` or a sibling, composed and
    checked once: :func:`videoattn.compose.run_tool` / :func:`~videoattn.compose.check_overrides`) and
    return the best val top-1 (-1.0 when no epoch was validated). User errors raise
    :class:`~videoattn.errors.UserError`, a stop request
    :class:`~videoattn.engine.interrupt.Interrupted` (the tools turn both into one line)."""
    with trust_checkpoints(cfg.trust_checkpoint, how="trust_checkpoint=true"), contextlib.ExitStack() as held:
        # ---------------------------------------------------------------- config and processes
        loggers = resolve_loggers(cfg.loggers, tensorboard=cfg.tensorboard)  # a tracker not installed: one line
        # device=auto on a CUDA build without a usable GPU says why; a rank stuck for dist_timeout ends the job
        world = init_distributed(cfg.device, timeout_s=cfg.dist_timeout)
        configure_backends(world.device, tf32=cfg.tf32, deterministic=cfg.deterministic)  # before the first kernel
        if world.device.type == "cpu" and cfg.malloc_cache:
            cache_freed_memory()  # far fewer page faults per step (videoattn.engine.memory)
        if cfg.sync_bn and world.device.type != "cuda":
            raise ConfigError("sync_bn needs CUDA; on CPU processes use sync_bn=false")
        data_cfg, optim_cfg = normalize_data_config(cfg.data), normalize_optim_config(cfg.optim)
        epochs, accumulate = optim_cfg["epochs"], optim_cfg["accumulate"]  # accumulate: batches per update
        if cfg.model.get("pretrained") not in (None, "imagenet", "imagenet_v2"):
            check_torch_file(cfg.model.pretrained, what="model.pretrained")  # before the data: fail in seconds

        # ---------------------------------------------------------------- run folder: ours, and where the run starts
        folder = RunFolder(cfg.run_dir, keep_last=cfg.keep_last, metrics_csv="csv" in loggers)
        if world.main:
            held.enter_context(folder.buffer_logs())  # the records of the start, for train.log once the folder is ours

        def take_folder() -> Path | None:  # rank 0: lock the folder, then decide where the run starts
            held.enter_context(folder.lock())
            return folder.resume_point(cfg.resume, overwrite=cfg.overwrite)

        resume_from = on_main(world, take_folder)
        # Ctrl-C / SIGTERM: stop at the next safe point (videoattn.engine.interrupt), never mid-checkpoint
        stop = held.enter_context(StopRequests().installed())
        held.enter_context(_stops_explained(folder, world, timeout_s=cfg.dist_timeout))

        # ---------------------------------------------------------------- data
        data = _datasets(cfg, data_cfg, world, folder, accumulate=accumulate)

        # ---------------------------------------------------------------- model, and the checkpoint it continues
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        T = cfg.num_segments
        model = build_model(
            {**OmegaConf.to_container(cfg.model, resolve=True), "num_classes": len(data.classes), "num_segments": T},
            classes=data.classes,
        )  # model.pretrained: ImageNet, a state_dict, or a checkpoint to fine-tune
        ckpt = None  # checked before anything is written to the run folder
        if resume_from is not None:
            ckpt = _load_resumed(resume_from, model, cfg, data_cfg, data.classes, folder=folder, epochs=epochs)
        params, macs = count_params(model), _macs(model, T, data_cfg)
        name = model.config["name"]
        results = Results(
            model=name, data=data_cfg["name"], params=params, macs=macs, epochs=epochs, report=folder.report
        )
        if world.main:  # the folder is ours and the run fits it: from here on the run writes it
            _start_writing(folder, cfg, data, ckpt, resume_from, results, world)
        model.to(world.device)
        if cfg.channels_last:
            model = to_channels_last(model)  # 4-D weights NHWC, 5-D (ACTION's Conv3d) NDHWC
        if cfg.sync_bn and world.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # partial BN keeps its frozen layers (by name)
        net: nn.Module = model  # net(clips, labels, label_smoothing=...) -> (loss, logits): the model's own forward
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
        scheduler = build_scheduler(optimizer, optim_cfg, steps_per_epoch=data.steps_per_epoch)
        scaler = torch.amp.GradScaler(world.device.type, enabled=cfg.precision == "fp16")

        # ---------------------------------------------------------------- resume
        run = _resume(ckpt, optimizer, scheduler, scaler, world=world, seed=cfg.seed, source=resume_from)
        del ckpt  # the optimiser and the model hold their state now
        if world.main:
            log.info(
                "%s: %.2fM params, %.2f GMACs/clip; %d classes, %d train / %d val clips; global batch %d, peak lr %.4g",
                name or "model",
                params / 1e6,
                macs / 1e9,
                len(data.classes),
                len(data.train_set),
                len(data.val_set),
                global_batch,
                optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"]),
            )
        trackers = held.enter_context(
            open_trackers(loggers if world.main else [], run_dir=folder.path, resumed=run.start_epoch > 0,
                          config=OmegaConf.to_container(cfg, resolve=True),
                          start_step=run.start_epoch * data.steps_per_epoch)
        )  # fmt: skip

        # ---------------------------------------------------------------- epochs
        guard = NonFiniteGuard(world)  # a non-finite loss skips its update; several in a row stop the run
        to_device = ToDevice(world.device, data.train_set.transform.mean, data.train_set.transform.std)  # normalises
        show_bar = world.main and cfg.progress and sys.stderr.isatty()  # elsewhere the epoch lines are the progress
        steps = data.steps_per_epoch
        for epoch in range(run.start_epoch, epochs):
            data.train_sampler.set_epoch(epoch)
            data.train_set.set_epoch(epoch)
            net.train()
            with (
                _progress(
                    epoch, epochs, steps, global_batch, show=show_bar, track=trackers, optimizer=optimizer
                ) as on_log,
                _nondeterministic_explained(),  # deterministic=true and an op without a deterministic kernel
            ):
                stats = train_one_epoch(
                    net,
                    data.train_loader,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    guard=guard,
                    to_device=to_device,
                    params=list(model.parameters()),
                    epoch=epoch,
                    steps=steps,
                    accumulate=accumulate,
                    precision=cfg.precision,
                    label_smoothing=optim_cfg["label_smoothing"],
                    clip_grad_norm=optim_cfg["clip_grad_norm"],
                    log_every=cfg.log_every,
                    on_log=on_log,
                    stop=stop,
                    world=world,
                )
            row = _epoch_row(epoch, stats, lr=optimizer.param_groups[0]["lr"], global_batch=global_batch, data=data)
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == epochs:
                broadcast_buffers(model, world)  # every rank validates with the statistics that rank 0 saves
                row.update(_validate(eval_net, data, epoch=epoch, precision=cfg.precision, world=world, stop=stop))
            improved = run.record(row, epoch)
            states = _gather_rng(world)  # every rank's, so that a resumed run continues each one
            if world.main:
                _save(folder, model, results, run, states, epoch=epoch, improved=improved, cfg=cfg, data_cfg=data_cfg,
                      classes=data.classes, optimizer=optimizer, scheduler=scheduler, scaler=scaler)  # fmt: skip
                _log_epoch(row, epoch=epoch, epochs=epochs, improved=improved, track=trackers, data=data, folder=folder)
            barrier(world)
            if epoch + 1 < epochs:
                stop.agreed(world, f"after epoch {epoch + 1}")  # a safe point: its checkpoint is written

        # ---------------------------------------------------------------- summary
        if world.distributed:
            _check_replicas(model, world)
        if world.main:
            _log_summary(run, data=data, folder=folder)
            trackers.finish(json.loads(folder.results.read_text()) if folder.results.exists() else None)
        shutdown(world)
        return run.best_top1


# ----------------------------------------------------------------------------- data
@dataclass
class _Data:
    """The run's data: the two splits, their loaders, and what the epochs need of them."""

    train_set: VideoDataset
    val_set: VideoDataset
    train_sampler: DistributedSampler
    train_loader: DataLoader
    val_loader: DataLoader
    classes: list[str]
    order_dependent: list[int]  # class indices whose clips need the frames' order, reported apart
    steps_per_epoch: int  # optimiser updates (of `accumulate` batches each)


def _datasets(cfg: DictConfig, data_cfg: dict, world: World, folder: RunFolder, *, accumulate: int) -> _Data:
    """The train and val splits (probed: a transform that cannot apply fails before the run), the
    loaders (checked to fit /dev/shm; workers that leave Ctrl-C to the main process) and the
    updates per epoch. The demo data is written on first use, by rank 0."""
    fmt = format_of(data_cfg["source"])
    if fmt is not None and "split_file" in fmt.keywords and data_cfg["annotations"].get("split_file") is None:
        # a format that draws its own split keeps it in the run folder: a resumed run reads it back
        data_cfg["annotations"]["split_file"] = str((folder.path / "split.json").absolute())
    if world.main:  # the demo data is written on first use, by one process
        dataset_root(data_cfg)
        if world.distributed:  # the format's caches (video checks, a drawn split) are written once
            load_split(data_cfg, "train")
    barrier(world)
    t, seed = cfg.num_segments, cfg.seed
    # F frames per segment: what the model's inserts' registry rows need (TDN's stem: 5)
    kw = {"num_segments": t, "frames_per_segment": frames_per_segment(cfg.model), "seed": seed, "report": folder.report}
    train_set = build_dataset(data_cfg, "train", mode="train", **kw)
    val_set = build_dataset(data_cfg, "val", mode="val", **kw)
    # one clip each: a transform that cannot apply to these videos fails before the run starts
    items = [dataset.probe() for dataset in (train_set, val_set)]
    classes = train_set.classes
    if val_set.classes != classes:
        raise DataError("the train and val splits have different class lists")
    order_dependent = order_dependent_indices(data_cfg["order_dependent"], classes)  # an unknown class: one line
    train_sampler = DistributedSampler(
        train_set, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed, drop_last=True
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
    loader_kw["generator"] = torch.Generator().manual_seed(seed)  # not the global RNG: resuming must not shift it
    if loader_kw["num_workers"]:
        loader_kw["worker_init_fn"] = ignore_stop_signals  # Ctrl-C reaches every process: the main one stops them
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=train_sampler, drop_last=True, **loader_kw)
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, sampler=ShardSampler(len(val_set), world), **loader_kw)
    steps = len(train_loader) // accumulate  # each epoch holds whole updates
    if cfg.max_steps_per_epoch is not None:
        steps = min(steps, cfg.max_steps_per_epoch)
    if steps == 0:
        raise DataError(
            f"the training split has {len(train_set)} clips, "
            f"fewer than one global batch of {cfg.batch_size * world.size * accumulate}"
        )
    return _Data(train_set, val_set, train_sampler, train_loader, val_loader, classes, order_dependent, steps)


# ----------------------------------------------------------------------------- model, resume
def _load_resumed(
    path: Path, model: nn.Module, cfg: DictConfig, data_cfg: dict, classes: list[str], *, folder: RunFolder, epochs: int
) -> dict[str, Any]:
    """The checkpoint the run continues, its weights loaded into ``model``, checked to fit the
    run: a training state, the same model, classes and settings, epochs left to train."""
    ckpt = load_checkpoint(path)
    if "optimizer" not in ckpt:
        raise CheckpointError(
            f"resume={path} holds weights but no training state (optimiser, epoch); "
            f"to start a run from its weights use model.pretrained={path}"
        )
    try:
        load_model_state(model, ckpt, path=path)
    except CheckpointError as err:
        if path.parent.resolve() != folder.path.resolve():
            raise
        raise RunFolderError(
            f"{err}. run_dir={folder.path} holds a run of another model: choose another run_dir (by "
            "default runs/<data>/<model>), or pass resume=none overwrite=true to replace it"
        ) from None
    check_classes(ckpt, classes, checkpoint=path, dataset=f"{data_cfg['name']}/train")
    check_resumed_settings(ckpt, cfg, path)
    if epochs < ckpt["epoch"] + 1:
        raise ConfigError(
            f"optim.epochs={epochs}: the run in {path} has trained {ckpt['epoch'] + 1} epochs "
            "already; give at least as many (more to train on)"
        )
    return ckpt


def _start_writing(
    folder: RunFolder,
    cfg: DictConfig,
    data: _Data,
    ckpt: dict[str, Any] | None,
    resume_from: Path | None,
    results: Results,
    world: World,
) -> None:
    """Rank 0, once the run is known to fit the folder: carry out the resume decision (replace a
    run, set unreadable checkpoints aside), open train.log, write config.yaml and the skipped
    annotation entries, and bring the files of a resumed run in line with its checkpoint."""
    source = folder.start()  # overwrite=true: the old run goes; a fall-back: the unreadable files are set aside
    folder.open_log()
    write_atomic(folder.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    for dataset in (data.train_set, data.val_set):
        dataset.report_skipped()  # data.on_error=skip: the skipped annotation entries, with their split
    if ckpt is not None:
        folder.repair(ckpt, source or resume_from)
        folder.write_results(results(ckpt))
    log.info("run folder %s; %d process(es) on %s", folder.path, world.size, world.device)
    if cfg.recipe:
        log.info("recipe: %s", cfg.recipe)  # the official script whose settings the run takes


@dataclass
class _Run:
    """Where the run stands: the epoch it starts at, its best val top-1 so far and the epoch
    (0-based) that had it, and one row per epoch (the checkpoint's ``history``)."""

    start_epoch: int = 0
    best_top1: float = -1.0
    best_at: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, row: dict[str, Any], epoch: int) -> bool:
        """Add epoch ``epoch``'s row; whether its val top-1 is a new best (never for NaN: no validation)."""
        self.history.append(row)
        improved = row["val_top1"] > self.best_top1
        if improved:
            self.best_top1, self.best_at = row["val_top1"], epoch
        return improved


def _resume(
    ckpt: dict[str, Any] | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    *,
    world: World,
    seed: int,
    source: Path | None,
) -> _Run:
    """Restore the training state of ``ckpt`` (optimiser, schedule, grad scaler, every rank's RNG):
    where the run stands; a fresh start without one."""
    if ckpt is None:
        return _Run()
    load_optimizer_state(optimizer, ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    restore_scaler(scaler, ckpt.get("scaler"))  # a run saved without a grad scaler resumes in fp16, and back
    run = _Run(ckpt["epoch"] + 1, ckpt["best_top1"], best_epoch(ckpt), ckpt["history"])
    restored = restore_rng(ckpt["rng"], rank=world.rank, world_size=world.size, seed=seed, epoch=run.start_epoch)
    if not restored and world.main:
        log.warning(
            "the run was saved by %d process(es) and resumes on %d: each rank's random draws (dropout) are "
            "seeded anew; the data order follows the sampler's seed and epoch",
            len(ckpt["rng"]),
            world.size,
        )
    if world.main:
        log.info("resumed from %s at epoch %d (best val top-1 %.4f)", source, run.start_epoch, run.best_top1)
    return run


# ----------------------------------------------------------------------------- an epoch
@contextlib.contextmanager
def _progress(
    epoch: int,
    epochs: int,
    steps: int,
    global_batch: int,
    *,
    show: bool,
    track: Trackers,
    optimizer: torch.optim.Optimizer,
) -> Iterator[Callable[[int, dict[str, float], StepTimer], None]]:
    """The ``on_log`` of :func:`train_one_epoch` for one epoch: the progress bar (``show``: rank 0
    on a terminal; log records print above it while it is shown) and the trackers' training
    curves. The bar is closed on any exit, so that an error line starts a line of its own."""
    with (
        tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not show, dynamic_ncols=True, leave=False) as bar,
        logging_redirect_tqdm() if show else contextlib.nullcontext(),
    ):
        started = time.perf_counter()

        def on_log(step: int, sums: dict[str, float], timer: StepTimer) -> None:
            # every log_every steps: the one read of the device's counters (videoattn.engine.loop)
            clips = max(sums["clips"], 1)
            if show:
                elapsed, spent = time.perf_counter() - started, timer.data_s + timer.compute_s
                bar.set_postfix(
                    loss=f"{sums['loss_sum'] / clips:.3f}",
                    top1=f"{sums['correct'] / clips:.3f}",
                    clips_s=f"{(step + 1) * global_batch / elapsed:.1f}",
                    data=f"{timer.data_s / max(spent, 1e-9):.0%}",  # of the step time spent waiting for clips
                    eta=_hms(elapsed / (step + 1) * (steps * (epochs - epoch) - step - 1)),
                    refresh=False,
                )
                bar.update(step + 1 - bar.n)  # tqdm redraws at most 10 times a second
            train = {"train/loss": sums["loss_sum"] / clips, "train/lr": optimizer.param_groups[0]["lr"]}
            track.log_step(train, step=epoch * steps + step + 1)

        yield on_log


@contextlib.contextmanager
def _nondeterministic_explained() -> Iterator[None]:
    """deterministic=true and an op without a deterministic kernel: one line naming the op and the way out."""
    try:
        yield
    except RuntimeError as err:
        refused = explain_nondeterministic(err)
        if refused is None:
            raise
        raise refused from None


def _epoch_row(epoch: int, stats: EpochStats, *, lr: float, global_batch: int, data: _Data) -> dict[str, Any]:
    """The epoch's row of ``metrics.csv`` (and of the checkpoint's history), validation figures NaN
    until :func:`_validate` fills them."""
    row = {
        "epoch": epoch + 1,
        "lr": lr,
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
    if data.order_dependent:
        row.update(val_top1_order=math.nan, val_top1_appearance=math.nan)
    return row


def _validate(
    eval_net: nn.Module, data: _Data, *, epoch: int, precision: str, world: World, stop: StopRequests
) -> dict[str, Any]:
    """The validation figures of the epoch's row, over every rank's shard; the top-1 of the
    order-dependent classes and of the others apart."""
    stop.where = f"in the validation of epoch {epoch + 1}"
    val = evaluate(
        eval_net,
        data.val_loader,
        num_classes=len(data.classes),
        world=world,
        precision=precision,
        norm=(data.val_set.transform.mean, data.val_set.transform.std),
        stop=stop,
    )
    stop.where = None
    row = {**val.as_dict("val_"), "val_videos": val.num_clips, "val_unreadable": val.substituted}
    if data.order_dependent:
        row["val_top1_order"] = val.subset_top1(data.order_dependent)
        row["val_top1_appearance"] = val.subset_top1(
            [k for k in range(len(data.classes)) if k not in data.order_dependent]
        )
    return row


def _save(
    folder: RunFolder,
    model: nn.Module,
    results: Results,
    run: _Run,
    rng: list,
    *,
    epoch: int,
    improved: bool,
    cfg: DictConfig,
    data_cfg: dict,
    classes: list[str],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
) -> None:
    """Rank 0: the epoch's checkpoint, ``last.pth`` (the commit point), ``best.pth`` if ``improved``,
    ``metrics.csv`` and ``results.json``, in that order."""
    ckpt = make_checkpoint(
        model,
        classes=classes,
        data=data_cfg,
        origin={"kind": "training", "run_dir": str(folder.path)},
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        scaler=scaler.state_dict(),
        epoch=epoch,
        best_top1=run.best_top1,
        best_epoch=run.best_at,
        history=run.history,
        rng=rng,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    folder.save_epoch(ckpt, improved=improved, results=results(ckpt))


def _log_epoch(
    row: dict[str, Any], *, epoch: int, epochs: int, improved: bool, track: Trackers, data: _Data, folder: RunFolder
) -> None:
    """Rank 0: the epoch line (stdout and train.log), its figures in the trackers, and a warning when
    the validation could not read every video."""
    track.log_epoch(row, epoch=epoch + 1, step=(epoch + 1) * data.steps_per_epoch)
    text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
    log.info("epoch %d/%d: %s%s", epoch + 1, epochs, text, " (best)" if improved else "")
    if row["val_unreadable"]:
        log.warning(
            "validation of epoch %d covers %d of %d videos: %d could not be read (see %s)",
            epoch + 1,
            row["val_videos"],
            len(data.val_set),
            row["val_unreadable"],
            folder.report,
        )


# ----------------------------------------------------------------------------- summary
def _log_summary(run: _Run, *, data: _Data, folder: RunFolder) -> None:
    """Rank 0: the bad files skipped, and the result line (the last val top-1, the best, the videos
    it covers, the order-dependent classes' top-1, the run folder)."""
    last = run.history[-1] if run.history else {}
    bad = read_report_entries(folder.report)
    if bad:
        log.warning(
            "%d bad files were skipped (unreadable videos, malformed annotation entries); see %s",
            len(bad),
            folder.report,
        )
    covered = ""
    if last.get("val_videos"):
        covered = f" over {last['val_videos']} of {len(data.val_set)} val videos" + (
            f" ({last['val_unreadable']} unreadable)" if last["val_unreadable"] else ""
        )
    order = f", order-dependent classes {last['val_top1_order']:.4f}" if "val_top1_order" in last else ""
    top1 = last.get("val_top1", float("nan"))
    log.info("val top-1 %.4f (best %.4f)%s%s; checkpoints in %s", top1, run.best_top1, covered, order, folder.path)


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _stops_explained(folder: RunFolder, world: World, *, timeout_s: float) -> Iterator[None]:
    """An interruption names the checkpoint a rerun resumes from; a collective that a stuck or
    dead rank left waiting becomes one line (:func:`~videoattn.engine.distributed.collective_failure`)."""
    try:
        yield
    except Interrupted as err:
        last = folder.epochs_saved()
        err.where += (
            f"; the last checkpoint is epoch {last}'s ({folder.last}): rerun the same command to resume from it"
            if last
            else "; no epoch was saved: rerun the same command to start again"
        )
        raise
    except RuntimeError as err:
        failed = collective_failure(err, world, timeout_s=timeout_s)
        if failed is None:
            raise
        raise failed from None


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
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])  # every parameter -> (P,)
    ref = flat.clone()
    torch.distributed.broadcast(ref, src=0)
    diff = torch.tensor([float((flat - ref).abs().max())], device=flat.device)
    torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX)
    if world.main:
        log.info("weights identical on all %d ranks: max abs difference %.3g", world.size, diff.item())
    if diff.item() != 0:
        raise RuntimeError(f"the ranks' weights diverged (max abs difference {diff.item():.3g})")


def _macs(model: nn.Module, t: int, data_cfg: dict) -> float:
    """Multiply-adds of one clip of ``t`` frames at the training crop size."""
    size = data_cfg["train_transform"].get("size", 224)
    with torch.no_grad():
        return count_macs(model, torch.zeros(1, t, 3 * model.frames_per_segment, size, size))  # (1, T, F*3, S, S)


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
