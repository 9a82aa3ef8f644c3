"""Every command block of the README, then every command of the tools' docstrings, run as written,
top to bottom, in a user's clone.

The clone is a folder of its own (``tools/`` and ``README.md`` copied, ``configs/`` linked) where
the files the commands assume are the test's: the demo data under ``data/demo`` (the tiny demo),
``/data/ssv2`` and ``/data/k400`` (copies of the tiny demo's Something-Something v2 and Kinetics
formats), ``~/my_videos`` (class folders and a CSV, ``HOME`` set to the clone's), the official
checkpoints by the names the README gives them (random weights in the official layouts,
``tests/official.py``), ``VIDEO`` (a demo clip) and ``CKPT`` (the Quick start's checkpoint). Each
command runs in its own process (``tests/cli.py``), in order, so a later block reads what an
earlier one wrote, as for a user; a command an earlier block already ran is not run twice. After
each: exit code 0, no traceback, and what the README promises of it (``CHECKS``).

Tiny: the documented runs take minutes to days, so each tool's command gets the tiny settings of
``TINY`` appended (one epoch of one step on a small ResNet, small crops, few timing rounds); they
override what the command sets, never what it names (checkpoints, data, models, modes, protocols).
``torchrun --nproc_per_node 8`` runs one CPU process per node (test.py: 2, its metrics checked
against one process's); ``--nnodes 2`` runs both nodes here. Not run, each for the reason
``NOT_RUN`` gives (those of a tool are parsed as the tool parses them): the install commands (test_lock.py reads what
they install), this suite itself, the MLflow UI, a camera, ``--compile``, and ``--device cuda``
without a GPU. The W&B / MLflow commands run where their extra is installed.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import shlex
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from cli import TINY_RUN, Running, run, start
from official import save_official

from videoattn.compose import check_overrides
from videoattn.data.synthetic import DEMO_CLASSES

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

EXTRAS = ("wandb", "mlflow")  # the loggers' extras: their commands run where the extra is installed
NOT_RUN = {
    "uv sync": "an install command (tests/test_lock.py reads what it installs from uv.lock)",
    "uv venv": "an install command (tests/test_lock.py reads what it installs from uv.lock)",
    "uv pip install": "an install command (tests/test_lock.py reads what it installs from uv.lock)",
    "uv run pytest": "this test suite",
    "uv run --with mlflow": "downloads the full MLflow package for its web UI (its version: tests/test_lock.py)",
    "/dev/video0": "a camera: none on a test machine (tools/stream.py reads any FFmpeg input; a file here)",
    "--compile": "torch.compile: ~12 s of C++ compiling on a CPU (tests/test_compile.py compiles the models)",
}
if not torch.cuda.is_available():
    NOT_RUN["--device cuda"] = "needs a CUDA GPU (runs where one is: the same test)"
# what every training of the README runs here: a small ResNet at 48 px (16 channels at least:
# ACTION's squeeze), one epoch of one step, no GPU
TINY_TRAIN = ["optim.epochs=1", "max_steps_per_epoch=1", "device=cpu", *TINY_RUN, "model.widths=[16,16,32,64]"]
TINY_MODEL = ("model.layers=", "model.widths=", "num_segments=")  # left out when the model is loaded from a file
DEMO_VIDEO = "10006.webm"
DEMO = ["data.root=data/demo/ssv2", "data.demo=false"]
TINY = {
    "train": TINY_TRAIN,
    "doctor": ["--seconds", "0.2", "--warmup", "1", "--precisions", "fp32", *TINY_TRAIN],
    "test": ["workers=0"],
}
# make_demo_data.py: the tiny demo's settings (the clone's data/demo: already written)
TINY_DEMO = [
    "--train-per-class", "2", "--val-per-class", "1", "--test-clips", "2", "--kinetics-train-per-class", "2",
    "--kinetics-val-per-class", "1", "--size", "64", "80", "--workers", "1",
]  # fmt: skip
OFFICIAL_VIEWS = ["data.eval_transform.size=48", "data.eval_transform.resize=56"]  # not 224: the converted ResNet-50s'

# benchmark.py: one round of a ResNet-18 at T=2, 32 px; the loader and index sections on a few clips
TINY_BENCHMARK = {
    "--arch": "resnet18", "--segments": "2", "--size": "32", "--batch-sizes": "1", "--repeats": "1",
    "--warmup": "0", "--min-sample-s": "0", "--agree-clips": "0", "--no-memory": None, "--threads": "1",
    "--train-batch-size": "1", "--stream-frames": "2", "--loader-root": "data/demo/ssv2", "--loader-clips": "4",
    "--loader-batch-size": "2", "--loader-workers": "0", "--loader-repeats": "1", "--realistic-clips": "1",
    "--realistic-scale": "0.1", "--index-size": "300", "--index-kinetics": "400", "--index-workers": "1",
    "--index-batch-size": "16",
}  # fmt: skip


@dataclass
class Command:
    line: int  # in its file
    text: str  # as written
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)  # after the launcher: tools/x.py ARGS
    launcher: str = ""  # "python" | "torchrun" | "" (not a tool)
    stdout_to: str | None = None  # `> FILE`
    where: str = "README.md"

    @property
    def tool(self) -> str:
        return next((Path(w).stem for w in self.argv if re.fullmatch(r"tools/\w+\.py", w)), "")


def readme_blocks() -> list[tuple[str, list[Command]]]:
    """The README's ``bash`` blocks, then each tool's docstring: (name, commands), a command per
    line (continuations joined, comments and ``&&`` split off; in docstrings, the lines that start
    with a launcher and are no usage synopsis)."""
    text = README.read_text()
    blocks = []
    for m in re.finditer(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        first = text[: m.start()].count("\n") + 2
        blocks.append((f"README-{first}", _commands(m.group(1), first, "README.md")))
    for path in sorted((REPO / "tools").glob("*.py")):
        source = path.read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        first = source[: source.index(doc.splitlines()[0])].count("\n") + 1
        commands = [c for c in _commands(doc, first, f"tools/{path.name}", only=LAUNCHED) if "[" not in c.text]
        if commands:
            blocks.append((f"tools-{path.stem}", commands))
    return blocks


LAUNCHED = re.compile(r"\s*(uv run|torchrun|python) ")  # a docstring's command lines (the rest is prose)


def _commands(text: str, first: int, where: str, only: re.Pattern | None = None) -> list[Command]:
    commands, pending = [], ""
    for i, line in enumerate(text.splitlines()):
        if line.endswith("\\"):  # continued on the next line
            pending += line[:-1]
            continue
        line, pending = pending + line, ""
        if only is not None and not only.match(line):
            continue
        line = re.split(r"(?:^|\s)#", line)[0].strip()
        for part in filter(None, (p.strip() for p in line.split("&&"))):
            commands.append(_command(first + i, part, where))
    return commands


def _command(line: int, text: str, where: str) -> Command:
    words = [w for w in shlex.split(text) if w != "..."]  # an elision: the command as far as it is written
    cmd = Command(line, text, where=where)
    if ">" in words:  # the shell's redirection of stdout
        cmd.stdout_to = words[words.index(">") + 1]
        words = words[: words.index(">")]
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        cmd.env[key] = value
    if words[:2] == ["uv", "run"]:
        words = words[2:]
        while words and words[0].startswith("--"):  # uv's own flags (--no-sync)
            words.pop(0)
    if words and words[0] == "python" and len(words) > 1 and words[1].startswith(("tools/", "-c")):
        cmd.launcher, cmd.argv = "python", words[1:]
    elif words and words[0] == "torchrun":
        cmd.launcher, cmd.argv = "torchrun", words[1:]
    return cmd


BLOCKS = readme_blocks()


def test_the_readme_blocks_are_found():
    commands = [c for _, block in BLOCKS for c in block if c.where == "README.md"]
    assert sum(name.startswith("README") for name, _ in BLOCKS) >= 15 and len(commands) >= 70
    assert any(c.text == "uv run python tools/ablate.py --short" for c in commands)
    documented = {name for name, _ in BLOCKS if name.startswith("tools-")}
    assert documented == {f"tools-{p.stem}" for p in (REPO / "tools").glob("*.py")}  # every tool shows a command
    tools = {c.tool for c in commands if c.launcher == "python"}
    assert tools >= {"train", "test", "infer", "export", "stream", "ablate", "benchmark", "doctor", "prepare_data"}
    others = [c for c in commands if not c.launcher]
    for c in others:  # a command that is not a tool's is one the test knows not to run
        assert _not_run(c), c.text


def _not_run(cmd: Command) -> str | None:
    return next((why for key, why in NOT_RUN.items() if key in cmd.text), None)


class _Parsed(Exception):
    pass


def test_the_commands_not_run_here_parse_as_their_tools_parse_them(monkeypatch):
    """Flags and their values, or the Hydra overrides, as the tool reads them, of the tool commands
    NOT_RUN keeps from running here (a GPU's, torch.compile's, a camera's)."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    commands = [c for _, block in BLOCKS for c in block if c.tool and _not_run(c)]
    assert len(commands) >= 3  # --compile and /dev/video0 (and --device cuda without a GPU)
    for cmd in commands:
        args = cmd.argv[cmd.argv.index(f"tools/{cmd.tool}.py") + 1 :]
        if cmd.tool in ("train", "test"):
            assert check_overrides(REPO / "configs", cmd.tool, args) is not None, cmd.text
            continue
        spec = importlib.util.spec_from_file_location(f"documented_{cmd.tool}", REPO / "tools" / f"{cmd.tool}.py")
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        monkeypatch.setattr(sys, "argv", [f"tools/{cmd.tool}.py", *args])
        with pytest.raises(_Parsed):  # not SystemExit: a usage error's exit 2
            tool.main()
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", original)


# ----------------------------------------------------------------------------- the user's clone
@pytest.fixture(scope="module")
def clone(tiny_demo, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clone")
    shutil.copytree(REPO / "tools", root / "tools")  # copies: what the tools write beside themselves stays here
    shutil.copy(README, root / "README.md")  # (tools/modules.py --readme rewrites it)
    for name in ("configs", "hubconf.py"):
        (root / name).symlink_to(REPO / name)
    shutil.copytree(tiny_demo, root / "data" / "demo")  # the demo data, tiny (data.root given: never rewritten)
    demo_clips = root / "data" / "demo" / "ssv2" / "20bn-something-something-v2"
    shutil.copy(min(demo_clips.glob("*.webm")), demo_clips / DEMO_VIDEO)  # the README's clip (not in the tiny demo)
    # /data/ssv2 and /data/k400: copies (prepare_data.py writes lists into /data/ssv2/lists)
    ssv2 = shutil.copytree(tiny_demo / "ssv2", root / "datasets" / "ssv2")
    shutil.copy(
        min((ssv2 / "20bn-something-something-v2").glob("*.webm")), ssv2 / "20bn-something-something-v2" / "1.webm"
    )
    val = json.loads((ssv2 / "validation.json").read_text())  # 3 of its 12 val videos: the ResNet-50s test fast
    (ssv2 / "validation.json").write_text(json.dumps(val[:3]))
    k400 = shutil.copytree(tiny_demo / "kinetics", root / "datasets" / "k400")
    val_csv = (k400 / "kinetics-400_val.csv").read_text().splitlines(keepends=True)
    (k400 / "kinetics-400_val.csv").write_text("".join(val_csv[:5]))  # the header and 4 videos (10x3 views each)
    # ~/my_videos: class folders of the demo's Kinetics clips, the first class named "jump"; and videos.csv
    home = root / "home"
    clips = sorted((tiny_demo / "kinetics").glob("*/*/*.mp4"))
    first = min(c.parent.name for c in clips)
    rows = []
    for clip in clips:
        label = "jump" if clip.parent.name == first else clip.parent.name
        folder = home / "my_videos" / label
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{len(list(folder.iterdir())) + 1:03d}.mp4"
        shutil.copy(clip, folder / name)
        rows.append(f"{label}/{name},{label}")
    (home / "my_videos" / "videos.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    # the official checkpoints, by the README's names (random weights, the official layouts)
    n = len(DEMO_CLASSES)
    save_official(
        root / "TSM_somethingv2_RGB_resnet50_shift8_blockres_avg_segment8_e45" / "ckpt.best.pth.tar",
        "tsm",
        num_classes=n,
    )
    save_official(
        root / "TAM_somethingv2_RGB_resnet50_avg_segment8_e50" / "ckpt.best.pth.tar", "tam", seed=1, num_classes=n
    )
    save_official(root / "clip_len_8frame_sample_rate_1_checkpoint.pth.tar", "action", seed=2, num_classes=n)
    save_official(
        root / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth", "tsm", seed=3, num_classes=400
    )
    shutil.copy(root / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth", root / "downloaded.pth")
    # a checkpoint of this toolkit to fine-tune from: the official TSM Kinetics one, converted
    src = root / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth"
    ok = run(["tools/convert_checkpoint.py", "--src", src, "--dst", root / "tsm_kinetics.pth"], cwd=root)
    assert ok.returncode == 0, ok.stderr
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class World:
    root: Path
    ran: dict[tuple, int] = field(default_factory=dict)  # substituted argv -> the line that ran it
    tested: dict[Path, tuple[dict, str]] = field(default_factory=dict)  # metrics.json -> (metrics, predictions)

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.root / "home"), "WANDB_MODE": "offline", "MLFLOW_TRACKING_URI": ""}

    def words(self, cmd: Command) -> list[str]:
        """The command's arguments with the README's names of the user's files replaced by the
        clone's, and its tool's tiny settings appended."""
        places = {
            "/data/ssv2": str(self.root / "datasets" / "ssv2"),
            "/data/k400": str(self.root / "datasets" / "k400"),
            "data/ssv2": str(self.root / "datasets" / "ssv2"),  # (the docstrings' relative roots)
            "data/k400": str(self.root / "datasets" / "k400"),
            "/tmp/demo": str(self.root / "tmp_demo"),
            "VIDEO": f"data/demo/ssv2/20bn-something-something-v2/{DEMO_VIDEO}",
            "CKPT": "runs/demo/tsm/best.pth",
            "TEST_DIR": self.test_dir(),
            "HOST": "127.0.0.1",
        }
        out = []
        for w in cmd.argv:
            if w.startswith("~/"):  # the shell's expansion
                w = str(self.root / "home") + w[1:]
            for key, value in places.items():
                if key in w and value is not None:
                    w = re.sub(rf"(?<![\w/]){re.escape(key)}(?![\w])", value, w)
            out.append(w)
        return out + self.tiny(cmd, out)

    def tiny(self, cmd: Command, words: list[str]) -> list[str]:
        tool = cmd.tool
        extra = list(TINY.get(tool, []))
        if tool in ("train", "doctor") and any(w.startswith("model.pretrained=") and "=null" not in w for w in words):
            extra = [a for a in extra if not a.startswith(TINY_MODEL)]  # the model of a loaded checkpoint
            extra += ["batch_size=2"]
        elif tool in ("train", "doctor") and any(w.startswith("--config-name") for w in words):
            extra = [*extra, "model.pretrained=null"]  # ImageNet weights cannot be downloaded here
        if tool == "test" and any(re.fullmatch(r"checkpoint=\w+_ssv2(\.pth)?", w) for w in words):
            extra += OFFICIAL_VIEWS
        if tool == "benchmark":
            own = ("--arch", "--segments", "--size") if "--checkpoint" in words else ()  # the checkpoint's own
            extra = [a for flag, v in TINY_BENCHMARK.items() if flag not in own for a in (flag, v) if a is not None]
            if "--models" not in words and "--checkpoint" not in words:
                extra += ["--models", "tsm"]  # one of the six models it times by default (and the baseline)
            extra += ["--stream-models", "tsm_online"]  # one of the two streaming models
        if tool == "make_demo_data":
            extra = TINY_DEMO
        if tool == "ablate":
            pre = [] if "--" in words else ["--"]
            extra = [*pre, *TINY_TRAIN, *(["model.pretrained=null"] if "--config-name" in words else [])]
        if tool == "train" and any(w.startswith("optim.accumulate=") for w in words):
            extra += ["batch_size=2"]  # the global batch (x processes x steps) within the tiny split's 24 clips
        if tool in ("train", "ablate") and any("/data/k400" in w for w in cmd.argv):
            extra += ["data.train_transform.flip=swap"]  # the test's Kinetics clips hold the demo's left/right classes
        on_demo = not any(w.startswith(("data.root=", "data=", "--config-name")) for w in words)
        if tool in ("train", "test", "doctor", "ablate") and on_demo and "--collect" not in words:
            extra = [*extra, *DEMO]  # the demo data, tiny: read as it is
        return extra

    def test_dir(self) -> str | None:
        found = sorted(self.root.glob("runs/demo/tsm/test_*/metrics.json"))
        return str(found[-1].parent) if found else None


@pytest.fixture(scope="module")
def world(clone) -> World:
    return World(clone)


def _launch(world: World, cmd: Command, words: list[str]) -> list[Running]:
    env = {**world.env, **cmd.env}
    if cmd.launcher == "python":
        return [start(words, env=env, cwd=world.root)]
    # torchrun: 8 processes per node -> one (gloo) per node, two nodes -> both here; test.py's sharded
    # evaluation -> 2 processes, checked against one (_tested). (Training in 2 processes, the ranks kept
    # identical: test_train.py.) Each process is a fresh interpreter: ~5 s of imports.
    args = words[:]
    nodes = int(args[args.index("--nnodes") + 1]) if "--nnodes" in args else 1
    args[args.index("--nproc_per_node") + 1] = "2" if cmd.tool == "test" else "1"
    port = str(_free_port())
    launchers = []
    for rank in range(nodes):
        a = args[:]
        if nodes > 1:
            a[a.index("--node_rank") + 1] = str(rank)
        launchers.append(start(["-m", "torch.distributed.run", "--master_port", port, *a], env=env, cwd=world.root))
        if nodes == 1:
            break
    return launchers


@pytest.mark.parametrize("name", [name for name, _ in BLOCKS])
def test_a_documented_block_runs_as_written(name, world):
    """README-LINE: the README's block at that line; tools-NAME: the commands of tools/NAME.py's
    docstring (after the README's, whose files they use)."""
    block = dict(BLOCKS)[name]
    missing = []
    for cmd in block:
        if _not_run(cmd):
            continue
        extra = next((x for x in EXTRAS if re.search(rf"loggers=\[[^\]]*\b{x}\b", cmd.text)), None)
        if extra and importlib.util.find_spec(extra) is None:
            missing.append(f"{cmd.where}:{cmd.line} needs the {extra} extra (uv sync --extra {extra})")
            continue
        words = world.words(cmd)
        key = (cmd.launcher, *words, *sorted(cmd.env.items()))
        if key in world.ran:
            continue  # the same command ran before (README line world.ran[key])
        world.ran[key] = cmd.line
        t0 = time.monotonic()
        results = [r.wait(600) for r in _launch(world, cmd, words)]
        print(f"{cmd.where}:{cmd.line}: {time.monotonic() - t0:.1f} s  {cmd.text}")  # shown with -s or on a failure
        for res in results:
            # torchrun's agents may log a traceback of their own at the exit barrier of a two-node job
            # (node 1's agent finds the store of node 0's gone): not this toolkit's
            ours = "\n".join(line for line in res.stderr.splitlines() if "torch/distributed/elastic/" not in line)
            assert res.returncode == 0 and "Traceback" not in ours, (
                f"{cmd.where}:{cmd.line}: {cmd.text}\n(run as {' '.join(words)})\nexit {res.returncode}\n"
                f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
            )
        if cmd.stdout_to:  # `> FILE`, as the shell does
            (world.root / cmd.stdout_to).write_text(results[0].stdout)
        check = next((f for pattern, f in CHECKS.items() if re.search(pattern, cmd.text)), None)
        if check is not None:
            check(world, cmd, results[0])
    if missing:  # the block's other commands ran
        pytest.skip("; ".join(missing))


# ----------------------------------------------------------------------------- what the README promises
def _quick_start(world: World, cmd: Command, res) -> None:
    """Off a terminal: no progress bar redraws, the epoch lines, and the result last, as in train.log."""
    out = res.stdout + res.stderr
    lines = out.strip().splitlines()
    assert "\r" not in out and lines[-1].startswith("val top-1 ") and "checkpoints in runs/demo/tsm" in lines[-1]
    log = (world.root / "runs" / "demo" / "tsm" / "train.log").read_text().strip().splitlines()
    assert log[-1].endswith(lines[-1]) and any("epoch 1/1: " in line for line in log)


def _converted(world: World, cmd: Command, res) -> None:
    """An official checkpoint: its model and T read from the weights and its folder name, the names
    of the label file's classes stored."""
    source = re.search(r"--dst (tsm|tam|action)_ssv2", cmd.text).group(1)
    assert f"wrote {source}_ssv2.pth: {source} resnet50, 12 classes, T=8, 12 class names" in res.stdout


def _tested(world: World, cmd: Command, res) -> None:
    """Every video of the split evaluated, one prediction each, in the views the README says."""
    metrics_file = max(world.root.glob("**/metrics.json"), key=lambda p: p.stat().st_mtime)
    metrics = json.loads(metrics_file.read_text())
    assert metrics["videos_evaluated"] == metrics["videos"] > 0, metrics_file
    predictions = (metrics_file.parent / "predictions.csv").read_text().strip().splitlines()
    assert len(predictions) == 1 + metrics["videos"]
    before = world.tested.get(metrics_file)
    world.tested[metrics_file] = (metrics, predictions)
    if cmd.launcher == "torchrun":  # sharded over 2 processes: the metrics and predictions of one process
        assert before is not None, "the same test in one process ran before (tools/test.py's docstring)"
        for key in ("videos", "top1", "top5", "mean_class_accuracy", "per_class_accuracy", "top1_order_dependent"):
            assert metrics[key] == before[0][key], key
        assert predictions == before[1]
    views = (metrics["num_clips"], metrics["num_crops"])
    if "protocol=tam_uniform2" in cmd.text:  # TAM's 256 px crops, said to differ from the training's
        assert views == (2, 3) and metrics["protocol"] == "tam_uniform2"
        assert "the test views are 256 px crops, the model was trained on 48 px crops" in res.stdout + res.stderr
    elif "num_clips=1 data.test.num_crops=1" in cmd.text or "protocol=tsm_efficient" in cmd.text:
        assert views == (1, 1)
    elif "protocol=tsm_dense" in cmd.text:
        assert views == (10, 3)
    elif "checkpoint=tsm_ssv2.pth" in cmd.text:  # the official TSM test views, recorded when converted
        assert views == (2, 3)
    if "split=test" in cmd.text:  # no labels: a submission file instead of accuracies
        assert (metrics_file.parent / "submission.csv").is_file()
    elif "data=folders" not in cmd.text:
        assert set(metrics["per_class_accuracy"]) <= set(DEMO_CLASSES)


def _inferred(world: World, cmd: Command, res) -> None:
    if "--json" in cmd.text:
        result = json.loads(res.stdout)
        assert len(result["top"]) == 5 and all(t["class"] in DEMO_CLASSES for t in result["top"])
        if "_ssv2.pth" in cmd.text:
            assert len(result["frames"]) == 8  # T of the official checkpoint
    else:
        assert len(re.findall(r"^\s+[01]\.\d{3}  \S", res.stdout, re.M)) == 5, res.stdout  # probability, class
    explain = re.search(r"--explain (\S+)", cmd.text)
    if explain:
        assert (world.root / explain.group(1)).stat().st_size > 5000


def _fine_tuned(world: World, cmd: Command, res) -> None:
    """From a converted official checkpoint of the same classes: every tensor loaded."""
    ckpt = re.search(r"model.pretrained=(\S+)", cmd.text).group(1)
    out = res.stdout + res.stderr
    assert f"{ckpt}: loaded" in out and "not initialised (0): none" in out, out[-2000:]


def _json_report(world: World, cmd: Command, res) -> None:
    report = json.loads((world.root / cmd.stdout_to).read_text())
    assert isinstance(report, dict) and report, cmd.text


def _readme_tables(world: World, cmd: Command, res) -> None:
    """Rewritten in the clone's copy: the tables the README already holds."""
    assert (world.root / "README.md").read_text() == README.read_text()


def _demo_kept(world: World, cmd: Command, res) -> None:
    """After train.py wrote the demo: a second writer finds it and writes nothing."""
    assert "already holds the demo dataset with these settings: nothing written" in res.stdout


CHECKS = {
    r"tools/make_demo_data.py$": _demo_kept,
    r"--json - > ": _json_report,
    r"tools/modules.py --readme$": _readme_tables,
    r"^uv run python tools/train.py$": _quick_start,
    r"tools/convert_checkpoint.py .*--classes": _converted,
    r"tools/test.py": _tested,
    r"tools/infer.py": _inferred,
    r"model.pretrained=\w+_ssv2.pth": _fine_tuned,
}
