"""The typed config: one schema for every section, used by the library and by Hydra alike.

Each section is a dataclass: :class:`ModelConfig` (``model``), :class:`DataConfig` (``data``,
with the transforms' and the sampler's keywords as schemas generated from their signatures),
:class:`OptimConfig` (``optim``), and the tools' top levels :class:`TrainConfig` /
:class:`TestConfig`. A key the schema lacks fails with its name and the close matches, a value
of the wrong type with the key and the type expected, a value out of range (``num_segments=0``)
with the key and the range; the library's :func:`validate` and Hydra's composition (the
schemas are registered in its ConfigStore by :func:`register_configs`) give the same answers.

``model=NAME`` works for every registry name: :func:`register_configs` also stores a model
config per registry module (ResNet-50, ImageNet weights, the module in its default slot) unless
``configs/model/NAME.yaml`` exists for a module that needs settings of its own (GSoP's
last-block placement) or a combination (``tsm_se``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .errors import ConfigError


def to_plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A dict from a dict or an OmegaConf ``DictConfig`` (Hydra's ``cfg.data``), resolved."""
    if hasattr(cfg, "items") and not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {expected}")


def _choice(key: str, value: Any, choices: Sequence[str]) -> None:
    _require(value in choices, key, value, f"one of {', '.join(map(str, choices))}")


# ----------------------------------------------------------------------------- schemas from signatures
def _plain_type(tp: Any) -> Any:
    """An annotation as OmegaConf takes it: ``Sequence[float]`` / ``tuple[float, ...]`` ->
    ``list[float]``, ``X | None`` -> ``Optional[X]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _plain_type(rest[0]) if len(rest) == 1 else Any
        return typing.Optional[inner] if type(None) in args else inner  # noqa: UP045 (a runtime type: OmegaConf reads it)
    if origin in (list, tuple, collections.abc.Sequence):
        item = [a for a in args if a is not Ellipsis]
        return list[_plain_type(item[0])] if item else list[Any]
    return tp


def keyword_schema(
    fn: Callable, *, name: str, exclude: Sequence[str] = (), defaults: Mapping[str, Any] | None = None
) -> type:
    """A dataclass of ``fn``'s keyword parameters (names, types, defaults), less ``exclude``, with
    ``defaults`` replacing some defaults: the config schema of a class configured by keywords,
    kept in one place, its signature."""
    hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    fields_ = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in exclude or p.name == "self" or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        tp = _plain_type(hints.get(p.name, Any))
        default = (defaults or {}).get(p.name, p.default)
        if isinstance(default, (list, tuple, dict)):
            default = list(default) if not isinstance(default, dict) else dict(default)
            fields_.append((p.name, tp, field(default_factory=lambda d=default: type(d)(d))))
        else:
            fields_.append((p.name, tp, field(default=default)))
    return dataclasses.make_dataclass(name, fields_)


# ----------------------------------------------------------------------------- the sections
@dataclass
class ModelConfig:
    """``model``: a VideoClassifier (see :func:`videoattn.models.build_model`)."""

    name: str | None = None  # a label for tables and checkpoints ("tsm", "action", ...)
    arch: str | None = None  # resnet18 | resnet34 | resnet50 | resnet101 | mobilenet_v2 (required)
    num_classes: int | None = None  # required; the tools take it from the dataset
    num_segments: int | None = None  # required; the tools take it from the top-level num_segments
    dropout: float = 0.5
    partial_bn: bool = False
    pretrained: str | None = None  # imagenet | imagenet_v2 | a state_dict file | a checkpoint to fine-tune
    inserts: list[Any] = field(default_factory=list)  # {name, slot?, stages?, every?, blocks?, kwargs?} or a name
    layers: list[int] | None = None  # blocks per stage (small networks)
    widths: list[int] | None = None  # channels per stage

    def __post_init__(self) -> None:
        for key in ("num_classes", "num_segments"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"model.{key}", value, "a positive integer")
        _require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "a probability in [0, 1)")
        for key in ("layers", "widths"):
            value = getattr(self, key)
            _require(
                value is None or (len(value) == 4 and all(v >= 1 for v in value)),
                f"model.{key}",
                value,
                "4 positive integers (one per stage) or null",
            )


@dataclass
class OptimConfig:
    """``optim``: the optimiser and schedule (see :mod:`videoattn.engine.optim`)."""

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01  # for base_batch_size clips per step; scaled linearly to the global batch
    base_batch_size: int = 64
    # gradient accumulation: each update is the mean gradient of `accumulate` batches (the global batch,
    # for the lr scaling, is batch_size x processes x accumulate); BatchNorm statistics per batch
    accumulate: int = 1
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 5e-4  # per group: weight_decay * the group's decay_mult
    # parameter groups (videoattn.engine.optim): official = the official TSN / TSM / TAM / ACTION-Net
    # groups (first conv; other conv weights; biases lr x2, no decay; norms no decay; every Linear x5,
    # its bias x10, when fc_lr5); uniform = decay on conv / linear weights only, lr x1 (fc: fc_lr_mult)
    groups: str = "uniform"  # official | uniform
    # official only: the official flag for a NEW classifier (ImageNet -> SSv2, Kinetics -> UCF101: true);
    # auto = true unless the classifier is kept from a checkpoint of the same dataset
    fc_lr5: Any = "auto"  # true | false | auto
    fc_lr_mult: float = 1.0  # uniform only: lr multiplier of the classifier fc (official: fc_lr5 instead)
    epochs: int = 50
    schedule: str = "step"  # step | cosine | constant
    milestones: list[int] = field(default_factory=lambda: [20, 40])  # epochs (step schedule)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.1  # lr at the start of warm-up, relative to lr
    min_lr_factor: float = 0.0  # cosine floor, relative to lr
    clip_grad_norm: float | None = 20.0  # TSM / TAM --gd 20; null disables
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _choice("optim.name", self.name, ("sgd", "adamw"))
        _choice("optim.schedule", self.schedule, ("step", "cosine", "constant"))
        _require(self.lr > 0, "optim.lr", self.lr, "a positive number")
        _require(self.epochs >= 1, "optim.epochs", self.epochs, "a positive integer")
        _require(self.base_batch_size >= 1, "optim.base_batch_size", self.base_batch_size, "a positive integer")
        _require(self.accumulate >= 1, "optim.accumulate", self.accumulate, "a positive integer")
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "a number >= 0")
        _require(self.fc_lr_mult > 0, "optim.fc_lr_mult", self.fc_lr_mult, "a positive number")
        _choice("optim.groups", self.groups, ("official", "uniform"))
        _require(
            isinstance(self.fc_lr5, bool) or self.fc_lr5 == "auto", "optim.fc_lr5", self.fc_lr5, "true, false or auto"
        )
        _require(self.warmup_epochs >= 0, "optim.warmup_epochs", self.warmup_epochs, "a number >= 0")
        _require(0.0 <= self.label_smoothing < 1.0, "optim.label_smoothing", self.label_smoothing, "a number in [0, 1)")
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            self.betas,
            "two numbers in [0, 1)",
        )
        _require(
            self.clip_grad_norm is None or self.clip_grad_norm > 0,
            "optim.clip_grad_norm",
            self.clip_grad_norm,
            "a positive number or null",
        )


def _data_schemas() -> tuple[type, type, type]:
    from .data.sampling import Sampling
    from .data.transforms import EvalTransform, TrainTransform

    # flip: auto in a config (a flip that swaps mirrored classes, decided from the class names)
    return (
        # normalize: false: batches travel as uint8 (a quarter of the bytes through shared memory and
        # PCIe) and are normalised on the device, bit for bit the host's normalisation
        keyword_schema(
            TrainTransform,
            name="TrainTransformConfig",
            exclude=("flip_map",),
            defaults={"flip": "auto", "normalize": False},
        ),
        keyword_schema(EvalTransform, name="EvalTransformConfig", exclude=("crops",), defaults={"normalize": False}),
        # num_segments is the top-level one; the test views come from data.test
        keyword_schema(Sampling, name="SamplingConfig", exclude=("num_segments", "num_clips", "twice_sample")),
    )


TrainTransformConfig, EvalTransformConfig, SamplingConfig = _data_schemas()


@dataclass
class TestProtocol:
    """``data.test``: the views of a test video (named sets of them: :mod:`videoattn.data.protocols`)."""

    num_clips: int = 1
    num_crops: int = 1  # 1 (centre) | 3 (TSM's three crops along the long side) | 10
    twice_sample: bool = False  # TSM's 2 clips: the segments' centres and starts
    # the views' crop and short side; null: eval_transform's (for 3 crops: squares of the short side,
    # the official "full resolution")
    size: int | None = None
    resize: int | None = None

    def __post_init__(self) -> None:
        _require(self.num_clips >= 1, "data.test.num_clips", self.num_clips, "a positive integer")
        _require(self.num_crops in (1, 3, 10), "data.test.num_crops", self.num_crops, "1, 3 or 10")
        for key in ("size", "resize"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"data.test.{key}", value, "a positive integer or null")


@dataclass
class DataConfig:
    """``data``: a dataset in one of the supported annotation formats (see data/README.md)."""

    name: str | None = None  # a label for run names and tables
    source: str | None = None  # ssv2 | ssv1 | jester | kinetics | list (required)
    # dataset root (read, never written); null with demo: true = the built-in demo dataset. Required
    # (???) in the schema, so that a data config's own ``root: ???`` stays required when composed over it
    root: str | None = "???"
    demo: bool = False  # root: null means the built-in demo dataset, written on first use
    annotations: dict[str, Any] = field(default_factory=dict)  # keywords of the format's parser (video_dir, ...)
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "val": "val", "test": "val"})
    on_error: str = "raise"  # malformed annotation lines / missing videos: raise | skip
    backend: str = "auto"  # auto | torchcodec | decord | pyav | frames
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # type: ignore[valid-type]
    train_transform: TrainTransformConfig = field(default_factory=TrainTransformConfig)  # type: ignore[valid-type]
    eval_transform: EvalTransformConfig = field(default_factory=EvalTransformConfig)  # type: ignore[valid-type]
    test: TestProtocol = field(default_factory=TestProtocol)
    max_retries: int = 10
    order_dependent: list[str] = field(default_factory=list)  # classes that need temporal order, reported apart

    def __post_init__(self) -> None:
        from .data.video import BACKENDS

        _choice("data.on_error", self.on_error, ("raise", "skip"))
        _choice("data.backend", self.backend, BACKENDS)
        _require(self.max_retries >= 0, "data.max_retries", self.max_retries, "an integer >= 0")


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
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "a positive integer")
        _require(self.workers >= 0, "workers", self.workers, "an integer >= 0")
        _require(
            self.prefetch_factor is None or self.prefetch_factor >= 1,
            "prefetch_factor",
            self.prefetch_factor,
            "a positive integer or null",
        )
        for key in ("persistent_workers", "prefetch_factor"):
            value = getattr(self, key)
            _require(value is None or self.workers > 0, key, value, "null with workers=0 (a DataLoader worker setting)")
        _choice("device", self.device, ("auto", "cpu", "cuda"))
        _require(self.dist_timeout > 0, "dist_timeout", self.dist_timeout, "a positive number of seconds")
        _choice("precision", self.precision, ("fp32", "bf16", "fp16"))


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
            _require(getattr(self, key) >= 1, key, getattr(self, key), "a positive integer")
        _require(
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
        _choice("precision", self.precision, ("fp32", "bf16"))


# ----------------------------------------------------------------------------- checking plain data
def validate(schema: type, cfg: Mapping[str, Any], *, section: str) -> dict[str, Any]:
    """``cfg`` checked against ``schema`` and completed with its defaults, as plain data. An
    unknown key, a wrong type or a value out of range fails naming the key (``section.key``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(to_plain(cfg)))
        return dataclasses.asdict(OmegaConf.to_object(merged))
    except MissingMandatoryValue as err:
        key = f"{section}.{err.full_key}" if section else err.full_key
        raise ConfigError(f"{key} is required: set it ({key}=...)") from None
    except OmegaConfBaseException as err:
        raise ConfigError(describe_error(err, section=section)) from None


def check_config(cfg: Any) -> None:
    """The schema's checks on a composed Hydra config: its types were checked by the
    composition, its ranges are checked here, as it becomes its dataclasses."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(describe_error(err)) from None


def describe_error(err: BaseException, *, section: str = "") -> str:
    """One line for an OmegaConf validation error: the key, the value and what was expected."""
    key = getattr(err, "full_key", None) or ""
    full = f"{section}.{key}" if section and key else (key or section)
    msg = str(getattr(err, "msg", None) or str(err)).splitlines()[0]
    if "not in" in msg and ("struct" in msg or "Key" in msg):
        parent = getattr(err, "object_type", None)
        names = [f.name for f in dataclasses.fields(parent)] if dataclasses.is_dataclass(parent) else []
        where, _, leaf = full.rpartition(".")
        close = [f"{where}.{c}" if where else c for c in difflib.get_close_matches(leaf, names, n=3)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return f"{full}: no such key{hint}; the keys there: {', '.join(names)}" if names else f"{full}: no such key"
    if "could not be converted to" in msg or "is not a valid" in msg:
        value = msg.split("'")[1] if "'" in msg else "?"
        expected = msg.rsplit("converted to ", 1)[-1] if "converted to" in msg else msg.split("is not a valid ", 1)[1]
        expected = expected.split(" (")[0].strip(" .")
        names = {
            "Integer": "an integer",
            "Float": "a number",
            "Boolean": "true or false",
            "bool": "true or false",
            "String": "a string",
        }
        return f"{full}={value}: expected {names.get(expected, expected)}"
    if "cannot be assigned None" in msg or "is not Optional" in msg or "Incompatible value 'None'" in msg:
        return f"{full}=null: expected a value (this key cannot be null)"
    return f"{full}: {msg}"


# ----------------------------------------------------------------------------- Hydra
def model_preset(name: str) -> dict[str, Any]:
    """The model config a registry module gets without a file of its own: ResNet-50 from
    ImageNet weights with the module inserted in its default slot."""
    return {
        "name": name,
        "arch": "resnet50",
        "pretrained": "imagenet",
        "dropout": 0.5,
        "partial_bn": False,
        "inserts": [{"name": name}],
    }


def model_configs(config_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every ``model=NAME`` the tools accept: ``configs/model/*.yaml`` and the registry's
    modules without one (:func:`model_preset`), as plain data."""
    import yaml

    from .attention import list_attention

    folder = Path(config_dir) / "model"
    out = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}
    for name in list_attention():
        out.setdefault(name, model_preset(name))
    return dict(sorted(out.items()))


def register_configs(config_dir: str | Path | None = None) -> None:
    """Store the schemas (``train_schema``, ``test_schema``) and the registry's model configs
    in Hydra's ConfigStore; ``config_dir``'s own ``model/*.yaml`` take precedence."""
    from hydra.core.config_store import ConfigStore

    from .attention import list_attention

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="test_schema", node=TestConfig)
    own = {p.stem for p in (Path(config_dir) / "model").glob("*.yaml")} if config_dir else set()
    for name in list_attention():
        if name not in own:
            cs.store(group="model", name=name, node=ModelConfig(**model_preset(name)))
