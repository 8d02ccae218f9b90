"""The format version of every file the zoo writes and reads back, and the migrations that read
older files in the shape the code uses now.

Each kind of file has its own version number (:data:`CURRENT`), stored in the file as
``"format_version"`` (first key of a JSON file, of each line of ``results.jsonl``); a file without
it is version 0 (written before files carried one). Writers go through :func:`stamp` (or
:func:`write`); readers through :func:`read` (or :func:`load`), which

- migrates an older payload one version at a time (``MIGRATIONS[kind][n]`` turns version n into
  n + 1), so the code that uses a file reads one shape, the current one;
- refuses a version newer than this zoo knows with a one-line :class:`ZooError` naming the file
  and saying to upgrade keras-zoo;
- returns the payload without ``format_version``: a version belongs to the file, not to the
  record (``Run.record``, a bench record, a leaderboard row never show it). Writing a migrated
  payload back stamps the current version.

``history.csv`` carries no version of its own: it is the version of its run's ``config.json``.
A CSV has no place for one (a column would repeat it on every row of a file people load into
spreadsheets), and the one process that writes config.json writes history.csv: a new run writes
config.json first; a resume stamps config.json again (``resume.record_resume``), and writing it
over an older one rewrites history.csv whole in the current format first (``Run.write_json``).
Version 2 of config.json is version 1's; what changed is its history.csv: ``epoch`` counts from
1, as the console (``Epoch 1/3``) and curves.png do, where versions 0 and 1 counted from 0
(Keras' epoch index). :func:`read_history` reads the rows of an older run's history.csv shifted.
Version 3 of config.json adds fine-tuning: the top-level ``init`` (the preset the run started
from, its digest, whether its head was new, ``freeze``; null for a run from random weights) and
the config's ``init`` and ``freeze`` options. Older runs lack them, which reads as null (the
RunConfig defaults; ``record.get("init")``), so the migration adds nothing; the version is there
so that an older zoo refuses such a run rather than resume a frozen run with every layer training.

Version 1 (no field: version 0) is the shape the zoo wrote when versions were introduced; the
v0 -> v1 migrations fill what the "runs from before X" fallbacks in the code used to assume.
Nothing here imports more than the standard library: runs are read before TensorFlow loads.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import files
from .errors import ZooError
from .version import __version__

FIELD = "format_version"

# The kinds of file, named as the docs name them.
RUN_CONFIG = "config.json"  # a run's record (and the version of its history.csv)
RUN_METRICS = "metrics.json"
RUN_EVAL = "eval-<split>.json"
RUN_FAILED = "failed.json"
RUN_PRUNED = "pruned.json"  # a tuning trial its pruner stopped
BACKUP_STATE = "backup/state.json"
BENCH_RECORD = "results.jsonl record"  # each line of a bench folder's results.jsonl
BENCH_PLAN = "plans/<fingerprint>.json"
BENCH_JOB = "jobs/<run>.json"  # a sweep's job, handed to the process that trains it
BENCH_PEAK = "jobs/<run>.peak.json"  # that process's peak memory, handed back
BENCH_STUDY = "tune/<model>/bench-study.json"  # a `zoo bench --tune` study, handed to the process that runs it
EXPORT = "assets.extra/zoo.json"  # an export's metadata (for people and serving tools)
PRESET = "preset.json"  # a published preset's record (zoo.presets)
RECIPE = "recipe file"  # training settings and hyperparameters for a model (zoo.recipes)

# What a run computed with before precision and devices were settings (float32 on one CPU, by
# TensorFlow, one process), and how its data came before the input path was one (in memory).
LEGACY_HARDWARE = {"precision": "float32", "device_kind": "CPU", "replicas": 1}
LEGACY_INPUT = {"train": "memory", "evaluation": "memory"}

Payload = dict[str, Any]


def _unchanged(payload: Payload) -> Payload:
    """Version 1 only adds the version field."""
    return payload


def _block(payload: Payload, key: str, default: Mapping[str, Any] | None) -> Payload | None:
    """``payload[key]`` when it is an object; ``default`` (copied) filled in when it is absent or
    null; None when it is something else (a damaged file: its reader says so)."""
    if payload.get(key) is None and default is not None:
        payload[key] = dict(default)
    value = payload.get(key)
    return value if isinstance(value, dict) else None


def _hardware(payload: Payload) -> Payload | None:
    hardware = _block(payload, "hardware", LEGACY_HARDWARE)
    if hardware is not None:
        hardware.setdefault("backend", "tensorflow")  # before the JAX backend
    return hardware


def _input(payload: Payload) -> Payload | None:
    return _block(payload, "input", LEGACY_INPUT)


def _config_0(record: Payload) -> Payload:
    """A run's config.json of version 0, from every zoo that wrote one."""
    # What a resume reads of the hardware and input blocks (runner._resume).
    hardware, source = _hardware(record), _input(record)
    if hardware is not None:
        hardware.setdefault("processes", 1)  # before multi-process training
    if source is not None:
        source.setdefault("shuffle_buffer", None)  # before streaming: in memory, no buffer
    config = _block(record, "config", None)
    if config is not None:
        # Before precision was a setting (float32), or from when it was recorded unresolved
        # ("auto": the hardware block has the precision it resolved to).
        if config.get("precision", "auto") == "auto":
            config["precision"] = (hardware or LEGACY_HARDWARE).get("precision", "float32")
        config.setdefault("input", "memory")  # before the input path was a setting
        config.setdefault("backend", "tensorflow")  # before the JAX backend
        # Before `devices` was a setting the run ran on TensorFlow's default device: "auto", and
        # a resume may place it anywhere (runner._resume_changes compares no "auto" devices).
        config.setdefault("devices", "auto")
    model = _block(record, "model", None)
    if model is not None:
        model.setdefault("origin", "entry point")  # before zoo.register
        model.setdefault("recipe", None)  # before recipes were recorded: not known
    dataset = _block(record, "dataset", None)
    if dataset is not None:
        dataset.setdefault("source", None)  # before folders of images: a TFDS dataset
    return record


def _metrics_0(metrics: Payload) -> Payload:
    _hardware(metrics)
    _input(metrics)
    return metrics


def _bench_record_0(record: Payload) -> Payload:
    record.setdefault("status", "ok")  # before sweeps, only successes were recorded
    if record["status"] == "ok":
        _hardware(record)
        _input(record)
        record.setdefault("hparams_set", {})  # before --hp variants
        record.setdefault("recipe_changed", {})  # before bench took the recipe options
    return record


def _backup_state_0(state: Payload) -> Payload:
    # Before the dropout generators' state was saved: not known (a resume keeps the fresh state,
    # and continues, though not exactly).
    state.setdefault("seed_states", None)
    return state


def _config_1(record: Payload) -> Payload:
    """Version 2 is version 1: only the run's history.csv changed (:func:`read_history`)."""
    return record


def _config_2(record: Payload) -> Payload:
    """Version 3 is version 2 with optional keys: a run without ``init`` started from random
    weights and froze nothing (RunConfig's defaults, ``record.get("init")``)."""
    return record


# MIGRATIONS[kind][n] turns version n into n + 1; the current version is how many there are.
MIGRATIONS: dict[str, list[Callable[[Payload], Payload]]] = {
    RUN_CONFIG: [_config_0, _config_1, _config_2],
    RUN_METRICS: [_metrics_0],
    RUN_EVAL: [_unchanged],
    RUN_FAILED: [_unchanged],
    RUN_PRUNED: [_unchanged],
    BACKUP_STATE: [_backup_state_0],
    BENCH_RECORD: [_bench_record_0],
    BENCH_PLAN: [_unchanged],
    BENCH_JOB: [_unchanged],
    BENCH_PEAK: [_unchanged],
    BENCH_STUDY: [_unchanged],
    EXPORT: [_unchanged],
    PRESET: [_unchanged],
    RECIPE: [_unchanged],
}
CURRENT: dict[str, int] = {kind: len(steps) for kind, steps in MIGRATIONS.items()}

# The config.json version from which its run's history.csv counts epochs from 1 (before: from 0).
HISTORY_FROM_1 = 2


def read_history(rows: list[dict[str, str]], config_version: int) -> list[dict[str, str]]:
    """The rows of a history.csv (as ``csv.DictReader`` reads them) of a run whose config.json is
    of ``config_version``, in the current shape: epochs counted from 1."""
    if config_version >= HISTORY_FROM_1:
        return rows
    return [{**row, "epoch": str(int(row["epoch"]) + 1)} for row in rows]


def stamp(kind: str, payload: Mapping[str, Any]) -> Payload:
    """``payload`` with this zoo's version of ``kind`` as its first key, to be written."""
    return {FIELD: CURRENT[kind], **{k: v for k, v in payload.items() if k != FIELD}}


def version(kind: str, payload: Mapping[str, Any], where: str | Path) -> int:
    """The format version ``payload`` says it is (0 without one); a newer one than this zoo
    knows, or one that is not a version, is a one-line ZooError naming ``where``."""
    found = payload.get(FIELD, 0)
    if isinstance(found, bool) or not isinstance(found, int) or found < 0:
        raise ZooError(f"{where} is corrupted: {FIELD} {found!r} is not a format version")
    if found > CURRENT[kind]:
        raise ZooError(
            f"{where} has {FIELD} {found}, newer than keras-zoo {__version__} reads "
            f"({kind} format {CURRENT[kind]}): upgrade keras-zoo to read it"
        )
    return found


def read(kind: str, payload: Any, where: str | Path) -> Any:
    """``payload`` (as read from a file of ``kind`` at ``where``) in the current shape, without
    its version field; the caller's object is not changed. A payload that is not a JSON object
    is returned as it is, for its reader to refuse."""
    if not isinstance(payload, dict):
        return payload
    found = version(kind, payload, where)
    migrated = copy.deepcopy({k: v for k, v in payload.items() if k != FIELD})
    for step in MIGRATIONS[kind][found:]:
        migrated = step(migrated)
    return migrated


def load(kind: str, path: Path) -> Any:
    """The file at ``path`` read (JSON) and migrated; OSError and ValueError as ``json`` raises them."""
    return read(kind, json.loads(Path(path).read_text(encoding="utf-8")), path)


def write(kind: str, path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically, stamped with the current version of ``kind``."""
    files.write_json(Path(path), stamp(kind, payload))


def dumps(kind: str, payload: Mapping[str, Any]) -> str:
    """``payload`` stamped, as one line of JSON (a line of results.jsonl)."""
    return json.dumps(stamp(kind, payload))
