"""tools/ablate.py in-process (videoattn.engine.fit per run): progress with estimates, the epochs
column, runs of another schedule refused, runs of different lengths refused by --collect."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest
from cli import TINY_RUN

TOOL = Path(__file__).resolve().parents[1] / "tools" / "ablate.py"


@pytest.fixture(scope="module")
def ablate():
    spec = importlib.util.spec_from_file_location("ablate_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def overrides(tiny_demo, *extra):
    data = [f"data.root={tiny_demo / 'ssv2'}", "data.demo=false", "device=cpu", "malloc_cache=false"]
    return ["--", *TINY_RUN, *data, "max_steps_per_epoch=2", *extra]


@pytest.fixture(scope="module")
def runs(ablate, tiny_demo, tmp_path_factory):
    return tmp_path_factory.mktemp("ablation")


def test_each_run_trains_in_process_with_its_progress_and_the_table_has_epochs(ablate, tiny_demo, runs, capsys):
    args = ["--models", "tsn,tsm", "--runs", str(runs), *overrides(tiny_demo, "optim.epochs=2")]
    assert ablate.main(args) == 0
    err = capsys.readouterr().err
    for model in ("tsn", "tsm"):
        assert f"[{model}] start: {runs / model} (optim.epochs=2 " in err
        assert f"[{model}] epoch 1/2, ~" in err and f"[{model}] epoch 2/2, ~0s left in this run" in err
        assert f"[{model}] done in " in err
        assert json.loads((runs / model / "results.json").read_text())["complete"] is True
    assert "[tsn] epoch 1/2, ~" in err and "in all" in err and "2 runs in " in err
    table = (runs / "ablation.md").read_text()
    assert (
        "| model | excitation | epochs |" in table
        and "| tsn | none | 2 |" in table
        and "| tsm | temporal | 2 |" in table
    )
    logging.getLogger().handlers[:] = [h for h in logging.getLogger().handlers if not isinstance(h, ablate.Clock)]

    # finished with this schedule: skipped; asked for another schedule: refused, naming the run and both
    assert ablate.main(["--models", "tsm", "--runs", str(runs), *overrides(tiny_demo, "optim.epochs=2")]) == 0
    assert "[tsm] done before" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        ablate.main(["--models", "tsm", "--runs", str(runs), *overrides(tiny_demo, "optim.epochs=3")])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"[tsm] {runs / 'tsm'} holds a run of another schedule (optim.epochs=2 " in line
    assert "than this one (optim.epochs=3 " in line and "--rerun" in line


def test_collect_refuses_runs_of_different_lengths_unless_allowed(ablate, tiny_demo, runs, tmp_path, capsys):
    results = json.loads((runs / "tsn" / "results.json").read_text())
    other = tmp_path / "runs" / "tsn"
    other.mkdir(parents=True)
    (other / "results.json").write_text(json.dumps({**results, "epochs": 30}))
    (tmp_path / "runs" / "tsm").symlink_to(runs / "tsm")
    with pytest.raises(SystemExit) as exit_info:
        ablate.main(["--collect", str(tmp_path / "runs"), "--models", "tsn,tsm", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "runs of different lengths (epochs: tsn 30, tsm 2)" in capsys.readouterr().err
    assert (
        ablate.main(
            ["--collect", str(tmp_path / "runs"), "--models", "tsn,tsm", "--allow-mixed", "--out", str(tmp_path)]
        )
        == 0
    )
    table = (tmp_path / "ablation.md").read_text()
    assert "| tsn | none | 30 |" in table and "**Runs of different lengths** (epochs: tsn 30, tsm 2)" in table
