"""Make tests/fixtures/format-v0/: small, real run directories and bench records written by the
zoo as it was before files carried a format version (commit 569b3be, "version 0").

    python scripts/make_format_fixtures.py [--out tests/fixtures/format-v0] [--keep-work]

Run it only on a checkout of that format: the fixtures are the old files that the migrations
must go on reading, so regenerating them with a newer zoo would replace them with new files.
Everything is made with the real command line (``python -m zoo``) on the tiny TFDS dataset
``zoo_tiny`` (tests/tinydata), prepared in a scratch data folder; then only what the zoo reads
back is copied out (see PRUNED). tests/fixtures/format-v0/README.md says what each folder is and
what a test must rewrite (the absolute data folder the runs recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

# One training command for the finished and the interrupted run: the same settings, so that the
# interrupted one resumed must end exactly as the finished one (3 epochs, dropout: the backup's
# random-generator state matters). Explicit float32: `auto` is bfloat16 on some CPUs.
TRAIN = ["train", "mlp", "--hp", "units=8,8,8", "--dataset", "zoo_tiny", "--epochs", "3",
         "--batch-size", "32", "--learning-rate", "0.01", "--precision", "float32", "--seed", "0"]
BENCH = ["bench", "softmax", "--dataset", "zoo_tiny", "--epochs", "1", "--seeds", "0",
         "--learning-rate", "0.05",
         "--batch-size", "32", "--precision", "float32"]

# Stops the run like Ctrl-C right after epoch 1's backup is complete (state.json switched to it),
# through the CLI's own KeyboardInterrupt handling: exit 130, "resume with: ...".
INTERRUPT_AFTER_EPOCH_1 = textwrap.dedent("""
    import os, signal, sys
    from zoo import runner
    from zoo.cli import main

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    saved = runner._Backup.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        saved(self, epoch, logs)
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, between epoch 1 and epoch 2

    runner._Backup.on_epoch_end = on_epoch_end
    sys.argv = ["zoo", *sys.argv[1:]]
    main()
""")

# What is copied out of each folder; everything else is left behind (PRUNED says why).
KEEP = {
    "finished": ["config.json", "metrics.json", "history.csv", "eval-test.json", "model.keras"],
    "interrupted": ["config.json", "history.csv", "backup/state.json", "backup/epoch-1.weights.h5"],
    "bench": ["results.jsonl", "results.csv", "results.md", "plans/*.json",
              "runs/*/config.json", "runs/*/metrics.json", "runs/*/history.csv"],
    "export": ["1/assets.extra/zoo.json"],
}
PRUNED = {
    "finished": "curves.png, tensorboard/ (written, never read back) and the empty .lock",
    "interrupted": "tensorboard/ (written again on resume) and the empty .lock",
    "bench": "results.png (--report redraws it), jobs/ (read by the child process of the run "
             "that wrote it), logs/, exports/ (SavedModels, measured once) and, in runs/, "
             "model.keras, curves.png, tensorboard/ and .lock: a recorded job is never read again",
    "export": "the SavedModel itself (only the export that wrote it reads it, to verify it)",
}


def zoo(*args: str, cwd: Path, expect: int = 0, script: str | None = None) -> str:
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "zoo", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TFDS_DATA_DIR", None)
    env.pop("ZOO_MANUAL_DIR", None)
    print("$ zoo", " ".join(args), flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200, check=False,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if proc.returncode != expect:
        sys.exit(f"exit {proc.returncode}, expected {expect}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def copy(kind: str, source: Path, target: Path) -> None:
    for pattern in KEEP[kind]:
        found = sorted(source.glob(pattern))
        if not found:
            sys.exit(f"{kind}: nothing matches {pattern} in {source}")
        for path in found:
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TESTS / "fixtures" / "format-v0")
    parser.add_argument("--keep-work", action="store_true", help="Keep the scratch folder.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="zoo-format-v0-"))
    data_dir = work / "tfds"
    sys.path.insert(0, str(TESTS))
    from tinydata import ZooTiny  # defining it registers zoo_tiny with TFDS

    ZooTiny(data_dir=str(data_dir)).download_and_prepare()  # `zoo` then reads it by name

    finished, interrupted = work / "finished", work / "interrupted"
    data = ["--data-dir", str(data_dir)]
    zoo(*TRAIN, *data, "--run-dir", str(finished), cwd=work)
    zoo("evaluate", str(finished), cwd=work)  # eval-test.json, as an old run may hold one
    zoo("export", str(finished), str(work / "export"), cwd=work)

    said = zoo(*TRAIN, *data, "--run-dir", str(interrupted), cwd=work, expect=130,
               script=INTERRUPT_AFTER_EPOCH_1)
    assert "resume with:" in said, said
    state = json.loads((interrupted / "backup" / "state.json").read_text())
    rows = (interrupted / "history.csv").read_text().splitlines()
    assert state["epoch"] == 1 and len(rows) == 2, (state, rows)  # header and epoch 1
    assert not (interrupted / "metrics.json").exists()

    zoo(*BENCH, *data, "--out", str(work / "bench"), cwd=work)

    for kind in KEEP:  # README.md stays
        shutil.rmtree(args.out / kind, ignore_errors=True)
    for kind, source in (("finished", finished), ("interrupted", interrupted),
                         ("bench", work / "bench"), ("export", work / "export")):
        copy(kind, source, args.out / kind)
        print(f"{kind}: kept {', '.join(KEEP[kind])}; left out {PRUNED[kind]}")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {total / 1024:.0f} KiB; recorded data folder {data_dir}")
    if args.keep_work:
        print(f"scratch folder kept: {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
