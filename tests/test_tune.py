"""zoo tune (#28): studies on Optuna. Bad spaces, budgets and storages are one line before anything
trains; a study on zoo_tiny judges trials on validation only, measures the best alone on test and
writes a recipe that re-trains to the same validation accuracy; the same command gives the same
trials; a study of another model under the same name is refused; the pruner stops a trial between
epochs. On the real MNIST, in processes of their own: a worker killed mid-trial and re-run ends
with exactly the budget of finished trials, and two workers share one budget through a journal
file and through a PostgreSQL server started here."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import warm
from clicalls import one_line_error, zoo_cli

import zoo

optuna = pytest.importorskip("optuna")

TINY = {"dataset": "zoo_tiny", "epochs": 2, "batch_size": 16, "precision": "float32"}
SMALL_SPACE = {"units": "choice((8,8,8),(16,16,16))", "learning_rate": "log(1e-3,1e-2)", "dropout": "uniform(0.0,0.3)"}


@pytest.mark.parametrize("args, says", [
    (["--trials", "0"], "--trials must be 1 or more"),
    (["--trials", "2", "--space", "widths=choice(1,2)"], "'widths' is neither a recipe field nor a hyperparameter of 'mlp'"),
    (["--trials", "2", "--space", "learning_rate=between(1,2)"], "write log(a,b), uniform(a,b), int(a,b) or choice"),
    (["--trials", "2", "--space", "learning_rate=log(0,1e-2)"], "a log range must be above 0"),
    (["--trials", "2", "--space", "learning_rate=uniform(1e-2,1e-3)"], "give two ends, the lower first"),
    (["--trials", "2", "--space", "batch_size=uniform(16,64)"], "batch_size is int, not a float"),
    (["--trials", "2", "--space", "batch_size=int(1.5,3)"], "every value must be int (hyperparameter 'batch_size' expects int, received '1.5')"),
    (["--trials", "2", "--space", "units=choice((8,x,8))"], "every value must be tuple[int, ...]"),
    (["--trials", "2", "--space", "units=choice((8,8),(16,16))"], "rejects units=8,8: ValueError: mlp has three hidden layers"),
    (["--trials", "2", "--space", "dropout=uniform(0.0,1.5)"], "dropout=1.5 is refused: model 'mlp' rejects dropout=1.5"),
    (["--trials", "2", "--space", "label_smoothing=uniform(0.0,1.0)"], "label_smoothing=1.0 is refused"),
    (["--trials", "2", "--space", "optimizer=choice(adam,lion)"], "optimizer=lion is refused"),
    (["--trials", "2", "--space", "learning_rate=log(1e-4,1e-2)", "--learning-rate", "0.01"], "search it or fix it"),
    (["--trials", "2", "--pruner", "always"], "Invalid value for '--pruner'"),
    (["--trials", "2", "--shard", "3/2"], "--shard expects I/N"),
    (["--trials", "2", "--storage", "postgresql://zoo@127.0.0.1:1/zoo"], "cannot use the storage 127.0.0.1:1/zoo"),
    (["--trials", "2", "--storage", "{text file}"], "is not an Optuna journal"),
    (["--trials", "2", "--storage", "sqlite:/tmp/x.db"], "sqlite:/tmp/x.db is neither a database URL (SCHEME://..."),
    (["--trials", "2", "--study", " "], "--study needs a name"),
    (["--trials", "2", "--space", "epochs=int(1,3)"], "set it with --epochs"),
])
def test_bad_tuning_requests_are_one_line_and_write_nothing(args, says, tiny_data_dir, tmp_path):
    out, notes = tmp_path / "study", tmp_path / "notes.txt"
    notes.write_text("not a journal\n")
    args = [str(notes) if a == "{text file}" else a for a in args]
    result = zoo_cli("tune", "mlp", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--out", out, *args)
    line = result.stderr.strip().splitlines()[-1] if "Invalid value" in says else one_line_error(result)
    assert result.exit_code != 0 and says in line, line
    assert not out.exists() and notes.read_text() == "not a journal\n"


@pytest.fixture(scope="module")
def study(tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "mlp"
    summary = zoo.tune("mlp", trials=4, out=out, space=SMALL_SPACE, data_dir=tiny_data_dir, verbose=False, **TINY)
    return out, summary


def test_a_study_judges_on_validation_and_measures_only_the_best_on_test(study):
    out, summary = study
    assert summary["counts"]["complete"] + summary["counts"]["pruned"] + summary["counts"]["failed"] == 4
    best = summary["best"]
    values = {r["trial"]: r["val_accuracy"] for r in summary["trials"] if r["state"] == "complete"}
    assert best["val_accuracy"] == max(values.values())
    trials = sorted((out / "trials").iterdir())
    assert [t.name for t in trials] == ["0000", "0001", "0002", "0003"]
    for run in trials:  # every trial a run directory with its provenance; test untouched but the best's
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
        assert "test_accuracy" not in metrics
        assert (run / "eval-test.json").exists() == (run.name == f"{best['trial']:04d}")
        assert json.loads((run / "config.json").read_text())["config"]["model"] == "mlp"
    tested = json.loads((Path(best["run"]) / "eval-test.json").read_text())
    assert best["test"]["accuracy"] == tested["accuracy"]
    listed = {Path(r["run"]).name: r["test_accuracy"] for r in zoo.list_runs(out / "trials")}
    assert listed == {run.name: tested["accuracy"] if run.name == f"{best['trial']:04d}" else None for run in trials}
    assert {Path(p).name for p in summary["plots"]} == {"optimization-history.png", "param-importances.png"}
    table = (out / "trials.md").read_text()
    assert [line.split(" | ")[0] for line in table.splitlines() if line[:3] in {f"| {i}" for i in range(10)}] == \
        ["| 0", "| 1", "| 2", "| 3"]  # one row per trial


def test_the_best_recipe_retrains_to_the_same_validation_accuracy(study, tiny_data_dir, tmp_path):
    out, summary = study
    recipe = json.loads(Path(summary["recipe"]).read_text())
    assert recipe["model"] == "mlp" and recipe["tuning"]["best_trial"] == summary["best"]["trial"]
    assert recipe["tuning"]["test"]["accuracy"] == summary["best"]["test"]["accuracy"]
    run = zoo.train("mlp", recipe=summary["recipe"], data_dir=tiny_data_dir, dataset="zoo_tiny",
                    precision="float32", run_dir=tmp_path / "again", verbose=0)
    assert run.history[-1]["val_accuracy"] == summary["best"]["val_accuracy"]  # bit-identical on the CPU
    assert run.record["recipe_file"]["tuning"]["study"] == "mlp-zoo_tiny"
    tuned = Path(summary["best"]["run"]) / "history.csv"
    assert (tmp_path / "again" / "history.csv").read_text().split("\n")[1].split(",")[:5] == \
        tuned.read_text().split("\n")[1].split(",")[:5]


def test_the_printed_train_command_trains_where_the_study_tuned(tiny_data_dir, tmp_path):
    """zoo tune's last lines name the command that trains its recipe: on the study's dataset, not
    zoo train's default; the recipe trained elsewhere says where it was tuned."""
    import shlex

    out = tmp_path / "study"
    tuned = zoo_cli("tune", "mlp", "--trials", "1", "--epochs", "1", "--batch-size", "16", "--precision", "float32",
                    "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--seed", "3", "--out", out)
    assert tuned.exit_code == 0, tuned.output
    (line,) = [line for line in tuned.stdout.splitlines() if line.startswith("recipe: ")]
    command = shlex.split(line.split(" (", 1)[1].rstrip(")"))
    assert command[:5] == ["zoo", "train", "mlp", "--recipe", str(out / "best-recipe.json")]
    assert command[5:] == ["--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--seed", "3"]
    trained = zoo_cli(*command[1:], "--run-dir", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    assert "was tuned on" not in trained.stdout
    best = json.loads((out / "best-recipe.json").read_text())["tuning"]["val_accuracy"]
    assert zoo.Run.open(tmp_path / "run").history[-1]["val_accuracy"] == best  # the trial, trained again

    elsewhere = zoo_cli(*command[1:5], "--dataset", "zoo_tiny_no_test", "--data-dir", tiny_data_dir,
                        "--run-dir", tmp_path / "other")
    assert elsewhere.exit_code == 0, elsewhere.output
    assert (f"note: recipe {out / 'best-recipe.json'} was tuned on zoo_tiny; this run trains on zoo_tiny_no_test "
            "(--dataset)") in elsewhere.stdout


def test_the_same_command_samples_the_same_trials_and_rerunning_continues(study, tiny_data_dir, tmp_path):
    out, summary = study
    again = zoo.tune("mlp", trials=2, out=tmp_path / "again", space=SMALL_SPACE, data_dir=tiny_data_dir,
                     verbose=False, **TINY)
    assert [r["params"] for r in again["trials"]] == [r["params"] for r in summary["trials"][:2]]
    more = zoo.tune("mlp", trials=3, out=tmp_path / "again", space=SMALL_SPACE, data_dir=tiny_data_dir,
                    verbose=False, **TINY)  # the same study, continued to a budget of 3
    assert [r["trial"] for r in more["trials"]] == [0, 1, 2]
    assert more["trials"][:2] == again["trials"]
    assert more["trials"][2]["params"] not in [r["params"] for r in again["trials"]]  # sampled anew


def test_a_second_study_in_the_same_out_folder_is_refused_before_it_writes(study, tiny_data_dir):
    """--out holds one study's trials/, trials.md and recipe: another model's study there would
    number its trials over the first one's; it is refused, and the folder is left as it was."""
    out, _ = study
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises(zoo.ZooUsageError, match=rf"^--out {re.escape(str(out))} holds the study 'mlp-zoo_tiny' \(its "
                                                r"trials, table and recipe\); the study 'softmax-zoo_tiny' needs a --out"):
        zoo.tune("softmax", trials=1, out=out, data_dir=tiny_data_dir, verbose=False, **TINY)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_a_study_of_another_model_or_space_under_the_same_name_is_refused(study, tiny_data_dir):
    out, _ = study
    result = zoo_cli("tune", "softmax", "--study", "mlp-zoo_tiny", "--out", out, "--trials", "1",
                     "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "2")
    assert "study 'mlp-zoo_tiny' already tunes mlp on zoo_tiny with another model" in one_line_error(result)
    result = zoo_cli("tune", "mlp", "--out", out, "--trials", "5", "--dataset", "zoo_tiny", "--data-dir",
                     tiny_data_dir, "--epochs", "3", "--batch-size", "16", "--precision", "float32",
                     *[f"--space={k}={v}" for k, v in SMALL_SPACE.items()])
    assert "with another fixed epochs (2); give another --study name" in one_line_error(result)  # 3 asked for


def test_the_command_line_continues_a_study_the_api_began(study, tiny_data_dir):
    """The same settings, some given only as the command line's defaults (--deterministic), are
    the same study: continued, not refused as another."""
    out, summary = study
    again = zoo_cli("tune", "mlp", "--out", out, "--trials", "4", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                    "--epochs", "2", "--batch-size", "16", "--precision", "float32",
                    *[f"--space={k}={v}" for k, v in SMALL_SPACE.items()])
    assert again.exit_code == 0, again.output
    assert not [line for line in again.stdout.splitlines() if line.startswith("trial ")]  # none ran
    store = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    assert len(optuna.load_study(study_name="mlp-zoo_tiny", storage=store).get_trials()) == 4
    assert f"best: trial {summary['best']['trial']}" in again.stdout


def test_a_trial_its_worker_never_claimed_is_waited_for_and_run_again(tiny_data_dir, tmp_path, monkeypatch, capsys):
    """A worker killed between asking for a trial and claiming it leaves a running trial that no
    process owns. A worker that finds the budget taken by it waits, rather than ending the study a
    trial short: after GRACE the trial is judged lost and run again there."""
    from zoo.tuning import run
    from zoo.tuning import study as study_lib
    from zoo.tuning.request import resolve

    monkeypatch.setattr(study_lib, "GRACE", 3)
    monkeypatch.setattr(study_lib, "POLL", 0.2)
    request = resolve("mlp", trials=1, out=tmp_path / "study", options={**TINY, "epochs": 1, "data_dir": tiny_data_dir},
                      space=SMALL_SPACE, storage=None, study=None, pruner="median", shard=None)
    orphan = run.study_of(request).ask()  # the dead worker's last act
    study = run.work(request, print)
    said = capsys.readouterr().out
    trials = study.get_trials(deepcopy=False)
    assert f"trial {orphan.number}: not claimed by a worker yet; waiting (lost after 3 s)" in said
    assert f"trial {orphan.number}: its worker is gone; marked failed and queued again" in said
    assert trials[orphan.number].state.name == "FAIL"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert len(study_lib.finished(study)) == 1 and not study_lib.unclaimed(study)


def test_a_pruned_trial_s_run_says_pruned_and_resumes_to_the_end(tiny_data_dir, tmp_path, monkeypatch):
    """zoo runs shows a trial its pruner stopped as pruned (pruned.json: why, after which epoch),
    not as interrupted; trained on with --resume, it finishes and is no longer pruned."""
    import optuna

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda trial: trial.number == 0)
    out = tmp_path / "study"
    summary = zoo.tune("mlp", trials=2, out=out, space=SMALL_SPACE, data_dir=tiny_data_dir, verbose=False, **TINY)
    assert summary["counts"] == {"complete": 1, "pruned": 1, "failed": 0}
    assert {Path(r["run"]).name: r["status"] for r in zoo.list_runs(out / "trials")} == {"0000": "pruned",
                                                                                         "0001": "finished"}
    pruned = json.loads((out / "trials" / "0000" / "pruned.json").read_text())
    assert pruned["finished_epochs"] == 1 and pruned["reason"].startswith("pruned after epoch 1 (validation accuracy")
    config = json.loads((out / "trials" / "0000" / "config.json").read_text())["config"]
    settings = {k: v for k, v in config.items() if k not in ("model", "init", "freeze", "manual_dir")}
    run = zoo.train("mlp", **settings, run_dir=out / "trials" / "0000", resume=True, verbose=0)  # the trial's own settings
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert {Path(r["run"]).name: r["status"] for r in zoo.list_runs(out / "trials")}["0000"] == "finished"
    assert not (out / "trials" / "0000" / "pruned.json").exists()


def test_the_pruner_stops_a_trial_between_epochs_and_never_after_the_last():
    from zoo.tuning.run import Pruning

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.9))
    trial = study.ask()
    callback = Pruning(trial, epochs=3)
    callback.on_epoch_end(0, {"val_accuracy": 0.95})  # above the threshold: goes on
    with pytest.raises(optuna.TrialPruned, match="after epoch 2"):
        callback.on_epoch_end(1, {"val_accuracy": 0.5})
    last = Pruning(study.ask(), epochs=3)
    last.on_epoch_end(2, {"val_accuracy": 0.5})  # the last epoch: nothing left to save
    assert last.trial.storage.get_trial(last.trial._trial_id).intermediate_values == {3: 0.5}


def test_a_space_range_given_as_a_tuple_is_one_line(tiny_data_dir, tmp_path):
    with pytest.raises(zoo.ZooUsageError, match=r"^space 'learning_rate': a range is text, such as 'log\(1e-4,1e-2\)', .*"
                                                r"received tuple \(0.1, 0.2\)$"):
        zoo.tune("softmax", trials=1, out=tmp_path / "t", space={"learning_rate": (0.1, 0.2)},
                 data_dir=tiny_data_dir, **TINY)
    assert not (tmp_path / "t").exists()


def test_the_default_space_follows_the_builders_recipe_and_types():
    import registry
    from zoo.tuning import space

    assert space.default_space(registry.get("cnn"))["kernel_size"] == "choice(3,5)"  # the builder's own
    builder = registry.get("mlp")
    texts = space.default_space(builder)
    assert texts["learning_rate"] == "log(0.0001,0.01)" and texts["optimizer"] == "choice(adam,adamw,sgd,rmsprop)"
    assert space.default_space(builder)["units"] == "choice((256,256,256),(512,512,512),(1024,1024,1024))"
    dims = {d.key: d for d in space.resolve(builder, {"units": "choice((8,8,8))"})}
    assert dims["units"].values == ((8, 8, 8),) and dims["dropout"].values == (0.0, 0.5)
    assert "l2" not in space.default_space(registry.get("softmax"))  # a penalty, not a rate: no range to guess


def clashing(*, input_shape: tuple[int, ...], num_classes: int, batch_size: int = 6, epochs: int = 3,
             width: int = 8):
    """A builder whose hyperparameters are named like training options."""
    import keras

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(width * batch_size // 6 + epochs, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def test_hyperparameters_named_like_training_options_are_searched_as_hp_keys(tiny_data_dir, tmp_path):
    """The default space searches both the training batch size and the builder's own, under
    their own keys; each trial trains with what its row says (the option in config.json, the
    hyperparameter in the model's)."""
    import registry
    from zoo.tuning import space

    zoo.register(clashing)
    try:
        builder = registry.get("clashing")
        texts = space.default_space(builder)
        assert texts["batch_size"] == "choice(64,128,256)" and texts["hp.batch_size"] == "choice(3,6,12)"
        assert texts["hp.epochs"] == "choice(1,3,6)" and texts["width"] == "choice(4,8,16)"
        assert space.split({"batch_size": 64, "hp.batch_size": 3, "width": 4}, builder) == (
            {"batch_size": 64}, {"batch_size": 3, "width": 4})
        out = tmp_path / "study"
        zoo.tune("clashing", trials=2, out=out, data_dir=tiny_data_dir, verbose=False,
                 space={"batch_size": "choice(16,32)", "hp.batch_size": "choice(3,12)"},
                 **{**TINY, "batch_size": None})
        for trial in optuna.load_study(study_name="clashing-zoo_tiny", storage=optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))).trials:
            config = json.loads((out / "trials" / f"{trial.number:04d}" / "config.json").read_text())["config"]
            # a choice is kept in Optuna as its text
            assert (str(config["batch_size"]), str(config["hparams"]["batch_size"])) == (
                trial.params["batch_size"], trial.params["hp.batch_size"])
    finally:
        registry._discovery._LOCAL.pop("clashing", None)


# --- the real MNIST, workers in processes of their own -------------------------------------------

FAST = ["--epochs", "1", "--batch-size", "256", "--space", "units=choice((32,32,32),(64,64,64))",
        "--space", "dropout=uniform(0.0,0.3)", "--space", "learning_rate=log(1e-3,1e-2)", "--precision", "float32"]


def tune_argv(out: Path, data_dir: str, *more: str) -> list[str]:
    return [sys.executable, "-m", "zoo", "tune", "mlp", "--trials", "6", "--out", str(out), "--data-dir", data_dir,
            *FAST, *more]


def trials_of(out: Path, storage: str | None = None) -> list:
    store = storage or optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name="mlp-mnist", storage=store).get_trials(deepcopy=False)


def finished(trials) -> list:
    return [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def started(argv: list[str], logs: Path) -> subprocess.Popen | warm.WarmProcess:
    """``argv`` started (warm), its output in ``logs``.out and .err."""
    return warm.popen(argv, stdout=logs.with_suffix(".out"), stderr=logs.with_suffix(".err"), env=env())


def ended(proc, logs: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(proc.args, proc.wait(timeout),
                                       *(logs.with_suffix(s).read_text() for s in (".out", ".err")))


def two_workers(out: Path, data_dir: str, *storage: str) -> list[subprocess.CompletedProcess]:
    logs = [out.parent / f"shard-{i}" for i in (1, 2)]
    procs = [started(tune_argv(out, data_dir, "--shard", f"{i}/2", *storage), log) for i, log in zip((1, 2), logs)]
    try:
        return [ended(p, log, 600) for p, log in zip(procs, logs)]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def check_shared_budget(results, trials, before: int | None = None) -> None:
    """6 finished between the workers of ``results`` (and the worker of pid ``before``, killed)."""
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
    done = finished(trials)
    assert len(done) == 6  # between them, not 6 each and not one more
    workers = {t.user_attrs["worker"]["pid"] for t in done} - {before}
    assert len(workers) == 2, "both workers ran trials"
    assert len({t.user_attrs["run"] for t in done}) == 6
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == len(done), "no settings run twice"
    assert sum("best: trial" in r.stdout for r in results) >= 1


@pytest.mark.slow
def test_a_worker_killed_mid_trial_then_two_workers_finish_exactly_the_budget(mnist_data_dir, tmp_path):
    """Killed after two finished trials, the study is re-run by two workers on its journal file:
    the lost trial is failed and retried with its settings, and they end with exactly 6."""
    out = tmp_path / "study"
    worker = started(tune_argv(out, mnist_data_dir), tmp_path / "killed")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # two finished, the third running with its settings
            trials = trials_of(out) if (out / "study.journal").exists() else []
            if len(finished(trials)) >= 2 and any(t.state.name == "RUNNING" and t.params for t in trials):
                break
            assert worker.poll() is None, (tmp_path / "killed.err").read_text()[-2000:]
            time.sleep(0.2)
        else:
            pytest.fail("the worker never finished two trials")
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    killed = next(t.number for t in trials_of(out) if t.state.name == "RUNNING")
    results = two_workers(out, mnist_data_dir)
    check_shared_budget(results, trials_of(out), before=worker.pid)
    assert sum(f"trial {killed}: its worker is gone; marked failed and queued again" in r.stdout for r in results) == 1
    trials = trials_of(out)
    lost = next(t for t in trials if t.number == killed)
    assert lost.state.name == "FAIL"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].params == lost.params and retried[0].state.name == "COMPLETE"
    recipe = json.loads((out / "best-recipe.json").read_text())
    again = warm.run([sys.executable, "-m", "zoo", "train", "mlp", "--recipe", str(out / "best-recipe.json"),
                      "--data-dir", mnist_data_dir, "--precision", "float32", "--run-dir", str(tmp_path / "again")],
                     env=env(), timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    history = (tmp_path / "again" / "history.csv").read_text().splitlines()
    val = float(dict(zip(history[0].split(","), history[-1].split(",")))["val_accuracy"])
    assert val == recipe["tuning"]["val_accuracy"]  # the best trial, trained again: bit-identical on the CPU


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None)
    return Path(found).resolve().parent if found else None  # the real folder: pg_isready, createdb beside it


@pytest.fixture
def postgres():
    """A PostgreSQL server on 127.0.0.1, a free port, stopped (by its process id) at the end."""
    pytest.importorskip("psycopg")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb); README's test command installs them")
    folder = Path(tempfile.mkdtemp(prefix="zoo-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "zoo", "--auth=trust"],
                   check=True, capture_output=True, timeout=120)
    server = subprocess.Popen([*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
                               "-c", "listen_addresses=127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and server.poll() is None, "PostgreSQL did not start"
            time.sleep(0.3)
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "zoo", "tune"],
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql://zoo@127.0.0.1:{port}/tune"
    finally:
        pid_file = data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else server.pid
        # Fast shutdown (SIGINT): the postmaster ends every client's session, stops its children
        # and exits. Smart shutdown (SIGTERM) would wait for this process's own pooled connections.
        os.kill(pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_ray_workers_share_one_budget_through_postgresql(postgres, mnist_data_dir, tmp_path):
    """The study's workers as tasks on a Ray cluster started on this machine (127.0.0.1, stopped at
    the end), its storage a PostgreSQL server: 6 trials between them."""
    pytest.importorskip("ray")
    out = tmp_path / "study"
    argv = tune_argv(out, mnist_data_dir, "--storage", postgres, "--ray", "--workers", "2")
    result = warm.run(argv, env=env(), timeout=600)
    check_shared_budget([result], trials_of(out, postgres))
    assert "2 workers on Ray (on this machine) finished" in result.stdout
    assert not (out / "study.journal").exists()


def test_trials_hide_tensorflows_retracing_warning_and_nothing_else(caplog):
    """Each trial traces Keras' train function of its own model, which TensorFlow counts as one
    function retraced ("5 out of the last 6 calls ... triggered tf.function retracing"): noise in
    every study's output. Other TensorFlow warnings still show, and the filter ends with the trial."""
    import logging

    from zoo.compute import backend

    logger = logging.getLogger("tensorflow")
    retracing = "5 out of the last 6 calls to <function f> triggered tf.function retracing. Tracing is expensive"
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        with backend.quiet_retracing():
            logger.warning(retracing)
            logger.warning("some other warning")
        logger.warning(retracing)
    assert [r.getMessage() for r in caplog.records] == ["some other warning", retracing]
