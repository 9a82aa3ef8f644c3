"""Official TSM / TAM / ACTION-Net checkpoints with random weights, in the key layout, shapes and
dtypes of the official implementations (``tests/data/official_state_dicts``), saved the way
their training scripts save them, with the Python objects the released files hold besides
tensors: an ``OrderedDict`` state_dict, a numpy float ``best_prec1`` pickled under numpy 1.x's
names (``numpy.core.multiarray.scalar``: the releases predate numpy 2), the training ``args`` as an
``argparse.Namespace``, an optimiser state. And the save formats of TDN and TAdaConv
(``../shared/reference/newmods.md``), whose weights this toolkit does not convert but whose files it
must read without refusing them."""

from __future__ import annotations

import argparse
import collections
import json
import pickle
import types
from pathlib import Path

import numpy as np
import torch

LAYOUTS = Path(__file__).resolve().parent / "data" / "official_state_dicts"
SOURCES = ("tsm", "tam", "action")
NEW_SOURCES = ("tdn", "tada2d")  # their own checkpoint containers: save_official_tdn / save_official_tada2d
_LAYOUT_FILES = {"tada2d": "tada2d_resnet50_8f_174cls.tsv"}  # the others: <source>_resnet50_8seg_174cls.tsv
_CLASSIFIERS = ("module.new_fc.", "head.out.")


def official_state_dict(source: str, seed: int = 0, *, num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """A random state_dict with the official layout of ``source`` (ResNet-50, T=8, 174 classes;
    ``num_classes`` resizes the classifier, ``new_fc`` or TAda2D's ``head.out``)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    layout = _LAYOUT_FILES.get(source, f"{source}_resnet50_8seg_174cls.tsv")
    for row in (LAYOUTS / layout).read_text().splitlines()[1:]:
        key, shape, dtype = row.split("\t")
        shape = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
        if num_classes is not None and key.startswith(_CLASSIFIERS):
            shape = (num_classes, *shape[1:])
        if dtype == "int64":
            sd[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        else:
            sd[key] = 0.1 * torch.randn(shape, generator=g)
    return sd


class _Numpy1Pickler(pickle._Pickler):
    """Pickles numpy scalars under numpy 1.x's module name, as the official checkpoints hold them."""

    def save_global(self, obj, name=None):
        if obj is np._core.multiarray.scalar:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\nscalar\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


NUMPY1_PICKLE = types.SimpleNamespace(Pickler=_Numpy1Pickler, dump=pickle.dump, __name__="numpy1_pickle")


def _optimizer_state(lr: float = 0.01, params: int = 4) -> dict:
    group = {"lr": lr, "momentum": 0.9, "weight_decay": 5e-4, "lr_mult": 1, "decay_mult": 1, "name": "conv"}
    return {"state": {}, "param_groups": [{**group, "params": list(range(params))}]}


def save_official(
    path: Path, source: str, *, seed: int = 0, num_classes: int | None = None, legacy: bool = False
) -> Path:
    """Write an official-layout checkpoint as the official scripts do: ``{'epoch', 'arch',
    'state_dict', 'optimizer', 'best_prec1'}``, with ``best_prec1`` a numpy scalar pickled as numpy
    1.x did and the run's ``args`` (an ``argparse.Namespace``), as some releases keep them (none of
    which ``weights_only=True`` accepts without an allowlist); ``legacy``: in the pre-1.6 non-zip
    format of the older releases."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "epoch": 45,
            "arch": "resnet50",
            "state_dict": collections.OrderedDict(official_state_dict(source, seed, num_classes=num_classes)),
            "optimizer": _optimizer_state(),
            "best_prec1": np.float64(61.2),
            "args": argparse.Namespace(
                arch="resnet50", num_segments=8, lr=0.01, lr_steps=[20, 40], dataset="something"
            ),
        },
        path,
        pickle_module=NUMPY1_PICKLE,
        _use_new_zipfile_serialization=not legacy,
    )
    return path


def save_tdn(path: Path, *, legacy: bool = False) -> Path:
    """A TDN checkpoint as its ``main.py`` saves it: ``{'epoch', 'arch', 'state_dict', 'optimizer',
    'scheduler', 'prec1', 'best_prec1'}``, the scheduler a warm-up wrapper around ``MultiStepLR``
    (whose milestones are a ``collections.Counter``); a few tensors of its key layout."""
    sd = collections.OrderedDict(
        (k, torch.zeros(shape))
        for k, shape in (("module.base_model.conv1.weight", (64, 3, 7, 7)), ("module.base_model.conv1.bias", (64,)),
                         ("module.new_fc.weight", (174, 2048)), ("module.new_fc.bias", (174,)))
    )  # fmt: skip
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    after = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[30, 45, 55], gamma=0.1)
    scheduler = {"multiplier": 10.0, "warmup_epoch": 0, "finished": False, "base_lrs": [0.01], "last_epoch": 0,
                 "_step_count": 1, "_get_lr_called_within_step": False, "_last_lr": [0.001],
                 "after_scheduler": after.state_dict()}  # fmt: skip
    assert isinstance(scheduler["after_scheduler"]["milestones"], collections.Counter)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"epoch": 60, "arch": "resnet50", "state_dict": sd, "optimizer": _optimizer_state(),
             "scheduler": scheduler, "prec1": 52.3, "best_prec1": 52.3}  # fmt: skip
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def save_tada(path: Path) -> Path:
    """A TAdaConv checkpoint as its ``checkpoint.py`` saves it: ``{'epoch', 'model_state',
    'optimizer_state', 'cfg'}`` (``cfg`` a JSON string, no ``module.`` prefix); a few tensors."""
    sd = collections.OrderedDict(
        (k, torch.zeros(shape))
        for k, shape in (("backbone.conv1.a.weight", (64, 3, 1, 7, 7)), ("backbone.conv1.a_bn.weight", (64,)),
                         ("head.out.weight", (174, 2048)), ("head.out.bias", (174,)))
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = json.dumps({"MODEL": {"NAME": "TAda2D"}, "DATA": {"NUM_INPUT_FRAMES": 8}})
    torch.save({"epoch": 64, "model_state": sd, "optimizer_state": _optimizer_state(0.48), "cfg": cfg}, path)
    return path


def save_official_tdn(path: Path, *, seed: int = 0, num_classes: int | None = None) -> Path:
    """A whole random TDN checkpoint (``tdn_resnet50_8seg_174cls.tsv``: ``module.`` keys, every
    FBResNet conv with a bias) in the container of its ``main.py``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = collections.OrderedDict(official_state_dict("tdn", seed, num_classes=num_classes))
    state = {"epoch": 60, "arch": "resnet50", "state_dict": sd, "optimizer": _optimizer_state(), "prec1": 52.3,
             "best_prec1": 52.3}  # fmt: skip
    torch.save(state, path)
    return path


def save_official_tada2d(
    path: Path, *, seed: int = 0, num_classes: int | None = None, dataset: str = "ssv2", frames: int = 8
) -> Path:
    """A whole random TAda2D checkpoint (``tada2d_resnet50_8f_174cls.tsv``: 5-D kernels, no prefix)
    as TAdaConv's ``checkpoint.py`` saves it, ``cfg`` a JSON string naming the dataset and T."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = collections.OrderedDict(official_state_dict("tada2d", seed, num_classes=num_classes))
    cfg = json.dumps({"MODEL": {"NAME": "TAda2D"}, "DATA": {"NUM_INPUT_FRAMES": frames},
                      "TRAIN": {"DATASET": dataset}, "TEST": {"DATASET": dataset}})  # fmt: skip
    torch.save({"epoch": 64, "model_state": sd, "optimizer_state": _optimizer_state(0.48), "cfg": cfg}, path)
    return path
