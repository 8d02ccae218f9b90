"""``zoo bench``: plan a sweep, run it here, as a shard or on Ray, and report it."""

from __future__ import annotations

import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..benchmark import jobs as bench_jobs
from ..benchmark import records as bench_records
from ..benchmark import reports
from ..compute import backend as backend_lib
from ..config import MAX_SEED
from ..errors import ZooUsageError
from ..export.request import resolve as resolve_request
from .options import export_options, hp_pairs, run_options, space_pairs
from .output import table


@click.command()
@click.argument("models", nargs=-1)
@run_options("source", "recipe")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated, e.g. 0,1,2.")
@click.option("--hp", "hp", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter for every selected model; repeatable.")
@click.option("--recipe", "recipe_paths", multiple=True, type=click.Path(), metavar="FILE",
              help="A recipe file (zoo tune writes the best trial's): the model it is for trains with its "
                   "settings where no option gives them; repeatable, one file per model.")
@click.option("--tune", type=int, metavar="N",
              help="Tune every model first: a study of N trials on the validation split in OUT/tune/MODEL "
                   "(the bench's options fixed, its first seed), then bench each with its best recipe. "
                   'Needs pip install "keras-zoo[tune]".')
@click.option("--space", "space", multiple=True, metavar="KEY=RANGE",
              help="With --tune: search a recipe field or hyperparameter over log(a,b), uniform(a,b), "
                   "int(a,b) or choice(a,b,...) in every study; repeatable (as zoo tune --space).")
@click.option("--out", type=click.Path(file_okay=False), default="bench", show_default=True,
              help="Results folder; results.jsonl there is appended to, never rewritten. Jobs it "
                   "already records are skipped.")
@click.option("--from-runs", "from_runs", multiple=True, type=click.Path(),
              help="Measure this finished run instead of training; repeatable.")
@click.option("--from-presets", "from_presets", multiple=True, metavar="PRESET",
              help="Measure this preset (a name, dist:name, a folder, or a pattern such as '*.mnist' "
                   "over zoo list --presets) as it is, on its dataset's test split or --dataset's "
                   "(same classes); repeatable. --out records each preset once.")
@click.option("--plan", "show_plan", is_flag=True,
              help="Print the sweep's numbered jobs (and which --out records) and run nothing.")
@click.option("--shard", metavar="I/N",
              help="Run only shard I of N: the jobs numbered I, I+N, I+2N, ... (e.g. one task of a "
                   "Slurm array or a Kubernetes Indexed Job; every shard writes to the same --out).")
@click.option("--ray", is_flag=False, flag_value="local", metavar="[ADDRESS]",
              help="Run every job as a Ray task on the cluster at ADDRESS (HOST:PORT or auto); "
                   "without one, on a Ray cluster started on this machine for the sweep. "
                   'Needs pip install "keras-zoo[ray]".')
@click.option("--cpus-per-job", type=click.IntRange(min=1),
              help="CPUs a Ray task reserves, and the TensorFlow threads of every job. "
                   "[default: 1 with --ray, else TensorFlow's own (every core)]")
@click.option("--gpus-per-job", type=click.FloatRange(min=0),
              help="GPUs a Ray task reserves (--ray only). [default: 0]")
@click.option("--report", type=click.Path(file_okay=False),
              help="Rebuild results.csv, results.md and results.png of this folder from all its "
                   "records (of every shard), print results.md and run nothing.")
@export_options("exported side by side, each measured in its own runtime (size, latency, throughput, "
                "test accuracy).")
@run_options("hardware", "input", "data")
@click.pass_context
def bench(ctx: click.Context, models: tuple[str, ...], dataset: str, seeds: str, hp: tuple[str, ...],
          recipe_paths: tuple[str, ...], tune: int | None, space: tuple[str, ...], out: str,
          from_runs: tuple[str, ...], from_presets: tuple[str, ...], show_plan: bool, shard: str | None, ray: str | None, cpus_per_job: int | None, gpus_per_job: float | None,
          report: str | None, formats: str, quantize: str | None, max_accuracy_drop: float | None,
          data_dir: str | None, manual_dir: str | None, **recipe: Any) -> None:
    """Train, export and measure MODELS (names or patterns; default all) side by side."""
    if report is not None:
        _report_only(ctx)
        _report(Path(report).resolve())
        return
    seed_list = _seeds(seeds)
    recipe = {k: v for k, v in recipe.items() if v is not None}
    bench_jobs.check_tuning(tune, recipe_paths, measures=bool(from_presets or from_runs), hparams=bool(hp),
                            space=bool(space), elsewhere=bool(show_plan or shard or ray))
    if from_presets:
        _presets_only(ctx, models, hp, recipe, from_runs, show_plan, shard, ray)
    if from_runs:
        _runs_only(models, hp, recipe, show_plan, shard, ray)
    selected_shard = bench_jobs.parse_shard(shard) if shard is not None else None
    if ray is not None:
        bench_jobs.check_address(ray)  # before TensorFlow loads
    bench_jobs.check_gpus(ray, gpus_per_job)
    hparams = hp_pairs(hp)
    if not (from_runs or from_presets):  # each job trains in a process of its own, on this backend
        recipe["backend"] = recipe.get("backend") or backend_lib.default()
    # Once, before TensorFlow loads: every job exports and measures these formats.
    request = resolve_request(formats, quantize, max_accuracy_drop, recipe.get("backend") or backend_lib.default())
    backend_lib.import_tensorflow()
    out_dir = Path(out).resolve()
    if from_presets:
        jobs = _preset_jobs(ctx, from_presets, dataset, data_dir, manual_dir, request)
    elif from_runs:
        jobs = bench_jobs.plan_from_runs(list(from_runs), request)
    else:
        from ..benchmark import sweep
        from ..data.catalog import dataset_name

        options = {"dataset": dataset_name(dataset), "data_dir": data_dir, "manual_dir": manual_dir, **recipe}
        jobs = sweep.training_jobs(list(models), seeds=seed_list, out=out_dir, hparams=hparams, options=options,
                                   export=request, recipe_paths=recipe_paths, tune=tune, space=space_pairs(space),
                                   threads=None if ray else cpus_per_job, say=lambda line: click.echo(line, err=True))
    selection = bench_records.select(jobs, out_dir, selected_shard)
    if show_plan:
        _echo_plan(selection, selected_shard, out_dir)
        return
    if not selection.todo:
        _echo_selection(selection, selected_shard, out_dir)
        click.echo("nothing to run", err=True)
        _echo_results(out_dir)
        return
    records = _execute(selection, selected_shard, out_dir, ray=ray, cpus_per_job=cpus_per_job,
                       gpus_per_job=gpus_per_job)
    _echo_results(out_dir)
    from ..benchmark import sweep

    sweep.raise_failures(records)


def _preset_jobs(ctx: click.Context, from_presets, dataset: str, data_dir, manual_dir, request) -> list:
    """--from-presets' jobs, measured on --dataset if given, else on each preset's own."""
    from ..benchmark.child import preset_jobs

    given = ctx.get_parameter_source("dataset") is click.core.ParameterSource.COMMANDLINE
    return preset_jobs(list(from_presets), {"dataset": dataset if given else None, "data_dir": data_dir,
                                            "manual_dir": manual_dir}, request)


def _presets_only(ctx: click.Context, models, hp, recipe, from_runs, show_plan, shard, ray) -> None:
    """Refuse --from-presets with what would train, or run elsewhere."""
    if models or hp or recipe or ctx.get_parameter_source("seeds") is click.core.ParameterSource.COMMANDLINE:
        raise ZooUsageError("--from-presets measures presets as they are; give no MODELS, --hp, --seeds or "
                            "training options with it (--dataset picks the test split)")
    if from_runs:
        raise ZooUsageError("--from-presets and --from-runs: give one of them (bench the runs and the presets "
                            "with the same --out, one command each, to see them on one leaderboard)")
    if show_plan or shard or ray:
        raise ZooUsageError("--from-presets measures presets here; --plan, --shard and --ray are for "
                            "training sweeps")


def _runs_only(models, hp, recipe, show_plan, shard, ray) -> None:
    """Refuse --from-runs with what would train, or run elsewhere."""
    runs = [m for m in models if (Path(m) / "config.json").is_file()]
    if runs:  # `--from-runs A B`: B came as a MODEL
        raise ZooUsageError(f"{runs[0]} is a run directory given as a MODEL: repeat --from-runs for each run "
                            f"(--from-runs A --from-runs B)")
    if models or hp or recipe:
        raise ZooUsageError("--from-runs measures finished runs as they are; give no MODELS, --hp or training "
                            "options with it")
    if show_plan or shard or ray:
        raise ZooUsageError("--from-runs measures finished runs here; --plan, --shard and --ray are for "
                            "training sweeps")


def _report_only(ctx: click.Context) -> None:
    """Refuse --report with anything that would select or run jobs."""
    given = [max(p.opts, key=len) if isinstance(p, click.Option) else p.human_readable_name
             for p in ctx.command.params if p.name not in ("report", "data_dir", "manual_dir")
             and ctx.get_parameter_source(p.name) is click.core.ParameterSource.COMMANDLINE]
    if given:
        raise ZooUsageError(f"--report rebuilds a folder's reports from its records; give nothing else "
                            f"with it ({', '.join(given)})")


def _seeds(seeds: str) -> list[int]:
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ZooUsageError(f"--seeds expects comma-separated integers, received {seeds!r}") from None
    if not seed_list or not all(0 <= s <= MAX_SEED for s in seed_list):
        raise ZooUsageError(f"--seeds expects integers between 0 and {MAX_SEED}, received {seeds!r}")
    return seed_list


def _execute(selection, shard, out_dir: Path, **executor: Any) -> list[dict[str, Any]]:
    """Run the selected jobs, with a progress bar on a terminal and a line per job elsewhere."""
    from ..benchmark import sweep

    todo, records = selection.todo, []
    command = shlex.join(["zoo", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else ""
    with sweep.executing(todo, out_dir, shard=shard, **executor) as results:
        _echo_selection(selection, shard, out_dir)  # once connected: an error stays one line
        start, terminal = time.monotonic(), sys.stderr.isatty()
        # On a terminal a bar (its position counts the jobs); elsewhere (a log, CI) a line per job.
        with click.progressbar(length=len(todo), label="benchmark", show_eta=True, show_pos=True,
                               item_show_func=lambda j: j.label if j else "", file=sys.stderr,
                               hidden=not terminal) as bar:
            for done, (job, record) in enumerate(sweep.execute(out_dir, results, selection, command), 1):
                bar.update(1, job)
                records.append(record)
                if not terminal:
                    left = progress_left(time.monotonic() - start, done, len(todo))
                    click.echo(f"[{done}/{len(todo)}] {job.label}: {_outcome(record)}; {left}", err=True)
    return records


def progress_left(elapsed: float, done: int, total: int) -> str:
    """The end of a progress line: ``ETA 3 min`` or ``ETA 40 s`` (the mean wall time of the jobs
    finished so far times the jobs left), and ``done in 2 min`` after the last."""
    if done >= total:
        return f"done in {duration(elapsed)}"
    return f"ETA {duration(elapsed / done * (total - done))}"


def duration(seconds: float) -> str:
    """``40 s``, ``3 min``, ``2 h 05 min``: rounded up, so a wait is never 0."""
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _outcome(record: dict[str, Any]) -> str:
    if record["status"] == "failed":
        return f"failed ({record['error']})"
    if record["test_accuracy"] is None:
        return "no test split"
    return f"test accuracy {record['test_accuracy']:.4f}"


def _echo_results(out_dir: Path) -> None:
    if (out_dir / "results.md").is_file():
        click.echo((out_dir / "results.md").read_text())
        click.echo(f"results: {out_dir}/results.{{jsonl,csv,md,png}}")


def _echo_selection(selection, shard, out_dir: Path) -> None:
    """What this process will run, on stderr: the plan, the shard, what --out has already."""
    if selection.fingerprint is None:
        presets = any(j.preset for j in selection.jobs)
        skipped = len(selection.mine) - len(selection.todo)
        click.echo(f"{len(selection.todo)} {'preset' if presets else 'finished run'}(s) to measure"
                   + (f"; {skipped} already recorded in {out_dir}, skipped" if skipped else ""), err=True)
        return
    parts = [f"sweep {selection.fingerprint}: {len(selection.jobs)} job(s)"]
    if shard is not None:
        parts.append(f"shard {shard}: {len(selection.mine)}")
    skipped = len(selection.mine) - len(selection.todo)
    if skipped:
        parts.append(f"{skipped} already recorded in {out_dir}, skipped")
    click.echo("; ".join(parts), err=True)


def _echo_plan(selection, shard, out_dir: Path) -> None:
    count = len(selection.jobs)
    where = f"; shard {shard}: {len(selection.mine)} of them" if shard is not None else ""
    click.echo(f"sweep {selection.fingerprint or '(finished runs)'}: {count} job(s){where}; --out {out_dir}")
    rows = [{"#": j.index or "-", "model": j.config.model, "seed": j.config.seed, "variant": j.variant or "recipe",
             "status": selection.states.get(j.key, "to run"), "run directory": j.run_dir}
            for j in selection.mine]
    if rows:
        table(rows, ("#", "model", "seed", "variant", "status", "run directory"))


def _report(folder: Path) -> None:
    if not (folder / bench_records.RESULTS).is_file():
        raise ZooUsageError(f"{folder} holds no benchmark records (no {bench_records.RESULTS})")
    backend_lib.import_tensorflow()
    reports.rebuild(folder)
    _echo_results(folder)
