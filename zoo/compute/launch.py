"""``zoo train --local-processes N``: N processes of one run on this machine, like ``torchrun``.

Each is ``zoo train`` with the same options plus ``--coordinator 127.0.0.1:PORT`` (a free port),
``--num-processes N`` and ``--process-id I``; their output lines are interleaved as they come,
each prefixed with ``[I]``. It exists to try the multi-process path without a cluster; on a
cluster the same command runs once per host with the host's own ``--process-id``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

MAX_LOCAL = 64
# After one process failed, how long the others get to stop by themselves (they notice the loss
# within their peer timeout) before they are stopped.
GRACE = 60.0


def without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(f"{name}="):
            out.append(arg)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_processes(argv: list[str], count: int, backend: str | None) -> int:
    """Run ``zoo ARGV`` as ``count`` processes of one run; the exit code is the first failure's."""
    port = free_port()
    extra = [] if backend else ["--backend", "jax"]
    procs = []
    lock = threading.Lock()
    for index in range(count):
        cmd = [sys.executable, "-m", "zoo", *argv, *extra, "--coordinator", f"127.0.0.1:{port}",
               "--num-processes", str(count), "--process-id", str(index)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(proc)
        threading.Thread(target=_relay, args=(proc, index, lock), daemon=True).start()
    try:
        return _wait(procs)
    except KeyboardInterrupt:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        _stop(procs, 30.0)
        return 130


def _relay(proc: subprocess.Popen, index: int, lock: threading.Lock) -> None:
    for line in iter(proc.stdout.readline, b""):
        with lock:
            sys.stdout.write(f"[{index}] {line.decode(errors='replace')}")
            sys.stdout.flush()


def _wait(procs: list[subprocess.Popen]) -> int:
    failed_at = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            break
        bad = [c for c in codes if c not in (None, 0)]
        if bad and failed_at is None:
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE:
            _stop(procs, 10.0)
            break
        time.sleep(0.2)
    codes = [p.wait() for p in procs]
    for p in procs:
        p.stdout.close()
    failures = [(i, c) for i, c in enumerate(codes) if c != 0]
    if failures:
        shown = ", ".join(f"process {i}: exit {c}" for i, c in failures)
        print(f"Error: {len(failures)} of {len(procs)} processes failed ({shown})", file=sys.stderr)
        return next(c for _, c in failures if c > 0) if any(c > 0 for _, c in failures) else 1
    return 0


def _stop(procs: list[subprocess.Popen], timeout: float) -> None:
    """Terminate, then kill, every process still running, by its id."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
