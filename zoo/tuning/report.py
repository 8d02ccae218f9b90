"""What a finished study leaves: its best trial measured once on the test split (the only trial
that ever is), the best settings as a recipe file, a table of every trial, and Optuna's plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

import registry

from .. import evaluation, files, recipes
from ..errors import ZooError
from ..runs import Run
from . import space as space_lib
from . import study as study_lib
from .request import TuneRequest, config_of

RECIPE = "best-recipe.json"
TABLE = "trials.md"
HISTORY_PNG = "optimization-history.png"
IMPORTANCE_PNG = "param-importances.png"
TESTED = "tested"  # study attribute: every trial measured on test, in order (normally one)


@dataclass(frozen=True)
class Summary:
    rows: list[dict[str, Any]]  # one per trial, in number order
    running: int  # trials still running in other workers (then nothing below is set)
    best: dict[str, Any] | None = None  # number, val_accuracy, test (split, accuracy), run
    recipe: Path | None = None
    plots: tuple[Path, ...] = ()
    counts: dict[str, int] | None = None


def rows(study: optuna.Study, request: TuneRequest) -> list[dict[str, Any]]:
    """One dict per trial (given-back ones left out), its values typed as the run used them."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(study_lib.SURPLUS):
            continue
        state = "failed (worker lost)" if t.state == TrialState.FAIL and study_lib.ERROR not in t.user_attrs else t.state.name.lower()
        value = t.value if t.state == TrialState.COMPLETE else (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        out.append({
            "trial": t.number, "state": state, "val_accuracy": value, "epochs": len(t.intermediate_values),
            "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
            "params": _typed(request, t.params), "run": t.user_attrs.get("run"), "error": t.user_attrs.get(study_lib.ERROR),
        })
    return out


def finish(request: TuneRequest, study: optuna.Study) -> Summary:
    """The study's results once every trial has finished; with trials still running elsewhere,
    only the table (the last worker to finish measures the best trial on test)."""
    table = rows(study, request)
    running = sum(1 for r in table if r["state"] in ("running", "waiting"))
    files.write_text(request.out / TABLE, markdown(request, table))
    if running:
        return Summary(table, running)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        raise ZooError(f"no trial of study '{request.study}' completed ({len(table)} pruned or failed); see {request.out / TABLE}")
    best = study.best_trial
    test = _tested(study, best, request.out)
    counts = {s: sum(1 for r in table if r["state"] == s) for s in ("complete", "pruned", "failed")}
    recipe_path = request.out / RECIPE
    recipes.write(recipe_path, _recipe(request, best, test, counts, table))
    return Summary(table, 0, {"trial": best.number, "val_accuracy": best.value, "test": test,
                              "run": str(request.out / best.user_attrs["run"])},
                   recipe_path, _plots(study, request.out), counts)


def _tested(study: optuna.Study, best: optuna.trial.FrozenTrial, out: Path) -> dict[str, Any]:
    """The best trial's test accuracy: measured now, or read from the study if it already was."""
    tested = list(study.user_attrs.get(TESTED) or [])
    for entry in tested:
        if entry["trial"] == best.number:
            return entry
    result = evaluation.evaluate(Run(out / best.user_attrs["run"]))
    entry = {"trial": best.number, "split": result["split"], "accuracy": result["accuracy"], "loss": result["loss"]}
    study.set_user_attr(TESTED, [*tested, entry])
    return entry


def _recipe(request: TuneRequest, best, test: dict[str, Any], counts: dict[str, int], table) -> recipes.Recipe:
    options, hparams = space_lib.split(_typed(request, best.params), request.builder)
    config = config_of(request).to_dict()
    fields = {k: config[k] for k in registry.RECIPE_KEYS}
    return recipes.Recipe(
        model=request.builder.name, options={**fields, **options},
        hparams={**{k: v for k, v in config["hparams"].items()}, **hparams},
        tuning={
            "study": request.study, "storage": request.where, "dataset": request.dataset,
            "sampler": f"TPE, seed {request.seed}", "pruner": request.pruner, "budget": request.trials,
            "trials": counts, "best_trial": best.number, "val_accuracy": best.value,
            "test": test, "tested_trials": 1, "seed": request.seed, "val_split": config["val_split"],
            "space": {d.key: d.text for d in request.space},
            "seconds": round(sum(r["seconds"] or 0 for r in table), 1),
        },
    )


def _typed(request: TuneRequest, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's values as the run trained with them (choices, stored as text, typed again)."""
    values = {}
    for dim in request.space:
        if dim.key not in params:
            continue
        raw = params[dim.key]
        shown = [space_lib._show(v) for v in dim.values]
        values[dim.key] = dim.values[shown.index(raw)] if dim.kind == "choice" and raw in shown else raw
    return values


def _plots(study: optuna.Study, out: Path) -> tuple[Path, ...]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    made = []
    for name, draw in ((HISTORY_PNG, plots.plot_optimization_history), (IMPORTANCE_PNG, plots.plot_param_importances)):
        try:
            axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few trials or parameters to say
            continue
        axes.figure.tight_layout()
        axes.figure.savefig(out / name, dpi=100)
        plt.close(axes.figure)
        made.append(out / name)
    return tuple(made)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(request: TuneRequest, table: list[dict[str, Any]]) -> str:
    keys = [d.key for d in request.space]
    lines = [f"# Study {request.study}: {request.builder.name} on {request.dataset}", "",
             f"Budget {request.trials} trials of {request.epochs} epoch(s); objective: validation accuracy; "
             f"pruner: {request.pruner}; storage: {request.where}.", "",
             "| trial | state | val accuracy | epochs | seconds | " + " | ".join(keys) + " |",
             "| ---: | --- | ---: | ---: | ---: | " + " | ".join("---" for _ in keys) + " |"]
    for r in table:
        value = f"{r['val_accuracy']:.4f}" if r["val_accuracy"] is not None else ""
        params = " | ".join(_cell(r["params"].get(k, "")) for k in keys)  # tuples as (8, 16)
        lines.append(f"| {r['trial']} | {r['state']} | {value} | {r['epochs']} | {r['seconds'] or ''} | {params} |")
    return "\n".join(lines) + "\n"
