"""A sweep's jobs: each a RunConfig (data, never re-rendered command-line flags) with a run directory
named by the job's identity, and the numbered plan that shards deal out. No TensorFlow here.

A sweep is the list of jobs ``sweep_jobs`` makes, numbered from 1: models in the order the command names
them (a pattern's matches sorted by name), each with the seeds in the order given. Nothing in it
depends on the machine or the time, so every node that runs the same command with the same plugins
installed computes the same plan. Each job has an identity key, a hash of what it trains (its
RunConfig without the places data lives in, and the model's distribution and version); the plan's
fingerprint is a hash of its keys in order.

Shard I of N holds the jobs whose number j has ``(j - 1) mod N == I - 1``: jobs are dealt to the
shards like cards, so each shard gets a mix of models rather than a block of one.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import registry

from .. import files
from .. import recipes as recipes_lib
from ..config import DEFAULTS, RunConfig
from ..errors import ZooUsageError
from ..export.request import SAVED_MODEL_ONLY, ExportRequest
from ..plan import OPTIONS
from ..presets import catalog
from ..presets.store import Preset
from ..recipes import Recipe
from ..runs import Run, named_run


@dataclass(frozen=True)
class Job:
    config: RunConfig  # what to train (the recorded one, for an existing run)
    run_dir: Path  # to train into, or an existing run (from_run)
    from_run: bool = False
    index: int = 0  # the job's number in its plan, from 1 (0: --from-runs, no plan)
    key: str | None = None  # its identity (job_key); None for --from-runs
    variant: str = ""  # what it changes from the model's recipe: "units=8 epochs=1"
    preset: str = ""  # --from-presets: the preset's name (its folder is run_dir); measured, never trained
    export: ExportRequest = SAVED_MODEL_ONLY  # the formats to export and measure, resolved
    recipe: Mapping[str, Any] | None = None  # the recipe file applied to config (Recipe.record()), if any

    @property
    def label(self) -> str:
        return f"preset {self.preset}" if self.preset else f"{self.config.model} seed {self.config.seed}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, to hand to another process (a Ray worker)."""
        return {"config": self.config.to_dict(), "run_dir": str(self.run_dir), "from_run": self.from_run,
                "index": self.index, "key": self.key, "variant": self.variant, "preset": self.preset,
                "export": export_dict(self.export), "recipe": self.recipe}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(**{**d, "config": RunConfig(**d["config"]), "run_dir": Path(d["run_dir"]),
                      "export": export_request(d.get("export"))})


def export_dict(request: ExportRequest) -> dict[str, Any]:
    """An ExportRequest as plain data (a job file, a Ray task)."""
    return {**dataclasses.asdict(request), "formats": list(request.formats)}


def export_request(d: Mapping[str, Any] | None) -> ExportRequest:
    """:func:`export_dict`'s data back as the (already resolved) ExportRequest."""
    return ExportRequest(**{**d, "formats": tuple(d["formats"])}) if d else SAVED_MODEL_ONLY


def with_export(key: str, request: ExportRequest) -> str:
    """A job's key for what it trains (``key``) and the formats it measures: ``key`` itself for
    the SavedModel alone, so the keys of jobs that ask for nothing more stay those of older zoos;
    another key for more formats, so --out measures the same run again for them."""
    return key if request == SAVED_MODEL_ONLY else _hash([key, export_dict(request)])[:16]


def select_models(patterns: list[str]) -> list[str]:
    """Model names for the patterns (all healthy models without any); each pattern must match."""
    everything = registry.entries()
    if not patterns:
        return [registry.selector(e, everything) for e in everything if not e.problem]
    names: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            found = [
                registry.selector(e, everything) for e in registry.find(pattern) if not e.problem
            ]
            if not found:
                raise ZooUsageError(f"no model matches '{pattern}'")
        else:
            registry.resolve(pattern)  # unknown or ambiguous names fail here, with suggestions
            found = [pattern]
        names += [n for n in found if n not in names]
    return names


def broken_matches(patterns: list[str]) -> list[registry.Entry]:
    """The broken models a sweep of ``patterns`` leaves out (every broken one without patterns)."""
    everything = registry.entries()
    if not patterns:
        return [e for e in everything if e.problem]
    found = {id(e): e for p in patterns if any(c in p for c in "*?[") for e in registry.find(p) if e.problem}
    return list(found.values())


def sweep_jobs(
    models: list[str],
    *,
    seeds: list[int],
    out: str | os.PathLike,
    hparams: Mapping[str, Any],
    options: Mapping[str, Any],
    export: ExportRequest = SAVED_MODEL_ONLY,
    recipes: Mapping[str, Recipe] | None = None,
) -> list[Job]:
    """One job per model and seed, each a validated RunConfig, numbered from 1.

    ``hparams`` apply to every model, typed by each model's own signature (``--hp`` text or
    Python values); ``options`` are RunConfig fields. What one model does not accept fails here,
    before hours of training. The same arguments give the same plan on every machine. ``export``:
    the formats each job exports and measures (a run trained once serves every request).
    ``recipes``: a recipe file per model name (:func:`recipe_files`), applied where ``options``
    and ``hparams`` leave a value unset; its jobs have keys of their own.
    """
    out = Path(out).resolve()
    if options.get("cache_dir"):  # every job would fail on it, after --out was written
        files.check_creatable(Path(options["cache_dir"]).expanduser().resolve(), "cache folder")
    jobs = []
    for name in select_models(models):
        builder, entry = registry.get(name), registry.resolve(name)
        recipe = (recipes or {}).get(name)
        given, typed = (options, hparams) if recipe is None else recipes_lib.apply(recipe, options, hparams)
        values = {"hparams": builder.coerce_hparams(typed), **given}
        for seed in dict.fromkeys(seeds):  # a seed given twice is one job
            config = RunConfig.from_recipe(name, builder.recipe, {**values, "seed": seed})
            as_dict = config.to_dict()
            key = job_key(as_dict, entry.dist, entry.version)
            if recipe is not None:  # a study's best settings are another row than the same typed by hand
                key = _hash([key, recipe_identity(recipe)])[:16]
            changed = {**config.hparams, **{k: as_dict[k] for k, default in DEFAULTS.items()
                                            if as_dict[k] != builder.recipe.get(k, default)}}
            run_dir = out / "runs" / f"{files.safe_name(name)}-seed{seed}-{key[:8]}"
            jobs.append(Job(config, run_dir, index=len(jobs) + 1, key=with_export(key, export),
                            variant=settings_text(changed), export=export,
                            recipe=recipe.record() if recipe is not None else None))
    return jobs


def check_tuning(tune: int | None, recipe_paths: Sequence[Any], *, measures: bool, hparams: bool, space: bool,
                 elsewhere: bool) -> None:
    """One-line usage errors for ``--tune`` and ``--recipe`` that make no sense, before anything
    loads: ``measures`` (--from-presets, --from-runs: nothing trains), ``hparams`` (--hp given),
    ``space`` (--space given), ``elsewhere`` (--plan, --shard or --ray)."""
    if tune is not None and (not isinstance(tune, int) or isinstance(tune, bool) or tune < 1):
        raise ZooUsageError(f"--tune must be 1 or more trials, received {tune!r}")
    if (tune is not None or recipe_paths) and measures:
        raise ZooUsageError(f"{'--tune' if tune is not None else '--recipe'} is for models this bench trains; "
                            "--from-presets and --from-runs measure what is trained already")
    if tune is None and space:
        raise ZooUsageError("--space is the search space of --tune's studies; give it with --tune N")
    if tune is not None and hparams:
        raise ZooUsageError("--tune searches the hyperparameters; fix one for every trial with "
                            "--space KEY=choice(VALUE) rather than --hp")
    if tune is not None and elsewhere:
        raise ZooUsageError("--tune runs its studies here before the bench; --plan, --shard and --ray are not for "
                            "it (tune with zoo tune, --shard there, then zoo bench --recipe FILE)")


def bench_inputs(models, from_presets, recipes, *, hparams, recipe: Mapping[str, Any], tune: int | None, space,
                 shard: str | None, ray: str | None) -> tuple[list[str], list[str], list]:
    """``zoo.bench``'s presets, model patterns and recipe files as lists (one path or name as a
    list of one), checked together before anything loads."""
    unknown = sorted(set(recipe) - set(OPTIONS))
    if unknown:
        raise ZooUsageError(f"bench() got an unknown option {unknown[0]!r}")
    presets = [os.fspath(p) for p in ([from_presets] if isinstance(from_presets, (str, os.PathLike)) else from_presets)]
    patterns = [models] if isinstance(models, str) else list(models or ())
    recipes = [recipes] if isinstance(recipes, (str, os.PathLike)) else list(recipes)
    if models is not None and not patterns and not presets and not recipes:  # a filter that matched nothing
        raise ZooUsageError("`models` is empty: leave it out (None) to benchmark every healthy model")
    check_tuning(tune, recipes, measures=bool(presets), hparams=bool(hparams), space=bool(space),
                 elsewhere=shard is not None or ray is not None)
    if presets and (patterns or hparams or any(v is not None for v in recipe.values())):
        raise ZooUsageError("from_presets measures presets as they are; give no models, hparams or training options with it")
    if presets and (shard is not None or ray is not None):
        raise ZooUsageError("from_presets measures presets here; shard and ray are for training sweeps")
    return presets, patterns, recipes


def recipe_files(paths: Sequence[str | os.PathLike], names: Sequence[str]) -> dict[str, Recipe]:
    """Each recipe file read and matched to the model of ``names`` (a sweep's) it is for: a file
    that does not exist, one for a model the sweep does not train, or a second file for one model
    is a one-line usage error."""
    found: dict[str, Recipe] = {}
    for path in paths:
        recipe = recipes_lib.read(path)
        name = next((n for n in names if n.rpartition(":")[2] == recipe.model.rpartition(":")[2]), None)
        if name is None:
            raise ZooUsageError(f"recipe file {path} is for model '{recipe.model}', which this bench does not "
                                f"train ({', '.join(names) or 'no model'})")
        if name in found:
            raise ZooUsageError(f"two recipe files for model '{name}': {found[name].path} and {path}")
        found[name] = recipe
    return found


def recipe_identity(recipe: Recipe) -> Any:
    """What a recipe file adds to a job's identity: its settings and where they came from (the
    study, its budget and best trial), not where the file or the study's storage lie."""
    tuning = {k: v for k, v in (recipe.tuning or {}).items() if k != "storage"}
    return files.jsonable({"recipe": {"options": dict(recipe.options), "hparams": dict(recipe.hparams),
                                      "tuning": tuning}})


def settings_text(changed: Mapping[str, Any]) -> str:
    """``units=8,8 batch_size=64``: settings as the leaderboard and the plan show them."""
    return " ".join(f"{k}={registry.show_value(v)}" for k, v in changed.items())


def plan_from_runs(run_dirs: list[str], export: ExportRequest = SAVED_MODEL_ONLY) -> list[Job]:
    jobs = []
    for path in run_dirs:
        run = Run.open(named_run(path))
        if not run.complete:
            raise ZooUsageError(f"{run.path} is not a finished run (no metrics.json)")
        jobs.append(Job(run.config, run.path, from_run=True, export=export))
    return jobs


def select_presets(names: Sequence[str]) -> list[Preset]:
    """The presets ``names`` mean (names, ``dist:name``, folders, or shell patterns matched against
    the names ``zoo list --presets`` shows), each once, its files verified: a missing or changed
    file is a one-line error here, before anything is measured or written."""
    found: dict[Path, Preset] = {}
    for name in names:
        if any(c in name for c in "*?[") and not catalog.looks_like_path(name):
            matches = [f.preset for f in catalog.everything() if not f.shadowed_by
                       and fnmatch.fnmatchcase(f.preset.name, name)]
            if not matches:
                raise ZooUsageError(f"no preset matches '{name}' (zoo list --presets shows them)")
        else:
            matches = [catalog.find(name)]
        for preset in sorted(matches, key=lambda p: p.name):
            found.setdefault(preset.path, preset)
    for preset in found.values():
        preset.verify()
    return list(found.values())


def plan_from_presets(names: Sequence[str], options: Mapping[str, Any],
                      export: ExportRequest = SAVED_MODEL_ONLY) -> list[Job]:
    """A job per preset: measure it as it is (no training) on the test split of its own dataset,
    or of ``options["dataset"]`` when given (the classes must be the preset's: checked where the
    dataset is read, :func:`zoo.benchmark.child.check_presets`). ``options``: dataset, data_dir,
    manual_dir. A job's key is the preset's digest, the dataset it is measured on and the formats
    (``export``), so the same command again measures only what ``--out`` does not record yet."""
    jobs = []
    for preset in select_presets(names):
        recipe = preset.record.get("recipe") or {}
        fields = {k: v for k, v in recipe.items() if k in {f.name for f in dataclasses.fields(RunConfig)}}
        dataset = options.get("dataset") or fields.get("dataset") or preset.record["dataset"]["name"]
        if options.get("dataset"):  # another dataset: read as it is, not as the preset's folder was
            fields.update(image_size=None, channels=None, strict_files=False)
        fields.update(model=preset.model, dataset=dataset, data_dir=options.get("data_dir"),
                      manual_dir=options.get("manual_dir"))
        config = RunConfig(**fields)
        identity = {"preset": preset.digest, "dataset": dataset,
                    **{k: v for k, v in config.dataset_options().items() if k not in LOCATION}}
        key = "preset-" + with_export(_hash(files.jsonable(identity))[:16], export)
        jobs.append(Job(config, preset.path, key=key, preset=preset.name, export=export))
    return jobs


# Where the data lives changes nothing about what a job trains (as for a resume).
LOCATION = ("data_dir", "manual_dir", "cache_dir")
# Nor do checks that refuse a dataset or pass it unchanged (strict_files refuses a folder's other
# files, or trains on the same images): keys stay those of older zoos.
CHECKS = ("strict_files",)
# Settings newer than some records: left out while unset, so the keys of jobs that do not use
# them stay those of older zoos (fine-tuning: a job from random weights, nothing frozen).
NEWER = ("init", "freeze")


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
    identity = {k: v for k, v in files.jsonable(config).items()
                if k not in LOCATION + CHECKS and not (k in NEWER and v is None)}
    identity["source"] = [distribution, version]  # a new plugin version is a new model
    return _hash(identity)[:16]


def fingerprint(keys: Sequence[str]) -> str:
    return _hash(list(keys))[:12]


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def check_gpus(ray: str | None, gpus_per_job: float | None) -> None:
    if gpus_per_job and ray is None:
        raise ZooUsageError("`gpus_per_job` needs `ray`; a scheduler's shards get their GPUs from the scheduler")


LOCAL_CLUSTER = "local"


def check_address(address: str) -> None:
    """A one-line usage error unless ``address`` looks like a Ray address (before any import)."""
    if address in (LOCAL_CLUSTER, "auto") or host_port(address):
        return
    raise ZooUsageError(
        f"`ray` expects a Ray address (HOST:PORT, ray://HOST:PORT or auto) or nothing for a cluster on "
        f"this machine, received {address!r} (write `ray`=ADDRESS, or give it after the models)"
    )


def host_port(address: str) -> tuple[str, int] | None:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    return (host.strip("[]"), int(port)) if sep and host and port.isdigit() else None
