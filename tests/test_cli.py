"""The tools' error handling, in-process: Hydra overrides checked before a run, user errors as
one line + exit code 2, bugs with their traceback, argparse usage errors in one line."""

from __future__ import annotations

import errno
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from videoattn.cli import ArgumentParser, user_errors
from videoattn.compose import check_overrides
from videoattn.errors import CheckpointError, ConfigError, DataError, MissingFileError, UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("config, argv, message", [
    ("train", ["model.dropuot=0.1"],
     "model.dropuot=0.1: the config has no key 'model.dropuot' (did you mean model.dropout?)"),
    ("train", ["data=ssv2", "data.rooot=/x"], "the config has no key 'data.rooot' (did you mean data.root?)"),
    ("test", ["checkpoint=x", "data.tesst.num_clips=2"],
     "the config has no key 'data.tesst' (did you mean data.test?)"),
    ("train", ["model=tsmm"], "model=tsmm: no such model config (did you mean tsm, tsm_se?); available: action"),
    ("train", ["-m", "model=tsn,tsmm"], "model=tsmm: no such model config"),
    ("train", ["model.dropout=[1"], "model.dropout=[1: not a valid override"),
    ("train", ["--config-name", "ssv2"], "data.root is required: pass data.root=..."),
    ("test", [], "checkpoint is required"),
    ("train", ["+epochs=1", "+lr=0.1"], "+epochs=1: adds a key 'epochs' that nothing reads (did you mean optim.epochs"),
    ("train", ["optim.lr=0.1", "++seeds=3"], "++seeds=3: adds a key 'seeds' that nothing reads (did you mean seed?)"),
    ("train", ["~seed"], "~seed: removes the top-level key 'seed', which the tool reads; set it instead (seed=...)"),
    ("test", ["checkpoint=x", "+batchsize=2"], "adds a key 'batchsize' that nothing reads (did you mean batch_size"),
    # + adds a key to a section whose schema lacks it: refused where the config is composed, its one check
    ("train", ["+data.flipp=on"], "data.flipp: no such key; the keys there: name, source, root"),
    ("train", ["+data.train_transform.sizee=3"], "data.train_transform.sizee: no such key (did you mean data.train_"),
    # the typed schema (videoattn.config): the key and the type or range expected
    ("train", ["optim.epochs=abc"], "optim.epochs=abc: expected an integer"),
    ("train", ["num_segments=0"], "num_segments=0: expected a positive integer"),
    ("train", ["optim.lr=fast"], "optim.lr=fast: expected a number"),
    ("train", ["model.partial_bn=maybe"], "model.partial_bn=maybe: expected true or false"),
    ("train", ["data.train_transform.size=big"], "data.train_transform.size=big: expected an integer"),
    ("train", ["data.test.num_crops=4"], "data.test.num_crops=4: expected 1, 3 or 10"),
    ("train", ["model.dropout=null"], "model.dropout=null: expected a value"),
    ("train", ["precision=fp8"], "precision='fp8': expected one of fp32, bf16, fp16"),
    ("train", ["workers=-1"], "workers=-1: expected an integer >= 0"),
    ("train", ["workers=0", "persistent_workers=false"], "persistent_workers=False: expected null with workers=0"),
    ("test", ["checkpoint=x", "prefetch_factor=0"], "prefetch_factor=0: expected a positive integer or null"),
    ("train", ["data.sampling.num_clips=2"], "the config has no key 'data.sampling.num_clips'"),
    ("test", ["checkpoint=x", "precision=fp16"], "precision='fp16': expected one of fp32, bf16"),
])  # fmt: skip
def test_check_overrides_reports_what_hydra_would_reject_in_one_line(config, argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        check_overrides(CONFIGS, config, argv)
    assert info.value.code == 2 and message in one_error_line(capsys)


@pytest.mark.parametrize("argv", [
    ["optim.lr=0.1", "++data.annotations.check_files=false"], ["-m", "model=tsn,se", "optim.lr=0.1,0.2"],
    ["--config-name", "ssv2", "data.root=/x"],
    ["hydra.run.dir=/tmp/x", "hydra/job_logging=disabled"], ["--cfg", "job", "model.dropuot=1"], ["--help"],
])  # fmt: skip
def test_check_overrides_lets_valid_command_lines_and_hydras_own_flags_through(argv):
    check_overrides(CONFIGS, "train", argv)


@pytest.mark.parametrize("argv, jobs", [
    (["model=tsn", "optim.lr=0.1"], [("tsn", 0.1)]),
    (["-m", "model=tsn,se", "optim.lr=0.1,0.2"], [("tsn", 0.1), ("tsn", 0.2), ("se", 0.1), ("se", 0.2)]),
])  # fmt: skip
def test_run_tool_composes_once_per_job_and_runs_the_checked_config(argv, jobs, monkeypatch):
    """The one load of a Hydra tool: Hydra's compose API called once per job (every combination of
    a sweep, in the basic sweeper's order), the task given that config, typed by the schema, with no
    ``hydra`` key; HydraConfig and the job's logging set as @hydra.main sets them."""
    import logging

    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from videoattn.compose import run_tool
    from videoattn.engine.config import TrainConfig

    calls = []
    compose = hydra.compose

    def counted(*args, **kw):
        calls.append(kw.get("overrides"))
        return compose(*args, **kw)

    monkeypatch.setattr(hydra, "compose", counted)
    seen = []

    def task(cfg):
        assert OmegaConf.get_type(cfg) is TrainConfig and "hydra" not in cfg
        assert HydraConfig.get().job.config_name == "train"
        assert [o for o in HydraConfig.get().overrides.task if o.startswith("optim.lr")] == [f"optim.lr={cfg.optim.lr}"]
        seen.append((cfg.model.name, cfg.optim.lr))

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        run_tool(task, config_dir=CONFIGS, config_name="train", argv=argv)
        assert [h.formatter._fmt for h in root.handlers if isinstance(h, logging.StreamHandler)] == ["%(message)s"]
    finally:  # the job logging of configs/common.yaml (stdout) replaced pytest's handlers: give them back
        root.handlers[:] = handlers
        root.setLevel(level)
    assert seen == jobs and len(calls) == len(jobs)


def test_run_tool_turns_a_mistake_in_the_task_into_one_line(capsys):
    from videoattn.compose import run_tool

    def task(cfg):
        raise ConfigError(f"model.name={cfg.model.name}: not today")

    with pytest.raises(SystemExit) as info:
        run_tool(task, config_dir=CONFIGS, config_name="train", argv=["model=tsn", "hydra/job_logging=none"])
    assert info.value.code == 2 and one_error_line(capsys) == "error: model.name=tsn: not today"


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("bad key"),
        CheckpointError("bad file"),
        DataError("bad line"),
        MissingFileError("x not found"),
        OSError(errno.ENOSPC, "No space left on device", "/d/f"),
    ],
)
def test_user_errors_become_one_line_and_exit_code_2(error, capsys, monkeypatch):
    monkeypatch.delenv("VIDEOATTN_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as info, user_errors():
        raise error
    line = one_error_line(capsys)
    assert info.value.code == 2
    assert line == f"error: {error}" if isinstance(error, UserError) else "/d/f: the disk is full" in line


class _Misconfigured(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        raise ConfigError("eval_transform: the crop is larger than the frames")


def test_a_user_error_raised_in_a_dataloader_worker_is_its_own_one_line(capsys, monkeypatch):
    monkeypatch.delenv("VIDEOATTN_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    loader = torch.utils.data.DataLoader(_Misconfigured(), num_workers=1)
    with pytest.raises(SystemExit), user_errors():
        list(loader)
    assert one_error_line(capsys) == "error: eval_transform: the crop is larger than the frames"


def test_bugs_and_debug_mode_keep_the_traceback(monkeypatch):
    with pytest.raises(KeyError), user_errors():
        raise KeyError("a bug")
    monkeypatch.setenv("VIDEOATTN_DEBUG", "1")
    with pytest.raises(ConfigError), user_errors():
        raise ConfigError("shown with its traceback")


def test_argparse_usage_errors_are_one_line(capsys, monkeypatch):
    monkeypatch.setenv("VIDEOATTN_DEBUG", "0")  # restored after the test (--debug sets it)
    p = ArgumentParser(prog="tool.py")
    p.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as info:
        p.parse_args(["--n", "x"])
    assert info.value.code == 2 and "invalid int value: 'x' (see tool.py --help)" in one_error_line(capsys)
    assert p.parse_args(["--debug"]).debug and os.environ["VIDEOATTN_DEBUG"] == "1"


# ----------------------------------------------------------------------------- the README's overrides
README_FILES = ("README.md", "data/README.md", "configs/README.md")
NOT_OVERRIDES = {
    "VIDEOATTN_DEBUG=1",
    "HYDRA_FULL_ERROR=1",
    'CUDA_VISIBLE_DEVICES=""',
    "CUBLAS_WORKSPACE_CONFIG=:4096:8",
    "+key=value",
    "bias=True",
    'combine="max"',
    "kernel_size=3",
    "model=NAME",
    'from_model=("num_classes",)',
}


def quoted_overrides() -> list[str]:
    """The overrides quoted in the READMEs' text (`data.on_error=skip`; their commands run in
    test_readme_run.py)."""
    import re

    inline = []
    for name in README_FILES:
        for span in re.findall(r"`([^`\n]+)`", (CONFIGS.parent / name).read_text()):
            tokens = span.split()
            if tokens and all(re.fullmatch(r"\+{0,2}[A-Za-z_][\w.]*=\S+", t) for t in tokens):
                inline += [t for t in tokens if t not in NOT_OVERRIDES]
    return inline


def validated(config: str, argv: list[str]):
    """Compose as the tool does (one-line errors via check_overrides), then check every section."""
    from videoattn.data.build import normalize_data_config
    from videoattn.engine.optim import normalize_optim_config
    from videoattn.models.build import normalize_config

    cfg = check_overrides(CONFIGS, config, argv)  # the config the tool composes (the first of a sweep)
    data = normalize_data_config(cfg.data)
    if config == "train":
        normalize_optim_config(cfg.optim)
        normalize_config({**cfg.model, "num_classes": 2, "num_segments": cfg.num_segments})
    return cfg, data


def test_every_override_quoted_in_the_readmes_works_as_written(tiny_demo):
    """Each documented override once: composed with train.py's or test.py's config, every
    section checked, and a data override applied to a dataset that reads a clip."""
    from videoattn.data.build import build_dataset

    inline = quoted_overrides()
    assert {"data.on_error=skip", "resume=none", "overwrite=true", "keep_last=2", "data.backend=pyav"} <= set(inline)
    for override in dict.fromkeys(inline):
        try:
            cfg, data = validated("train", [override])
        except SystemExit:  # a test.py setting (compile=true)
            cfg, data = validated("test", ["checkpoint=x.pth", override])
        if override.startswith("data.") and not override.startswith(("data.source=", "data.root=")):
            dataset = build_dataset({**data, "root": str(tiny_demo / "ssv2")}, "val", mode="val", num_segments=2)
            assert dataset[0][0].shape[0] == 2, override


def test_the_generic_config_machinery_imports_no_section():
    """videoattn.config holds validate / errors / keyword schemas only: each section's schema sits
    beside its class (data/, engine/), so importing it imports neither (a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys, videoattn.config; "
        "print(sorted(m for m in sys.modules if m.startswith(('videoattn.data', 'videoattn.engine', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"), EOFError()])
def test_a_worker_killed_while_handing_over_a_batch_is_one_line(error, capsys, monkeypatch):
    """A worker killed while the main process receives its batch's shared memory breaks the
    resource sharer's connection: the same one line as a worker killed between batches, exit 1;
    and the DataLoader's cleanup on the way out, where PyTorch raises the worker's death again in
    ``__del__``, prints nothing more (any other unraisable error still is)."""
    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)  # the default hook, as user_errors finds it
    code = compile("def receive(err):\n    raise err\n", "/usr/lib/python3/multiprocessing/resource_sharer.py", "exec")
    scope: dict = {}
    exec(code, scope)
    with pytest.raises(SystemExit) as exit_info, user_errors():
        scope["receive"](error)
    assert exit_info.value.code == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: a DataLoader worker's batch was lost in the handover") and "\n" not in line
    assert "killed from outside this program" in line

    killed = RuntimeError("DataLoader worker (pid 13008) is killed by signal: Killed. ")
    sys.unraisablehook(types.SimpleNamespace(exc_value=killed))  # what the iterator's __del__ raises
    assert printed == []
    other = types.SimpleNamespace(exc_value=ValueError("a bug"))
    sys.unraisablehook(other)
    assert printed == [other]


def test_a_connection_error_elsewhere_is_not_taken_for_a_killed_worker():
    with pytest.raises(ConnectionResetError), user_errors():
        raise ConnectionResetError(104, "Connection reset by peer")
