"""zoo bench --tune N and --recipe FILE (#28 item 6), on the tiny dataset: a tuned bench trains with
its study's best trial's settings and shows how much tuning each row had, in a table of its own;
the same command again retrains nothing; a recipe file's rows are apart from untuned and tuned ones;
bad combinations are one line before anything trains."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import warm
from clicalls import one_line_error
from click.testing import CliRunner

from zoo import recipes
from zoo.benchmark import jobs
from zoo.benchmark import records as bench_records
from zoo.cli import main

optuna = pytest.importorskip("optuna")

TINY = ["--dataset", "zoo_tiny", "--epochs", "2", "--batch-size", "16", "--precision", "float32", "--seeds", "0"]
SPACE = ["--space", "learning_rate=log(1e-3,1e-1)", "--space", "l2=uniform(0.0,0.01)",
         "--space", "optimizer=choice(adam,sgd)", "--space", "schedule=choice(constant)",
         "--space", "label_smoothing=choice(0.0)"]
# What a trial learns with (zoo.tuning.request.LEARNING, less what the bench fixes: the same here).
LEARNED = ("learning_rate", "optimizer", "schedule", "label_smoothing", "batch_size", "epochs", "seed")


def zoo_bench(*args) -> object:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return warm.run([sys.executable, "-m", "zoo", "bench", *map(str, args)], env=env, timeout=600)


def recipe_file(path: Path, model: str, **fields) -> Path:
    hparams = fields.pop("hparams", {})
    recipes.write(path, recipes.Recipe(model=model, options=fields, hparams=hparams))
    return path


@pytest.fixture(scope="module")
def tuned(tiny_data_dir, tmp_path_factory):
    """A bench of softmax tuned by a study of 3 trials, then run again as it was."""
    out = tmp_path_factory.mktemp("bench-tune") / "out"
    first = zoo_bench("softmax", "--tune", 3, *SPACE, *TINY, "--data-dir", tiny_data_dir, "--out", out)
    assert first.returncode == 0, first.stderr[-3000:]
    again = zoo_bench("softmax", "--tune", 3, *SPACE, *TINY, "--data-dir", tiny_data_dir, "--out", out)
    assert again.returncode == 0, again.stderr[-3000:]
    return out, first, again


# A study of 3 trials and a bench job, the command given twice: about 35 s alone.
def test_a_tuned_bench_trains_with_the_best_trial_and_shows_its_tuning(tuned):
    out, first, again = tuned
    study = optuna.load_study(study_name="softmax-zoo_tiny", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "tune" / "softmax" / "study.journal"))))
    assert len(study.trials) == 3
    best = study.best_trial
    (record,) = bench_records.read_records(out)
    assert record["status"] == "ok" and record["model"] == "softmax"
    tuning = record["recipe_file"]["tuning"]
    assert tuning["study"] == "softmax-zoo_tiny" and tuning["best_trial"] == best.number and tuning["budget"] == 3
    assert record["recipe_file"]["path"] == str(out / "tune" / "softmax" / "best-recipe.json")
    # The bench's run trains with the best trial's settings and hyperparameters, at the bench's seed.
    trial = json.loads((out / "tune" / "softmax" / best.user_attrs["run"] / "config.json").read_text())
    run = json.loads((Path(record["run_dir"]) / "config.json").read_text())
    assert {k: run["config"][k] for k in LEARNED} == {k: trial["config"][k] for k in LEARNED}
    assert run["config"]["hparams"] == trial["config"]["hparams"] and record["hparams"]["l2"] == best.params["l2"]
    assert run["config"]["learning_rate"] == best.params["learning_rate"]
    assert run["recipe_file"]["tuning"]["best_trial"] == best.number  # the run records its recipe too
    # The leaderboard: a table of its own, with the study's trials, pruned trials and seconds.
    md = (out / "results.md").read_text()
    assert "## Tuned: 3 trials per entry" in md and "## Untuned" not in md
    assert "| test accuracy | trials | pruned | tuning s |" in md
    pruned = tuning["trials"]["pruned"]
    assert "| 1 | softmax " in md and " (tuned) | float32, CPU, memory | zoo_tiny | 2 | 1 |" in md
    assert f"| 3 | {pruned} | {tuning['seconds']:.1f} |" in md
    assert "tuning softmax: study softmax-zoo_tiny" in first.stderr
    # The same command again: the study reused, the recorded job skipped, nothing trained.
    assert "trials are finished; reused" in again.stderr and "tuning softmax" not in again.stderr
    assert "nothing to run" in again.stderr and len(bench_records.read_records(out)) == 1
    assert len(list((out / "tune" / "softmax" / "trials").iterdir())) == 3


# One bench job: about 20 s alone.
def test_recipe_rows_stand_apart_from_tuned_ones(tuned, tiny_data_dir, tmp_path):
    out, _, _ = tuned
    path = recipe_file(tmp_path / "mine.json", "softmax", epochs=5, learning_rate=0.02, hparams={"l2": 0.001})
    result = zoo_bench("softmax", "--recipe", path, *TINY, "--data-dir", tiny_data_dir, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    record = bench_records.read_records(out)[-1]
    assert record["recipe_file"]["path"] == str(path) and record["recipe_file"]["tuning"] is None
    assert record["epochs"] == 2  # --epochs wins over the file
    assert record["hparams"]["l2"] == 0.001
    assert json.loads((Path(record["run_dir"]) / "config.json").read_text())["config"]["learning_rate"] == 0.02
    md = (out / "results.md").read_text()
    untuned, tuned_table = md.split("## Tuned: 3 trials per entry")
    assert "## Untuned: each model's recipe" in untuned and "(recipe mine.json) | float32" in untuned
    assert "(tuned)" not in untuned and "(recipe mine.json)" not in tuned_table.split("Columns:")[0]
    # The tuned file given as --recipe trains what --tune trained: recorded already.
    again = zoo_bench("softmax", "--recipe", out / "tune" / "softmax" / "best-recipe.json", *TINY,
                      "--data-dir", tiny_data_dir, "--out", out)
    assert again.returncode == 0 and "nothing to run" in again.stderr, again.stderr[-3000:]


def test_a_recipe_job_has_a_key_of_its_own(tmp_path):
    recipe = recipes.read(recipe_file(tmp_path / "r.json", "softmax", learning_rate=0.02, hparams={"l2": 0.001}))
    options = {"dataset": "mnist", "backend": "tensorflow", "epochs": 1}
    (by_hand,) = jobs.sweep_jobs(["softmax"], seeds=[0], out=tmp_path, hparams={"l2": 0.001},
                                 options={**options, "learning_rate": 0.02})
    (from_file,) = jobs.sweep_jobs(["softmax"], seeds=[0], out=tmp_path, hparams={}, options=options,
                                   recipes={"softmax": recipe})
    assert from_file.config == by_hand.config  # the same training
    assert from_file.key != by_hand.key and from_file.run_dir != by_hand.run_dir  # another row
    assert from_file.recipe["sha256"] == recipe.sha256 and by_hand.recipe is None
    assert jobs.Job.from_dict(from_file.to_dict()) == from_file  # handed to a Ray task whole


@pytest.mark.parametrize("args, says", [
    (["softmax", "--tune", "0"], "--tune must be 1 or more trials, received 0"),
    (["--from-presets", "softmax.mnist", "--tune", "2"], "--tune is for models this bench trains"),
    (["--from-runs", "runs/x", "--tune", "2"], "--tune is for models this bench trains"),
    (["--from-runs", "runs/x", "--recipe", "{softmax}"], "--recipe is for models this bench trains"),
    (["softmax", "--tune", "2", "--recipe", "{softmax}"], "--tune 2 tunes softmax, and the recipe file"),
    (["softmax", "--recipe", "{nowhere}"], "does not exist"),
    (["softmax", "--recipe", "{mlp}"], "is for model 'mlp', which this bench does not train (softmax)"),
    (["softmax", "--recipe", "{softmax}", "--recipe", "{softmax}"], "two recipe files for model 'softmax'"),
    (["softmax", "--space", "l2=uniform(0,0.1)"], "--space is the search space of --tune's studies"),
    (["softmax", "--tune", "2", "--hp", "l2=0.1"], "fix one for every trial with --space KEY=choice(VALUE)"),
    (["softmax", "--tune", "2", "--shard", "1/2"], "--plan, --shard and --ray are not for it"),
    (["softmax", "--tune", "2", "--space", "units=choice(8,16)"], "'units' is neither a recipe field nor a hyperparameter"),
    (["softmax", "--tune", "2", "--space", "label_smoothing=uniform(0.0,1.0)"], "label_smoothing=1.0 is refused"),
])
def test_bad_tuned_or_recipe_benches_are_one_line_and_write_nothing(args, says, tiny_data_dir, tmp_path):
    files = {"softmax": recipe_file(tmp_path / "softmax.json", "softmax", learning_rate=0.01),
             "mlp": recipe_file(tmp_path / "mlp.json", "mlp", learning_rate=0.01), "nowhere": tmp_path / "nowhere.json"}
    args = [a.format(**files) for a in args]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", *args, "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                                       "--epochs", "1", "--out", str(out)])
    assert says in one_line_error(result)
    assert not out.exists()


def test_zoo_bench_refuses_the_same_in_python(tmp_path):
    import zoo

    with pytest.raises(zoo.ZooUsageError, match="--tune must be 1 or more trials"):
        zoo.bench("softmax", tune=0, out=tmp_path / "out")
    with pytest.raises(zoo.ZooUsageError, match="does not exist"):
        zoo.bench("softmax", recipes=[tmp_path / "nowhere.json"], out=tmp_path / "out", epochs=1)
    assert not (tmp_path / "out").exists()
