"""Commands of the zoo in processes that start warm: forks of one preloaded interpreter.

Most of the suite's time was TensorFlow's import (about 5 s of CPU in every process that runs a
command). ``run`` is ``subprocess.run(argv, capture_output=True, text=True, ...)`` for argv of the
form ``[.../zoo, ...]`` (the console script) or ``[python, "-m", "zoo", ...]``, with the same
result: a process of its own with that environment, working folder, stdin, stdout and stderr,
whose exit status (``-N`` for a signal) is the command's. The process is a fork of a *zygote*, an
interpreter of this environment that has imported TensorFlow, Keras, TFDS and the zoo and has
computed nothing (TensorFlow's runtime starts in the fork, with the command's devices and
threads). The fork runs the command as the interpreter would: ``sys.argv``, ``sys.path[0]``,
``PYTHONPATH``, ``SystemExit``, an uncaught exception's traceback and exit status 1, non-daemon
threads and ``atexit`` at the end.

``popen`` is the same for ``subprocess.Popen(argv, stdout=FILE, stderr=FILE or STDOUT)``: the process
of a command that a test kills, stops or waits for (``pid``, ``poll``, ``wait``, ``kill``,
``send_signal``, ``returncode``).

Keras reads its backend once, when it is imported, so there is a zygote per backend: a command
that asks for JAX (``--backend jax``, ``KERAS_BACKEND=jax``, or one process of a multi-process
run, ``--coordinator``, whose default is JAX) forks from one that imported Keras on JAX.

What only a fresh interpreter shows is not run warm; ``run`` starts a fresh process instead when

- the environment differs from the zygote's in a variable read when TensorFlow, Keras or TFDS are
  imported (``TF_*``, ``KERAS_*``, ``TFDS_*``, ``XLA_*``, ...; ``KERAS_BACKEND`` picks the zygote);
- the program is neither (another venv's console script, ``python -c``, a script);
- ``ZOO_TEST_FRESH=1``: the whole suite in fresh processes.

Tests of what happens at start-up (no TensorFlow for ``zoo list``, no C++ log lines, signals
and kills by process id) start their processes themselves, fresh.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

ZOO = Path(sys.executable).with_name("zoo")
# Read when TensorFlow, Keras, TFDS, JAX or the math libraries are imported: a command whose
# environment differs in one of these from the zygote's starts fresh.
IMPORT_TIME = ("TF_", "KERAS_", "TFDS_", "XLA_", "JAX_", "CUDA_", "OMP_", "MKL_", "MPL", "PYTHONHASHSEED",
               "PYTHONWARNINGS", "PYTHONDONTWRITEBYTECODE", "ZOO_TF_LOGS", "LD_")
# What the commands import (importing computes nothing; each command's own settings apply in its fork).
PRELOAD = ("tensorflow", "keras", "tensorflow_datasets", "matplotlib.pyplot", "zoo.cli.app", "zoo.cli.bench",
           "zoo.cli.models", "zoo.cli.runs", "zoo.cli.train", "zoo.training.runner", "zoo.evaluation",
           "zoo.export.bundle", "zoo.prediction", "zoo.check", "zoo.benchmark.child", "zoo.benchmark.reports",
           "zoo.benchmark.sweep")

# The modules `python -m MODULE` runs warm (not pip, venv or pytest: what they do is not the zoo's).
WARM_MODULES = {"zoo"}

_lock = threading.Lock()
# The environment of the zygotes: this process's when the tests were collected (a test that
# changes os.environ for itself does not change what the zygotes imported with).
BASE_ENV = dict(os.environ)
_zygotes: dict[tuple[str, str], dict] = {}  # (interpreter, backend) -> its zygote's process and socket
STARTED = {"warm": 0, "fresh": 0}  # how the commands of this process were started


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
        timeout: float | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, capture_output=True, text=True, ...)``, warm where it can be."""
    argv = [str(a) for a in argv]
    env = dict(os.environ if env is None else env)
    program = _program(argv)
    if program is None or not _warm_env(env):
        STARTED["fresh"] += 1
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
                              input=input, check=False)
    STARTED["warm"] += 1
    return _run_warm(argv, program, env, str(Path(cwd or os.getcwd()).resolve()), timeout, input)


def popen(argv: list[str], *, stdout: str | Path, stderr: str | Path | None = None, env: dict[str, str] | None = None,
          cwd: str | Path | None = None) -> subprocess.Popen | WarmProcess:
    """``subprocess.Popen(argv, stdout=open(stdout, "w"), stderr=open(stderr, "w") or STDOUT,
    stdin=DEVNULL, ...)``, warm where it can be: the output goes to the files as it comes."""
    argv = [str(a) for a in argv]
    env = dict(os.environ if env is None else env)
    stderr = stderr or stdout
    program = _program(argv)
    if program is None or not _warm_env(env):
        STARTED["fresh"] += 1
        with open(stdout, "w") as out, open(stderr, "w") if stderr != stdout else nullcontext() as err:
            return subprocess.Popen(argv, stdout=out, stderr=err or subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=cwd)
    STARTED["warm"] += 1
    for path in {stdout, stderr}:
        Path(path).write_text("")
    request = {"argv": argv, "program": program, "env": env, "cwd": str(Path(cwd or os.getcwd()).resolve()),
               "stdin": os.devnull, "stdout": str(stdout), "stderr": str(stderr)}
    return WarmProcess(argv, _address(_interpreter(argv), _backend(argv, env)), request)


class WarmProcess:
    """A command running in a fork of a zygote, as ``subprocess.Popen`` shows one."""

    def __init__(self, argv: list[str], address: str, request: dict) -> None:
        self.args, self.returncode = argv, None
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(address)
        self._conn.sendall(json.dumps(request).encode() + b"\n")
        self._replies = self._conn.makefile("r")
        self.pid = json.loads(self._replies.readline())["pid"]
        self._ended = threading.Thread(target=self._wait_for_code, daemon=True)
        self._ended.start()

    def _wait_for_code(self) -> None:
        line = self._replies.readline()
        self._conn.close()
        self.returncode = json.loads(line)["code"] if line else -signal.SIGKILL  # the waiter itself was lost

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._ended.join(timeout)
        if self._ended.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # ended and reaped; its exit status is on its way
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _interpreter(argv: list[str]) -> str:
    """The Python that runs ``argv``: the console script's environment's, or ``argv[0]``."""
    return str(Path(argv[0]).with_name("python")) if Path(argv[0]).name == "zoo" else argv[0]


def _program(argv: list[str]) -> str | None:
    """``script`` (the zoo console script), ``module`` (``python -m MODULE``), or None (start fresh)."""
    if os.environ.get("ZOO_TEST_FRESH") == "1":
        return None
    if Path(argv[0]).name == "zoo" and Path(argv[0]).with_name("python").is_file():
        return "script"  # this environment's `zoo`, or another virtualenv's
    if Path(argv[0]).name.startswith("python") and len(argv) > 2 and argv[1] == "-m" and argv[2] in WARM_MODULES:
        return "module"
    return None


def _import_time(env: dict[str, str]) -> dict[str, str]:
    found = {k: v for k, v in env.items() if k.startswith(IMPORT_TIME)}
    if found.get("KERAS_BACKEND") in BACKENDS:  # picks the zygote
        del found["KERAS_BACKEND"]
    return found


def _warm_env(env: dict[str, str]) -> bool:
    return _import_time(env) == _import_time(BASE_ENV)


BACKENDS = ("tensorflow", "jax")


def _backend(argv: list[str], env: dict[str, str]) -> str:
    """The Keras backend the command starts: the zygote it forks from."""
    if any(a == "jax" or a.endswith("=jax") for a in argv):
        return "jax"
    if env.get("KERAS_BACKEND") in BACKENDS:
        return env["KERAS_BACKEND"]
    return "jax" if any(a == "--coordinator" or a.startswith("--coordinator=") for a in argv) else "tensorflow"


# -- the client side --------------------------------------------------------------------------------


def _run_warm(argv, program, env, cwd, timeout, input) -> subprocess.CompletedProcess:
    address = _address(_interpreter(argv), _backend(argv, env))
    with tempfile.TemporaryDirectory(prefix="zoo-warm-") as folder:
        paths = {name: os.path.join(folder, name) for name in ("stdin", "stdout", "stderr")}
        Path(paths["stdin"]).write_text(input or "")
        Path(paths["stdout"]).touch()
        Path(paths["stderr"]).touch()
        request = {"argv": argv, "program": program, "env": env, "cwd": cwd, **paths}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(address)
            conn.sendall(json.dumps(request).encode() + b"\n")
            replies = conn.makefile("r")
            pid = json.loads(replies.readline())["pid"]
            try:
                conn.settimeout(timeout)
                line = replies.readline()
            except TimeoutError:
                _kill(pid)
                raise subprocess.TimeoutExpired(argv, timeout, Path(paths["stdout"]).read_text(),
                                                Path(paths["stderr"]).read_text()) from None
            except BaseException:  # the test stopped (its time limit, Ctrl-C): so does its command
                _kill(pid)
                raise
            if not line:
                raise RuntimeError(f"the warm launcher lost the process of {argv}")
            code = json.loads(line)["code"]
        out, err = (Path(paths[k]).read_text(errors="replace") for k in ("stdout", "stderr"))
    return subprocess.CompletedProcess(argv, code, out, err)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _address(python: str, backend: str) -> str:
    """The socket of the zygote of ``python`` on Keras ``backend`` in this process, started on
    first use (once: a thread may ask too)."""
    with _lock:
        zygote = _zygotes.get((python, backend), {})
        if zygote and zygote["proc"].poll() is None:
            return zygote["address"]
        folder = tempfile.mkdtemp(prefix="zw", dir="/tmp")  # Unix socket paths: at most 107 bytes
        address = os.path.join(folder, "s")
        log = os.path.join(folder, "log")  # a file, not a pipe nobody reads: it cannot fill and block
        with open(log, "w") as stderr:
            # In its own folder: what it preloads comes from the environment, as for a console
            # script, never from a source tree that happens to be the current directory.
            proc = subprocess.Popen([python, "-c", ZYGOTE, address, str(os.getpid()), *PRELOAD],
                                    env={**BASE_ENV, "KERAS_BACKEND": backend},
                                    cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 300
        while not os.path.exists(address):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the warm launcher's zygote did not start: {Path(log).read_text()[-2000:]}")
            time.sleep(0.02)
        _zygotes[(python, backend)] = {"proc": proc, "address": address}
        atexit.register(_stop, proc, folder)
        return address


def _stop(proc: subprocess.Popen, folder: str) -> None:
    proc.kill()
    proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


# -- the zygote: preloads, then forks a waiter per connection, which forks the command ---------------

ZYGOTE = r'''
import importlib, json, os, signal, socket, sys, time
address, parent, preload = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
known = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]  # on sys.path already
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from zoo.compute import backend
backend.import_tensorflow()  # as the commands do: TensorFlow's start-up lines hidden
for name in preload:
    try:
        importlib.import_module(name)
    except ImportError:  # an environment without it: its commands import it themselves
        pass
sys.stdout.flush(); sys.stderr.flush()
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(address + ".tmp"); os.rename(address + ".tmp", address)
server.listen(64); server.settimeout(1.0)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel

def die_with_parent():
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

def command(request):
    """In the fork that runs the command: become the process the request describes, run it."""
    os.chdir(request["cwd"])
    os.environ.clear(); os.environ.update(request["env"])
    fds = [os.open(request["stdin"], os.O_RDONLY), os.open(request["stdout"], os.O_WRONLY)]
    if request["stderr"] != request["stdout"]:
        fds.append(os.open(request["stderr"], os.O_WRONLY))
    for target, fd in enumerate(fds):
        os.dup2(fd, target); os.close(fd)
    if len(fds) == 2:  # stderr=STDOUT
        os.dup2(1, 2)
    if request["env"].get("PYTHONUNBUFFERED"):  # read at start-up: this interpreter started buffered
        sys.stdout.reconfigure(write_through=True); sys.stderr.reconfigure(write_through=True)
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    argv = request["argv"]
    if request["program"] == "script":
        sys.path[0] = os.path.dirname(argv[0])
        sys.argv = argv
    else:
        sys.path[0] = request["cwd"]
        sys.argv = [argv[0], *argv[3:]]
    sys.path[1:1] = [os.path.abspath(p) for p in extra if p not in known]
    code = 0
    try:
        if request["program"] == "script":
            from zoo.cli import main
            sys.exit(main())
        import runpy
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr); code = 1
    except BaseException:
        import traceback
        traceback.print_exc(); code = 1
    try:
        import threading, atexit
        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code & 0xFF)

def waiter(conn):
    """In the fork that waits: start the command, say its process id, then its exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    die_with_parent()
    replies = conn.makefile("w")
    request = json.loads(conn.makefile("r").readline())
    pid = os.fork()
    if pid == 0:
        conn.close()
        die_with_parent()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        command(request)
    replies.write(json.dumps({"pid": pid}) + "\n"); replies.flush()
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n"); replies.flush()

while os.getppid() == parent:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        continue
    if os.fork() == 0:
        server.close()
        try:
            waiter(conn)
        finally:
            os._exit(0)
    conn.close()
import shutil
shutil.rmtree(os.path.dirname(address), ignore_errors=True)  # the parent is gone (xdist skips atexit)
'''
