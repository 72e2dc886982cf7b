"""mlstack.monitoring: reading what the release image recorded."""

from __future__ import annotations

import json

import pytest

from mlstack.monitoring import read_requests
from mlstack.settings import JobError


def record(columns, data) -> str:
    return json.dumps({"inputs": {"columns": columns, "data": data}, "status": 200}) + "\n"


def test_every_recorded_row_is_read_in_the_files_order(tmp_path):
    (tmp_path / "day1").mkdir()
    (tmp_path / "day1/a.jsonl").write_text(record(["x", "y"], [[1, 2], [3, 4]]) + "\n")
    (tmp_path / "b.jsonl").write_text(record(["x", "y"], [[5, 6]]))
    (tmp_path / "notes.txt").write_text("not a record")
    rows = read_requests(tmp_path)
    assert rows.to_dict("list") == {"x": [5, 1, 3], "y": [6, 2, 4]}


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, r"^--requests .*: no recorded request \(\*\.jsonl\) in it$"),
        ({"a.jsonl": '{"inputs": 1}\n'}, r"a\.jsonl:1 is not a request record"),
        ({"a.jsonl": record(["x"], [[1]]) + "{oops\n"}, r"a\.jsonl:2 is not a request record"),
    ],
)
def test_a_folder_without_records_or_a_bad_line_is_one_line(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(JobError, match=message):
        read_requests(tmp_path)


def test_a_missing_folder_says_which_folder_to_give(tmp_path):
    with pytest.raises(JobError, match="no such folder; give the folder the release image"):
        read_requests(tmp_path / "missing")


def test_a_cut_short_last_line_is_skipped_and_counted(tmp_path, caplog):
    whole = record(["x"], [[1], [2]])
    (tmp_path / "a.jsonl").write_text(whole + whole[: len(whole) // 2])
    (tmp_path / "b.jsonl").write_text(whole)
    rows = read_requests(tmp_path)
    assert len(rows) == 4 and rows.attrs["skipped"] == 1
    assert "skipped 1 cut-short last line of the request records" in caplog.text
    # A broken line that is not the last one is an error, not a skip
    (tmp_path / "a.jsonl").write_text(whole[: len(whole) // 2] + "\n" + whole)
    with pytest.raises(JobError, match=r"a\.jsonl:1 is not a request record"):
        read_requests(tmp_path)
