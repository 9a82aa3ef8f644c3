"""The tools' error handling, in-process: Hydra overrides checked before a run, user errors as
one line + exit code 2, bugs with their traceback, argparse usage errors in one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from videoattn.cli import ArgumentParser, check_overrides, user_errors
from videoattn.errors import CheckpointError, ConfigError, DataError, MissingFileError, UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("config, argv, message", [
    ("train", ["model.dropuot=0.1"], "model.dropuot=0.1: the config has no key 'model.dropuot' (did you mean model.dropout?)"),
    ("train", ["data=ssv2", "data.rooot=/x"], "the config has no key 'data.rooot' (did you mean data.root?)"),
    ("test", ["checkpoint=x", "data.tesst.num_clips=2"], "the config has no key 'data.tesst' (did you mean data.test?)"),
    ("train", ["model=tsmm"], "model=tsmm: no such model config (did you mean tsm, tsm_se?); available: action"),
    ("train", ["-m", "model=tsn,tsmm"], "model=tsmm: no such model config"),
    ("train", ["model.dropout=[1"], "model.dropout=[1: not a valid override"),
    ("train", ["--config-name", "ssv2"], "data.root is required: pass data.root=..."),
    ("test", [], "checkpoint is required"),
])  # fmt: skip
def test_check_overrides_reports_what_hydra_would_reject_in_one_line(config, argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        check_overrides(CONFIGS, config, argv)
    assert info.value.code == 2 and message in one_error_line(capsys)


@pytest.mark.parametrize("argv", [
    ["optim.lr=0.1", "+data.extra=1"], ["-m", "model=tsn,se", "optim.lr=0.1,0.2"], ["--config-name", "ssv2", "data.root=/x"],
    ["hydra.run.dir=/tmp/x", "hydra/job_logging=disabled"], ["--cfg", "job", "model.dropuot=1"], ["--help"],
])  # fmt: skip
def test_check_overrides_lets_valid_command_lines_and_hydras_own_flags_through(argv):
    check_overrides(CONFIGS, "train", argv)


@pytest.mark.parametrize("error", [ConfigError("bad key"), CheckpointError("bad file"), DataError("bad line"),
                                   MissingFileError("x not found"), OSError(errno.ENOSPC, "No space left on device", "/d/f")])
def test_user_errors_become_one_line_and_exit_code_2(error, capsys, monkeypatch):
    monkeypatch.delenv("VIDEOATTN_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as info, user_errors():
        raise error
    line = one_error_line(capsys)
    assert info.value.code == 2
    assert line == f"error: {error}" if isinstance(error, UserError) else "/d/f: the disk is full" in line


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
