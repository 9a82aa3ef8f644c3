"""Something-Something v2: ``labels.json`` + ``train.json`` / ``validation.json`` / ``test.json`` and
``<id>.webm`` videos."""

from __future__ import annotations

import json
from pathlib import Path

from .common import (
    _SPLITS,
    Annotations,
    OnError,
    ParserFormat,
    PathLike,
    _abs,
    _annotation_dirs,
    _canonical_split,
    _check_class_names,
    _DirCache,
    _error,
    _find_file,
    _pick_dir,
    _Problems,
    _read_json,
    _Split,
)

_SSV2_VIDEO_DIRS = ("20bn-something-something-v2", "videos")


def ssv2_class_name(template: str) -> str:
    """SSv2 class of an entry: its template with the brackets removed.

    ``"Holding [something] next to [something]"`` -> ``"Holding something next to something"``.
    """
    return template.replace("[", "").replace("]", "")


def _read_ssv2_labels(path: Path) -> list[str]:
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise _error(
            path,
            0,
            'expected a JSON object {"class name": "index", ...}; this is not the official labels.json',
        )
    names = [str(name).strip() for name in data]
    if any(not name for name in names):
        raise _error(path, 0, "contains an empty class name; fix or re-download the file")
    _check_class_names(names, path)
    return sorted(set(names))


def load_ssv2(
    root: PathLike,
    split: str,
    *,
    video_dir: PathLike | None = None,
    on_error: OnError = "raise",
    check_files: bool = True,
) -> Annotations:
    """Something-Something v2 annotations.

    Reads ``labels.json`` (or ``something-something-v2-labels.json``) and the split's
    ``train.json`` / ``validation.json`` / ``test.json`` (or the official long names
    ``something-something-v2-<split>.json``) from ``root`` or ``root/labels``. An entry's class is
    its ``template`` with the brackets removed; test entries, which have only an ``id``, get
    label ``-1`` (a test entry that does carry a template is labelled from it).

    Class indices are the **sorted** class names of ``labels.json``, not the indices written in
    it: the order of the TSM / TAM checkpoints.

    Videos are ``<id>.webm`` in ``video_dir`` if given, else the first existing of
    ``root/20bn-something-something-v2``, ``root/videos``, ``root``.

    Malformed entries (not an object, no/duplicated ``id``, no ``template`` outside the test
    split, a template whose class is not in ``labels.json``) and missing videos are reported
    with their 1-based position in the JSON list.
    """
    split = _canonical_split(split)
    root = _abs(root)
    problems = _Problems(on_error, "ssv2")
    dirs = _annotation_dirs(root)
    labels_file = _find_file(
        dirs,
        ("labels.json", "something-something-v2-labels.json"),
        what="Something-Something v2 label file",
        expect="The dataset root (or its labels/ folder) should hold labels.json and "
        "train.json / validation.json / test.json from the official release.",
    )
    classes = _read_ssv2_labels(labels_file)
    split_file = _find_file(
        dirs,
        [f"{s}.json" for s in _SPLITS[split]] + [f"something-something-v2-{s}.json" for s in _SPLITS[split]],
        what=f"Something-Something v2 {split} list",
        expect=f"Put the official {split} list (train.json, validation.json or test.json) next to {labels_file.name}.",
    )
    entries = _read_json(split_file)
    if not isinstance(entries, list):
        raise _error(
            split_file,
            0,
            'expected a JSON list of {"id", "label", "template", '
            f'"placeholders"}} objects, got a {type(entries).__name__}',
        )
    videos = _pick_dir(video_dir, root, _SSV2_VIDEO_DIRS, what="video_dir", check=check_files)
    index = {name: i for i, name in enumerate(classes)}
    listing = _DirCache()
    rows = _Split(problems, split_file, unit="entry")
    report = rows.bad
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            report(position, f"expected a JSON object with an 'id', got {json.dumps(entry)[:60]}")
            continue
        raw_id = entry.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
            report(position, "missing or invalid 'id' (expected a string like \"78687\")")
            continue
        video_id = str(raw_id).strip()
        template = entry.get("template")
        if template is None:
            if split != "test":
                report(
                    position,
                    f"missing field 'template' for id {video_id!r}; every {split} entry needs "
                    "the template its class is read from",
                )
                continue
            label = -1
        elif not isinstance(template, str):
            report(position, f"'template' of id {video_id!r} is not a string: {template!r}")
            continue
        else:
            name = ssv2_class_name(template).strip()
            found = index.get(name)
            if found is None:
                report(
                    position,
                    f"template {template!r} gives the class {name!r}, which is not in "
                    f"{labels_file.name}; use the label file of the same release",
                )
                continue
            label = found
        if not rows.first(position, video_id):
            continue
        name = f"{video_id}.webm"
        if check_files and not listing.has(videos, name):
            report(
                position,
                f"video {videos / name} not found; point ++data.annotations.video_dir=FOLDER at the .webm "
                "files, or skip the checks with ++data.annotations.check_files=false",
            )
            continue
        rows.add(videos, name, label, video_id)
    return rows.finish(classes)


FORMAT = ParserFormat(
    name="ssv2",
    aliases=("something-something-v2", "somethingv2", "sthv2"),
    reads="labels.json, train.json / validation.json / test.json, <id>.webm videos",
    parser=load_ssv2,
)
