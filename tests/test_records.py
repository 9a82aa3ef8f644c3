"""The compact record index: equal to the records it packs, sliced and pickled without loss,
small at real dataset sizes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from videoattn.data.annotations import load_ssv2
from videoattn.data.records import RecordTable, StringTable, VideoRecord

RECORDS = [
    VideoRecord(Path("/data/ssv2/videos/1.webm"), 3, None, "1"),
    VideoRecord(Path("/data/ssv2/videos/22.webm"), -1, None, "22"),
    VideoRecord(Path("/data/k400/train/abseiling/é_000001_000011.mp4"), 0, 250, "é"),  # non-ASCII
    VideoRecord(Path("/data/frames/00042"), 7, 48, "frames/00042"),
]


def test_a_table_reads_back_the_records_it_packs():
    table = RecordTable.from_records(RECORDS)
    assert len(table) == 4 and list(table) == RECORDS and table == RECORDS
    assert table[-1] == RECORDS[-1] and table.path(2) == str(RECORDS[2].path)
    assert table.labels.dtype == np.int32 and table.labels.tolist() == [3, -1, 0, 7]
    assert len(table.folders) == 4 - 1  # the two SSv2 videos share their folder
    with pytest.raises(IndexError, match="record 4 out of range for 4 records"):
        table[4]


def test_slices_and_index_arrays_give_smaller_tables():
    table = RecordTable.from_records(RECORDS)
    assert list(table[1:3]) == RECORDS[1:3] and list(table[::-1]) == RECORDS[::-1]
    picked = table[np.array([2, 0, 2])]
    assert isinstance(picked, RecordTable) and list(picked) == [RECORDS[2], RECORDS[0], RECORDS[2]]
    assert list(table[np.array([], dtype=np.int64)]) == []


def test_string_tables_take_any_strings():
    words = ["", "a", "héllo", "日本語", "x" * 300]
    table = StringTable(words)
    assert list(table) == words and list(table.take(np.array([4, 2, 0, 3]))) == [words[i] for i in (4, 2, 0, 3)]


def test_a_table_pickles_as_arrays():
    table = RecordTable.from_records(RECORDS * 1000)
    again = pickle.loads(pickle.dumps(table))
    assert again == table and len(pickle.dumps(table)) < 100 * len(table)


def test_an_ssv2_split_of_real_size_is_a_few_bytes_per_video(tmp_path):
    """169k train entries (the size of SSv2's train.json): the index holds arrays, not objects.
    Its load time is measured by tools/benchmark.py --sections index, not here."""
    n, templates = 168_913, [f"Pushing [something] {i}" for i in range(174)]
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    entries = [{"id": str(i + 1), "template": templates[i % 174], "placeholders": ["a cup"]} for i in range(n)]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    ann = load_ssv2(tmp_path, "train", check_files=False)
    assert len(ann) == n and isinstance(ann.records, RecordTable)
    assert ann.records.nbytes < 64 * n  # 3 int32 + 2 int64 offsets: 28 bytes; "168913.webm" and "168913": 17
    last = ann.classes.index(templates[(n - 1) % 174].replace("[", "").replace("]", ""))
    assert ann.records[n - 1] == VideoRecord(tmp_path / f"{n}.webm", last, None, str(n))
