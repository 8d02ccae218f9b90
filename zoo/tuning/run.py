"""Executing a resolved tuning request: this process is one worker of the study. It runs trials
until the study's budget is met (by it and any other workers), each a zoo run directory trained
on the train split and judged on validation alone, reported to Optuna every epoch so its pruner
can stop a poor one. The test split is never touched here (:mod:`zoo.tuning.report` measures
the best trial on it once the study is done)."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import optuna
from optuna.trial import TrialState

import registry

from .. import files, plan
from ..compute import backend
from ..errors import ZooError
from ..runs import PRUNED, Run
from ..training import runner
from . import space as space_lib
from . import study as study_lib
from .request import TuneRequest

TRIALS = "trials"  # the folder of the trials' run directories, in --out


class Pruning(keras.callbacks.Callback):
    """Reports each epoch's validation accuracy to the trial; stops the run where its pruner says."""

    def __init__(self, trial: optuna.Trial, epochs: int) -> None:
        super().__init__()
        self.trial, self.epochs = trial, epochs

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is None:
            return
        self.trial.report(float(value), epoch + 1)  # steps count epochs from 1, as history.csv does
        if epoch + 1 < self.epochs and self.trial.should_prune():  # stopping after the last saves nothing
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (validation accuracy {value:.4f})")


def study_of(request: TuneRequest) -> optuna.Study:
    """The request's study, created or continued (its identity checked)."""
    store = study_lib.storage(request.storage, request.out)
    return study_lib.open_study(request.study, store, request.identity(), seed=request.seed,
                                worker=request.worker_index, pruner=request.pruner, epochs=request.epochs,
                                budget=request.trials, settings=request.settings,
                                out=request.out if request.storage is None else None)


def work(request: TuneRequest, say: Callable[[str], None]) -> optuna.Study:
    """Run trials until the study has its budget of finished trials; return the study. With the
    rest of the budget running in other workers, return; but wait while a running trial is not
    yet claimed by its worker (it may have died between asking for it and claiming it): it is
    claimed at once, or judged lost after ``GRACE`` seconds and run again here."""
    study = study_of(request)
    waiting_for: set[int] = set()
    while True:
        for number in study_lib.fail_lost(study):
            say(f"trial {number}: its worker is gone; marked failed and queued again")
        if len(study_lib.finished(study)) >= request.trials:
            return study
        if study_lib.budget_taken(study, request.trials):  # others run the rest
            unclaimed = study_lib.unclaimed(study)
            if not unclaimed:
                return study
            for number in sorted(set(unclaimed) - waiting_for):
                say(f"trial {number}: not claimed by a worker yet; waiting (lost after {study_lib.GRACE} s)")
            waiting_for |= set(unclaimed)
            time.sleep(study_lib.POLL)
            continue
        trial = study.ask()
        study_lib.claim(study, trial)
        if study_lib.past_budget(study, trial.number, request.trials):  # asked at the same moment as others
            trial.set_user_attr(study_lib.SURPLUS, True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        with backend.quiet_retracing():
            _run_trial(request, study, trial, say)


def _run_trial(request: TuneRequest, study: optuna.Study, trial: optuna.Trial, say: Callable[[str], None]) -> None:
    values = {dim.key: dim.suggest(trial) for dim in request.space}
    options, hparams = space_lib.split(values, request.builder)
    run_dir = request.out / TRIALS / f"{trial.number:04d}"
    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={registry.show_value(v)}"
                     for k, v in values.items())
    start = time.monotonic()
    with study_lib.Heartbeat(study, trial):  # stopped before the trial is told: no write after that
        trial.set_user_attr("run", str(run_dir.relative_to(request.out)))
        try:
            planned = plan.resolve(request.model, options={**request.options, **options}, hparams=hparams,
                                   run_dir=run_dir, test=False)
            outcome = runner.train(planned, verbose=0, callbacks=[Pruning(trial, request.epochs)])
        except (optuna.TrialPruned, ZooError) as exc:
            outcome = exc
        except BaseException:  # interrupted or broken: not the trial's fault; run it again later
            outcome = None
            raise
        finally:
            keras.backend.clear_session()  # the next trial builds its model afresh
            if outcome is None:
                study.tell(trial, state=TrialState.FAIL)
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=study_lib.MAX_RETRY)(
                    study, study._storage.get_trial(trial._trial_id))
    seconds = f"[{time.monotonic() - start:.0f} s]"
    if isinstance(outcome, optuna.TrialPruned):  # its run says so (zoo runs: pruned, not interrupted)
        run = Run(run_dir)
        run.write_json(PRUNED, {"reason": str(outcome), "finished_epochs": len(run.history), "time": files.timestamp()})
        study.tell(trial, state=TrialState.PRUNED)
        say(f"trial {trial.number}: {outcome} {seconds} {shown}")
    elif isinstance(outcome, ZooError):  # the trial's own failure (a diverged loss): it used its budget
        trial.set_user_attr(study_lib.ERROR, str(outcome))
        study.tell(trial, state=TrialState.FAIL)
        say(f"trial {trial.number}: failed: {outcome} {shown}")
    else:
        value = outcome.run.history[-1]["val_accuracy"]
        study.tell(trial, value)
        say(f"trial {trial.number}: validation accuracy {value:.4f} {seconds} {shown}")
