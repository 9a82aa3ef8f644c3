"""The device a tool runs on, and the process-wide settings that must precede its first kernel.

- :func:`select_device` turns ``device: auto | cpu | cuda`` into a ``torch.device``. ``auto`` on a
  machine with an NVIDIA GPU that a CUDA build of PyTorch cannot use falls back to the CPU
  *loudly*: one warning that says why (an NVIDIA driver older than the build needs, no driver
  loaded, the GPUs hidden), since a run that silently trains on the CPU wastes days; on a machine
  without an NVIDIA GPU it says so at the debug level only. ``cuda`` without a usable GPU is a one-line
  error.
- :func:`configure_backends` sets TF32 for fp32 math on CUDA (on by default, as most training code
  does: 10 mantissa bits in matmuls and convolutions, about 8x the fp32 matmul rate on Ampere and
  later) and deterministic mode (``torch.use_deterministic_algorithms`` without ``warn_only``, cuDNN
  deterministic, and cuBLAS's fixed workspace, ``CUBLAS_WORKSPACE_CONFIG``, without which cuBLAS
  is not deterministic on CUDA >= 10.2).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from ..errors import ConfigError

log = logging.getLogger(__name__)

# The oldest Linux driver each CUDA major version of a PyTorch build runs on (NVIDIA's minor-version
# compatibility: any driver of the major's first release line).
MIN_DRIVER = {11: (450, 80), 12: (525, 60), 13: (580, 65)}
DEVICES = ("auto", "cpu", "cuda")


def driver_version() -> tuple[int, ...] | None:
    """The loaded NVIDIA kernel driver's version (``/proc/driver/nvidia/version``), or None."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    found = re.search(r"Kernel Module(?: for [\w-]+)?\s+(\d+(?:\.\d+)+)", text) or re.search(
        r"\s(\d{3}\.\d+(?:\.\d+)?)\s", text
    )
    return tuple(int(p) for p in found.group(1).split(".")) if found else None


def nvidia_gpus_on_the_bus() -> int:
    """NVIDIA display / 3D controllers on the PCI bus (``/sys/bus/pci``, visible in containers
    started without ``--gpus``): a GPU that is there whether or not a driver serves it."""
    count = 0
    for dev in Path("/sys/bus/pci/devices").glob("*"):
        try:
            if (dev / "vendor").read_text().strip() == "0x10de" and (dev / "class").read_text().startswith("0x03"):
                count += 1
        except OSError:
            continue
    return count


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used here, in a few words with the fix; None when it can."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return "this PyTorch is a CPU-only build (install a CUDA build to use a GPU)"
    build = torch.version.cuda
    major = int(build.split(".")[0])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    driver = driver_version()
    need = MIN_DRIVER.get(major)
    if driver is None:
        if not nvidia_gpus_on_the_bus():
            return f"this machine has no NVIDIA GPU (this PyTorch is built for CUDA {build})"
        return (
            f"an NVIDIA GPU is present but no NVIDIA driver is loaded (this PyTorch is built for CUDA {build}, which "
            f"needs driver >= {'.'.join(map(str, need)) if need else 'its release'}); in a container, start it with "
            "--gpus all"
        )
    if need and driver < need:
        return (
            f"the NVIDIA driver {'.'.join(map(str, driver))} is older than this PyTorch's CUDA {build} needs "
            f"(>= {'.'.join(map(str, need))}): update the driver, or install a PyTorch build for an older CUDA "
            "(README: GPUs)"
        )
    try:
        torch.cuda.init()
    except Exception as err:  # noqa: BLE001 (the driver's own words are the reason)
        return f"CUDA failed to start: {str(err).splitlines()[0]}"
    return "no GPU is visible to CUDA"


def select_device(name: str, *, local_rank: int = 0) -> torch.device:
    """``auto``: the GPU ``local_rank`` when CUDA works, else the CPU with a warning saying why
    when this PyTorch was built for CUDA; ``cuda``: the GPU or a :class:`ConfigError`; ``cpu``."""
    if name not in DEVICES:
        raise ConfigError(f"device={name}: expected one of {', '.join(DEVICES)}")
    if name == "cpu":
        return torch.device("cpu")
    reason = cuda_unavailable_reason()
    if reason is None:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but {torch.cuda.device_count()} GPU(s) are visible: start at most that "
                "many processes per node (torchrun --nproc_per_node)"
            )
        return torch.device("cuda", local_rank)
    if name == "cuda":
        raise ConfigError(f"device=cuda: {reason}; or use device=cpu")
    if torch.version.cuda is not None:
        if driver_version() is None and not nvidia_gpus_on_the_bus():  # a machine without a GPU: nothing amiss
            log.debug("device=auto: running on the CPU (%s)", reason)
        else:  # a GPU the user expects to train on: say loudly why it is not used
            log.warning("device=auto: running on the CPU because %s (device=cpu silences this)", reason)
    return torch.device("cpu")


def configure_backends(device: torch.device, *, tf32: bool = True, deterministic: bool = False) -> None:
    """Process-wide math settings, before the first kernel: TF32 for fp32 on CUDA (``tf32``) and
    deterministic algorithms (``deterministic``: an op without a deterministic implementation then
    raises instead of warning; see :func:`explain_nondeterministic`)."""
    if deterministic:
        # cuBLAS reads it when its first handle is made: before any matmul of this process
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = device.type == "cuda"  # autotuned convolutions: fixed shapes per run
    # the flags that torch.export and older code read (the newer per-backend fp32_precision follows them)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def explain_nondeterministic(err: RuntimeError) -> ConfigError | None:
    """The one-line error for an op that ``deterministic=true`` refused, or None for another error."""
    text = str(err)
    if "does not have a deterministic implementation" not in text:
        return None
    op = text.split(" does not have", 1)[0].strip().splitlines()[-1]
    return ConfigError(
        f"deterministic=true: {op} has no deterministic implementation on this device; "
        "set deterministic=false (or use a model without it)"
    )
