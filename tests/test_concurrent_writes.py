"""Several processes writing the same files: results.jsonl from two bench shards, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys

from zoo import files

# Linux makes one write() to a file opened O_APPEND atomic (the inode lock), so records written
# in one call never mix, lock or no lock. A write may legally write less than it was given (a
# signal, NFS, a quota), and then a record takes several calls: the writers here get at most
# 4 kB per call (less than a page) and yield between calls, so each 20 kB record is 5 writes and
# only the lock keeps another writer's records out from between them (without it this fails).
WRITER = """
import os, sys
from pathlib import Path
from zoo.files import append_line
real_write = os.write
def short_write(fd, data):
    os.sched_yield()
    return real_write(fd, data[:4096])
os.write = short_write
tag = sys.argv[2]
for i in range(300):
    append_line(Path(sys.argv[1]), '{"writer": "%s", "i": %d, "pad": "%s"}' % (tag, i, tag * 20000))
"""


def test_two_processes_appending_records_lose_and_mix_nothing(tmp_path):
    path = tmp_path / "results.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag]) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    records = [json.loads(line) for line in path.read_text().splitlines()]  # each line whole
    for tag in "ab":
        assert [r["i"] for r in records if r["writer"] == tag] == list(range(300))
    assert all(r["pad"] == r["writer"] * 20000 for r in records)


def test_atomic_writes_of_one_file_use_their_own_temporaries(tmp_path):
    target = tmp_path / "results.md"
    with files.atomic_path(target) as first, files.atomic_path(target) as second:
        assert first != second and first.name.endswith("results.md")
        first.write_text("one")
        second.write_text("two")
    assert target.read_text() == "one"  # the last to finish wins, whole: never a mix of both
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]
