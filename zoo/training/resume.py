"""Resuming a run: the settings a resume may change (after a non-finite loss, a smaller learning
rate), the splits of its remaining epochs, and what config.json records about it."""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import evaluation, files
from ..compute import devices
from ..config import RunConfig
from ..data import pipeline
from ..errors import ZooUsageError
from ..runs import CONFIG, FAILED, PRUNED, Run
from .callbacks import Backup
from .loop import load_splits


def resume_splits(run: Run, config: RunConfig, placement: devices.Placement, backup: Backup) -> pipeline.Splits:
    """The splits of a resumed run's remaining epochs, once its settings are checked."""
    recorded, asked = run.record["input"], config.input
    if asked == "auto":  # the path the run took, not a new decision
        config = dataclasses.replace(config, input=run.config.input)
    changes = resume_changes(run, config)
    processes = run.record["hardware"]["processes"]
    if processes != placement.processes:
        raise ZooUsageError(
            f"run {run.path} trained on {processes} process(es), this resume has {placement.processes}; "
            f"each process's share of the data depends on it: resume with {processes}"
        )
    changed = evaluation.changed_images(run)  # checked before a changed folder is prepared again
    if changed:
        raise ZooUsageError(
            f"the images in {run.dataset['source']['path']} changed since run {run.path} "
            f"started (fingerprint {changed[0]}, now {changed[1]}); resume needs the same "
            f"images, or start a new run"
        )
    # The recorded buffer size, whatever the budget now: the same order as before.
    splits = load_splits(config, range(backup.saved_epoch(), config.epochs), placement, recorded.get("shuffle_buffer"))
    if asked == "auto" and recorded.get("reason"):  # not "asked for": the reason the run started with
        started = "as the run started: "
        reason = recorded["reason"] if recorded["reason"].startswith(started) else started + recorded["reason"]
        splits = dataclasses.replace(splits, input=dataclasses.replace(
            splits.input, requested=recorded.get("requested", asked), reason=reason))
    record_resume(run, config, changes, backup.saved_epoch())
    return splits


def resume_changes(run: Run, config: RunConfig) -> dict[str, list[Any]]:
    """Settings a resume changes, ``{key: [old, new]}``; refuse all but the allowed ones.

    Where the data lives does not change the run. After a non-finite loss a smaller learning
    rate is allowed, since that is the remedy; everything else must stay as it was.
    """
    old, new = (files.jsonable(c.to_dict()) for c in (run.config, config))
    # Recorded "auto": no devices were chosen (zoo.formats fills it in for runs from before
    # `devices` was a setting, which ran on TensorFlow's default device).
    # How much memory the data may use and where its cache lives change neither (the recorded
    # shuffle buffer is reused).
    ignored = {"data_dir", "manual_dir", "memory_budget", "cache_dir"}
    ignored |= {"devices"} if old["devices"] == "auto" else set()
    changed = {k: [old[k], new[k]] for k in old if k not in ignored and old[k] != new[k]}
    after_blow_up = run.file(FAILED).exists()
    allowed = {"learning_rate"} if after_blow_up and new["learning_rate"] < old["learning_rate"] else set()
    refused = [k for k in changed if k not in allowed]
    if refused:
        hint = "; after a non-finite loss only a smaller `learning_rate` may change" if after_blow_up else ""
        raise ZooUsageError(
            f"`resume` with different settings than run {run.path} ({', '.join(f'`{k}`' for k in refused)}); "
            f"resume with the same command{hint}"
        )
    return changed


def record_resume(run: Run, config: RunConfig, changes: dict[str, list[Any]], epoch: int) -> None:
    """A resume that changes settings updates config.json and says what changed when and why.

    config.json is written again in any case, in the current format (zoo.formats): this zoo
    writes the run from here on, history.csv included, whose format is config.json's (so
    ``Run.write_json`` rewrites an older run's history.csv in the current format first).
    """
    record = run.record
    if changes:
        failed = run.read_json(FAILED) or {}
        record["config"] = {**config.to_dict(), "hparams": record["config"]["hparams"]}
        record.setdefault("changes", []).append(
            {"from_epoch": epoch, "changed": changes, "reason": failed.get("reason", ""), "time": files.timestamp()}
        )
    run.write_json(CONFIG, record)
    run.file(PRUNED).unlink(missing_ok=True)  # a pruned trial trained on: no longer stopped by its pruner
    if changes:
        run.file(FAILED).unlink(missing_ok=True)  # the run goes on; the reason is in config.json now
