"""Sweeps across processes and machines: a numbered plan, its shards, what is already recorded.

A sweep is the list of jobs ``benchmark.plan`` makes, numbered from 1: models in the order the
command names them (a pattern's matches sorted by name), each with the seeds in the order given.
Nothing in it depends on the machine or the time, so every node that runs the same command with
the same plugins installed computes the same plan. Each job has an identity key, a hash of what
it trains (its RunConfig without the places data lives in, and the model's distribution and
version); the plan's fingerprint is a hash of its keys in order.

Shard I of N holds the jobs whose number j has ``(j - 1) mod N == I - 1``: jobs are dealt to the
shards like cards, so each shard gets a mix of models rather than a block of one.

A job is done once ``OUT/results.jsonl`` holds a record with its key and status ``ok``; a failed
record does not count, so running a shard again retries its failures and skips the rest. Every
process appends records and rebuilds the reports while holding ``OUT/.results.lock``
(``flock(2)``), so lines never interleave and the last rebuild always includes every record.
``OUT/plans/<fingerprint>.json`` lists a plan's jobs, so the reports can say which are missing.

Importing this module loads no TensorFlow: the CLI checks ``--shard`` before it loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import files
from .errors import ZooError, ZooUsageError

if TYPE_CHECKING:
    from .benchmark import Job

RESULTS, LOCK, PLANS = "results.jsonl", ".results.lock", "plans"
RECORDED, FAILED = "recorded", "failed"
# Where the data lives changes nothing about what a job trains (as for a resume).
LOCATION = ("data_dir", "manual_dir", "cache_dir")
SHOWN = 8  # jobs named per list in a report's sweep status


@dataclass(frozen=True)
class Shard:
    index: int  # 1 <= index <= count
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, number: int) -> bool:
        """Whether job ``number`` (counted from 1) belongs to this shard."""
        return (number - 1) % self.count == self.index - 1


def parse_shard(text: str) -> Shard:
    """``"2/4"`` -> Shard(2, 4); anything else is a one-line usage error."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ZooUsageError(f"`shard` expects I/N, shard I of N with 1 <= I <= N, received {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def job_key(config: dict[str, Any], distribution: str | None, version: str | None) -> str:
    """What a job trains, as a hash: equal for the same training on any machine."""
    identity = {k: v for k, v in files.jsonable(config).items() if k not in LOCATION}
    identity["source"] = [distribution, version]  # a new plugin version is a new model
    return _hash(identity)[:16]


def fingerprint(keys: Sequence[str]) -> str:
    return _hash(list(keys))[:12]


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def read_records(out: Path) -> list[dict[str, Any]]:
    path = out / RESULTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def succeeded(record: dict[str, Any]) -> bool:
    return record.get("status", "ok") == "ok"  # records from before sweeps had no status


def states(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Each recorded job key's state: ``recorded`` once any of its records succeeded, else ``failed``."""
    found: dict[str, str] = {}
    for r in records:
        if r.get("job") and found.get(r["job"]) != RECORDED:
            found[r["job"]] = RECORDED if succeeded(r) else FAILED
    return found


@dataclass(frozen=True)
class Selection:
    """A plan, the jobs of it this process runs (its shard), and those not yet recorded."""

    jobs: Sequence[Job]  # the whole plan
    mine: Sequence[Job]
    todo: Sequence[Job]
    fingerprint: str | None  # None: --from-runs, no plan
    states: dict[str, str]  # job key -> recorded or failed, as OUT has them


def select(jobs: Sequence[Job], out: Path, shard: Shard | None = None) -> Selection:
    """Shard ``shard`` of ``jobs``, less the jobs OUT has recorded (``--from-runs`` jobs never are)."""
    found = states(read_records(out))
    mine = [j for j in jobs if shard is None or shard.holds(j.index)]
    plan = fingerprint([j.key for j in jobs]) if jobs and all(j.key for j in jobs) else None
    return Selection(jobs, mine, [j for j in mine if found.get(j.key) != RECORDED], plan, found)


def where(shard: Shard | None) -> dict[str, Any]:
    """Where a record was made: host and process, the shard; Ray adds its node."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "shard": str(shard) if shard else None, "ray": None}


def write_plan(out: Path, plan: str, jobs: Sequence[Job]) -> None:
    """``OUT/plans/<fingerprint>.json``: the plan's jobs, written (the same) by every shard."""
    (out / PLANS).mkdir(parents=True, exist_ok=True)
    files.write_json(out / PLANS / f"{plan}.json", {
        "fingerprint": plan,
        "jobs": [{"index": j.index, "job": j.key, "label": j.label, "variant": j.variant,
                  "run_dir": str(j.run_dir)} for j in jobs],
    })


def status(out: Path, records: list[dict[str, Any]]) -> list[str]:
    """One line per plan in ``out`` that is not complete: which jobs failed, which are missing."""
    found, logs = states(records), {r["job"]: r.get("log") for r in records if r.get("job")}
    lines = []
    for path in sorted((out / PLANS).glob("*.json")):
        plan = json.loads(path.read_text())
        jobs = plan["jobs"]
        bad = [j for j in jobs if found.get(j["job"]) == FAILED]
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


def save(out: Path, record: dict[str, Any]) -> None:
    """Append one record and rebuild the reports, under the results lock."""
    out.mkdir(parents=True, exist_ok=True)
    with files.locked(out / LOCK):
        files.append_line(out / RESULTS, json.dumps(record))
        _rebuild(out)


def rebuild(out: Path) -> None:
    """results.csv, results.md and results.png from every record in ``out`` (``--report``)."""
    with files.locked(out / LOCK):
        _rebuild(out)


def _rebuild(out: Path) -> None:
    from .benchmark import write_reports

    records = read_records(out)
    write_reports(out, records, notes=status(out, records))


def run(out: Path, results: Iterator[tuple[Job, dict[str, Any]]], selection: Selection,
        command: str = "") -> Iterator[tuple[Job, dict[str, Any]]]:
    """Record each (job, record) an executor yields, as it comes, and pass it on.

    The plan is written to ``OUT/plans`` before the first job runs.
    """
    plan = selection.fingerprint
    if plan is not None:
        write_plan(out, plan, selection.jobs)
    for job, record in results:
        if plan is not None:
            record["plan"] = {"fingerprint": plan, "index": job.index, "jobs": len(selection.jobs)}
        record.update(command=command, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        save(out, record)
        yield job, record


def check_gpus(ray: str | None, gpus_per_job: float | None) -> None:
    if gpus_per_job and ray is None:
        raise ZooUsageError("`gpus_per_job` needs `ray`; a scheduler's shards get their GPUs from the scheduler")


@contextmanager
def executing(jobs: Sequence[Job], out: Path, *, shard: Shard | None = None, ray: str | None = None,
              cpus_per_job: int | None = None, gpus_per_job: float | None = None):
    """The executor's (job, record) iterator for ``jobs``: here, one after another, or on Ray
    (connected and checked on entry, before anything is written; disconnected on exit). The
    datasets are prepared here first."""
    from .benchmark import prepare

    check_gpus(ray, gpus_per_job)
    if ray is None:
        prepare(jobs, out)
        yield run_here(jobs, out, threads=cpus_per_job, shard=shard)
        return
    from .ray_executor import RayCluster, check_jobs

    check_jobs(jobs)
    with RayCluster(ray, cpus_per_job=cpus_per_job or 1, gpus_per_job=gpus_per_job or 0) as cluster:
        prepare(jobs, out)
        yield cluster.run(jobs, out, shard=shard)


def raise_failures(records: Sequence[dict[str, Any]]) -> None:
    """One ZooError for a sweep's failed jobs, naming the first; nothing if none failed."""
    failed = [r for r in records if r["status"] == FAILED]
    if failed:
        first = failed[0]
        log = "" if first["log"] in first["error"] else f" (log: {first['log']})"
        raise ZooError(f"{len(failed)} of {len(records)} job(s) failed, first {first['model']} seed "
                       f"{first['seed']}: {first['error']}{log}; the same command again retries them")


def run_here(jobs: Iterable[Job], out: Path, *, threads: int | None = None,
             shard: Shard | None = None) -> Iterator[tuple[Job, dict[str, Any]]]:
    """The local executor: one job after another, each trained in a child process."""
    from .benchmark import attempt, limit_threads

    if threads:
        limit_threads(threads)  # the measurements in this process, where TensorFlow still allows it
    for job in jobs:
        yield job, attempt(job, out, threads=threads, where=where(shard))
