"""results.png: each leaderboard row's test accuracy against its training time and its parameters,
numbered as in results.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import files


def plot(path: Path, rows: list[dict[str, Any]]) -> None:
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
