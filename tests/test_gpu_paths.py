"""What the first multi-GPU run would hit, made visible on the CPU (issue 24).

- A **stand-in process group** of two ranks that, as NCCL does, refuses every tensor that is not on
  the communication device, with a **stand-in accelerator**: PyTorch's lazy-tensor device, which
  computes on the CPU but, like CUDA, is not the CPU (a CPU tensor in a collective, or mixed into
  its arithmetic, is an error there as on a GPU).
- **Host synchronisations** counted by patching every way the host reads a tensor.
- SyncBatchNorm conversion under partial BN, deterministic mode, TF32, the loud ``device: auto``,
  and ``/dev/shm``.
"""

from __future__ import annotations

import contextlib
import logging
import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from videoattn.data.transforms import ToDevice
from videoattn.engine.distributed import World, broadcast_buffers
from videoattn.engine.evaluate import evaluate
from videoattn.engine.loop import NonFiniteGuard, StepCounters, train_one_epoch
from videoattn.engine.optim import build_optimizer, build_scheduler, normalize_optim_config
from videoattn.errors import ConfigError, DivergedError
from videoattn.models import build_model

T, K = 4, 5


def tiny(*inserts, partial_bn: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        {
            "arch": "resnet18",
            "layers": [1, 1, 1, 1],
            "widths": [8, 16, 32, 64],
            "num_classes": K,
            "num_segments": T,
            "pretrained": None,
            "partial_bn": partial_bn,
            "inserts": list(inserts),
        }
    )


def batches(n: int, *, size: int = 32, views: int = 0, seed: int = 0) -> list:
    """``n`` loader items ``(clips uint8, labels, index, substituted)`` as the datasets give them."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        shape = (2, views, T, 3, size, size) if views else (2, T, 3, size, size)
        clips = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        labels = torch.randint(0, K, (2,), generator=g)
        if i == 1:
            labels[1] = -1  # an unlabelled (test-split) video beside a labelled one
        out.append((clips, labels, torch.arange(2 * i, 2 * i + 2), torch.zeros(2, dtype=torch.bool)))
    return out


# ----------------------------------------------------------------------------- stand-ins
@pytest.fixture(scope="module")
def accelerator() -> torch.device:
    """PyTorch's lazy-tensor device: not the CPU, as CUDA is not."""
    pytest.importorskip("torch._lazy")
    import torch._lazy.ts_backend

    torch._lazy.ts_backend.init()
    return torch.device("lazy")


class StandInGroup:
    """Two ranks whose peer contributes the identity of each reduction (a peer with an empty
    shard), refusing, as NCCL does, any tensor that is not on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.calls = device, []

    def _check(self, op: str, t: torch.Tensor) -> None:
        self.calls.append(op)
        if t.device.type != self.device.type:
            raise RuntimeError(f"No backend type associated with device type {t.device.type} ({op})")

    def all_reduce(self, t, op=None, group=None, async_op=False):
        self._check("all_reduce", t)

    def broadcast(self, t, src=0, group=None, async_op=False):
        self._check("broadcast", t)

    def all_gather_object(self, out, obj, group=None):
        out[:] = [obj] + [type(obj)() for _ in out[1:]]


@pytest.fixture
def standin(monkeypatch, accelerator):
    group = StandInGroup(accelerator)
    for name in ("all_reduce", "broadcast", "all_gather_object"):
        monkeypatch.setattr(dist, name, getattr(group, name))
    return group, World(rank=0, size=2, device=accelerator)


def test_validation_and_sharded_tests_reduce_on_the_communication_device(standin):
    """Crash 1: NCCL takes device tensors only; the counters of evaluate() were CPU tensors."""
    group, world = standin
    model = tiny({"name": "tsm"}).eval()
    items = batches(3)
    single = evaluate(model, items, num_classes=K, world=World(), keep_probs=True)
    result = evaluate(model.to(world.device), items, num_classes=K, world=world, keep_probs=True)
    assert group.calls.count("all_reduce") == 3  # counts, confusion matrix, loss: all on the device
    assert (
        (result.top1, result.top5, result.num_clips)
        == (single.top1, single.top5, single.num_clips)
        == (
            result.top1,
            result.top5,
            5,
        )
    )
    assert result.loss == pytest.approx(single.loss, rel=1e-6)
    assert torch.equal(result.confusion, single.confusion)
    assert sorted(result.probs) == list(range(6))
    assert all(torch.allclose(result.probs[i], single.probs[i], atol=1e-6) for i in result.probs)


def test_buffers_are_broadcast_from_rank_0_on_the_communication_device(standin):
    """Silently different 6: each rank validated with its own BatchNorm statistics."""
    group, world = standin
    model = tiny({"name": "tsm"}).to(world.device)
    broadcast_buffers(model, world)
    assert group.calls.count("broadcast") == len(list(model.buffers())) > 0


# ----------------------------------------------------------------------------- host synchronisations
@contextlib.contextmanager
def count_host_reads():
    """Count every way the host reads a tensor's value (each a synchronisation on a GPU) and
    every small host-to-device upload made with ``torch.tensor``."""
    counts = {"reads": 0, "uploads": 0}
    patched = []

    def wrap(owner, name, key):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)

        patched.append((owner, name, original))
        setattr(owner, name, counted)

    for name in ("item", "tolist", "__bool__", "cpu", "__int__", "__float__", "__index__", "numpy", "__array__"):
        wrap(torch.Tensor, name, "reads")
    wrap(torch, "tensor", "uploads")
    try:
        yield counts
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_the_training_step_reads_the_device_once_per_log_interval(optim):
    """Slow 7: 5 host synchronisations per step before; now one per log_every steps (and the
    mean / std of the uint8 normalisation are uploaded once, not with every batch)."""
    model = tiny({"name": "tsm"})
    cfg = normalize_optim_config({"name": optim, "epochs": 2, "lr": 0.01, "weight_decay": 1e-4})
    optimizer = build_optimizer(model, cfg, global_batch=2)
    assert optimizer.param_groups[0]["fused"]  # the skip of a non-finite loss happens on the device
    steps, log_every = 8, 4
    common = dict(
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch=steps),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        guard=NonFiniteGuard(World()),
        to_device=ToDevice(torch.device("cpu")),
        params=list(model.parameters()),
        steps=steps,
        clip_grad_norm=20.0,
        log_every=log_every,
    )
    net = model.train()  # the model returns its loss: (clips, labels) -> (loss, logits)
    items = batches(steps, size=32)
    for item in items:
        item[1].clamp_(min=0)
    with count_host_reads() as counts:
        stats = train_one_epoch(net, items, epoch=0, **common)
    assert stats.steps == steps and stats.clips == 2 * steps
    assert counts["reads"] <= steps // log_every, counts
    assert counts["uploads"] == 0, counts


def test_a_non_finite_loss_skips_its_update_on_the_device_and_stops_the_run_after_a_few_in_a_row(caplog):
    model = nn.Linear(3, 2)
    cfg = normalize_optim_config({"epochs": 1, "lr": 0.1, "weight_decay": 0.0})
    optimizer = build_optimizer(model, cfg, global_batch=1)
    from videoattn.engine.loop import optimizer_step

    guard, counters = NonFiniteGuard(World(), limit=3), StepCounters(torch.device("cpu"))
    guard.start_epoch()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = torch.randn(4, 3)
    for step, scale in enumerate([1.0, float("nan"), float("inf"), 1.0, float("nan"), float("nan")]):
        before = [p.detach().clone() for p in model.parameters()]
        loss = model(x).pow(2).mean() * scale
        skip = guard.flag(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer_step(optimizer, scaler, skip)
        guard.record(skip, loss, counters)
        same = all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        assert same == (not torch.isfinite(loss).item()), step  # a skipped step leaves weights and momentum
        counters.add_batch(loss, torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), skip)
    read = counters.read()
    assert (read["skipped"], read["bad_in_a_row"], read["longest_bad_run"], read["clips"]) == (4, 2, 2, 8)
    with caplog.at_level(logging.WARNING):
        guard.check(read, epoch=0, step=5)
    assert "in 4 step(s), which were skipped" in caplog.text and guard.skipped == 4
    for _ in range(2):
        nan = torch.tensor(float("nan"))
        guard.record(guard.flag(nan), nan, counters)
    with pytest.raises(
        DivergedError, match="the loss was not finite \\(nan\\) in 4 steps in a row, up to epoch 1 step 8"
    ):
        guard.check(counters.read(), epoch=0, step=7)


def test_the_first_step_may_be_skipped_without_leaving_momentum_uninitialised():
    model = nn.Linear(3, 2)
    cfg = normalize_optim_config({"epochs": 1, "lr": 0.1})
    a, b = build_optimizer(model, cfg, global_batch=64), torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert all(torch.equal(a.state[p]["momentum_buffer"], torch.zeros_like(p)) for p in model.parameters())
    assert not b.state  # PyTorch's fused kernel fills a missing buffer on the first step it does not skip


# ----------------------------------------------------------------------------- SyncBN, determinism, TF32
def test_sync_bn_keeps_partial_bn_frozen():
    """Silently different 4: partial BN froze nn.BatchNorm2d layers; SyncBatchNorm is not one."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(tiny({"name": "tam"}, partial_bn=True))
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.SyncBatchNorm)]
    training = [m for m in bns if m.training]
    # the first BN of the backbone trains; so do TAM's BatchNorm1d layers, which the official partial BN leaves
    assert bns[0] in training and all(m.weight.requires_grad for m in training)
    frozen = [m for m in bns if not m.training]
    assert len(frozen) == len(tiny({"name": "tam"}, partial_bn=True)._frozen_bn) > 10
    assert not any(m.weight.requires_grad or m.bias.requires_grad for m in frozen)


@pytest.fixture
def restore_backends():
    env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    from videoattn.engine.device import configure_backends

    configure_backends(torch.device("cpu"))
    if env is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def test_deterministic_means_deterministic_kernels_or_an_error_and_tf32_is_a_setting(restore_backends):
    """Silently different 5: warn_only and no cuBLAS workspace setting made deterministic=true
    non-deterministic on CUDA."""
    from videoattn.engine.device import configure_backends, explain_nondeterministic

    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    configure_backends(torch.device("cpu"), deterministic=True, tf32=False)
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and torch.backends.cudnn.deterministic
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    configure_backends(torch.device("cpu"))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.backends.cuda.matmul.fp32_precision == "tf32" and torch.backends.cudnn.conv.fp32_precision == "tf32"
    err = RuntimeError(
        "adaptive_avg_pool2d_backward_cuda does not have a deterministic implementation, but you set "
        "'torch.use_deterministic_algorithms(True)'. You can turn off determinism just for this operation..."
    )
    assert "deterministic=true: adaptive_avg_pool2d_backward_cuda has no deterministic" in str(
        explain_nondeterministic(err)
    )
    assert explain_nondeterministic(RuntimeError("shape mismatch")) is None


# ----------------------------------------------------------------------------- the machine
def test_device_auto_on_a_cuda_build_without_a_usable_gpu_says_why(monkeypatch, caplog):
    """Crash 3: CUDA 13 wheels on a driver older than 580 trained on the CPU with one quiet line."""
    from videoattn.engine import device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device, "driver_version", lambda: (535, 104, 5))
    with caplog.at_level(logging.WARNING):
        assert device.select_device("auto") == torch.device("cpu")
    assert (
        "running on the CPU because the NVIDIA driver 535.104.5 is older than this PyTorch's CUDA 13.2" in caplog.text
    )
    assert ">= 580.65" in caplog.text
    with pytest.raises(ConfigError, match="device=cuda: the NVIDIA driver 535.104.5 is older"):
        device.select_device("cuda")
    monkeypatch.setattr(device, "driver_version", lambda: None)
    monkeypatch.setattr(device, "nvidia_gpus_on_the_bus", lambda: 1)  # e.g. a container started without --gpus
    assert "an NVIDIA GPU is present but no NVIDIA driver is loaded" in device.cuda_unavailable_reason()
    assert "--gpus all" in device.cuda_unavailable_reason()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        device.select_device("auto")
    assert "WARNING" in caplog.text
    monkeypatch.setattr(device, "nvidia_gpus_on_the_bus", lambda: 0)  # a machine without a GPU: a debug line
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        device.select_device("auto")
    assert "this machine has no NVIDIA GPU" in caplog.text and "WARNING" not in caplog.text
    with pytest.raises(ConfigError, match="device=cuda: this machine has no NVIDIA GPU"):
        device.select_device("cuda")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES" in device.cuda_unavailable_reason()
    monkeypatch.setattr(torch.version, "cuda", None)
    caplog.clear()
    assert device.select_device("auto") == torch.device("cpu") and not caplog.text  # a CPU build: nothing to say


def test_driver_version_is_read_from_the_kernel_modules_banner(monkeypatch, tmp_path):
    from videoattn.engine import device

    banner = (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\nGCC version:  gcc\n"
    )
    path = tmp_path / "version"
    path.write_text(banner)
    monkeypatch.setattr(device, "Path", lambda _: path)
    assert device.driver_version() == (535, 104, 5)


def test_batches_that_do_not_fit_in_dev_shm_are_refused_before_the_run():
    """Crash 3: Docker's 64 MB /dev/shm and float32 test batches gave a DataLoader bus error."""
    from videoattn.data.build import check_shared_memory

    views = torch.zeros(30, 8, 3, 256, 256, dtype=torch.uint8)  # Kinetics 10 clips x 3 crops, T=8, uint8
    options = {"num_workers": 8, "prefetch_factor": 2}
    with pytest.raises(ConfigError, match=r"/dev/shm has 64 MiB free, but 8 DataLoader workers keep about 720 MiB"):
        check_shared_memory(views, batch_size=1, options=options, free=64 * 2**20)
    assert check_shared_memory(views, batch_size=1, options=options, free=2**31) == 16 * views.nelement()
    assert check_shared_memory(views, batch_size=1, options={"num_workers": 0}, free=0) == 0  # no workers, no shm


def test_batches_travel_as_uint8_by_default():
    """Slow 9: float32 batches on the host by default (4x the bytes through /dev/shm and PCIe)."""
    from videoattn.data.build import normalize_data_config

    cfg = normalize_data_config({"source": "ssv2", "root": "/x"})
    assert cfg["train_transform"]["normalize"] is False and cfg["eval_transform"]["normalize"] is False
