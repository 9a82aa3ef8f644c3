"""The training epoch (videoattn.engine.loop): gradient accumulation is a larger batch, and a run
resumed at an epoch boundary continues exactly."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videoattn.data.transforms import ToDevice
from videoattn.engine.distributed import World
from videoattn.engine.loop import NonFiniteGuard, train_one_epoch
from videoattn.engine.optim import build_optimizer, build_scheduler, load_optimizer_state, normalize_optim_config

T, K = 2, 3


class NoBatchNorm(nn.Module):
    """A classifier of flattened clips without BatchNorm (whose statistics would differ per micro-batch)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(T * 3 * 4 * 4, 16)
        self.fc = nn.Linear(16, K)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, *, label_smoothing: float = 0.0
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The model contract of the training loop (VideoClassifier.forward): logits, or (loss, logits)."""
        logits = self.fc(torch.tanh(self.body(x.flatten(1))))  # (N, T, 3, 4, 4) -> (N, T*3*4*4) -> (N, K)
        if labels is None:
            return logits
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing), logits


def items(n: int, batch: int, *, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    clips = torch.randn(n * batch, T, 3, 4, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, K, (n * batch,), generator=g)
    return [(clips[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch], None, None) for i in range(n)]


def setup(*, global_batch: int, steps: int, name: str = "sgd"):
    model = NoBatchNorm().double()
    cfg = normalize_optim_config({"name": name, "epochs": 4, "lr": 0.1, "weight_decay": 1e-3, "base_batch_size": 8})
    optimizer = build_optimizer(model, cfg, global_batch=global_batch)
    return model, dict(
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch=steps),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        guard=NonFiniteGuard(World()),
        to_device=ToDevice(torch.device("cpu")),
        params=list(model.parameters()),
        clip_grad_norm=1.0,
        log_every=2,
    )


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_accumulating_4_batches_of_b_is_one_step_of_a_batch_of_4b(name):
    b, k, steps = 3, 4, 2
    small = items(steps * k, b)
    groups = [small[i * k : (i + 1) * k] for i in range(steps)]
    large = [(torch.cat([c for c, *_ in g]), torch.cat([y for _, y, *_ in g]), None, None) for g in groups]
    acc_model, acc = setup(global_batch=b * k, steps=steps, name=name)
    one_model, one = setup(global_batch=b * k, steps=steps, name=name)
    stats_acc = train_one_epoch(acc_model, small, epoch=0, steps=steps, accumulate=k, **acc)
    stats_one = train_one_epoch(one_model, large, epoch=0, steps=steps, **one)
    assert stats_acc.steps == stats_one.steps == steps and stats_acc.clips == stats_one.clips == steps * k * b
    assert stats_acc.loss == pytest.approx(stats_one.loss, rel=1e-12)
    for p, q in zip(acc_model.parameters(), one_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)  # float64: equal up to the order of the sums
    assert acc["scheduler"].last_epoch == one["scheduler"].last_epoch == steps  # the schedule counts updates


def test_a_run_resumed_at_an_epoch_boundary_with_accumulation_continues_exactly():
    """Each epoch holds whole accumulations (a loader that ends inside one drops it), so a run
    killed anywhere in an accumulation resumes from the last epoch's checkpoint exactly."""
    b, k, steps = 2, 3, 2
    data = [items(steps * k + 1, b, seed=e) for e in range(2)]  # one batch more than whole steps: dropped
    model, run = setup(global_batch=b * k, steps=steps)
    for epoch in range(2):
        train_one_epoch(model, data[epoch], epoch=epoch, steps=steps, accumulate=k, **run)

    first, saved = setup(global_batch=b * k, steps=steps)
    train_one_epoch(first, data[0], epoch=0, steps=steps, accumulate=k, **saved)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": saved["optimizer"].state_dict(),
                "scheduler": saved["scheduler"].state_dict()}, buf)  # fmt: skip
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed, again = setup(global_batch=b * k, steps=steps)
    resumed.load_state_dict(ckpt["model"])
    load_optimizer_state(again["optimizer"], ckpt["optimizer"])
    again["scheduler"].load_state_dict(ckpt["scheduler"])
    train_one_epoch(resumed, data[1], epoch=1, steps=steps, accumulate=k, **again)
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
