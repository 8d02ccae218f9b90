"""The Optuna study a ``zoo tune`` command works in: its storage, its identity, its trial budget
shared by every worker, and the trials of workers that died.

Storage is Optuna's own: its journal file in the output folder by default (one machine, or many on
a shared filesystem), or ``--storage URL`` for any database Optuna supports. A study remembers
what it tunes (model, dataset, fixed settings and space, :func:`identity`); the same name asked
for something else is refused. The budget counts finished trials (complete, pruned, or failed on
their own, such as a diverged loss): any number of workers ask for trials until it is met, and a
trial numbered past it (workers asking at the same moment) is given back unrun, so the study
never exceeds it. A trial whose worker died is marked failed and retried with the same settings
(Optuna's ``RetryHeartbeatStaleTrialCallback``): on a database by Optuna's heartbeat, in a journal by the
worker's own (recorded in the trial's attributes) and, on the same machine, at once when its
process is gone.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ..errors import ZooUsageError

JOURNAL = "study.journal"
HEARTBEAT = 10  # seconds between a running trial's heartbeats
GRACE = 60  # a running trial whose heartbeat is older than this lost its worker
MAX_RETRY = 2  # a trial lost with its worker is run again this many times at most
POLL = 1  # seconds between looks at the study while waiting for a trial no worker has claimed
PRUNERS = ("median", "hyperband", "none")
ERROR = "error"  # user attribute of a trial that failed on its own (it counts against the budget)
SURPLUS = "surplus"  # user attribute of a trial given back unrun (past the budget)
WORKER = "worker"  # user attribute: {"host", "pid"} of the process running it
BEAT = "heartbeat"  # user attribute: time of the worker's last heartbeat (journal storage)

optuna.logging.set_verbosity(optuna.logging.WARNING)
# The zoo relies on these on purpose (pinned Optuna, checked by its tests); a user needs no notice.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


DATABASE = re.compile(r"(sqlite|postgres(ql)?|mysql|mariadb|oracle|mssql)(\+\w+)?:", re.IGNORECASE)


def storage(url: str | None, out: Path) -> optuna.storages.BaseStorage:
    """Optuna's journal in ``out`` (None), a journal file (a path), or a database URL."""
    try:
        if url is not None and "://" not in url and DATABASE.match(url):  # sqlite:/x.db: not a file name
            raise ZooUsageError(f"{url} is neither a database URL (SCHEME://..., e.g. sqlite:///path/to/file.db or "
                                f"postgresql://user@host/db) nor a journal file")
        if url is None or "://" not in url:
            path = out / JOURNAL if url is None else Path(url).expanduser().resolve()
            if path.is_dir():
                raise ZooUsageError(f"--storage {path} is a folder; give a journal file or a database URL")
            _check_journal(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        return _database(url)
    except (ZooUsageError, OSError) as exc:
        raise ZooUsageError(f"--storage: {exc}") from None
    except Exception as exc:  # sqlalchemy's and the drivers' errors: no common base worth naming
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ZooUsageError(f"cannot use the storage {_hide_password(url)}: {first}") from None


def _check_journal(path: Path) -> None:
    """Refuse a file that is not an Optuna journal before Optuna appends to it."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    try:
        ok = isinstance(json.loads(first), dict) and "op_code" in json.loads(first)
    except ValueError:
        ok = False
    if not ok:
        raise ZooUsageError(f"{path} is not an Optuna journal file; give another --storage")


def _database(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's database storage. Workers that start together on an empty database race to create
    its tables; the loser finds them made on its next attempt."""
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                engine_kwargs={"pool_pre_ping": True,
                               **({"connect_args": {"connect_timeout": 10}} if url.startswith("postgres") else {})},
            )
        except Exception as exc:
            text = str(exc)
            if attempt + 1 == attempts or not ("already exists" in text or "duplicate key" in text or "UniqueViolation" in text):
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _hide_password(url: str | None) -> str:
    return str(url).split("@")[-1] if url and "@" in url else str(url)


def identity(model: str, dataset: str, fixed: Mapping[str, Any], space: Mapping[str, str],
             pruner: str) -> dict[str, Any]:
    """What a study tunes, and how; a study of the same name must do the same (a pruner changed
    halfway would judge its trials by two rules)."""
    return {"model": model, "dataset": dataset, "fixed": dict(fixed), "space": dict(space), "pruner": pruner}


def startup_trials(budget: int) -> int:
    """Random trials before TPE models the results: a quarter of the budget, 3 to 10."""
    return min(10, max(3, budget // 4))


def open_study(name: str, store: optuna.storages.BaseStorage, who: Mapping[str, Any], *, seed: int,
               worker: int, pruner: str, epochs: int, budget: int, settings: Mapping[str, Any],
               out: Path | None = None) -> optuna.Study:
    """Create the study or continue it; a study of this name that tunes something else is refused
    (``settings``: the values the trials train with, for the fixed options ``who`` leaves out).
    ``out``: the folder whose journal ``store`` is, which holds one study's trials, table and
    recipe: a journal there of another study is refused before anything is written."""
    try:
        others = sorted(set(optuna.get_all_study_names(store)) - {name}) if out is not None else []
        if others:
            raise ZooUsageError(f"--out {out} holds the study '{others[0]}' (its trials, table and recipe); "
                                f"the study '{name}' needs a --out folder of its own")
        study = optuna.create_study(
            study_name=name, storage=store, direction="maximize", load_if_exists=True,
            pruner=_pruner(pruner, epochs),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:  # json's errors are ValueErrors
        where = getattr(getattr(store, "_backend", None), "_file_path", "the storage")
        raise ZooUsageError(f"{where} is not an Optuna journal ({type(exc).__name__}: {exc}); give another --storage") from None
    # Seeded by the seed, the worker and the trials already there: a fresh study samples the same
    # trials for the same command, while a continued one or a second worker does not repeat them.
    # TPE draws its first trials at random; Optuna's 10 would leave a budget of 12 mostly random.
    known = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(
        n_startup_trials=startup_trials(budget),
        seed=int(np.random.SeedSequence([seed, worker, known]).generate_state(1)[0]))
    found = study.user_attrs.get("tunes")
    if found is None:
        study.set_user_attr("tunes", dict(who))
    else:
        what, was = _difference(found, who, settings)
        if what is not None:
            raise ZooUsageError(
                f"study '{name}' already tunes {found['model']} on {found['dataset']} with another {what} "
                f"({was!r}); give another --study name or --out folder"
            )
    return study


def _difference(found: Mapping[str, Any], who: Mapping[str, Any],
                settings: Mapping[str, Any]) -> tuple[str | None, Any]:
    """The first thing study ``found`` tunes otherwise than request ``who``, and its value in
    ``found``; (None, None) when they tune the same. A fixed option left out stands for its value
    in ``settings`` (what the trials train with), so leaving out a default or giving it (the API
    and the command line) is the same study."""
    def plain(value: Any) -> Any:
        return json.loads(json.dumps(value, default=list))  # as the storage gives it back

    for what in ("model", "dataset", "fixed", "space", "pruner"):
        was, now = plain(found.get(what)), plain(who.get(what))
        if what == "fixed" and isinstance(was, dict) and isinstance(now, dict):
            base = plain(dict(settings))
            was, now = {**base, **was}, {**base, **now}
            key = next((k for k in sorted({*was, *now}) if was.get(k) != now.get(k)), None)
            if key is not None:
                return f"fixed {key}", was.get(key, "(not set)")
        elif was != now:
            return what, was
    return None, None


def _pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.NopPruner()


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that uses up budget: finished, or running or waiting to."""
    if trial.state == TrialState.FAIL:
        return ERROR in trial.user_attrs
    return True


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False) if t.state in done or (t.state == TrialState.FAIL and ERROR in t.user_attrs)]


def budget_taken(study: optuna.Study, budget: int) -> bool:
    """Whether trials finished or running (claimed or not) use up the budget; a trial waiting to
    be run (a retry) is not taken until a worker asks for it."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING and counted(t)) >= budget


def unclaimed(study: optuna.Study) -> list[int]:
    """The running trials no worker has claimed (:func:`claim`) yet."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if (t.user_attrs.get(WORKER) or {}).get("trial") != t.number]


def claim(study: optuna.Study, trial: optuna.Trial) -> None:
    """Mark a trial as this process's and beat for it once, right after asking for it: from then
    on its worker's death is seen (:func:`fail_lost`)."""
    trial.set_user_attr(WORKER, {"host": socket.gethostname(), "pid": os.getpid(), "trial": trial.number})
    beat(study._storage, trial._trial_id)


def beat(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """One heartbeat: Optuna's own on a database, the trial's ``heartbeat`` attribute in a journal."""
    try:
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.record_heartbeat(trial_id)
        else:
            storage.set_trial_user_attr(trial_id, BEAT, time.time())
    except Exception:  # a finished trial (or a storage hiccup): the next beat says more
        pass


def past_budget(study: optuna.Study, number: int, budget: int) -> bool:
    """Whether the trial numbered ``number`` would exceed the budget: as many counted trials are
    numbered before it."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and counted(t)) >= budget


def fail_lost(study: optuna.Study) -> list[int]:
    """Mark failed the running trials whose worker is gone (its process, on this machine; its
    heartbeat, in a journal), and have each retried; return their numbers. A database's own
    heartbeat is Optuna's (``fail_stale_trials``)."""
    lost = []
    if isinstance(study._storage, optuna.storages.RDBStorage):
        optuna.storages.fail_stale_trials(study)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _lost(trial):
            continue
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
            continue
        lost.append(trial.number)
        retry(study, study._storage.get_trial(trial._trial_id))
    return lost


def _lost(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a running trial's worker is gone. A retried trial starts with the lost one's
    attributes (Optuna copies them): until its own worker claims it, only its age can tell."""
    worker = trial.user_attrs.get(WORKER) or {}
    if worker.get("trial") != trial.number:
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        return time.time() - started > GRACE
    if worker.get("host") == socket.gethostname() and isinstance(worker.get("pid"), int):
        return not _alive(worker["pid"])
    last = trial.user_attrs.get(BEAT)
    return isinstance(last, (int, float)) and time.time() - last > GRACE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Beats for a running trial this process claimed until stopped (journal storage;
    a database's heartbeat is Optuna's own, beaten here too through ``record_heartbeat``)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial) -> None:
        self.storage, self.trial_id = study._storage, trial._trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="zoo-tune-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            beat(self.storage, self.trial_id)


def check_budget(trials: int) -> None:
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ZooUsageError(f"--trials must be 1 or more, received {trials!r}")
