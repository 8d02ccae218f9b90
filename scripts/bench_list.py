"""How long `zoo list` and `import zoo` take with several third-party plugins installed.

Target: median wall time < 0.5 s for both; TensorFlow's import alone takes about 3 s here, so listing must
import neither TensorFlow nor any plugin. Plugins are real modules with real .dist-info folders in
a temporary directory on PYTHONPATH, each builder importing keras at the top as real ones do.

    python scripts/bench_list.py [--plugins 10] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLUGIN = '''import keras


def {name}(*, input_shape: tuple[int, ...], num_classes: int, units: int = 32) -> keras.Model:
    """Plugin model {name}: one hidden dense layer."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''


def write_plugins(root: Path, count: int) -> None:
    for i in range(count):
        name = f"bench{i}"
        (root / f"{name}_plugin.py").write_text(PLUGIN.format(name=name))
        info = root / f"{name}_plugin-1.0.{i}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-plugin\nVersion: 1.0.{i}\n")
        (info / "entry_points.txt").write_text(f"[zoo.models]\n{name} = {name}_plugin:{name}\n")


def wall_times(cmd: list[str], runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins", type=int, default=10, help="third-party plugins to install")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command")
    args = parser.parse_args()
    zoo = [sys.executable, "-m", "zoo"]
    with tempfile.TemporaryDirectory() as tmp:
        write_plugins(Path(tmp), args.plugins)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")])}
        listed = subprocess.run([*zoo, "list"], check=True, capture_output=True, text=True, env=env).stdout
        shown = sum(line.startswith("bench") for line in listed.splitlines())
        assert shown == args.plugins, f"expected {args.plugins} plugins in zoo list, saw {shown}"
        rows = [
            ("python -c pass (interpreter start)", wall_times([sys.executable, "-c", "pass"], args.runs, env)),
            (f"zoo list ({args.plugins} plugins + 3 built-ins)", wall_times([*zoo, "list"], args.runs, env)),
            ("zoo --help", wall_times([*zoo, "--help"], args.runs, env)),
            ("python -c 'import zoo' (the Python API)", wall_times([sys.executable, "-c", "import zoo"], args.runs, env)),
            ("python -c 'import zoo; zoo.list_models()'",
             wall_times([sys.executable, "-c", "import zoo; zoo.list_models()"], args.runs, env)),
            ("python -c 'import tensorflow'", wall_times([sys.executable, "-c", "import tensorflow"], 3, env)),
        ]
    print("| command | median s | min s | max s | runs |\n|---|---|---|---|---|")
    for label, times in rows:
        print(f"| {label} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} | {len(times)} |")
    median_list = statistics.median(rows[1][1])
    verdict = "meets" if median_list < 0.5 else "MISSES"
    print(f"\nzoo list median {median_list:.3f} s {verdict} the < 0.5 s target "
          f"({statistics.median(rows[-1][1]) / median_list:.0f}x faster than importing TensorFlow)")
    median_import = statistics.median(rows[3][1])
    print(f"import zoo median {median_import:.3f} s {'meets' if median_import < 0.5 else 'MISSES'} the < 0.5 s target")


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("list", "Listing models and importing the zoo"):
        main()
