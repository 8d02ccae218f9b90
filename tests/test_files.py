"""zoo.files: atomic writes leave either the old file or the new one, never a temporary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from zoo import files
from zoo.errors import ZooUsageError


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_path_writes_to_a_hidden_sibling_that_keeps_the_file_name(tmp_path):
    target = tmp_path / "model.keras"
    with files.atomic_path(target) as tmp:
        # Keras and matplotlib pick the format from the suffix, so the temporary must keep it.
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith("model.keras")
        assert tmp != target
        tmp.write_text("new")
        assert not target.exists()  # nothing is visible under the real name before the block ends
    assert target.read_text() == "new"
    assert listing(tmp_path) == ["model.keras"]


def test_atomic_path_replaces_an_existing_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with files.atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert listing(tmp_path) == ["a.txt"]


def test_atomic_path_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half-way"), files.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("half-way")
    assert target.read_text() == "old"
    assert listing(tmp_path) == ["a.txt"]


def test_atomic_path_failure_without_an_old_file_leaves_nothing(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(KeyError), files.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyError("x")
    assert listing(tmp_path) == []


def test_atomic_path_failure_before_anything_was_written(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(ValueError), files.atomic_path(target):
        raise ValueError("nothing written")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("cnn", "cnn"),
        ("ResNet50", "ResNet50"),
        ("Xception:X", "Xception-X"),
        ("keep_this.v2-x", "keep_this.v2-x"),
        ("dist:cnn", "dist-cnn"),
        ("a/b\\c", "a-b-c"),
        ("a  //  b", "a-b"),  # a run of forbidden characters becomes one '-'
        ("../../etc/passwd", "etc-passwd"),
        ("..", "model"),
        ("", "model"),
        ("-.-", "model"),
        ("Ünïcode", "n-code"),
        (".hidden", "hidden"),
    ],
)
def test_safe_name_is_one_file_name_that_cannot_leave_its_folder(text, expected):
    assert files.safe_name(text) == expected


def test_write_text_is_utf8_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "notes.md"
    files.write_text(target, "accuracy: 99 % – ok ✓\n")
    assert target.read_bytes() == "accuracy: 99 % – ok ✓\n".encode()
    assert listing(tmp_path) == ["notes.md"]


def test_write_json_is_indented_with_a_final_newline_and_converts_tuples_and_numpy(tmp_path):
    target = tmp_path / "m.json"
    files.write_json(target, {"shape": (28, 28, 1), "loss": np.float32(0.5), "n": np.int64(3)})
    text = target.read_text(encoding="utf-8")
    assert text == '{\n  "shape": [\n    28,\n    28,\n    1\n  ],\n  "loss": 0.5,\n  "n": 3\n}\n'
    assert listing(tmp_path) == ["m.json"]


def test_write_json_of_something_unserialisable_keeps_the_old_file(tmp_path):
    target = tmp_path / "m.json"
    files.write_json(target, {"ok": 1})
    with pytest.raises(TypeError, match=r"not JSON serialisable: \{1, 2\}"):
        files.write_json(target, {"bad": {1, 2}})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert listing(tmp_path) == ["m.json"]


def test_write_csv_writes_the_header_in_field_order_and_plain_newlines(tmp_path):
    target = tmp_path / "history.csv"
    rows = [{"epoch": 1, "loss": 0.5}, {"loss": 0.25, "epoch": 2}, {"epoch": 3}]
    files.write_csv(target, rows, iter(["epoch", "loss"]))  # any iterable of field names
    assert target.read_bytes() == b"epoch,loss\r\n1,0.5\r\n2,0.25\r\n3,\r\n"
    assert listing(tmp_path) == ["history.csv"]


def test_write_csv_with_an_unknown_field_keeps_the_old_file(tmp_path):
    target = tmp_path / "history.csv"
    files.write_csv(target, [{"epoch": 1}], ["epoch"])
    with pytest.raises(ValueError, match="speed"):
        files.write_csv(target, [{"epoch": 2, "speed": 3}], ["epoch"])
    assert target.read_text() == "epoch\n1\n"
    assert listing(tmp_path) == ["history.csv"]


def test_jsonable_is_what_json_reads_back():
    payload = {"filters": (32, (64, 128)), "lr": np.float64(0.1), "name": "cnn", "none": None}
    out = files.jsonable(payload)
    assert out == {"filters": [32, [64, 128]], "lr": 0.1, "name": "cnn", "none": None}
    assert type(out["lr"]) is float and type(out["filters"]) is list
    with pytest.raises(TypeError, match="not JSON serialisable: <object"):
        files.jsonable({"x": object()})


def test_atomic_path_temporaries_are_unique_per_call(tmp_path):
    # Two writers of one file (two processes exporting the same run) must not share a temporary.
    target = tmp_path / "state.json"
    with files.atomic_path(target) as first, files.atomic_path(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block finished last
    assert listing(tmp_path) == ["state.json"]


def test_check_creatable_accepts_a_new_folder_and_leaves_nothing_behind(tmp_path):
    files.check_creatable(tmp_path / "a" / "b" / "c", "run directory")
    assert listing(tmp_path) == []


def test_check_creatable_accepts_an_existing_folder(tmp_path):
    (tmp_path / "exports").mkdir()
    files.check_creatable(tmp_path / "exports", "export base")
    assert listing(tmp_path) == ["exports"] and listing(tmp_path / "exports") == []


def test_check_creatable_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(ZooUsageError) as err:
        files.check_creatable(tmp_path / "taken", "export base")
    assert str(err.value) == f"export base {tmp_path / 'taken'} exists and is not a directory"
    with pytest.raises(ZooUsageError) as err:
        files.check_creatable(tmp_path / "taken" / "sub" / "dir", "run directory")
    assert str(err.value) == (
        f"cannot create run directory {tmp_path / 'taken' / 'sub' / 'dir'}: {tmp_path / 'taken'} is a file"
    )
    assert listing(tmp_path) == ["taken"]


def test_check_creatable_says_why_the_folder_cannot_be_made(tmp_path, monkeypatch):
    # Permission bits do not stop root; a refusal from the file system is simulated.
    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkdtemp", refuse)
    with pytest.raises(ZooUsageError) as err:
        files.check_creatable(tmp_path / "runs" / "x", "run directory")
    assert str(err.value) == f"cannot create run directory {tmp_path / 'runs' / 'x'}: Permission denied in {tmp_path}"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_check_creatable_refuses_a_folder_the_kernel_will_not_make():
    with pytest.raises(ZooUsageError, match=r"^cannot create run directory /proc/zoo-test/x: .+ in /proc$"):
        files.check_creatable(Path("/proc/zoo-test/x"), "run directory")


def test_append_line_adds_exactly_one_newline_terminated_line(tmp_path):
    target = tmp_path / "results.jsonl"
    files.append_line(target, '{"a": 1}')
    files.append_line(target, '{"b": 2}\n')
    files.append_line(target, "é" * 100_000)  # long: still one whole line
    assert target.read_text(encoding="utf-8") == '{"a": 1}\n{"b": 2}\n' + "é" * 100_000 + "\n"
    assert target.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
