"""Reports rebuilt from every record of a results folder: results.csv, results.md (the
leaderboard) and results.png. Every process appends its record and rebuilds the reports while it
holds the records' lock, so the last rebuild always includes every record."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import files, formats
from ..export.request import FORMATS
from .jobs import settings_text
from .plots import figure, plot  # noqa: F401  (reports.figure: results.png's, kept here for callers)
from .records import LOCK, RESULTS, read_records, status, succeeded


def dataset_label(info: dict[str, Any]) -> str:
    """A leaderboard's dataset: a folder by path, fingerprint and the shape it was prepared at,
    since its images (and their size) change while its name does not."""
    source = info["source"] or {}
    if source.get("kind") != "folder":
        return info["name"]
    return f"{info['name']}@{source['fingerprint'][:8]} {'x'.join(map(str, info['input_shape']))}"


def hardware_label(hardware: dict[str, Any], input: dict[str, Any]) -> str:
    """Where and how a leaderboard row's runs computed: ``float32, CPU, memory``,
    ``mixed_float16, 2 GPU (A100), stream``, ``jax, float32, CPU, memory`` (backends other than
    TensorFlow are named).

    The CPU's model is in the environment line under the table; a GPU's is named here.
    """
    count = hardware["replicas"]
    devices = f"{count} {hardware['device_kind']}" if count > 1 else hardware["device_kind"]
    if hardware["device_kind"] == "GPU":
        devices += f" ({hardware.get('device_name')})"
    label = f"{hardware['precision']}, {devices}, {input['train']}"
    backend = hardware["backend"]
    return label if backend == "tensorflow" else f"{backend}, {label}"


def leaderboard(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (± std) over seeds per model and setting: the untuned rows, best test accuracy first,
    then the tuned ones of each tuning budget (:func:`sections`), best first."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    latest = {_measured(r): r for r in records}  # a run or preset measured again (more formats): once
    for r in latest.values():
        changed = settings_text({**r["hparams_set"], **r["recipe_changed"]})
        label = f"{r['model']} {changed}" if changed else r["model"]
        init = r.get("init") or {}
        if init:  # fine-tuned: never averaged with runs from random weights, nor from another preset
            label += f" (from {init['preset']}{', frozen ' + str(init['freeze']) if init.get('freeze') else ''})"
        if r.get("preset"):  # measured as published, never averaged with trained runs (nor another digest)
            label = preset_label(r["preset"], r["model"])
        recipe = r.get("recipe_file") or {}
        if recipe:  # never averaged with runs of the same settings typed by hand, nor another file's
            label += " (tuned)" if recipe.get("tuning") else f" (recipe {Path(recipe['path'] or '').name})"
        # Precisions, devices and input paths apart: their speeds (and accuracies) are not the
        # same measurement.
        setup = hardware_label(r["hardware"], r["input"])
        groups[(label, r["dataset"], r["epochs"], r["batch_size"], setup, recipe.get("sha256"), init.get("digest"))].append(r)
    rows = []
    for (label, dataset, epochs, batch, hardware, *_), rs in groups.items():
        acc = [r["test_accuracy"] for r in rs if r["test_accuracy"] is not None]
        rows.append({
            "model": label,
            "hardware": hardware,
            "dataset": dataset,
            "epochs": epochs,
            "seeds": len(rs),
            "acc_mean": statistics.mean(acc) if acc else float("nan"),
            "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "acc_count": len(acc),
            **{k: _mean(r[k] for r in rs) for k in _MEANS},
            "params": rs[0]["params"],
            "flops_per_example": rs[0]["flops_per_example"],
            "peak_rss_mb": max((r["peak_rss_mb"] for r in rs if r.get("peak_rss_mb")), default=None),
            "formats": format_means(rs),
            **tuning(rs[0]),
        })
    return sorted(rows, key=lambda r: (r["budget"] or 0, -r["acc_mean"]))


def _measured(record: dict[str, Any]) -> Any:
    """What a record measured: its run directory, or a preset (its digest) on a dataset."""
    if record.get("run_dir"):
        return record["run_dir"]
    preset = record.get("preset") or {}
    return (preset["digest"], record["dataset"]) if preset.get("digest") else id(record)


def tuning(record: dict[str, Any]) -> dict[str, Any]:
    """How much tuning a record's settings had: the study's budget, its finished and pruned trials
    and their training seconds (all None for settings nobody tuned here)."""
    study = (record.get("recipe_file") or {}).get("tuning") or {}
    counts = study.get("trials") or {}
    return {"budget": study.get("budget"), "trials": sum(counts.values()) if counts else None,
            "pruned": counts.get("pruned"), "tuning_seconds": study.get("seconds")}


def sections(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The leaderboard's tables: the untuned rows, then one per tuning budget, so that a table
    compares only entries that had the same tuning (none, or N trials each)."""
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    return [("Untuned: each model's recipe" if budget is None else f"Tuned: {budget} trials per entry",
             [r for r in rows if r["budget"] == budget]) for budget in budgets]


# A format's figures in a record's ``formats`` (zoo.export.serving), averaged over a row's seeds.
FORMAT_FIGURES = ("bytes", "latency_ms", "throughput", "test_accuracy")
FORMAT_NAMES = {"saved_model": "SavedModel", "onnx": "ONNX", "litert": "LiteRT"}


def format_label(name: str, figures: dict[str, Any]) -> str:
    """A column group's name: ``ONNX``, ``LiteRT int8``."""
    quantization = figures.get("quantization")
    return FORMAT_NAMES.get(name, name) + (f" {quantization}" if quantization else "")


def format_means(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each format measured in its own runtime (a float and a quantized file apart), its figures'
    means over the records that have it; records older than ``formats`` have none."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        for name, figures in (r.get("formats") or {}).items():
            found[format_label(name, figures)].append(figures)
    return {label: {k: _mean(f.get(k) for f in found[label]) for k in FORMAT_FIGURES}
            for label in sorted(found, key=_group_order)}


def _group_order(label: str) -> tuple[int, str]:
    """FORMATS' order, then a format's float file before its quantized ones."""
    order = [FORMAT_NAMES.get(n, n) for n in FORMATS]
    name = label.split()[0]
    return (order.index(name) if name in order else len(order), label)


def preset_label(preset: dict[str, Any], model: str) -> str:
    """A preset's leaderboard label: ``preset cnn.mnist (cnn, sha256:1a2b3c4d)``."""
    return f"preset {preset['name']} ({model}, {preset['digest'][:15]})"


def _mean(values: Any) -> float | None:
    """The mean of the figures that exist (a preset has no training figures); None if none does."""
    found = [v for v in values if v is not None]
    return statistics.mean(found) if found else None


def _figure(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


_MEANS = (
    "train_seconds",
    "train_examples_per_second",
    "saved_model_bytes",
    "latency_ms_p50",
    "latency_ms_p99",
    "saved_model_examples_per_second",
    "keras_predict_examples_per_second",
    "saved_model_vs_keras",
)


def write_reports(out: Path, records: list[dict[str, Any]] | None = None, notes: Sequence[str] = ()) -> None:
    """results.csv, results.md and results.png from the successful records; ``notes`` (a sweep's
    missing and failed jobs) end results.md."""
    records = [r for r in (read_records(out) if records is None else records) if succeeded(r)]
    if not records:
        if notes:
            files.write_text(out / "results.md", "No job has succeeded yet.\n\n" + _bullets(notes))
        return
    _write_csv(out / "results.csv", records)
    rows = leaderboard(records)
    commands = list(dict.fromkeys(r["command"] for r in records if r.get("command")))
    files.write_text(out / "results.md", markdown(rows, records[-1]["env"], commands, notes))
    plot(out / "results.png", rows)


def _bullets(notes: Sequence[str]) -> str:
    return "".join(f"- {n}\n" for n in notes)


def markdown(rows: list[dict[str, Any]], env: dict[str, Any], commands: list[str],
             notes: Sequence[str] = ()) -> str:
    """results.md: the leaderboard's tables (one, untitled, while nothing is tuned; numbered on
    across tables, as results.png numbers its points), the legend, the environment, the commands."""
    groups, tables, start = format_groups(rows), sections(rows), 1
    parts = []
    for title, section in tables:
        tuned = section[0]["budget"] is not None
        parts.append((f"## {title}\n\n" if tuned or len(tables) > 1 else "") + _table(section, groups, start, tuned))
        start += len(section)
    env_line = (
        f"Python {env['python']}, TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
        f"TFDS {env['tensorflow_datasets']}; {env['cpu']}, {env['cores']} cores."
    )
    made = ("\n\nMade by " + ", then ".join(f"`{c}`" for c in commands) + ".") if commands else ""
    tuned = any(r["budget"] is not None for r in rows)
    legend = LEGEND + (TUNED_LEGEND if tuned else "") + (FORMATS_LEGEND if groups else "")
    return ("\n\n".join(parts) + f"\n\n{legend}\n{env_line}{made}\n"
            + (f"\n{_bullets(notes)}" if notes else ""))


def _table(rows: Sequence[dict[str, Any]], groups: Sequence[str], start: int, tuned: bool) -> str:
    """One table of the leaderboard; a tuned one has the columns of its tuning beside the accuracy."""
    extra = " trials | pruned | tuning s |" if tuned else ""
    header = (
        "| # | model | precision, devices, input | dataset | epochs | seeds | test accuracy |" + extra
        + " train s | train ex/s | params | MFLOPs/ex | SavedModel MB | p50 / p99 ms (batch 1) | "
        "SavedModel ex/s (256) | vs Keras predict | peak RSS MB |"
        + "".join(f" {g} MB | {g} ms (batch 1) | {g} ex/s (256) | {g} test accuracy |" for g in groups)
        + "\n|" + "---|" * (16 + 3 * tuned + 4 * len(groups)) + "\n"
    )
    lines = []
    for i, r in enumerate(rows, start):
        flops = f"{r['flops_per_example'] / 1e6:.2f}" if r["flops_per_example"] else "n/a"
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "n/a"
        study = (f" {_figure(r['trials'], 'd')} | {_figure(r['pruned'], 'd')} | "
                 f"{_figure(r['tuning_seconds'], '.1f')} |") if tuned else ""
        lines.append(
            f"| {i} | {r['model']} | {r['hardware']} | {r['dataset']} | {r['epochs']} | {r['seeds']} | "
            f"{_accuracy(r)} |{study} {_figure(r['train_seconds'], '.1f')} | "
            f"{_figure(r['train_examples_per_second'], ',.0f')} | {r['params']:,} | {flops} | "
            f"{r['saved_model_bytes'] / 1e6:.2f} | {r['latency_ms_p50']:.2f} / {r['latency_ms_p99']:.2f} | "
            f"{r['saved_model_examples_per_second']:,.0f} | {r['saved_model_vs_keras']:.2f}x | {rss} |"
            + "".join(_format_cells((r.get("formats") or {}).get(g)) for g in groups)
        )
    return header + "\n".join(lines)


LEGEND = """Columns: **#** rank, best test accuracy first. **model** the model and what differs from its \
recipe ("from PRESET": fine-tuned from that preset). **precision, devices, input** how it computed and whether training read the data from memory \
or streamed it. **dataset**, **epochs** as trained. **seeds** how many runs (one per seed) the row \
averages (a run measured again counts once, with its newest record); every figure is their mean. **test accuracy** on the test split, ± the standard deviation \
over seeds (shown from two seeds on). **train s** seconds of training, evaluation excluded. \
**train ex/s** training examples per second in steady state. **params** the model's parameters. \
**MFLOPs/ex** millions of floating-point operations of one forward pass per example. \
**SavedModel MB** the exported SavedModel's size on disk (10⁶ bytes). **p50 / p99 ms (batch 1)** the \
export's latency for one image: median and 99th percentile, in milliseconds. **SavedModel ex/s (256)** \
the export's throughput at batch 256, examples per second. **vs Keras predict** that throughput \
divided by Keras `predict`'s on the same model and batches: 2.00x is twice as fast. **peak RSS MB** \
the training process's peak resident memory (highest over seeds; n/a: measured from finished runs). \
A row **preset NAME (model, digest)** measures a published preset as it is (`--from-presets`): its \
epochs are those it was trained with, its training figures n/a, and its record holds its name, digest \
and license.
"""


TUNED_LEGEND = """**Tuned: N trials per entry**: each entry was tuned first (`zoo bench --tune N`: a study \
of N trials on the validation split, seeded with the bench's first seed, in OUT/tune/MODEL), then trained \
over the seeds with its best trial's recipe; its **model** column shows those settings. **trials** the \
study's finished trials, **pruned** how many of them the pruner stopped early, **tuning s** their seconds \
of training summed. Tuned and untuned rows are never in one table, nor are budgets. A row **(recipe FILE)** \
trained with a recipe file that no study made (`--recipe`); a study's file makes a tuned row.
"""


FORMATS_LEGEND = """Each further column group is a format the export holds beside the SavedModel \
(`--format`; a quantized one named with its `--quantize`), measured in its own runtime in a fresh process \
(ONNX Runtime, LiteRT's interpreter): **MB** its file's size (10⁶ bytes), **ms (batch 1)** the median \
latency for one image, **ex/s (256)** its throughput at the SavedModel's batch, **test accuracy** on the \
test split as that runtime classifies it (n/a: not measured for that row).
"""


def format_groups(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The formats measured for any row (their column groups), in FORMATS' order."""
    return sorted({label for r in rows for label in (r.get("formats") or {})}, key=_group_order)


def _format_cells(figures: dict[str, Any] | None) -> str:
    """One row's column group of a format: MB, latency, throughput, test accuracy."""
    figures = figures or {}
    size = None if figures.get("bytes") is None else figures["bytes"] / 1e6
    accuracy = figures.get("test_accuracy")
    return (f" {_figure(size, '.2f')} | {_figure(figures.get('latency_ms'), '.2f')} | "
            f"{_figure(figures.get('throughput'), ',.0f')} | {_figure(accuracy, '.4f')} |")


def _accuracy(row: dict[str, Any]) -> str:
    if row["acc_mean"] != row["acc_mean"]:  # NaN: the dataset has no test split
        return "no test split"
    if row["acc_count"] < 2:  # a deviation needs two values
        return f"{row['acc_mean']:.4f}"
    return f"{row['acc_mean']:.4f} ± {row['acc_std']:.4f}"


# Open-ended blocks (a count per class, the names of skipped files): results.jsonl only.
_NOT_IN_CSV = ("dataset_source.files", "dataset_source.skipped")


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """One record as flat CSV columns: a nested block's fields as dotted names (``hardware.precision``,
    ``hparams.filters``), a list of plain values joined by commas (``16,32``) and no cell holding JSON;
    the splits and the environment as ``split_*`` and ``env_*``."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key == "splits":
            row.update({f"split_{k}": v for k, v in value.items()})
        elif key == "env":
            row.update({f"env_{k}": v for k, v in value.items()})
        else:
            _flatten(row, key, value)
    return row


def _flatten(row: dict[str, Any], key: str, value: Any) -> None:
    if key in _NOT_IN_CSV:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(row, f"{key}.{k}", v)
    elif isinstance(value, (list, tuple)):
        if all(v is None or isinstance(v, (str, int, float, bool)) for v in value):
            row[key] = ",".join(map(str, value))
    else:
        row[key] = value


def _write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    flat = [csv_row(r) for r in records]
    files.write_csv(path, flat, dict.fromkeys(k for row in flat for k in row))


def save(out: Path, record: dict[str, Any]) -> None:
    """Append one record and rebuild the reports, under the results lock."""
    out.mkdir(parents=True, exist_ok=True)
    with files.locked(out / LOCK):
        files.append_line(out / RESULTS, formats.dumps(formats.BENCH_RECORD, record))
        _rebuild(out)


def rebuild(out: Path) -> None:
    """results.csv, results.md and results.png from every record in ``out`` (``--report``)."""
    with files.locked(out / LOCK):
        _rebuild(out)


def _rebuild(out: Path) -> None:

    records = read_records(out)
    write_reports(out, records, notes=status(out, records))
