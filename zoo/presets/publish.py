"""Publishing a finished run as a preset: check the run, reload and re-evaluate its model, write
the weights, preset.json and the model card aside, then rename the folder into place."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import evaluation, files, formats
from ..data import pipeline
from ..errors import ZooError, ZooUsageError
from ..version import __version__
from . import card, use, weights
from .store import CARD, PRESET_JSON, WEIGHTS, Preset, check_license, manifest, seal

if TYPE_CHECKING:
    from ..runs import Run

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Paths of the machine that trained: not part of a recipe someone else can follow.
MACHINE_FIELDS = ("data_dir", "manual_dir", "cache_dir")


def default_name(run: Run) -> str:
    """``model.dataset``: ``cnn.mnist``, ``mlp.my_images`` for a folder ``./my_images``."""
    dataset = Path(run.dataset["name"]).name.lower()
    return files.safe_name(f"{run.config.model.split(':')[-1]}.{dataset}")


def publish(run: Run, dest: str | os.PathLike, *, license: str, name: str | None = None,
            dataset_terms: str | None = None) -> Preset:
    """Publish the finished ``run`` as the preset ``dest/name`` (never over an existing one)."""
    license = check_license(license)
    name = default_name(run) if name is None else name
    if not NAME.fullmatch(name) or ".." in name:
        raise ZooUsageError(f"--name {name!r}: a preset name is letters, digits, '.', '_' and '-' (e.g. cnn.mnist)")
    status = run.status
    if status != "finished":
        reason = {"running": "it is still training", "failed": "its training failed"}.get(status, "it did not finish")
        raise ZooUsageError(f"cannot publish run {run.path}: {reason} ({status})")
    base = Path(dest).expanduser()
    target = base / name
    if target.exists():
        raise ZooUsageError(f"{target} exists: a preset is never overwritten; choose another --name or DEST")
    files.check_creatable(base, "preset folder")
    with run.locked(exclusive=False):  # refused while a process writes the run
        model = evaluation.load_model(run)
        measured = _reproduced(run, model)
        record = _record(run, name, license, dataset_terms, measured, weights.shapes(model))  # before any folder
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            model.save_weights(tmp / WEIGHTS)
            files.write_text(tmp / CARD, card.render(record))
            record["files"] = manifest(tmp, [WEIGHTS, CARD])
            formats.write(formats.PRESET, tmp / PRESET_JSON, seal(record))
            try:
                os.rename(tmp, target)  # fails if a preset of that name appeared meanwhile
            except OSError:
                raise ZooUsageError(f"{target} exists: a preset is never overwritten") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Preset(target)


def _reproduced(run: Run, model) -> dict[str, Any]:
    """The run's figures measured again on the reloaded model; an error unless they are the
    ones metrics.json recorded (to one example: 16-bit round-off may flip a tie)."""
    info, metrics = run.dataset, run.metrics or {}
    if info["test_split"] and "test_accuracy" in metrics:
        split, key, count, recorded = info["test_split"], "test_accuracy", info.get("num_test"), metrics["test_accuracy"]
    else:  # a dataset without a test split: the held-out validation slice, as training measured it
        split, key, count = info["validation_split"], "val_accuracy", info.get("num_validation")
        recorded = run.history[-1].get("val_accuracy") if run.history else None
    ds = pipeline.load_split(run.config.dataset, split, **run.config.dataset_options())
    loss, accuracy = evaluation.test_metrics(evaluation.plain_compiled(model), ds)
    if recorded is None or abs(accuracy - recorded) > 1.0 / max(int(count or 1), 1) + 1e-9:
        raise ZooError(
            f"cannot publish run {run.path}: its saved model has {key.replace('_', ' ')} {accuracy:.4f} "
            f"on {split}, but the run recorded {recorded}: model.keras is not the model that was measured"
        )
    return {"split": split, key: accuracy, key.replace("accuracy", "loss"): loss, "examples": count}


def _record(run: Run, name: str, license: str, dataset_terms: str | None, measured: dict[str, Any],
            weight_shapes: list) -> dict[str, Any]:
    record, history = run.record, run.history
    info, config = record["dataset"], run.config.to_dict()
    recipe = {k: v for k, v in config.items() if k not in MACHINE_FIELDS}
    metrics = dict(measured)
    if history:
        metrics.setdefault("val_accuracy", history[-1].get("val_accuracy"))
        metrics.setdefault("val_loss", history[-1].get("val_loss"))
    source = info.get("source") or {}
    dataset = {
        "name": info["name"], "version": info.get("version"), "train_split": info["train_split"],
        "validation_split": info["validation_split"], "test_split": info["test_split"],
        "num_train": info.get("num_train"), "num_validation": info.get("num_validation"),
        "num_test": info.get("num_test"), "terms": dataset_terms,
    }
    if source.get("kind") == "folder":
        dataset["fingerprint"] = source.get("fingerprint")
    elif source:
        dataset["source"] = source
    model = record.get("model") or {}
    return {
        "name": name,
        "model": {
            "name": config["model"], "distribution": model.get("distribution"), "version": model.get("version"),
            "entry_point": model.get("entry_point"),
            "hparams": model.get("hparams_resolved") or dict(run.config.hparams),
        },
        "input": use.input_contract(info),
        "classes": list(info["class_names"]),
        "metrics": metrics,
        "dataset": dataset,
        "recipe": recipe,
        # The recipe file the run followed (without the machine's path): a tuned recipe's study.
        "recipe_file": {k: v for k, v in (record.get("recipe_file") or {}).items() if k != "path"} or None,
        "environment": {"versions": record.get("versions"), "hardware": record.get("hardware"),
                        "input": record.get("input")},
        "license": license,
        "parent": record.get("init"),
        "run": {"name": run.path.name, "created": record.get("created")},
        "published": files.timestamp(),
        "zoo_version": __version__,
        "weights": weight_shapes,
    }
