"""Every command block of the README, run as written, top to bottom, in a user's clone.

The clone is a folder of its own (``tools/`` and ``configs/`` linked from this repository) where
the files the README assumes are the test's: the demo data under ``data/demo`` (the tiny demo),
``/data/ssv2`` and ``/data/k400`` (the tiny demo's Something-Something v2 and Kinetics copies),
``~/my_videos`` (class folders, ``HOME`` set to the clone's), the official checkpoints by the names
the README gives them (random weights in the official layouts, ``tests/official.py``), ``VIDEO``
(a demo clip) and ``CKPT`` (the Quick start's checkpoint). Each command runs in its own process
(``tests/cli.py``), in the README's order, so a later block reads what an earlier one wrote, as
for a user; one that the README or an earlier block already ran is not run twice.

Tiny: the README's runs are minutes to days long, so each tool's command gets the tiny settings
of ``TINY`` appended (one epoch of one step on a small ResNet, small crops, few timing rounds);
they override what the command sets, never what it names (checkpoints, data, models, modes).
``torchrun --nproc_per_node 8`` runs 2 CPU processes; ``--nnodes 2`` runs both nodes here.
Not run, each for the reason ``NOT_RUN`` gives: the install commands (the lock's test checks
them), this suite itself, and a camera.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli import TINY_RUN, Running, run, start
from official import save_official

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
}
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
    line: int  # in README.md
    text: str  # as written
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)  # after the launcher: tools/x.py ARGS
    launcher: str = ""  # "python" | "torchrun" | "" (not a tool)

    @property
    def tool(self) -> str:
        return next((Path(w).stem for w in self.argv if re.fullmatch(r"tools/\w+\.py", w)), "")


def readme_blocks() -> list[tuple[int, list[Command]]]:
    """The README's ``bash`` blocks: (line, commands), a command per line (continuations joined,
    comments and ``&&`` split off)."""
    text = README.read_text()
    blocks = []
    for m in re.finditer(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        first = text[: m.start()].count("\n") + 2
        commands, pending = [], ""
        for i, line in enumerate(m.group(1).splitlines()):
            if line.endswith("\\"):  # continued on the next line
                pending += line[:-1]
                continue
            line = re.split(r"(?:^|\s)#", pending + line)[0].strip()
            pending = ""
            for part in filter(None, (p.strip() for p in line.split("&&"))):
                commands.append(_command(first + i, part))
        blocks.append((first, commands))
    return blocks


def _command(line: int, text: str) -> Command:
    words = shlex.split(text)
    cmd = Command(line, text)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        cmd.env[key] = value
    if words[:2] == ["uv", "run"]:
        words = words[2:]
        while words and words[0].startswith("--"):  # uv's own flags (--no-sync)
            words.pop(0)
    if words and words[0] == "python" and len(words) > 1 and words[1].startswith("tools/"):
        cmd.launcher, cmd.argv = "python", words[1:]
    elif words and words[0] == "torchrun":
        cmd.launcher, cmd.argv = "torchrun", words[1:]
    return cmd


BLOCKS = readme_blocks()


def test_the_readme_blocks_are_found():
    commands = [c for _, block in BLOCKS for c in block]
    assert len(BLOCKS) >= 15 and len(commands) >= 70
    tools = {c.tool for c in commands if c.launcher == "python"}
    assert tools >= {"train", "test", "infer", "export", "stream", "ablate", "benchmark", "doctor", "prepare_data"}
    others = [c for c in commands if not c.launcher]
    for c in others:  # a command that is not a tool's is one the test knows not to run
        assert _not_run(c), c.text


def _not_run(cmd: Command) -> str | None:
    return next((why for key, why in NOT_RUN.items() if key in cmd.text), None)


# ----------------------------------------------------------------------------- the user's clone
@pytest.fixture(scope="module")
def clone(tiny_demo, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clone")
    for name in ("tools", "configs", "hubconf.py"):
        (root / name).symlink_to(REPO / name)
    shutil.copytree(tiny_demo, root / "data" / "demo")  # the demo data, tiny (data.root given: never rewritten)
    demo_clips = root / "data" / "demo" / "ssv2" / "20bn-something-something-v2"
    shutil.copy(
        min(demo_clips.glob("*.webm")), demo_clips / DEMO_VIDEO
    )  # the clip the README names (not in the tiny demo)
    # /data/ssv2 and /data/k400: copies (prepare_data.py writes lists into /data/ssv2/lists)
    ssv2 = shutil.copytree(tiny_demo / "ssv2", root / "datasets" / "ssv2")
    shutil.copy(
        min((ssv2 / "20bn-something-something-v2").glob("*.webm")), ssv2 / "20bn-something-something-v2" / "1.webm"
    )
    shutil.copytree(tiny_demo / "kinetics", root / "datasets" / "k400")
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
    ran: dict[tuple, int] = field(default_factory=dict)  # substituted argv -> README line that ran it

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.root / "home"), "WANDB_MODE": "offline", "MLFLOW_TRACKING_URI": ""}

    def words(self, cmd: Command) -> list[str]:
        """The command's arguments with the README's names of the user's files replaced by the
        clone's, and its tool's tiny settings appended."""
        places = {
            "/data/ssv2": str(self.root / "datasets" / "ssv2"),
            "/data/k400": str(self.root / "datasets" / "k400"),
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
                extra += ["--models", "tsn,tsm"]  # two of the six models it times by default
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
    # torchrun: 8 processes per node -> 2 CPU processes (gloo); two nodes -> both here, one process each
    args = words[:]
    nodes = int(args[args.index("--nnodes") + 1]) if "--nnodes" in args else 1
    nproc = "1" if nodes > 1 else "2"
    args[args.index("--nproc_per_node") + 1] = nproc
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


@pytest.mark.parametrize("line", [line for line, _ in BLOCKS], ids=[f"README-{line}" for line, _ in BLOCKS])
def test_a_readme_block_runs_as_written(line, world, capsys):
    block = dict(BLOCKS)[line]
    missing = []
    for cmd in block:
        if _not_run(cmd):
            continue
        extra = next((x for x in EXTRAS if re.search(rf"loggers=\[[^\]]*\b{x}\b", cmd.text)), None)
        if extra and importlib.util.find_spec(extra) is None:
            missing.append(f"README.md:{cmd.line} needs the {extra} extra (uv sync --extra {extra})")
            continue
        words = world.words(cmd)
        key = (cmd.launcher, *words, *sorted(cmd.env.items()))
        if key in world.ran:
            continue  # the same command ran before (README line world.ran[key])
        world.ran[key] = cmd.line
        results = [r.wait(600) for r in _launch(world, cmd, words)]
        for res in results:
            assert res.returncode == 0 and "Traceback" not in res.stderr, (
                f"README.md:{cmd.line}: {cmd.text}\n(run as {' '.join(words)})\nexit {res.returncode}\n"
                f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
            )
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
        assert sorted(metrics["per_class_accuracy"]) == sorted(DEMO_CLASSES)


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


CHECKS = {
    r"^uv run python tools/train.py$": _quick_start,
    r"tools/convert_checkpoint.py .*--classes": _converted,
    r"tools/test.py": _tested,
    r"tools/infer.py": _inferred,
    r"model.pretrained=\w+_ssv2.pth": _fine_tuned,
}
