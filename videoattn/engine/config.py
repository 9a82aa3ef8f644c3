"""The tools' top-level configs: :class:`TrainConfig` (``tools/train.py``, ``configs/train.yaml``
and its siblings) and :class:`TestConfig` (``tools/test.py``), each made of the sections' own
schemas (``model``: :class:`~videoattn.models.config.ModelConfig`, ``data``:
:class:`~videoattn.data.build.DataConfig`, ``optim``: :class:`~videoattn.engine.optim.OptimConfig`),
and their registration with Hydra (:func:`register_configs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import choice, model_preset, require
from ..data.build import DataConfig
from ..models.config import ModelConfig
from .optim import OptimConfig

__all__ = ["RunConfig", "TestConfig", "TrainConfig", "register_configs"]


@dataclass
class RunConfig:
    """What every tool that runs a model on data shares."""

    batch_size: int = 8  # clips per process
    workers: int = 2  # DataLoader workers per process
    persistent_workers: bool | None = None  # null: per backend (videoattn.data.build.loader_options)
    prefetch_factor: int | None = None  # batches in flight per worker; null: 2
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"
    channels_last: bool | None = False
    malloc_cache: bool = True
    tf32: bool = True  # CUDA fp32: TF32 matmuls and convolutions (Ampere and later); false: full fp32
    dist_timeout: float = 600.0  # torchrun: seconds a rank waits in a collective for a stuck or dead one
    trust_checkpoint: bool = False  # load checkpoints that pickle objects beyond the allowlist (runs their code)

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "batch_size", self.batch_size, "a positive integer")
        require(self.workers >= 0, "workers", self.workers, "an integer >= 0")
        require(
            self.prefetch_factor is None or self.prefetch_factor >= 1,
            "prefetch_factor",
            self.prefetch_factor,
            "a positive integer or null",
        )
        for key in ("persistent_workers", "prefetch_factor"):
            value = getattr(self, key)
            require(value is None or self.workers > 0, key, value, "null with workers=0 (a DataLoader worker setting)")
        choice("device", self.device, ("auto", "cpu", "cuda"))
        require(self.dist_timeout > 0, "dist_timeout", self.dist_timeout, "a positive number of seconds")
        choice("precision", self.precision, ("fp32", "bf16", "fp16"))


@dataclass
class TrainConfig(RunConfig):
    """The top level of ``tools/train.py`` (configs/common.yaml documents each key)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    num_segments: int = 8
    seed: int = 0
    sync_bn: bool = False
    deterministic: bool = False
    compile: bool = False
    resume: Any = "auto"  # auto | none | a checkpoint path (checked by the run folder, which names a wrong type)
    overwrite: bool = False
    keep_last: int = 2
    eval_every: int = 1
    log_every: int = 10
    max_steps_per_epoch: int | None = None
    loggers: list[str] = field(default_factory=lambda: ["tensorboard", "csv"])  # videoattn.engine.trackers
    tensorboard: bool | None = None  # the older switch: false drops tensorboard from loggers, true adds it
    progress: bool = True
    run_dir: str = "runs/${data.name}/${model.name}"
    recipe: str | None = None  # the official script the run follows (configs/recipe/*.yaml), logged

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("num_segments", "keep_last", "eval_every", "log_every"):
            require(getattr(self, key) >= 1, key, getattr(self, key), "a positive integer")
        require(
            self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
            "max_steps_per_epoch",
            self.max_steps_per_epoch,
            "a positive integer or null",
        )


@dataclass
class TestConfig(RunConfig):
    """The top level of ``tools/test.py`` (configs/test.yaml documents each key)."""

    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: str = "???"
    split: str = "test"
    protocol: str | None = None  # a paper's test views by name (videoattn.data.protocols); null: the checkpoint's
    channels_last: bool | None = None
    compile: bool = False
    reference: str | None = None
    out_dir: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        choice("precision", self.precision, ("fp32", "bf16"))


def register_configs(config_dir: str | Path | None = None) -> None:
    """Store the schemas (``train_schema``, ``test_schema``) and the registry's model configs
    in Hydra's ConfigStore; ``config_dir``'s own ``model/*.yaml`` take precedence."""
    from hydra.core.config_store import ConfigStore

    from ..attention import list_attention

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="test_schema", node=TestConfig)
    own = {p.stem for p in (Path(config_dir) / "model").glob("*.yaml")} if config_dir else set()
    for name in list_attention():
        if name not in own:
            cs.store(group="model", name=name, node=ModelConfig(**model_preset(name)))
