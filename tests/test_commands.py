"""Every command of the README and of the tools' docstrings, as written: each is parsed by its
tool (argparse flags and values; Hydra overrides composed and checked as the tool does), where
test_readme_run.py, which runs them all, cannot here (a GPU, torch.compile, a camera). A command
that names no tool must be one of the known others (uv, pytest)."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from videoattn.compose import check_overrides

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
HYDRA = {"train": "train", "test": "test"}  # tool -> its config; doctor: its flags, then train's overrides
# install / test commands, and the trackers' own viewers (installed with their extras)
OTHERS = (
    "uv sync",
    "uv run pytest",
    "uv venv",
    "uv run --no-sync python tools/",
    "uv run --with mlflow",
    "uv run tensorboard",
)


def _lines(text: str) -> list[str]:
    return [line for line in text.replace("\\\n", " ").splitlines()]


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, tool, arguments) of every tool command in README.md's code blocks and in the
    tools' docstrings; usage synopses (``[--flag VALUE]``) and elisions (``...``) are left out."""
    found = []
    sources = [
        ("README.md", block)
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    ]
    sources += [
        (f"tools/{p.name}", ast.get_docstring(ast.parse(p.read_text())) or "") for p in sorted(TOOLS.glob("*.py"))
    ]
    for where, text in sources:
        for line in _lines(text):
            for part in line.split(" #")[0].split("&&"):
                words = shlex.split(part.split("# ")[0]) if "tools/" in part else []
                tools = [w for w in words if re.fullmatch(r"tools/\w+\.py", w)]
                if not tools or any(w.startswith("[") for w in words):
                    continue
                args = [w for w in words[words.index(tools[0]) + 1 :] if w != "..."]
                if where != "README.md" and not part.strip().startswith(("uv run", "torchrun", "python")):
                    continue
                found.append((where, tools[0][6:-3], _without_redirections(args)))
    return found


def _without_redirections(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in (">", "2>", ">>"):
            skip = True  # the file name that follows
        elif not re.fullmatch(r"\d?>&\d", a):
            out.append(a)
    return out


def _not_run_here(argv: list[str]) -> bool:
    from test_readme_run import NOT_RUN

    return any(key in " ".join(argv) for key in NOT_RUN)


class Parsed(Exception):
    pass


def _load(tool: str):
    spec = importlib.util.spec_from_file_location(f"documented_{tool}", TOOLS / f"{tool}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_documented_command_is_found():
    commands = documented_commands()
    tools = {tool for _, tool, _ in commands}
    assert {p.stem for p in TOOLS.glob("*.py")} <= tools  # each tool documented at least once
    assert ("README.md", "ablate", ["--short"]) in commands
    assert len(commands) >= 60


def test_every_documented_command_that_is_not_run_parses_as_its_tool_parses_it(monkeypatch):
    """Flags, their values and the Hydra overrides, as the tool reads them, of the commands
    test_readme_run.py does not run here (a GPU's, torch.compile's, a camera's): the others run."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    failures = []
    modules = {}
    not_run = [(where, tool, argv) for where, tool, argv in documented_commands() if _not_run_here(argv)]
    assert len(not_run) >= 3  # --device cuda (without a GPU), --compile, /dev/video0
    for where, tool, argv in not_run:
        try:
            if tool in HYDRA:
                cfg = check_overrides(REPO / "configs", HYDRA[tool], argv)
                assert cfg is not None, "not composed"
                continue
            module = modules.get(tool) or modules.setdefault(tool, _load(tool))
            if tool == "doctor":
                _, rest = module.parse_args(argv)
                assert check_overrides(REPO / "configs", "train", rest) is not None
                continue
            monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
            monkeypatch.setattr(sys, "argv", [f"tools/{tool}.py", *argv])
            with pytest.raises(Parsed):
                module.main()
        except SystemExit as err:  # a one-line usage error: exit 2
            failures.append(f"{where}: tools/{tool}.py {' '.join(argv)}: exit {err.code}")
        except AssertionError as err:
            failures.append(f"{where}: tools/{tool}.py {' '.join(argv)}: {err}")
        finally:
            monkeypatch.setattr(argparse.ArgumentParser, "parse_args", original)
    assert not failures, "\n".join(failures)


def test_readme_commands_without_a_tool_are_install_or_test_commands():
    text = (REPO / "README.md").read_text()
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        for line in _lines(block):
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#") or "tools/" in line:
                continue
            assert line.startswith(OTHERS), line
