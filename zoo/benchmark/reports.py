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
    """Mean (± std) over seeds per model and setting, best test accuracy first."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        changed = settings_text({**r["hparams_set"], **r["recipe_changed"]})
        label = f"{r['model']} {changed}" if changed else r["model"]
        if r.get("preset"):  # measured as published, never averaged with trained runs (nor another digest)
            label = preset_label(r["preset"], r["model"])
        # Precisions, devices and input paths apart: their speeds (and accuracies) are not the
        # same measurement.
        setup = hardware_label(r["hardware"], r["input"])
        groups[(label, r["dataset"], r["epochs"], r["batch_size"], setup)].append(r)
    rows = []
    for (label, dataset, epochs, batch, hardware), rs in groups.items():
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
        })
    return sorted(rows, key=lambda r: -r["acc_mean"])


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
    _plot(out / "results.png", rows)


def _bullets(notes: Sequence[str]) -> str:
    return "".join(f"- {n}\n" for n in notes)


def markdown(rows: list[dict[str, Any]], env: dict[str, Any], commands: list[str],
             notes: Sequence[str] = ()) -> str:
    groups = format_groups(rows)
    header = (
        "| # | model | precision, devices, input | dataset | epochs | seeds | test accuracy | train s | "
        "train ex/s | params | MFLOPs/ex | SavedModel MB | p50 / p99 ms (batch 1) | "
        "SavedModel ex/s (256) | vs Keras predict | peak RSS MB |"
        + "".join(f" {g} MB | {g} ms (batch 1) | {g} ex/s (256) | {g} test accuracy |" for g in groups)
        + "\n|" + "---|" * (16 + 4 * len(groups)) + "\n"
    )
    lines = []
    for i, r in enumerate(rows, 1):
        flops = f"{r['flops_per_example'] / 1e6:.2f}" if r["flops_per_example"] else "n/a"
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "n/a"
        lines.append(
            f"| {i} | {r['model']} | {r['hardware']} | {r['dataset']} | {r['epochs']} | {r['seeds']} | "
            f"{_accuracy(r)} | {_figure(r['train_seconds'], '.1f')} | "
            f"{_figure(r['train_examples_per_second'], ',.0f')} | {r['params']:,} | {flops} | "
            f"{r['saved_model_bytes'] / 1e6:.2f} | {r['latency_ms_p50']:.2f} / {r['latency_ms_p99']:.2f} | "
            f"{r['saved_model_examples_per_second']:,.0f} | {r['saved_model_vs_keras']:.2f}x | {rss} |"
            + "".join(_format_cells((r.get("formats") or {}).get(g)) for g in groups)
        )
    env_line = (
        f"Python {env['python']}, TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
        f"TFDS {env['tensorflow_datasets']}; {env['cpu']}, {env['cores']} cores."
    )
    made = ("\n\nMade by " + ", then ".join(f"`{c}`" for c in commands) + ".") if commands else ""
    legend = LEGEND + (FORMATS_LEGEND if groups else "")
    return (header + "\n".join(lines) + f"\n\n{legend}\n{env_line}{made}\n"
            + (f"\n{_bullets(notes)}" if notes else ""))


LEGEND = """Columns: **#** rank, best test accuracy first. **model** the model and what differs from its \
recipe. **precision, devices, input** how it computed and whether training read the data from memory \
or streamed it. **dataset**, **epochs** as trained. **seeds** how many runs (one per seed) the row \
averages; every figure is their mean. **test accuracy** on the test split, ± the standard deviation \
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


def _plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib.pyplot as plt

    fig = figure(rows)
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def figure(rows: list[dict[str, Any]]) -> Any:
    """results.png's figure: test accuracy against training time and against parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Points carry their leaderboard number; the key below the plots gives the full labels,
    # which are too long (hyperparameters of a variant) to print next to a point.
    key_height = 0.3 * (len(rows) + 1)  # inches
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5 + key_height))
    for ax, key, label in (
        (axes[0], "train_seconds", "training time (s)"),
        (axes[1], "params", "parameters"),
    ):
        for number, r in enumerate(rows, 1):
            if r[key] is None:  # a preset on the training-time plot: not trained here
                continue
            ax.errorbar(r[key], r["acc_mean"], yerr=r["acc_std"], fmt="o", capsize=3,
                        label=f"#{number}  {r['model']} ({r['epochs']} epochs)")
            ax.annotate(f"#{number}", (r[key], r["acc_mean"]), textcoords="offset points", xytext=(5, 5))
        if all(r[key] is None for r in rows):  # presets only: nothing was trained
            ax.text(0.5, 0.5, "presets: not trained here", ha="center", transform=ax.transAxes)
            ax.set_xlabel(label)
            continue
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.08)
        _log_ticks(ax)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3, which="both")
    fig.legend(*axes[1].get_legend_handles_labels(), loc="lower left", frameon=False)  # every row has params
    fig.suptitle(f"zoo bench on {rows[0]['dataset']}: mean ± std over seeds")
    fig.tight_layout(rect=(0, key_height / fig.get_figheight(), 1, 1))
    return fig


def _log_ticks(ax: Any) -> None:
    """Three to seven labelled ticks on a log x axis, whatever its range, in plain numbers (0.5, 20,
    7.85k, 1.2M): 1-2-5 steps or powers of ten over wide ranges, evenly spaced steps over a short
    one (where a log axis would label one tick, or none)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    low, high = ax.get_xlim()

    def shown(locator: Any) -> int:
        return sum(low <= t <= high for t in locator.tick_values(low, high))

    candidates = (LogLocator(base=10, subs=(1.0, 2.0, 5.0)), LogLocator(base=10, subs=(1.0,)))
    locator = next((c for c in candidates if 3 <= shown(c) <= 7), MaxNLocator(nbins=4, min_n_ticks=3))
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(low, high)


def plain_number(value: float, _position: Any = None) -> str:
    """A tick label: 0.5, 20, 7.85k, 1.2M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.4g}{suffix}"
    return f"{value:.4g}"


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
