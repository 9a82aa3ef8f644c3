"""What a machine offers a training run, and what limits it: the library of ``tools/doctor.py``.

- :func:`environment`: the versions and resources a run depends on (Python, PyTorch and its
  CUDA / cuDNN / NCCL, the GPUs and their driver, or why CUDA cannot be used; TF32; the video
  decoders as :mod:`videoattn.data.video` loads them; ``/dev/shm``; CPU cores, memory, free disk),
  as plain data; :func:`environment_lines` writes it for a terminal.
- :func:`measure_training`: clips per second of one precision variant of the config's model
  through the real training step (:func:`videoattn.engine.loop.train_one_epoch` with the
  optimiser, schedule, non-finite guard and :class:`~videoattn.data.transforms.ToDevice` of
  ``tools/train.py``) on synthetic uint8 batches of the config's shape, so that the data does
  not limit it. Warm-up steps first (cuDNN autotuning, oneDNN primitives); the timed window
  starts and ends with the device synchronised.
- :func:`measure_loader`: clips per second of the config's training DataLoader (its dataset,
  workers, backend and augmentation), timed from its first batch on, alone.
- :func:`bottleneck`: the one line that compares the two and says what to change.

Nothing here prints; the tool does.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .config import to_plain
from .data.build import shared_memory_free
from .data.transforms import ToDevice
from .engine.device import cuda_unavailable_reason, driver_version
from .engine.distributed import World
from .engine.loop import NonFiniteGuard, train_one_epoch
from .engine.optim import build_optimizer, build_scheduler
from .errors import ConfigError, DataError
from .models import build_model, to_channels_last

__all__ = [
    "VARIANTS",
    "bottleneck",
    "busy_cpu",
    "data_form",
    "default_variants",
    "environment",
    "environment_lines",
    "measure_loader",
    "measure_training",
    "split_variant",
    "variant_flags",
    "variant_name",
]

GIB = 2**30
# The precision variants measured by default per device type: ``precision[+channels_last]``.
VARIANTS = {
    "cuda": ("fp32", "bf16", "fp16", "bf16+channels_last", "fp16+channels_last"),
    "cpu": ("fp32", "bf16"),
}
PRECISIONS = ("fp32", "bf16", "fp16")


# ----------------------------------------------------------------------------- the environment
def environment(*, paths: Mapping[str, str | os.PathLike | None] | None = None, tf32: bool = True) -> dict[str, Any]:
    """The machine as a training run sees it, as plain (JSON-ready) data. ``paths`` names the
    folders whose free disk to report (e.g. ``{"run_dir": ..., "data": ...}``; a folder not
    created yet is measured at its nearest existing parent); ``tf32`` is the config's setting."""
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable, "platform": platform.platform()},
        "torch": _torch_info(),
        "cuda": _cuda_info(tf32=tf32),
        "decoders": _decoders(),
        "shm": _shm(),
        "cpu": _cpu(),
        "memory": _memory(),
        "disk": {name: _disk(path) for name, path in (paths or {}).items() if path is not None},
    }


def _version_string(parts: Sequence[int] | None) -> str | None:
    return ".".join(str(p) for p in parts) if parts else None


def _torch_info() -> dict[str, Any]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if cudnn is not None:  # 8902 -> 8.9.2 (cuDNN 8), 92600 -> 9.26.0 (cuDNN 9 on)
        cudnn = (
            f"{cudnn // 10000}.{cudnn % 10000 // 100}.{cudnn % 100}"
            if cudnn >= 90000
            else f"{cudnn // 1000}.{cudnn % 1000 // 100}.{cudnn % 100}"
        )
    return {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,  # None: a CPU-only build
        "cudnn": cudnn,
        "nccl": _nccl(),
        "threads": torch.get_num_threads(),
    }


def _nccl() -> str | None:
    """NCCL's version as this PyTorch links it (None: a build without NCCL, e.g. CPU-only)."""
    try:
        version = torch.cuda.nccl.version()
    except Exception:  # noqa: BLE001 (CPU-only builds and other platforms raise various errors)
        return None
    if isinstance(version, int):  # older PyTorch: 21805 -> 2.18.5
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return _version_string(version)


def _cuda_info(*, tf32: bool) -> dict[str, Any]:
    reason = cuda_unavailable_reason()
    gpus = []
    if reason is None:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            free, total = torch.cuda.mem_get_info(index)
            gpus.append(
                {
                    "index": index,
                    "name": props.name,
                    "memory_gib": round(total / GIB, 1),
                    "free_gib": round(free / GIB, 1),
                    "capability": f"{props.major}.{props.minor}",
                    "bf16": torch.cuda.is_bf16_supported(including_emulation=False),
                }
            )
    return {
        "available": reason is None,
        "reason": reason,
        "driver": _version_string(driver_version()),
        "gpus": gpus,
        "tf32": {
            "config": tf32,
            "matmul": torch.backends.cuda.matmul.fp32_precision,
            "conv": torch.backends.cudnn.conv.fp32_precision,
        },
    }


def _package_version(*names: str) -> tuple[str, str] | None:
    """``(distribution, version)`` of the first of ``names`` installed."""
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return name, importlib.metadata.version(name)
    return None


def _decoders() -> dict[str, Any]:
    """The decoders as :mod:`videoattn.data.video` loads them: decord and torchcodec are used
    where they import (torchcodec also needs the system's FFmpeg 4-8 libraries); PyAV (with its
    own FFmpeg) always; JPEG frame folders with Pillow."""
    import av
    import PIL
    from PIL import features

    from .data import video

    decord_pkg = _package_version("decord2", "eva-decord", "decord")
    torchcodec_pkg = _package_version("torchcodec")
    torchcodec_ok = video.torchcodec_available()
    return {
        "auto": video.auto_backend(),
        "decord": {
            "available": video.decord is not None,
            "version": getattr(video.decord, "__version__", None),
            "package": " ".join(decord_pkg) if decord_pkg else None,
        },
        "pyav": {
            "available": True,
            "version": av.__version__,
            "ffmpeg": getattr(av, "ffmpeg_version_info", None),
            "libraries": {name: _version_string(v) for name, v in av.library_versions.items()},
        },
        "torchcodec": {
            "available": torchcodec_ok,
            "version": torchcodec_pkg[1] if torchcodec_pkg else None,
            "reason": None if torchcodec_ok else video._torchcodec()[1],
        },
        "frames": {"pillow": PIL.__version__, "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo"))},
    }


def _shm(path: str = "/dev/shm") -> dict[str, Any]:
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return {"path": path, "size_bytes": None, "free_bytes": None}
    return {"path": path, "size_bytes": st.f_blocks * st.f_frsize, "free_bytes": shared_memory_free(path)}


def _cpu() -> dict[str, Any]:
    try:
        cores = len(os.sched_getaffinity(0))  # what this process may use (taskset, container cpusets)
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        load = round(os.getloadavg()[0], 2)  # runnable processes, last minute: others share the cores
    except (OSError, AttributeError):
        load = None
    return {"cores": cores, "cpu_count": os.cpu_count(), "quota": _cpu_quota(), "model": _cpu_model(), "load": load}


def _cpu_quota() -> float | None:
    """The cgroup's CPU limit in cores (``docker run --cpus``), None where there is none."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000"
        return None if quota == "max" else round(int(quota) / int(period), 2)
    with contextlib.suppress(OSError, ValueError):
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())  # cgroup v1: -1 for none
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else round(quota / period, 2)
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _memory() -> dict[str, Any]:
    info: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                info[key] = int(value.split()[0]) * 1024  # kB
    limit = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            text = Path(path).read_text().strip()
            if text != "max" and int(text) < info.get("MemTotal", 2**62):
                limit = int(text)
            break
    return {"total_bytes": info.get("MemTotal"), "available_bytes": info.get("MemAvailable"), "limit_bytes": limit}


def _disk(path: str | os.PathLike) -> dict[str, Any]:
    """Free and total bytes of the file system that holds ``path`` (or would: the nearest
    existing parent of a folder not created yet)."""
    at = Path(path).expanduser().absolute()
    while not at.exists() and at != at.parent:
        at = at.parent
    try:
        usage = shutil.disk_usage(at)
    except OSError:
        return {"path": os.fspath(path), "measured_at": str(at), "free_bytes": None, "total_bytes": None}
    return {"path": os.fspath(path), "measured_at": str(at), "free_bytes": usage.free, "total_bytes": usage.total}


def busy_cpu(env: Mapping[str, Any]) -> str | None:
    """A warning when other processes keep this machine's cores busy (load average of the last
    minute at least half the usable cores): the measurements then come out low, the CPU's most."""
    cpu = env["cpu"]
    if cpu["load"] is None or cpu["load"] < max(cpu["cores"] / 2, 1):
        return None
    return (
        f"the load average is {cpu['load']:g} on {cpu['cores']} cores: other processes use the CPU, and the "
        "measurements below come out lower than on an idle machine (CPU training most: its threads wait for "
        "one another)"
    )


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GIB:.1f} GiB"


def environment_lines(env: Mapping[str, Any]) -> list[str]:
    """:func:`environment`'s report as aligned ``name  value`` lines for a terminal."""
    tor, cuda, dec = env["torch"], env["cuda"], env["decoders"]
    build = f"CUDA {tor['cuda_build']} build" if tor["cuda_build"] else "CPU-only build"
    libs = ", ".join(f"{k} {v}" for k, v in (("cuDNN", tor["cudnn"]), ("NCCL", tor["nccl"])) if v and tor["cuda_build"])
    rows = [
        ("python", f"{env['python']['version']} ({env['python']['executable']}) on {env['python']['platform']}"),
        ("torch", f"{tor['version']} ({build}{', ' + libs if libs else ''}), {tor['threads']} threads"),
    ]
    if cuda["available"]:
        rows.append(("CUDA", f"available, {len(cuda['gpus'])} GPU(s)"))
        for gpu in cuda["gpus"]:
            rows.append(
                (
                    f"GPU {gpu['index']}",
                    f"{gpu['name']}, {gpu['memory_gib']} GiB ({gpu['free_gib']} GiB free), "
                    f"compute capability {gpu['capability']}{'' if gpu['bf16'] else ', no native bf16'}",
                )
            )
    else:
        rows.append(("CUDA", f"not available: {cuda['reason']}"))
    rows.append(("NVIDIA driver", cuda["driver"] or "none loaded"))
    tf = cuda["tf32"]
    rows.append(
        (
            "TF32",
            f"tf32={str(tf['config']).lower()}: CUDA fp32 matmuls {tf['matmul']}, cuDNN convolutions {tf['conv']}"
            + ("" if cuda["available"] else " (no effect on the CPU)"),
        )
    )
    decord, pyav, codec, frames = dec["decord"], dec["pyav"], dec["torchcodec"], dec["frames"]
    rows.append(("decoders", f"backend=auto reads videos with {dec['auto']}"))
    rows.append(
        (
            "  decord",
            f"{decord['version']} ({decord['package']}, its own FFmpeg)"
            if decord["available"]
            else "not installed (wheels for x86_64 only)",
        )
    )
    ffmpeg = pyav["ffmpeg"] or f"libavcodec {pyav['libraries'].get('libavcodec')}"
    rows.append(("  PyAV", f"{pyav['version']} (FFmpeg {ffmpeg}, libavcodec {pyav['libraries'].get('libavcodec')})"))
    rows.append(
        (
            "  torchcodec",
            (f"{codec['version']} (the system's FFmpeg)" if codec["available"] else f"not used: {codec['reason']}"),
        )
    )
    rows.append(
        (
            "  frames",
            f"Pillow {frames['pillow']}{' with libjpeg-turbo' if frames['libjpeg_turbo'] else ' (no libjpeg-turbo)'}",
        )
    )
    shm = env["shm"]
    rows.append((shm["path"], f"{_gib(shm['size_bytes'])}, {_gib(shm['free_bytes'])} free"))
    cpu = env["cpu"]
    quota = f", cgroup limit {cpu['quota']} cores" if cpu["quota"] else ""
    load = f", load {cpu['load']:g}" if cpu["load"] is not None else ""
    rows.append(("CPU", f"{cpu['cores']} cores usable (of {cpu['cpu_count']}){quota}{load}: {cpu['model']}"))
    mem = env["memory"]
    limit = f", cgroup limit {_gib(mem['limit_bytes'])}" if mem["limit_bytes"] else ""
    rows.append(("RAM", f"{_gib(mem['total_bytes'])}, {_gib(mem['available_bytes'])} available{limit}"))
    for name, disk in env["disk"].items():
        rows.append(
            (f"disk ({name})", f"{_gib(disk['free_bytes'])} free of {_gib(disk['total_bytes'])} at {disk['path']}")
        )
    width = max(len(name) for name, _ in rows)
    return [f"  {name:<{width}}  {value}" for name, value in rows]


# ----------------------------------------------------------------------------- training speed
def split_variant(variant: str) -> tuple[str, bool]:
    """``"bf16+channels_last"`` -> ``("bf16", True)``; ``"fp32"`` -> ``("fp32", False)``."""
    precision, _, layout = variant.partition("+")
    if precision not in PRECISIONS or layout not in ("", "channels_last"):
        raise ConfigError(
            f"precision variant {variant!r}: expected one of {', '.join(PRECISIONS)}, optionally with "
            "+channels_last (e.g. bf16+channels_last)"
        )
    return precision, layout == "channels_last"


def variant_name(precision: str, channels_last: bool) -> str:
    """``("bf16", True)`` -> ``"bf16+channels_last"``: the inverse of :func:`split_variant`."""
    return precision + ("+channels_last" if channels_last else "")


def default_variants(device: torch.device, *, configured: str | None = None) -> list[str]:
    """The variants measured on ``device`` by default (:data:`VARIANTS`), plus the ``configured``
    one (the config's ``precision`` and ``channels_last``) where it is not among them."""
    names = list(VARIANTS["cuda" if device.type == "cuda" else "cpu"])
    if configured is not None and configured not in names:
        names.append(configured)
    return names


def variant_flags(variant: str, *, relative_to: str | None = None) -> str:
    """The command-line overrides that select ``variant`` (those that differ from ``relative_to``)."""
    precision, channels_last = split_variant(variant)
    base = split_variant(relative_to) if relative_to else (None, None)
    flags = []
    if precision != base[0]:
        flags.append(f"precision={precision}")
    if channels_last != base[1]:
        flags.append(f"channels_last={str(channels_last).lower()}")
    return " ".join(flags)


class _SyntheticBatches:
    """An iterable in the DataLoader's item form ``(clips, labels, index, substituted)`` that
    yields the same batch ``count`` times, or until ``until`` (``time.perf_counter``) has passed
    after ``minimum`` batches."""

    def __init__(
        self, clips: Tensor, labels: Tensor, *, count: int | None = None, until: float | None = None, minimum: int = 2
    ) -> None:
        self.clips, self.labels = clips, labels
        self.count, self.until, self.minimum = count, until, minimum
        self.index = torch.arange(labels.shape[0])
        self.substituted = torch.zeros(labels.shape[0], dtype=torch.bool)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        n = 0
        while self.count is None or n < self.count:
            if self.until is not None and n >= self.minimum and time.perf_counter() >= self.until:
                return
            n += 1
            yield self.clips, self.labels, self.index, self.substituted


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(
    model_cfg: Mapping[str, Any],
    *,
    num_classes: int,
    num_segments: int,
    batch_size: int,
    size: int,
    optim_cfg: Mapping[str, Any],
    device: torch.device,
    variant: str = "fp32",
    seconds: float = 3.0,
    steps: int | None = None,
    warmup: int = 3,
    log_every: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Training clips per second of the model ``model_cfg`` (a ``model`` config section; its
    ``pretrained`` weights are not loaded: speed does not depend on them) in ``variant``
    (``precision[+channels_last]``) on ``device``: ``warmup`` steps, then ``steps`` timed steps
    or as many as fit in ``seconds``, each one the training step of ``tools/train.py`` on a
    synthetic uint8 batch ``(batch_size, num_segments, 3, size, size)`` (pinned on CUDA, as
    the loader's batches are). ``optim_cfg``: a normalised ``optim`` section.

    Returns ``{"variant", "precision", "channels_last", "clips_per_s", "steps", "seconds",
    "peak_memory_gib", "error"}``; a variant that cannot run here (no bf16 on this GPU, out of
    memory) has ``clips_per_s`` None and ``error`` saying why."""
    precision, channels_last = split_variant(variant)
    result: dict[str, Any] = {
        "variant": variant,
        "precision": precision,
        "channels_last": channels_last,
        "clips_per_s": None,
        "steps": 0,
        "seconds": 0.0,
        "peak_memory_gib": None,
        "error": None,
    }
    cuda = device.type == "cuda"
    if cuda and precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        result["error"] = f"{torch.cuda.get_device_name(device)} has no bf16 arithmetic"
        return result
    generator = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 256, (batch_size, num_segments, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    if cuda:
        clips, labels = clips.pin_memory(), labels.pin_memory()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(seed)
    model_cfg = {**to_plain(model_cfg), "pretrained": None, "num_classes": num_classes, "num_segments": num_segments}
    try:
        done, elapsed = _timed_steps(
            model_cfg,
            clips,
            labels,
            optim_cfg=optim_cfg,
            device=device,
            precision=precision,
            channels_last=channels_last,
            seconds=seconds,
            steps=steps,
            warmup=warmup,
            log_every=log_every,
        )
    except torch.OutOfMemoryError:
        result["error"] = f"out of GPU memory at batch_size={batch_size}"
        return result
    finally:
        if cuda:  # the model, its gradients and the optimiser state are gone with _timed_steps' frame
            torch.cuda.empty_cache()
    result.update(clips_per_s=done * batch_size / elapsed, steps=done, seconds=elapsed)
    if cuda:
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / GIB, 2)
    return result


def _timed_steps(
    model_cfg: Mapping[str, Any],
    clips: Tensor,
    labels: Tensor,
    *,
    optim_cfg: Mapping[str, Any],
    device: torch.device,
    precision: str,
    channels_last: bool,
    seconds: float,
    steps: int | None,
    warmup: int,
    log_every: int,
) -> tuple[int, float]:
    """``(steps timed, seconds)`` of :func:`measure_training`: the set-up of a training run
    (:func:`videoattn.engine.fit.fit`: model on the device, NHWC weights, optimiser, schedule, grad
    scaler, guard), then ``train_one_epoch`` over the synthetic batches, warm-up first."""
    model = build_model(model_cfg).to(device)
    if channels_last:
        model = to_channels_last(model)
    optimizer = build_optimizer(model, optim_cfg, global_batch=clips.shape[0])
    step = {
        "optimizer": optimizer,
        "scheduler": build_scheduler(optimizer, optim_cfg, steps_per_epoch=1000),
        "scaler": torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        "guard": NonFiniteGuard(World(device=device), limit=sys.maxsize),  # random data: speed, not learning
        "to_device": ToDevice(device),
        "params": list(model.parameters()),
        "precision": precision,
        "label_smoothing": optim_cfg["label_smoothing"],
        "clip_grad_norm": optim_cfg["clip_grad_norm"],
        "log_every": log_every,
        "epoch": 0,
    }
    model.train()  # the model returns its loss: (clips, labels) -> (loss, logits)
    if warmup:
        train_one_epoch(model, _SyntheticBatches(clips, labels, count=warmup), steps=warmup, **step)
    _synchronize(device)
    start = time.perf_counter()
    batches = _SyntheticBatches(clips, labels, count=steps, until=None if steps else start + seconds)
    stats = train_one_epoch(model, batches, steps=steps or sys.maxsize, **step)
    _synchronize(device)
    return stats.steps, time.perf_counter() - start


# ----------------------------------------------------------------------------- loader speed
def data_form(dataset: Dataset) -> str:
    """``"frames"`` when the dataset reads JPEG frame folders, else ``"videos"``."""
    if getattr(dataset, "backend", None) == "frames":
        return "frames"
    records = getattr(dataset, "records", None)
    if records is not None and len(records) and Path(records.path(0)).is_dir():
        return "frames"
    return "videos"


def measure_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    options: Mapping[str, Any],
    seconds: float = 3.0,
    batches: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Clips per second of a shuffled ``DataLoader(dataset, batch_size, drop_last=True,
    **options)`` (``options``: :func:`videoattn.data.build.loader_options`), timed from its
    first batch (the workers' start and the first decodes are not counted) over ``batches``
    batches or as many as arrive within ``seconds``; epochs follow one another as in training
    (``set_epoch``). Returns ``{"clips_per_s", "batches", "seconds", "first_batch_s", "workers"}``."""
    if len(dataset) < batch_size:
        raise DataError(f"the training split has {len(dataset)} clips, fewer than one batch of {batch_size}")
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )
    started = time.perf_counter()
    first: float | None = None
    count = clips = epoch = 0
    done = False
    while not done:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        for batch in loader:
            now = time.perf_counter()
            if first is None:
                first = now
                continue
            count += 1
            clips += batch[0].shape[0]
            if (batches is not None and count >= batches) or (batches is None and now - first >= seconds):
                done = True
                break
        epoch += 1
    elapsed = time.perf_counter() - first
    del loader  # its workers stop
    return {
        "clips_per_s": clips / elapsed,
        "batches": count,
        "seconds": elapsed,
        "first_batch_s": first - started,
        "workers": options.get("num_workers", 0),
    }


# ----------------------------------------------------------------------------- the verdict
def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"  # 610, 95, 22.1, 5.13


def bottleneck(
    *,
    loader_clips_s: float | None,
    training_clips_s: Mapping[str, float | None],
    configured: str,
    device: str,
    data_form: str = "videos",
    workers: int = 0,
    cores: int = 1,
    processes: int = 1,
    source: str = "ssv2",
    root: str | os.PathLike | None = None,
    compile: bool = False,
    cuda_reason: str | None = None,
) -> str:
    """One line naming what limits training and what to do, from the measured clips/s of the
    loader (``loader_clips_s``, with ``workers`` workers) and of the model per variant
    (``training_clips_s``; ``configured`` is the config's, ``device`` ``"cuda"`` or ``"cpu"``).

    The loader limits when it feeds fewer clips than the configured variant trains: then read
    JPEG frames instead of videos (``data_form="videos"``: ``tools/prepare_data.py --prepare
    frames``) or give more workers (loader speed taken as linear in the workers, ``processes``
    training processes sharing the ``cores``). Otherwise the model limits: a faster variant
    measured here, ``compile=true``, and on the CPU a GPU (``cuda_reason``: why there is none)."""
    rates = {name: r for name, r in training_clips_s.items() if r}
    if not rates:
        return "bottleneck: unknown: no precision variant could train here (see the errors above)"
    configured_rate = rates.get(configured)
    if configured_rate is None:  # the configured variant failed (out of memory): compare with the best
        configured = max(rates, key=rates.__getitem__)
        configured_rate = rates[configured]
    best = max(rates, key=rates.__getitem__)
    hw = "GPU" if device == "cuda" else "CPU"
    trains = f"the {hw} trains {_rate(configured_rate)} clips/s ({configured})"
    if loader_clips_s is None:
        return f"bottleneck: unknown: the loader was not measured; {trains}"
    feeds = f"the loader feeds {_rate(loader_clips_s)} clips/s"

    if loader_clips_s < configured_rate:
        need = math.ceil(max(workers, 1) * configured_rate / loader_clips_s)
        more = f"give {need} workers (workers={need}"
        total = need * processes
        if total > cores:
            share = f"{total} in all for {processes} processes, " if processes > 1 else ""
            more += f"; {share}more than the {cores} cores"
            more += " here" if device == "cuda" else " that training also uses"
        elif device != "cuda":
            more += f", sharing the {cores} cores with training"
        more += ")"
        advice = [more]
        if data_form == "videos":
            where = os.fspath(root) if root else "ROOT"
            advice.insert(
                0,
                f"prepare JPEG frames (tools/prepare_data.py --source {source} --root {where} --prepare frames, "
                f"then data.source=list data.root={Path(where) / 'lists'})",
            )
        return f"bottleneck: {feeds}, {trains}: {' or '.join(advice)}"

    if device != "cuda":
        faster = (
            f"; on this CPU {variant_flags(best, relative_to=configured)} trains {_rate(rates[best])} clips/s"
            if best != configured and rates[best] > 1.05 * configured_rate
            else ""
        )
        why = f" (CUDA is not available here: {cuda_reason})" if cuda_reason else ""
        cpu_trains = f"the CPU trains {_rate(configured_rate)} clips/s ({configured})"
        return f"bottleneck: {cpu_trains}, {feeds}: train on a GPU{why}{faster}"

    advice = []
    if best != configured and rates[best] > 1.05 * configured_rate:
        limit = f", then the loader's {_rate(loader_clips_s)} clips/s limits it" if rates[best] > loader_clips_s else ""
        advice.append(
            f"train with {variant_flags(best, relative_to=configured)} (measured {_rate(rates[best])} clips/s{limit})"
        )
    if not compile:
        advice.append("try compile=true (measured here without it)")
    if not advice:
        advice.append("a larger batch_size if memory allows, or more GPUs (torchrun --nproc_per_node)")
    return f"bottleneck: the model: {feeds}, {trains}: {' and '.join(advice)}"
