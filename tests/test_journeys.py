"""User journeys across the tools, run as a user types the commands (each in a process of its
own, see cli.py), on tiny data made here:

- an official TDN / TAda2D checkpoint -> convert_checkpoint.py --classes -> test.py -> export.py ->
  infer.py in PyTorch and onnxruntime (TSM / TAM / ACTION-Net: the README's Official checkpoints
  block, run by test_readme_run.py);
- a converted checkpoint without class names;
- prepare_data.py -> train.py -> test.py on Kinetics-, SSv1- and Jester-layout datasets;
- every tool answers a missing file, a random-bytes checkpoint and an unknown key or flag with
  one line and exit code 2, never a traceback; and ``device=cuda`` / ``--device cuda`` where no
  GPU is usable (hidden by ``CUDA_VISIBLE_DEVICES`` on a machine that has one).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli import TINY_RUN, run
from official import NEW_SOURCES, SOURCES, save_official, save_official_tada2d, save_official_tdn
from videos import ssv2_as_frame_folders

from videoattn.data.synthetic import DEMO_CLASSES

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SMALL = ["workers=0", "data.eval_transform.size=48", "data.eval_transform.resize=56"]
TINY = TINY_RUN


THREADS = {"OMP_NUM_THREADS": "2"}  # the ResNet-50 commands: both cores (the other xdist worker mostly waits)


def ok(out):
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


# ----------------------------------------------------------------------------- official checkpoints
@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Official-layout checkpoints (random weights, classifier resized to the demo's 12 classes),
    where the official scripts save them: <store_name>/ckpt.best.pth.tar, T only in the folder."""
    root = tmp_path_factory.mktemp("official")
    return {
        s: save_official(
            root / f"{s.upper()}_something_RGB_resnet50_shift8_blockres_avg_segment8_e45" / "ckpt.best.pth.tar",
            s,
            seed=SOURCES.index(s),
            num_classes=len(DEMO_CLASSES),
        )
        for s in SOURCES
    }


@pytest.fixture(scope="module")
def official_new(tmp_path_factory):
    """Whole random TDN / TAda2D checkpoints (the demo's 12 classes) in their official containers
    and file names: TDN's best.pth.tar (T only in the folder), TAda2D's .pyth (T and the dataset in
    its cfg)."""
    root = tmp_path_factory.mktemp("official_new")
    return {
        "tdn": save_official_tdn(root / "TDN_something_segment8" / "best.pth.tar", num_classes=len(DEMO_CLASSES)),
        "tada2d": save_official_tada2d(
            root / "tada2d_ssv2" / "checkpoint_epoch_00064.pyth", seed=1, num_classes=len(DEMO_CLASSES)
        ),
    }


# the official test views each converted checkpoint records: sampling, crops (clips, crops, crop size)
NEW_VIEWS = {
    "tdn": ({"mode": "segment", "rules": "tdn", "frames_per_segment": 5}, (1, 1), 224),
    "tada2d": ({"mode": "segment", "rules": "tada"}, (2, 3), 256),
}
ONE_VIEW = ["data.test.num_clips=1", "data.test.num_crops=1", "data.test.twice_sample=false"]


@pytest.mark.parametrize("source", NEW_SOURCES)
def test_an_official_tdn_or_tada2d_checkpoint_through_every_tool(source, official_new, tiny_demo, tmp_path):
    """Converted (the source read from the weights, the test views recorded), then tools/test.py on
    the demo at 48 px and tools/infer.py at the checkpoint's crop."""
    ssv2 = tiny_demo / "ssv2"
    ckpt = tmp_path / f"{source}.pth"
    argv = ["tools/convert_checkpoint.py", "--src", official_new[source], "--dst", ckpt, "--classes"]
    out = ok(run([*argv, ssv2 / "labels.json"]))
    arch = {"tdn": "resnet50", "tada2d": "resnet50_tada"}[source]
    assert f"wrote {ckpt}: {source} {arch}, 12 classes, T=8, 12 class names" in out.stdout
    converted = torch.load(ckpt, map_location="cpu", weights_only=True)
    sampling, views, crop = NEW_VIEWS[source]
    assert {k: converted["data"]["sampling"][k] for k in sampling} == sampling
    assert (converted["data"]["test"]["num_clips"], converted["data"]["test"]["num_crops"]) == views
    assert converted["data"]["eval_transform"]["size"] == crop and converted["origin"]["source"] == source
    if source == "tada2d":
        assert converted["data"]["eval_transform"]["mean"] == [0.45] * 3

    test_dir = tmp_path / "test"
    cmd = ["tools/test.py", f"checkpoint={ckpt}", "data=ssv2", f"data.root={ssv2}", "split=val", f"out_dir={test_dir}"]
    ok(run([*cmd, *SMALL, *ONE_VIEW], env=THREADS))
    metrics = json.loads((test_dir / "metrics.json").read_text())
    assert metrics["videos"] == 12 and (metrics["num_clips"], metrics["num_crops"]) == (1, 1)

    video = sorted((ssv2 / "20bn-something-something-v2").glob("*.webm"))[0]  # ONNX: test_export's registry parity
    res = json.loads(
        ok(run(["tools/infer.py", video, "--checkpoint", ckpt, "--json", "--device", "cpu"], env=THREADS)).stdout
    )
    assert len(res["frames"]) == 8 * sampling.get("frames_per_segment", 1)  # T snippets of F frames
    assert len(res["top"]) == 5 and all(t["class"] in DEMO_CLASSES for t in res["top"])


DEMO_CLASSES_SORTED = sorted(DEMO_CLASSES)


def test_a_converted_checkpoint_without_class_names_still_works(official, tiny_demo, tmp_path):
    ckpt = tmp_path / "tsm.pth"
    out = ok(run(["tools/convert_checkpoint.py", "--src", official["tsm"], "--dst", ckpt]))
    assert "no class names (add them with --classes LABEL_FILE)" in out.stdout
    video = sorted((tiny_demo / "ssv2" / "20bn-something-something-v2").glob("*.webm"))[0]
    out = ok(run(["tools/infer.py", video, "--checkpoint", ckpt, "--json"]))
    assert all(t["class"] is None for t in json.loads(out.stdout)["top"])
    assert f"--src {ckpt} --dst {tmp_path / 'tsm_named.pth'} --classes LABEL_FILE" in out.stderr  # to a new file
    out = ok(
        run(
            [
                "tools/test.py",
                f"checkpoint={ckpt}",
                f"data.root={tiny_demo / 'ssv2'}",
                "data.demo=false",
                "split=val",
                *SMALL,
            ]
        )
    )
    assert "carries no class names" in out.stdout
    # named by checkpoint, data and its root, split, views: those of TSM's Something-Something v1 test command
    assert len(list(tmp_path.glob("test_tsm_demo_ssv2-*_val_2x3/metrics.json"))) == 1
    # classes of another dataset: the first difference named
    other = tmp_path / "other.pth"
    (tmp_path / "classes.txt").write_text("".join(f"class {i:02d}\n" for i in range(12)))
    ok(run(["tools/convert_checkpoint.py", "--src", ckpt, "--dst", other, "--classes", tmp_path / "classes.txt"]))
    out = run(
        [
            "tools/test.py",
            f"checkpoint={other}",
            f"data.root={tiny_demo / 'ssv2'}",
            "data.demo=false",
            "split=val",
            *SMALL,
        ]
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (
        "the first difference at index 0: 'class 00' in the checkpoint, 'Moving something down' in the dataset"
        in out.stderr
    )


# ----------------------------------------------------------------------------- prepared datasets
@pytest.fixture(scope="module")
def layouts(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {
        "kinetics": tiny_demo / "kinetics",
        "ssv1": ssv2_as_frame_folders(tiny_demo / "ssv2", root / "ssv1", layout="ssv1"),
        "jester": ssv2_as_frame_folders(tiny_demo / "ssv2", root / "jester", layout="jester"),
    }


@pytest.mark.parametrize("layout", ["kinetics", "ssv1", "jester"])
def test_prepare_train_test_on_a_prepared_dataset(layout, layouts, tmp_path):
    root, lists = layouts[layout], tmp_path / "lists"
    out = ok(run(["tools/prepare_data.py", "--source", layout, "--root", root, "--out", lists, "--workers", "1"]))
    assert f"data.source=list data.root={lists}" in out.stdout
    summary = json.loads((lists / "summary.json").read_text())
    assert summary["splits"]["train"]["videos"] == 24 and summary["splits"]["val"]["videos"] == 12
    assert (lists / "classes.txt").read_text().splitlines() == DEMO_CLASSES_SORTED
    # the demo's classes include left/right pairs: kinetics' flip "on" would refuse them
    extra = ["data.train_transform.flip=auto", "data.sampling.stride=2"] if layout == "kinetics" else []
    run_dir = tmp_path / "run"
    out = ok(
        run(
            [
                "tools/train.py",
                f"data={layout}",
                "data.source=list",
                f"data.root={lists}",
                f"run_dir={run_dir}",
                "optim.epochs=1",
                *TINY,
                *extra,
            ]
        )
    )
    assert "12 classes, 24 train / 12 val clips" in out.stdout + out.stderr
    ok(
        run(
            [
                "tools/test.py",
                f"checkpoint={run_dir / 'best.pth'}",
                f"data={layout}",
                "data.source=list",
                f"data.root={lists}",
                "split=val",
                "data.test.num_clips=2",
                "data.test.num_crops=1",
                f"out_dir={tmp_path / 'test'}",
                *SMALL,
                *extra[1:],
            ]
        )
    )
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["videos"] == 12 and metrics["data"] == layout


# ----------------------------------------------------------------------------- mistakes
@pytest.fixture(scope="module")
def junk(tmp_path_factory):
    """A random-bytes "checkpoint", a random-bytes annotation folder, a missing path; and a good
    checkpoint (a tiny TSN, streamable), for the mistakes found after a checkpoint loads."""
    from videoattn.checkpoint import make_checkpoint, save_checkpoint
    from videoattn.models import build_model

    root = tmp_path_factory.mktemp("junk")
    tiny = {"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "pretrained": None}
    model = build_model({"num_classes": len(DEMO_CLASSES), "num_segments": 2, **tiny})
    data = {"eval_transform": {"size": 32, "resize": 40}, "sampling": {}}
    save_checkpoint(
        make_checkpoint(model, classes=DEMO_CLASSES_SORTED, data=data, origin={"kind": "training"}), root / "tiny.pth"
    )
    noise = (
        torch.randint(0, 256, (8192,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()
    )
    (root / "random.pth").write_bytes(noise)
    (root / "ssv2").mkdir()
    (root / "ssv2" / "labels.json").write_bytes(noise)
    (root / "tiny_link.onnx").symlink_to(root / "tiny.pth")  # an output name that is the checkpoint
    from PIL import Image

    for cls, n in (("jump", 2), ("wave", 1)):  # data=folders: "wave" has one video, too few to split
        for i in range(n):
            (root / "tiny_class" / cls / f"clip{i}").mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / "tiny_class" / cls / f"clip{i}" / "00001.jpg")
    (root / "tiny_class" / "list.csv").write_text("path,label\njump/clip0,jump\njump/clip1\n")  # line 3: no label
    return {
        "random": root / "random.pth",
        "missing": root / "missing.pth",
        "junk_dataset": root / "ssv2",
        "missing_dir": root / "missing_dir",
        "checkpoint": root / "tiny.pth",
        "checkpoint_link": root / "tiny_link.onnx",
        "tiny_class": root / "tiny_class",
    }


# the case names that start so ask for a GPU: run with every GPU hidden, expected to say device=cuda
NO_GPU = "device cuda without a GPU"

# tool -> (case, argv) with {random} / {missing} / {junk_dataset} / {missing_dir} / {ssv2} / {video} /
# {checkpoint} / {checkpoint_link} filled in
MISTAKES = {
    "train.py": [
        ("missing file", ["model.pretrained={missing}"]),
        ("random checkpoint", ["model.pretrained={random}"]),
        ("random resume", ["resume={random}"]),
        ("unknown key", ["model.dropuot=0.1"]),
        ("unknown config", ["model=tsmm"]),
        ("a site the backbone lacks", ["model=tada2d", "data.root={ssv2}", "data.demo=false"]),
        ("missing dataset", ["data.root={missing_dir}", "data.demo=false"]),
        ("own videos: no root", ["--config-name", "custom"]),
        ("own videos: missing root", ["--config-name", "custom", "data.root={missing_dir}"]),
        ("own videos: tiny class", ["--config-name", "custom", "data.root={tiny_class}", "run_dir={missing_dir}/t"]),
        (
            "own videos: bad CSV line",
            [
                "--config-name",
                "custom",
                "data.root={tiny_class}",
                "data.annotations.csv=list.csv",
                "run_dir={missing_dir}/c",
            ],
        ),
        ("resume not a path", ["resume=true"]),
        ("zero eval_every", ["eval_every=0"]),
        ("not an integer", ["optim.epochs=abc"]),
        ("zero num_segments", ["num_segments=0"]),
        (NO_GPU, ["device=cuda"]),
        ("unknown device", ["device=gpu"]),
        (
            "eval crop larger than the frames",  # found before the run starts, not taken for bad videos
            [
                "data.root={ssv2}",
                "data.eval_transform.resize=null",
                "data.eval_transform.size=400",
                "workers=1",
                "optim.epochs=1",
                "max_steps_per_epoch=1",
                "run_dir={missing_dir}/crop",
            ],
        ),
        (
            "unknown order_dependent class",  # videoattn.data.build.order_dependent_indices
            [
                "data.root={ssv2}",
                "data.order_dependent=[Moving something upp]",
                "workers=0",
                "optim.epochs=1",
                "max_steps_per_epoch=1",
                "run_dir={missing_dir}/order",
            ],
        ),
    ],
    "test.py": [
        ("missing file", ["checkpoint={missing}"]),
        ("random checkpoint", ["checkpoint={random}"]),
        ("unknown key", ["checkpoint={random}", "data.tesst.num_clips=2"]),
        ("required key", []),
        (NO_GPU, ["checkpoint={checkpoint}", "device=cuda"]),
        ("out_dir is the checkpoint", ["checkpoint={checkpoint}", "out_dir={checkpoint}"]),
    ],
    "infer.py": [
        ("missing file", ["{missing_dir}.webm", "--checkpoint", "{random}"]),
        ("random checkpoint", ["{video}", "--checkpoint", "{random}"]),
        ("unknown flag", ["{video}", "--checkpoint", "{random}", "--topkk", "3"]),
        (NO_GPU, ["{video}", "--checkpoint", "{checkpoint}", "--device", "cuda"]),
        (f"{NO_GPU}, onnxruntime", ["{video}", "--onnx", "{random}", "--device", "cuda"]),
        ("unknown device", ["{video}", "--checkpoint", "{checkpoint}", "--device", "gpu"]),
        ("zero topk", ["{video}", "--checkpoint", "{checkpoint}", "--topk", "0"]),
        ("negative topk", ["{video}", "--checkpoint", "{checkpoint}", "--topk", "-1"]),
        ("negative threads", ["{video}", "--checkpoint", "{checkpoint}", "--threads", "-2"]),
        ("explain not an image", ["{video}", "--checkpoint", "{checkpoint}", "--explain", "{missing_dir}/x.webm"]),
    ],
    "export.py": [
        ("missing file", ["--checkpoint", "{missing}", "--out", "{missing_dir}/x.onnx"]),
        ("random checkpoint", ["--checkpoint", "{random}", "--out", "{missing_dir}/x.onnx"]),
        ("unknown flag", ["--checkpoint", "{random}", "--out", "x.onnx", "--opsett", "20"]),
        (NO_GPU, ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--device", "cuda"]),
        ("unknown device", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--device", "gpu"]),
        ("out is the checkpoint", ["--checkpoint", "{checkpoint}", "--out", "{checkpoint}"]),
        ("out links to the checkpoint", ["--checkpoint", "{checkpoint}", "--out", "{checkpoint_link}"]),
        ("out not .onnx", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.pth"]),
        ("opset too low", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--opset", "5"]),
        ("opset too high", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--opset", "99"]),
        ("zero size", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--size", "0"]),
        ("size below 32", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--size", "7"]),
        ("size above the resize", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--size", "64"]),
        ("zero tolerance", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--tolerance", "0"]),
        ("nan tolerance", ["--checkpoint", "{checkpoint}", "--out", "{missing_dir}/x.onnx", "--tolerance", "nan"]),
    ],
    "stream.py": [
        ("missing file", ["{missing_dir}.webm", "--checkpoint", "{random}"]),
        ("random checkpoint", ["{video}", "--checkpoint", "{random}"]),
        ("missing onnx", ["{video}", "--onnx", "{missing}"]),
        ("unknown flag", ["{video}", "--checkpoint", "{random}", "--averages", "3"]),
        ("bad option", ["/dev/video0", "--format", "v4l2", "--option", "video_size", "--checkpoint", "{random}"]),
        ("zero stride", ["{video}", "--checkpoint", "{random}", "--stride", "0"]),
        (NO_GPU, ["{video}", "--checkpoint", "{checkpoint}", "--device", "cuda"]),
        (f"{NO_GPU}, onnxruntime", ["{video}", "--onnx", "{random}", "--device", "cuda"]),
        ("unknown device", ["{video}", "--checkpoint", "{checkpoint}", "--device", "gpu"]),
    ],
    "convert_checkpoint.py": [
        ("missing file", ["--src", "{missing}", "--dst", "{missing_dir}/x.pth"]),
        ("random checkpoint", ["--src", "{random}", "--dst", "{missing_dir}/x.pth"]),
        ("unknown flag", ["--src", "{random}", "--dst", "x.pth", "--clases", "x"]),
        ("dst is src", ["--src", "{checkpoint}", "--dst", "{checkpoint}"]),
        ("dst links to src", ["--src", "{checkpoint}", "--dst", "{checkpoint_link}"]),
        (
            "model folder named as a file",
            ["--src", "{checkpoint}", "--dst", "{missing_dir}/x.pth", "--format", "safetensors"],
        ),
    ],
    "benchmark.py": [
        ("missing file", ["--checkpoint", "{missing}"]),
        ("random checkpoint", ["--checkpoint", "{random}"]),
        ("unknown flag", ["--modelz", "tsn"]),
        (NO_GPU, ["--device", "cuda", "--models", "tsn"]),
        ("unknown device", ["--device", "gpu"]),
        ("json is the checkpoint", ["--checkpoint", "{checkpoint}", "--json", "{checkpoint}"]),
        ("index without workers", ["--sections", "index", "--index-workers", "0"]),
    ],
    "prepare_data.py": [
        ("missing file", ["--source", "ssv2", "--root", "{missing_dir}"]),
        ("random annotations", ["--source", "ssv2", "--root", "{junk_dataset}"]),
        ("unknown flag", ["--source", "ssv2", "--root", "{junk_dataset}", "--workerz", "2"]),
        (
            "bad prepare setting",
            ["--source", "ssv2", "--root", "{junk_dataset}", "--prepare", "frames", "--jpeg-quality", "0"],
        ),
        ("negative workers", ["--source", "ssv2", "--root", "{ssv2}", "--workers", "-1"]),
        ("out is a file", ["--source", "ssv2", "--root", "{ssv2}", "--out", "{random}"]),
        ("out under a file", ["--source", "ssv2", "--root", "{ssv2}", "--out", "{random}/lists"]),
        ("overwrite without prepare", ["--source", "ssv2", "--root", "{ssv2}", "--overwrite"]),
    ],
    "ablate.py": [("missing file", ["--collect", "{missing_dir}"]), ("unknown flag", ["--colect", "{missing_dir}"])],
    "make_demo_data.py": [
        ("unknown flag", ["--roots", "{missing_dir}"]),
        ("not a demo folder", ["--root", "{junk_dataset}", "--overwrite"]),
    ],
    "modules.py": [("unknown config", ["--models", "tsmm"]), ("unknown flag", ["--chanels", "3"])],
    "doctor.py": [(NO_GPU, ["device=cuda"])],  # its other mistakes, with their messages: tests/test_doctor.py
}
CASES = [(tool, case, argv) for tool, cases in MISTAKES.items() for case, argv in cases]


def test_every_tool_is_checked_for_mistakes():
    assert sorted(MISTAKES) == sorted(p.name for p in TOOLS.glob("*.py"))


@pytest.mark.parametrize("tool, case, argv", CASES, ids=[f"{t}-{c}" for t, c, _ in CASES])
def test_a_mistake_gets_one_line_and_exit_code_2(tool, case, argv, junk, tiny_demo):
    video = sorted((tiny_demo / "ssv2" / "20bn-something-something-v2").glob("*.webm"))[0]
    args = [a.format(**junk, video=video, ssv2=tiny_demo / "ssv2") for a in argv]
    no_gpu = case.startswith(NO_GPU)
    out = run([f"tools/{tool}", *args], env={"CUDA_VISIBLE_DEVICES": ""} if no_gpu else None)
    text = (out.stdout + out.stderr).strip()
    assert out.returncode == 2, f"{tool} {args}: exit {out.returncode}\n{text[-3000:]}"
    assert "Traceback" not in text and len(text.splitlines()) == 1 and text.startswith("error: "), text
    if no_gpu:
        assert text.startswith("error: device=cuda: "), text


def test_debug_shows_the_traceback_of_a_user_error(junk):
    for cmd, env in (
        (["tools/test.py", f"checkpoint={junk['random']}"], {"HYDRA_FULL_ERROR": "1"}),
        (["tools/convert_checkpoint.py", "--src", junk["random"], "--dst", "x.pth", "--debug"], {}),
    ):
        out = run(cmd, env=env)
        assert out.returncode != 0 and "Traceback" in out.stderr and "CheckpointError" in out.stderr
