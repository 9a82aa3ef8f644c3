"""Annotation parsers: official SSv1/SSv2/Kinetics-400 formats and TSM lists, in tmp folders.

Videos are empty placeholder files: the parsers only check that they exist.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from videoattn.data.annotations import (
    AnnotationError,
    Annotations,
    flip_label_map,
    has_mirrored,
    load_annotations,
    load_jester,
    load_kinetics,
    load_list,
    load_ssv1,
    load_ssv2,
    read_class_names,
    swap_left_right,
    unpaired_mirrored_classes,
)
from videoattn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------
# Helpers writing the official formats
# ------------------------------------------------------------------------------------------

# labels.json indices deliberately differ from the sorted order.
SSV2_LABELS = {
    "Pushing something from left to right": "93",
    "Pushing something from right to left": "94",
    "Holding something next to something": "30",
    "Approaching something with your camera": "0",
}
SSV2_SORTED = sorted(SSV2_LABELS)
TEMPLATES = {
    "push_lr": "Pushing [something] from left to right",
    "push_rl": "Pushing [something] from right to left",
    "hold": "Holding [something] next to [something]",
    "approach": "Approaching [something] with your camera",
}


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def entry(video_id: str, key: str) -> dict:
    return {
        "id": video_id,
        "label": "some instantiated label",
        "template": TEMPLATES[key],
        "placeholders": ["potato", "bottle"],
    }


def ssv2_dataset(
    root: Path,
    entries: list,
    *,
    split_name: str = "train.json",
    labels_name: str = "labels.json",
    video_sub: str = "20bn-something-something-v2",
    touch_videos: bool = True,
) -> Path:
    write(root / labels_name, json.dumps(SSV2_LABELS))
    write(root / split_name, json.dumps(entries))
    if touch_videos:
        for item in entries:
            if isinstance(item, dict) and "id" in item:
                touch(root / video_sub / f"{item['id']}.webm")
    return root


SSV1_CLASSES = ["Something falling like a feather or paper", "Holding something", "Zooming in"]
# The 27 classes of 20BN-Jester v1 (jester-v1-labels.csv)
JESTER_CLASSES = [
    "Doing other things", "Drumming Fingers", "No gesture", "Pulling Hand In", "Pulling Two Fingers In",
    "Pushing Hand Away", "Pushing Two Fingers Away", "Rolling Hand Backward", "Rolling Hand Forward", "Shaking Hand",
    "Sliding Two Fingers Down", "Sliding Two Fingers Left", "Sliding Two Fingers Right", "Sliding Two Fingers Up",
    "Stop Sign", "Swiping Down", "Swiping Left", "Swiping Right", "Swiping Up", "Thumb Down", "Thumb Up",
    "Turning Hand Clockwise", "Turning Hand Counterclockwise", "Zooming In With Full Hand",
    "Zooming In With Two Fingers", "Zooming Out With Full Hand", "Zooming Out With Two Fingers",
]  # fmt: skip


def ssv1_dataset(
    root: Path, lines: str, *, split_name: str = "train.csv", frames: dict[str, int] | None = None
) -> Path:
    write(root / "labels.csv", "\n".join(SSV1_CLASSES) + "\n")
    write(root / split_name, lines)
    for video_id, count in (frames or {}).items():
        folder = root / "20bn-something-something-v1" / video_id
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            touch(folder / f"{i:05d}.jpg")
    return root


K_HEADER = "label,youtube_id,time_start,time_end,split\n"


def clip(youtube_id: str, start: int = 0, end: int = 10) -> str:
    return f"{youtube_id}_{start:06d}_{end:06d}.mp4"


# ------------------------------------------------------------------------------------------
# Something-Something v2
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("long_names", [False, True], ids=["short", "official"])
def test_ssv2_train(tmp_path: Path, long_names: bool) -> None:
    prefix = "something-something-v2-" if long_names else ""
    entries = [entry("78687", "hold"), entry("42", "push_rl"), entry("7", "approach")]
    ssv2_dataset(tmp_path, entries, split_name=f"{prefix}train.json", labels_name=f"{prefix}labels.json")
    ann = load_ssv2(tmp_path, "train")
    assert ann.source == "ssv2" and ann.classes == SSV2_SORTED and not ann.skipped
    assert [r.video_id for r in ann.records] == ["78687", "42", "7"]
    assert [ann.classes[r.label] for r in ann.records] == [
        "Holding something next to something",
        "Pushing something from right to left",
        "Approaching something with your camera",
    ]
    videos = tmp_path / "20bn-something-something-v2"
    assert [r.path for r in ann.records] == [videos / f"{i}.webm" for i in ("78687", "42", "7")]
    assert all(r.path.is_absolute() and r.num_frames is None for r in ann.records)
    assert ann.summary() == "ssv2: 3 records, 4 classes, 0 skipped"


@pytest.mark.parametrize("split", ["val", "validation"])
def test_ssv2_val_split_names_and_video_dirs(tmp_path: Path, split: str) -> None:
    # lists in labels/ (the official archive layout), videos in root/videos
    ssv2_dataset(tmp_path / "labels", [entry("5", "push_lr")], split_name="validation.json")
    touch(tmp_path / "videos" / "5.webm")
    ann = load_ssv2(tmp_path, split)
    assert ann.records[0].path == tmp_path / "videos" / "5.webm"
    assert ann.classes[ann.records[0].label] == "Pushing something from left to right"
    # an explicit video_dir wins
    touch(tmp_path / "elsewhere" / "5.webm")
    ann = load_ssv2(tmp_path, split, video_dir=tmp_path / "elsewhere")
    assert ann.records[0].path == tmp_path / "elsewhere" / "5.webm"


def test_ssv2_test_split_is_unlabelled(tmp_path: Path) -> None:
    ssv2_dataset(tmp_path, [{"id": "1"}, {"id": 2}], split_name="test.json", video_sub="")
    ann = load_ssv2(tmp_path, "test")
    assert [(r.video_id, r.label) for r in ann.records] == [("1", -1), ("2", -1)]
    assert ann.records[0].path == tmp_path / "1.webm"  # videos directly in root


def test_ssv2_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "labels.json", json.dumps(SSV2_LABELS))
    write(tmp_path / "train.json", '[\n{"id": "1",\n')
    with pytest.raises(AnnotationError, match=r"train\.json, line \d+: invalid JSON"):
        load_ssv2(tmp_path, "train", on_error="skip")


def test_ssv2_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="labels.json"):
        load_ssv2(tmp_path, "train")
    write(tmp_path / "labels.json", json.dumps(SSV2_LABELS))
    with pytest.raises(FileNotFoundError, match="something-something-v2-validation.json"):
        load_ssv2(tmp_path, "val")


# ------------------------------------------------------------------------------------------
# Something-Something v1
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("long_names", [False, True], ids=["short", "official"])
def test_jester_reads_the_ssv1_layout_with_its_own_names(tmp_path: Path, long_names: bool) -> None:
    prefix = "jester-v1-" if long_names else ""
    write(tmp_path / f"{prefix}labels.csv", "\n".join(JESTER_CLASSES) + "\n")
    write(tmp_path / f"{prefix}validation.csv", "34870;Drumming Fingers\n56557;Turning Hand Clockwise\n")
    write(tmp_path / f"{prefix}test.csv", "1\n")
    for video_id, count in {"34870": 37, "56557": 2, "1": 4}.items():
        for i in range(1, count + 1):
            touch(tmp_path / "20bn-jester-v1" / video_id / f"{i:05d}.jpg")
    ann = load_annotations("jester", tmp_path, "val")
    assert ann.source == "jester" and ann.classes == JESTER_CLASSES  # already sorted
    assert [(r.video_id, ann.classes[r.label], r.num_frames) for r in ann.records] == [
        ("34870", "Drumming Fingers", 37),
        ("56557", "Turning Hand Clockwise", 2),
    ]
    assert ann.records[0].path == tmp_path / "20bn-jester-v1" / "34870"
    assert [(r.video_id, r.label) for r in load_jester(tmp_path, "test").records] == [("1", -1)]
    with pytest.raises(FileNotFoundError, match="Jester train list"):
        load_jester(tmp_path, "train")


@pytest.mark.parametrize("long_names", [False, True], ids=["short", "official"])
def test_ssv1_train_counts_frames(tmp_path: Path, long_names: bool) -> None:
    prefix = "something-something-v1-" if long_names else ""
    write(tmp_path / f"{prefix}labels.csv", "\n".join(SSV1_CLASSES) + "\n\n")
    write(tmp_path / f"{prefix}train.csv", "100218;Holding something\n7;Zooming in\n")
    for video_id, count in {"100218": 3, "7": 5}.items():
        for i in range(1, count + 1):
            touch(tmp_path / "20bn-something-something-v1" / video_id / f"{i:05d}.jpg")
    touch(tmp_path / "20bn-something-something-v1" / "7" / "00009.jpg")  # after a gap: unused
    ann = load_ssv1(tmp_path, "train")
    assert ann.classes == sorted(SSV1_CLASSES)
    assert [(r.video_id, ann.classes[r.label], r.num_frames) for r in ann.records] == [
        ("100218", "Holding something", 3),
        ("7", "Zooming in", 5),
    ]
    assert ann.records[0].path == tmp_path / "20bn-something-something-v1" / "100218"
    fast = load_ssv1(tmp_path, "train", check_files=False)
    assert [r.num_frames for r in fast.records] == [None, None]


def test_ssv1_test_split_frame_dir_and_template(tmp_path: Path) -> None:
    ssv1_dataset(tmp_path, "11\n12\n", split_name="something-something-v1-test.csv")
    for video_id in ("11", "12"):
        for i in (1, 2):
            touch(tmp_path / "jpgs" / video_id / f"img_{i:05d}.jpg")
    ann = load_ssv1(tmp_path, "test", frame_dir=tmp_path / "jpgs", frame_template="img_{:05d}.jpg")
    assert [(r.label, r.num_frames, r.path) for r in ann.records] == [
        (-1, 2, tmp_path / "jpgs" / "11"),
        (-1, 2, tmp_path / "jpgs" / "12"),
    ]
    with pytest.raises(ValueError, match="frame_template"):
        load_ssv1(tmp_path, "test", frame_template="{name}.jpg")


# ------------------------------------------------------------------------------------------
# Kinetics-400
# ------------------------------------------------------------------------------------------

K_TRAIN = (
    K_HEADER
    + "abseiling,aaa,0,10,train\n"
    + '"tying knot (not on a tie)",bbb,14.0,24.0,train\n'
    + "air drumming,ccc,3,13,train\n"
)


@pytest.mark.parametrize(
    ("csv_name", "layout"),
    [
        ("train.csv", "flat"),
        ("kinetics-400_train.csv", "class_folders"),
        ("kinetics_400_train.csv", "underscored_folders"),
    ],
)
def test_kinetics_layouts(tmp_path: Path, csv_name: str, layout: str) -> None:
    write(tmp_path / csv_name, K_TRAIN)
    files = {"abseiling": clip("aaa"), "tying knot (not on a tie)": clip("bbb", 14, 24)}
    files["air drumming"] = clip("ccc", 3, 13).replace(".mp4", ".mkv")  # other container
    expected = {}
    for label, name in files.items():
        folder = {"flat": "", "class_folders": label}.get(layout, label.replace(" ", "_"))
        expected[label] = touch(tmp_path / "train" / folder / name)
    ann = load_kinetics(tmp_path, "train")
    assert ann.classes == ["abseiling", "air drumming", "tying knot (not on a tie)"]
    assert [(r.video_id, ann.classes[r.label]) for r in ann.records] == [
        ("aaa", "abseiling"),
        ("bbb", "tying knot (not on a tie)"),
        ("ccc", "air drumming"),
    ]
    assert [r.path for r in ann.records] == [expected[ann.classes[r.label]] for r in ann.records]


@pytest.mark.parametrize("val_name", ["val.csv", "kinetics-400_validate.csv"])
def test_kinetics_val_uses_train_classes(tmp_path: Path, val_name: str) -> None:
    write(tmp_path / "annotations" / "train.csv", K_TRAIN)
    write(tmp_path / "annotations" / val_name, K_HEADER + "air drumming,ddd,0,10,val\n")
    touch(tmp_path / "videos" / clip("ddd"))
    ann = load_kinetics(tmp_path, "validation")
    assert len(ann.classes) == 3 and ann.records[0].label == ann.classes.index("air drumming") == 1
    assert ann.records[0].path == tmp_path / "videos" / clip("ddd")
    (tmp_path / "annotations" / "train.csv").unlink()  # alone: the split's own labels
    assert load_kinetics(tmp_path, "val").classes == ["air drumming"]


@pytest.mark.parametrize(
    "text",
    [
        "youtube_id,time_start,time_end,split\neee,0,10,test\n",  # no label column
        K_HEADER + ",eee,0,10,test\n",  # empty label
    ],
    ids=["no_label_column", "empty_label"],
)
def test_kinetics_test_split_is_unlabelled(tmp_path: Path, text: str) -> None:
    write(tmp_path / "test.csv", text)
    touch(tmp_path / "test" / clip("eee"))
    ann = load_kinetics(tmp_path, "test")
    assert [(r.video_id, r.label) for r in ann.records] == [("eee", -1)]


def test_kinetics_check_files_false_guesses_path(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", K_TRAIN)
    (tmp_path / "train" / "abseiling").mkdir(parents=True)
    ann = load_kinetics(tmp_path, "train", check_files=False)
    assert [r.path for r in ann.records] == [
        tmp_path / "train" / "abseiling" / clip("aaa"),
        tmp_path / "train" / clip("bbb", 14, 24),
        tmp_path / "train" / clip("ccc", 3, 13),
    ]


def test_kinetics_folder_layout(tmp_path: Path) -> None:
    for label, name in [("b_class", "x.mp4"), ("a_class", "y.webm"), ("a_class", "z.avi")]:
        touch(tmp_path / "train" / label / name)
    touch(tmp_path / "train" / "a_class" / "notes.txt")  # not a video: ignored
    ann = load_kinetics(tmp_path, "train")
    assert ann.classes == ["a_class", "b_class"]
    assert [(r.video_id, r.label) for r in ann.records] == [("y", 0), ("z", 0), ("x", 1)]
    assert ann.records[0].path == tmp_path / "train" / "a_class" / "y.webm"
    # val takes the class list of train; loose test videos are unlabelled
    touch(tmp_path / "val" / "b_class" / "v.mkv")
    assert [(r.video_id, r.label) for r in load_kinetics(tmp_path, "val").records] == [("v", 1)]
    touch(tmp_path / "test" / "t.mp4")
    test = load_kinetics(tmp_path, "test")
    assert test.classes == ["a_class", "b_class"] and test.records[0].label == -1


def test_kinetics_missing_annotations(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"kinetics-400_val\.csv.*val/<class>"):
        load_kinetics(tmp_path, "val")


# ------------------------------------------------------------------------------------------
# Generic list
# ------------------------------------------------------------------------------------------


def test_list_happy_path(tmp_path: Path) -> None:
    touch(tmp_path / "data" / "my video.mp4")
    (tmp_path / "data" / "frames_a").mkdir()
    absolute = touch(tmp_path / "abs" / "b.webm")
    text = f"# path num_frames label\n\nmy video.mp4 0 2\nframes_a   37\t0\n{absolute} 12 1\n"
    lst = write(tmp_path / "lists" / "train.txt", text)
    ann = load_list(lst, root=tmp_path / "data")
    assert ann.source == "list" and ann.classes == ["0", "1", "2"]
    assert [(r.path, r.num_frames, r.label, r.video_id) for r in ann.records] == [
        (tmp_path / "data" / "my video.mp4", None, 2, "my video.mp4"),
        (tmp_path / "data" / "frames_a", 37, 0, "frames_a"),
        (absolute, 12, 1, str(absolute)),
    ]
    names = ["jump", "run", "swim", "walk"]
    assert load_list(lst, root=tmp_path / "data", classes=names).classes == names
    class_file = write(tmp_path / "classes.txt", "\n".join(names) + "\n")
    assert load_list(lst, root=tmp_path / "data", classes=class_file).classes == names


def test_list_paths_default_to_the_list_folder(tmp_path: Path) -> None:
    touch(tmp_path / "v.mp4")
    write(tmp_path / "train_videofolder.txt", "v.mp4 8 0\n")
    for root in (tmp_path / "train_videofolder.txt", tmp_path):  # the file, or its folder
        ann = load_annotations("list", root, "train")
        assert ann.records[0].path == tmp_path / "v.mp4"
    with pytest.raises(FileNotFoundError, match="val_videofolder.txt"):
        load_annotations("list", tmp_path, "val")


# ------------------------------------------------------------------------------------------
# Malformed lines and missing videos, for every parser
# ------------------------------------------------------------------------------------------

# A case writes a dataset with one good entry and one bad one, and returns
# (load(on_error), annotation file name, 1-based line/entry of the bad one).
Case = tuple[Callable[[str], Annotations], str, int]


def ssv2_case(entries: list, *, missing: str | None = None) -> Callable[[Path], Case]:
    def build(root: Path) -> Case:
        ssv2_dataset(root, entries)
        if missing is not None:
            (root / "20bn-something-something-v2" / f"{missing}.webm").unlink()
        return (lambda on_error: load_ssv2(root, "train", on_error=on_error)), "train.json", 2

    return build


def ssv1_case(lines: str, *, frames: dict[str, int] | None = None) -> Callable[[Path], Case]:
    def build(root: Path) -> Case:
        ssv1_dataset(root, lines, frames=frames if frames is not None else {"1": 2, "2": 2})
        return (lambda on_error: load_ssv1(root, "train", on_error=on_error)), "train.csv", 2

    return build


def kinetics_case(rows: str, *, split: str = "train") -> Callable[[Path], Case]:
    def build(root: Path) -> Case:
        if split != "train":
            write(root / "train.csv", K_TRAIN)
        write(root / f"{split}.csv", K_HEADER + f"abseiling,aaa,0,10,{split}\n" + rows)
        for youtube_id in ("aaa", "bbb"):
            touch(root / split / clip(youtube_id))
        return (lambda on_error: load_kinetics(root, split, on_error=on_error)), f"{split}.csv", 3

    return build


def list_case(lines: str, *, classes: list[str] | None = None) -> Callable[[Path], Case]:
    def build(root: Path) -> Case:
        touch(root / "a.mp4")
        touch(root / "b.mp4")
        lst = write(root / "my_list.txt", "a.mp4 10 0\n" + lines)

        def load(on_error: str) -> Annotations:
            return load_list(lst, classes=classes, on_error=on_error)

        return load, "my_list.txt", 2

    return build


GOOD = entry("1", "hold")
MALFORMED = {
    "ssv2_not_an_object": ssv2_case([GOOD, "oops"]),
    "ssv2_unknown_template": ssv2_case([GOOD, {"id": "2", "template": "Juggling [something]"}]),
    "ssv2_missing_template": ssv2_case([GOOD, {"id": "2", "label": "holding a potato"}]),
    "ssv2_missing_id": ssv2_case([GOOD, {"template": TEMPLATES["hold"]}]),
    "ssv2_duplicate_id": ssv2_case([GOOD, entry("1", "approach")]),
    "ssv2_missing_video": ssv2_case([GOOD, entry("2", "hold")], missing="2"),
    "ssv1_missing_class": ssv1_case("1;Zooming in\n2\n"),
    "ssv1_too_many_fields": ssv1_case("1;Zooming in\n2;Zooming in;extra\n"),
    "ssv1_unknown_class": ssv1_case("1;Zooming in\n2;Zooming out\n"),
    "ssv1_duplicate_id": ssv1_case("1;Zooming in\n1;Holding something\n"),
    "ssv1_empty_frame_folder": ssv1_case("1;Zooming in\n2;Zooming in\n", frames={"1": 2, "2": 0}),
    "ssv1_missing_frame_folder": ssv1_case("1;Zooming in\n3;Zooming in\n"),
    "kinetics_wrong_field_count": kinetics_case("abseiling,bbb,0\n"),
    "kinetics_time_not_a_number": kinetics_case("abseiling,bbb,zero,10,train\n"),
    "kinetics_fractional_time": kinetics_case("abseiling,bbb,0.5,10,train\n"),
    "kinetics_empty_label": kinetics_case(",bbb,0,10,train\n"),
    "kinetics_duplicate_clip": kinetics_case("air drumming,aaa,0,10,train\n"),
    "kinetics_label_not_in_train": kinetics_case("yodelling,bbb,0,10,val\n", split="val"),
    "kinetics_missing_video": kinetics_case("abseiling,zzz,0,10,train\n"),
    "list_wrong_field_count": list_case("b.mp4 10\n"),
    "list_num_frames_not_int": list_case("b.mp4 ten 0\n"),
    "list_negative_num_frames": list_case("b.mp4 -3 0\n"),
    "list_label_not_int": list_case("b.mp4 10 zero\n"),
    "list_label_out_of_range": list_case("b.mp4 10 2\n", classes=["a", "b"]),
    "list_duplicate_path": list_case("a.mp4 10 0\n"),
    "list_missing_video": list_case("c.mp4 10 0\n"),
}


@pytest.mark.parametrize("build", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_raises_with_file_and_line(tmp_path: Path, build: Callable) -> None:
    load, file_name, line = build(tmp_path)
    with pytest.raises(AnnotationError) as info:
        load("raise")
    message = str(info.value)
    assert file_name in message
    assert f"line {line}:" in message or f"entry {line}:" in message
    assert info.value.line == line and Path(info.value.file).name == file_name


@pytest.mark.parametrize("build", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_skipped(tmp_path: Path, build: Callable, caplog: pytest.LogCaptureFixture) -> None:
    load, file_name, line = build(tmp_path)
    with caplog.at_level(logging.WARNING, logger="videoattn.data.annotations"):
        ann = load("skip")
    assert len(ann.records) == 1 and len(ann.skipped) == 1
    assert Path(ann.skipped[0].file).name == file_name and ann.skipped[0].line == line
    assert "1 skipped" in ann.summary()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 1" in warnings[0].getMessage()


def test_missing_video_ignored_without_check_files(tmp_path: Path) -> None:
    load, _, _ = MALFORMED["ssv2_missing_video"](tmp_path)
    ann = load_ssv2(tmp_path, "train", check_files=False)
    assert [r.video_id for r in ann.records] == ["1", "2"]


def test_kinetics_folder_layout_skips_loose_videos(tmp_path: Path) -> None:
    touch(tmp_path / "train" / "a" / "x.mp4")
    touch(tmp_path / "train" / "loose.mp4")
    with pytest.raises(AnnotationError, match="loose.mp4.*outside a class folder"):
        load_kinetics(tmp_path, "train")
    ann = load_kinetics(tmp_path, "train", on_error="skip")
    assert len(ann.records) == 1 and ann.skipped[0].line == 0


# ------------------------------------------------------------------------------------------
# Dispatch and options
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["ssv2", "SSv2", "sthv2", "something-something-v2"])
def test_load_annotations_dispatch(tmp_path: Path, source: str) -> None:
    ssv2_dataset(tmp_path, [GOOD])
    ann = load_annotations(source, tmp_path, "train", check_files=False)
    assert ann.source == "ssv2" and len(ann) == 1


def test_every_format_is_one_row_of_the_table_behind_the_protocol() -> None:
    """data.source names a row of FORMATS (a Format: name, aliases, files read, parser, keywords);
    a name or alias reaches its parser; an object missing part of the protocol is refused as the
    table is built."""
    from videoattn.data.formats import FORMATS, Format, _table

    assert list(FORMATS) == ["ssv2", "ssv1", "jester", "kinetics", "list", "folders"]
    aliases = [a for f in FORMATS.values() for a in f.aliases]
    assert len(aliases) == len(set(aliases)) and not set(aliases) & set(FORMATS)
    for name, fmt in FORMATS.items():
        assert isinstance(fmt, Format) and fmt.name == name and fmt.reads
        assert {"on_error", "check_files"} <= set(fmt.keywords)  # the options every format takes
    assert {"video_dir"} <= set(FORMATS["ssv2"].keywords) and {"list_file"} <= set(FORMATS["list"].keywords)

    class NoParser:
        name, aliases, reads = "x", (), "x.txt"

    with pytest.raises(TypeError, match="not an annotation Format"):
        _table(NoParser())


def test_unknown_source_split_and_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'ssv2', 'ssv1', 'jester', 'kinetics', 'list'.*did you mean"):
        load_annotations("ssv3", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_ssv2(tmp_path, "dev")
    ssv2_dataset(tmp_path, [GOOD])
    with pytest.raises(ValueError, match="on_error"):
        load_ssv2(tmp_path, "train", on_error="ignore")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Left/right flip label map
# ------------------------------------------------------------------------------------------

FLIP_CLASSES = sorted(
    [
        "Pushing something from left to right",
        "Pushing something from right to left",
        "Turning the camera left while filming something",
        "Turning the camera right while filming something",
        "Moving something away from the camera",
        "Holding something next to something",
        "Showing something to the Left",  # no partner: identity
        "Leftover something",  # not a whole word
    ]
)


def test_flip_label_map_swaps_pairs() -> None:
    mapping = flip_label_map(FLIP_CLASSES)
    assert sorted(mapping) == list(range(len(FLIP_CLASSES)))  # a permutation ...
    assert all(mapping[mapping[i]] == i for i in range(len(mapping)))  # ... and an involution
    named = {FLIP_CLASSES[i]: FLIP_CLASSES[j] for i, j in enumerate(mapping) if i != j}
    assert named == {
        "Pushing something from left to right": "Pushing something from right to left",
        "Pushing something from right to left": "Pushing something from left to right",
        "Turning the camera left while filming something": ("Turning the camera right while filming something"),
        "Turning the camera right while filming something": ("Turning the camera left while filming something"),
    }
    assert has_mirrored(FLIP_CLASSES) and has_mirrored(["Showing something to the Left"])
    assert not has_mirrored(["abseiling", "Leftover", "Clockworks"])
    assert unpaired_mirrored_classes(FLIP_CLASSES) == ["Showing something to the Left"]
    assert flip_label_map(["a", "b"]) == [0, 1]


def test_jester_flip_swaps_left_right_and_clockwise_counterclockwise() -> None:
    mapping = flip_label_map(JESTER_CLASSES)
    named = {JESTER_CLASSES[i]: JESTER_CLASSES[j] for i, j in enumerate(mapping) if i != j}
    assert named == {
        "Sliding Two Fingers Left": "Sliding Two Fingers Right",
        "Sliding Two Fingers Right": "Sliding Two Fingers Left",
        "Swiping Left": "Swiping Right", "Swiping Right": "Swiping Left",
        "Turning Hand Clockwise": "Turning Hand Counterclockwise",
        "Turning Hand Counterclockwise": "Turning Hand Clockwise",
    }  # fmt: skip
    assert unpaired_mirrored_classes(JESTER_CLASSES) == []
    # the other spellings of counterclockwise find their partner too; a lone one is unpaired
    for other in ("Turning hand anticlockwise", "Turning hand counter-clockwise", "Turning hand counter clockwise"):
        classes = ["Turning hand clockwise", other]
        assert flip_label_map(classes) == [1, 0], other
    assert unpaired_mirrored_classes(["Turning Hand Clockwise", "Thumb Up"]) == ["Turning Hand Clockwise"]
    assert unpaired_mirrored_classes(["Moving leftwards", "Moving rightwards"]) == []


@pytest.mark.parametrize(
    ("name", "swapped"),
    [
        ("Left to right", "Right to left"),
        ("LEFT_RIGHT", "RIGHT_LEFT"),
        ("leftover", "leftover"),
        ("Turning Hand Clockwise", "Turning Hand Counterclockwise"),
        ("anticlockwise", "clockwise"),
        ("Sliding leftwards", "Sliding rightwards"),
    ],
)
def test_swap_left_right_keeps_case(name: str, swapped: str) -> None:
    assert swap_left_right(name) == swapped


# ------------------------------------------------------------------------------------------
# Class names with control characters (issue 26): refused by every parser, naming it and the file
# ------------------------------------------------------------------------------------------


def _ssv2_labels(root: Path, bad: str) -> Callable[[], object]:
    write(root / "labels.json", json.dumps({**SSV2_LABELS, bad: "7"}))
    write(root / "train.json", "[]")
    return lambda: load_ssv2(root, "train", on_error="skip")


def _frame_csv_labels(loader: Callable, root: Path, bad: str) -> Callable[[], object]:
    write(root / "labels.csv", "\n".join([*SSV1_CLASSES[:2], bad, SSV1_CLASSES[2]]) + "\n")
    write(root / "train.csv", "")
    return lambda: loader(root, "train", on_error="skip")


def _kinetics_row(root: Path, bad: str) -> Callable[[], object]:
    label = '"' + bad.replace('"', '""') + '"'
    write(root / "train.csv", K_TRAIN + f"{label},ddd,0,10,train\n")
    return lambda: load_kinetics(root, "train", on_error="skip")


def _kinetics_train_classes(root: Path, bad: str) -> Callable[[], object]:
    write(root / "train.csv", K_TRAIN + f"{bad},ddd,0,10,train\n")
    write(root / "val.csv", K_HEADER + "abseiling,eee,0,10,val\n")
    return lambda: load_kinetics(root, "val", on_error="skip", check_files=False)


def _kinetics_folders(root: Path, bad: str) -> Callable[[], object]:
    touch(root / "train" / "abseiling" / "x.mp4")
    touch(root / "train" / bad / "y.mp4")
    return lambda: load_kinetics(root, "train", on_error="skip")


def _list_classes(root: Path, bad: str) -> Callable[[], object]:
    touch(root / "a.mp4")
    write(root / "train.txt", "a.mp4 10 0\n")
    write(root / "classes.txt", f"a\n{bad}\nc\n")
    return lambda: load_annotations("list", root, "train", on_error="skip")


def _label_file(root: Path, bad: str) -> Callable[[], object]:  # convert_checkpoint.py --classes
    write(root / "names.json", json.dumps(["a", bad]))
    return lambda: read_class_names(root / "names.json")


CONTROL_NAMES = {  # the parser, the file it should name, a class name with a control character
    "ssv2 labels.json newline": (_ssv2_labels, "labels.json", "Holding something\nnext to something"),
    "ssv1 labels.csv tab": (lambda r, b: _frame_csv_labels(load_ssv1, r, b), "labels.csv", "Zooming\tin"),
    "jester labels.csv vertical tab": (lambda r, b: _frame_csv_labels(load_jester, r, b), "labels.csv", "Thumb\x0bUp"),
    "kinetics csv quoted newline": (_kinetics_row, "train.csv", "ice\nskating"),
    "kinetics train csv C1 for val": (_kinetics_train_classes, "train.csv", "air\x85drumming"),
    "kinetics class folder escape": (_kinetics_folders, "\x1b[31mred", "\x1b[31mred"),
    "list classes.txt line separator": (_list_classes, "classes.txt", "b\u2028b"),
    "label file DEL": (_label_file, "names.json", "a\x7fb"),
}


@pytest.mark.parametrize("build, file_name, bad", CONTROL_NAMES.values(), ids=CONTROL_NAMES.keys())
def test_a_class_name_with_a_control_character_is_refused_naming_it_and_the_file(tmp_path, build, file_name, bad):
    load = build(tmp_path, bad)
    with pytest.raises(AnnotationError) as info:
        load()
    message = str(info.value)
    assert repr(bad) in message and Path(info.value.file).name == file_name, message
    assert "\n" not in message and "control character" in message, message


def test_a_given_class_list_with_a_control_character_is_refused(tmp_path):
    lst = write(tmp_path / "train.txt", "a.mp4 10 0\n")
    with pytest.raises(ConfigError, match=re.escape(repr("b\tc"))):
        load_list(lst, classes=["a", "b\tc"], check_files=False)


# ------------------------------------------------------------------------------------------
# The advice of a missing video, run as typed on the command line (issue 26)
# ------------------------------------------------------------------------------------------


def _advised(message: str, values: dict[str, Path]) -> list[list[str]]:
    """The overrides a message suggests, each alternative a list (FOLDER / FILE filled in)."""
    found = re.findall(r"(?<![\w.])(\+{0,2}data\.[\w.]+=[^\s,;()]+)", message)
    assert found, message
    alternatives = []
    for override in found:
        key, value = override.split("=", 1)
        if value in values:
            value = str(values[value])
        if alternatives and key.endswith(".list_file"):  # "data.root=FOLDER (the list file then as ...)"
            alternatives[-1].append(f"{key}={value}")
        else:
            alternatives.append([f"{key}={value}"])
    return alternatives


def _advice_ssv2(root: Path) -> tuple[list[str], dict[str, Path], int]:
    entries = [entry("1", "hold"), entry("2", "approach")]
    ssv2_dataset(root, entries, video_sub="elsewhere")
    return ["data=ssv2", f"data.root={root}"], {"FOLDER": root / "elsewhere"}, 2


def _advice_ssv1(root: Path) -> tuple[list[str], dict[str, Path], int]:
    ssv1_dataset(root, "1;Zooming in\n2;Holding something\n", frames={"1": 2, "2": 3})
    (root / "20bn-something-something-v1").rename(root / "elsewhere")
    return ["data=ssv1", f"data.root={root}"], {"FOLDER": root / "elsewhere"}, 2


def _advice_kinetics(root: Path) -> tuple[list[str], dict[str, Path], int]:
    write(root / "train.csv", K_TRAIN)
    for youtube_id, start, end in (("aaa", 0, 10), ("bbb", 14, 24), ("ccc", 3, 13)):
        touch(root / "elsewhere" / clip(youtube_id, start, end))
    return ["data=kinetics", f"data.root={root}"], {"FOLDER": root / "elsewhere"}, 3


def _advice_list(root: Path) -> tuple[list[str], dict[str, Path], int]:
    touch(root / "videos" / "a.mp4")
    touch(root / "videos" / "b.mp4")
    lst = write(root / "lists" / "train.txt", "a.mp4 10 0\nb.mp4 12 1\n")
    return ["data=ssv2", "data.source=list", f"data.root={root / 'lists'}"], {"FOLDER": root / "videos", "FILE": lst}, 2


ADVICE = {"ssv2": _advice_ssv2, "ssv1": _advice_ssv1, "kinetics": _advice_kinetics, "list": _advice_list}


@pytest.mark.parametrize("build", ADVICE.values(), ids=ADVICE.keys())
def test_the_advice_of_a_missing_video_works_as_typed(tmp_path, build):
    """The data config composed from the command line as train.py / test.py compose it, then
    loaded as they load it: each override the message suggests, typed as it is written there."""
    from videoattn.compose import check_overrides
    from videoattn.config import to_plain
    from videoattn.data.build import load_split, normalize_data_config

    def load(overrides: list[str]) -> Annotations:
        cfg = check_overrides(REPO / "configs", "train", overrides)
        return load_split(normalize_data_config(to_plain(cfg.data)), "train")

    base, values, videos = build(tmp_path)
    with pytest.raises(AnnotationError) as info:
        load(base)
    alternatives = _advised(str(info.value), values)
    assert any(o.endswith("check_files=false") for a in alternatives for o in a)
    for advice in alternatives:
        assert len(load([*base, *advice])) == videos, advice


def test_an_unknown_order_dependent_class_names_it_and_the_close_matches():
    from videoattn.data.build import order_dependent_indices

    assert order_dependent_indices(["Pushing something from right to left"], SSV2_SORTED) == [
        SSV2_SORTED.index("Pushing something from right to left")
    ]
    assert order_dependent_indices([], SSV2_SORTED) == []
    with pytest.raises(ConfigError) as info:
        order_dependent_indices(["Pushing something from rihgt to left"], SSV2_SORTED)
    message = str(info.value)
    assert "\n" not in message and "'Pushing something from rihgt to left' is not a class" in message
    assert "did you mean 'Pushing something from right to left'" in message
    with pytest.raises(ConfigError, match=r"'Foo' is not a class of this dataset \(no class is close\); its 4"):
        order_dependent_indices(["Foo"], SSV2_SORTED)
