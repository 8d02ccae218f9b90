"""A sweep's records: ``OUT/results.jsonl`` (appended under ``OUT/.results.lock``), the plans in
``OUT/plans/``, and which jobs are done. No TensorFlow here.

A job is done once ``results.jsonl`` holds a record with its key and status ``ok``; a failed record
does not count, so running a shard again retries its failures and skips the rest.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import formats
from .jobs import Job, Shard, fingerprint

RESULTS, LOCK, PLANS = "results.jsonl", ".results.lock", "plans"
RECORDED_STATE, FAILED_STATE = "recorded", "failed"


SHOWN = 8  # jobs named per list in a report's sweep status


def read_records(out: Path) -> list[dict[str, Any]]:
    path = out / RESULTS
    if not path.exists():
        return []
    lines = enumerate(path.read_text().splitlines(), 1)
    # Line by line: a results file may hold records of several formats (older ones are migrated).
    return [formats.read(formats.BENCH_RECORD, json.loads(line), f"{path}, line {n}") for n, line in lines if line.strip()]


def succeeded(record: dict[str, Any]) -> bool:
    return record["status"] == "ok"


def states(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Each recorded job key's state: ``recorded`` once any of its records succeeded, else ``failed``."""
    found: dict[str, str] = {}
    for r in records:
        if r.get("job") and found.get(r["job"]) != RECORDED_STATE:
            found[r["job"]] = RECORDED_STATE if succeeded(r) else FAILED_STATE
    return found


@dataclass(frozen=True)
class Selection:
    """A plan, the jobs of it this process runs (its shard), and those not yet recorded."""

    jobs: Sequence[Job]  # the whole plan
    mine: Sequence[Job]
    todo: Sequence[Job]
    fingerprint: str | None  # None: --from-runs or --from-presets, no plan
    states: dict[str, str]  # job key -> recorded or failed, as OUT has them


def select(jobs: Sequence[Job], out: Path, shard: Shard | None = None) -> Selection:
    """Shard ``shard`` of ``jobs``, less the jobs OUT has recorded (``--from-runs`` jobs never are;
    a ``--from-presets`` job is, by its preset's digest and dataset)."""
    found = states(read_records(out))
    mine = [j for j in jobs if shard is None or shard.holds(j.index)]
    # Only a training sweep's numbered jobs make a plan; measured runs and presets have no number.
    plan = fingerprint([j.key for j in jobs]) if jobs and all(j.key and j.index for j in jobs) else None
    return Selection(jobs, mine, [j for j in mine if found.get(j.key) != RECORDED_STATE], plan, found)


def where(shard: Shard | None) -> dict[str, Any]:
    """Where a record was made: host and process, the shard; Ray adds its node."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "shard": str(shard) if shard else None, "ray": None}


def write_plan(out: Path, plan: str, jobs: Sequence[Job]) -> None:
    """``OUT/plans/<fingerprint>.json``: the plan's jobs, written (the same) by every shard."""
    (out / PLANS).mkdir(parents=True, exist_ok=True)
    formats.write(formats.BENCH_PLAN, out / PLANS / f"{plan}.json", {
        "fingerprint": plan,
        "jobs": [{"index": j.index, "job": j.key, "label": j.label, "variant": j.variant,
                  "run_dir": str(j.run_dir)} for j in jobs],
    })


def status(out: Path, records: list[dict[str, Any]]) -> list[str]:
    """One line per plan in ``out`` that is not complete: which jobs failed, which are missing."""
    found, logs = states(records), {r["job"]: r.get("log") for r in records if r.get("job")}
    lines = []
    for path in sorted((out / PLANS).glob("*.json")):
        plan = formats.load(formats.BENCH_PLAN, path)
        jobs = plan["jobs"]
        bad = [j for j in jobs if found.get(j["job"]) == FAILED_STATE]
        missing = [j for j in jobs if j["job"] not in found]
        if not bad and not missing:
            continue
        parts = [f"sweep {plan['fingerprint']}: {len(jobs) - len(bad) - len(missing)} of {len(jobs)} jobs recorded"]
        if bad:
            parts.append("failed: " + _names(bad, lambda j: f" (log: {logs[j['job']]})"))
        if missing:
            parts.append("not recorded (yet): " + _names(missing))
        lines.append("; ".join(parts))
    return lines


def _names(jobs: list[dict[str, Any]], extra=lambda j: "") -> str:
    shown = ", ".join(f"#{j['index']} {j['label']}{extra(j)}" for j in jobs[:SHOWN])
    return shown + (f" and {len(jobs) - SHOWN} more" if len(jobs) > SHOWN else "")


