"""Training across processes and machines: Keras' JAX backend over ``jax.distributed``.

One process per host (or per group of devices), started with the same command and
``--coordinator HOST:PORT --num-processes N --process-id I`` (or Keras'
``KERAS_DISTRIBUTION_JOB_ADDRESSES`` / ``_NUM_PROCESSES`` / ``_PROCESS_ID``), as with ``torchrun``.
:func:`start` joins them through JAX's coordination service, whose key-value store also carries
the zoo's few messages between processes: process 0's decisions (where a resumed run continues)
and every process's sign of life. The training step's collectives are JAX's own (gloo on CPUs,
NCCL on GPUs) under ``keras.distribution.DataParallel``.

A lost peer is an error, not a hang: a collective whose peer died fails at once
(:func:`explained`), and a watchdog thread ends the process with a one-line message when a peer
has given no sign of life for ``peer_timeout`` seconds (a machine that vanished, a frozen
process). JAX's own heartbeat timeout is set beyond it, so the zoo's message comes first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ZooError, ZooUsageError, first_line

ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")
DEFAULT_PEER_TIMEOUT = 30.0
# How long a process waits for the others to join (JAX's initialization timeout).
JOIN_TIMEOUT = 300
_BEAT = 1.0  # seconds between signs of life
# What JAX and gloo say when a collective's peer is gone.
_LOST = re.compile(r"gloo|connection reset|connection refused|socket closed|broken pipe|"
                   r"coordination service|heartbeat|unavailable|deadline_exceeded", re.IGNORECASE)


@dataclass(frozen=True)
class Cluster:
    coordinator: str  # HOST:PORT of process 0's coordination service
    num_processes: int
    process_id: int
    peer_timeout: float = DEFAULT_PEER_TIMEOUT

    @property
    def writer(self) -> bool:
        """Process 0 alone writes the run directory, its history and the export."""
        return self.process_id == 0

    @property
    def label(self) -> str:
        return f"process {self.process_id} of {self.num_processes}"

    def record(self) -> dict[str, Any]:
        return {"processes": self.num_processes, "coordinator": self.coordinator}


def cluster(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    peer_timeout: float | None = None,
) -> Cluster | None:
    """The cluster the options (or Keras' environment variables) describe; None for one process."""
    timeout = DEFAULT_PEER_TIMEOUT if peer_timeout is None else peer_timeout
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 1 <= timeout <= 86400:
        raise ZooUsageError(f"`peer_timeout` must be between 1 and 86400 seconds, received {peer_timeout!r}")
    env = [os.environ.get(name) for name in ENV]
    if coordinator is None and num_processes is None and process_id is None:
        if not any(env):
            return None
        address = (env[0] or "").split(",")[0].strip() or None
        try:
            count, index = (int(v) if v not in (None, "") else None for v in env[1:])
        except ValueError:
            raise ZooUsageError(f"{ENV[1]} and {ENV[2]} must be integers, received {env[1]!r} and {env[2]!r}") from None
        return cluster(address, count, index, peer_timeout)
    missing = [f"`{n}`" for n, v in (("coordinator", coordinator), ("num_processes", num_processes),
                                      ("process_id", process_id)) if v is None]
    if missing:
        raise ZooUsageError(
            f"training on several processes needs `coordinator`, `num_processes` and `process_id` "
            f"together; missing {', '.join(missing)}"
        )
    if not isinstance(num_processes, int) or num_processes < 1:
        raise ZooUsageError(f"`num_processes` must be at least 1, received {num_processes!r}")
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ZooUsageError(
            f"`process_id` must be between 0 and {num_processes - 1} for {num_processes} processes, "
            f"received {process_id!r}"
        )
    parse_address(coordinator)
    if num_processes == 1:
        return None  # one process: nothing to coordinate
    return Cluster(coordinator.strip(), num_processes, process_id, float(timeout))


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) or a one-line usage error."""
    match = re.fullmatch(r"\s*(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})\s*", text or "")
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ZooUsageError(f"`coordinator` must be HOST:PORT (port 1 to 65535), received {text!r}")
    return match.group(1), int(match.group(2))


class PeerLost(ZooError):
    """Another process of the run is gone; this one must stop too (see :func:`exit_now`)."""


_active: Cluster | None = None
_stop = threading.Event()


def active() -> Cluster | None:
    """The cluster this process joined (None: a single-process run)."""
    return _active


def start(c: Cluster) -> None:
    """Join the cluster (once per process): JAX's distributed runtime, gloo collectives on CPUs,
    and the watchdog. Must run before JAX computes anything."""
    global _active
    if _active is not None:
        if _active != c:
            raise ZooUsageError(f"this process already joined {_active.coordinator} as {_active.label}")
        return
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # Its notifier takes SIGTERM for itself: a scheduler's (or a user's) stop must stop the process.
    jax.config.update("jax_enable_preemption_service", False)
    try:
        # keras.distribution.initialize() would make this same call, without the timeouts.
        jax.distributed.initialize(
            c.coordinator, c.num_processes, c.process_id,
            initialization_timeout=JOIN_TIMEOUT,
            heartbeat_timeout_seconds=int(c.peer_timeout) + 30,
        )
    except Exception as exc:
        raise ZooError(
            f"{c.label} could not join the coordinator at {c.coordinator} within {JOIN_TIMEOUT} s: "
            f"{first_line(exc)} (is process 0 running, and its port reachable from here?)"
        ) from None
    _active = c
    threading.Thread(target=_watch, args=(c, _client()), name="zoo-peer-watchdog", daemon=True).start()


def _client():
    from jax._src import distributed

    return distributed.global_state.client


def _watch(c: Cluster, client) -> None:
    """Increment this process's counter every second; end the process when a peer's stops."""
    peers = [i for i in range(c.num_processes) if i != c.process_id]
    seen = {i: (None, time.monotonic()) for i in peers}
    while not _stop.wait(_BEAT):
        try:
            client.key_value_increment(f"zoo/alive/{c.process_id}", 1)
            now = time.monotonic()
            for i in peers:
                if _try_get(client, f"zoo/done/{i}") is not None:
                    seen[i] = (None, now)  # finished: it owes no more signs of life
                    continue
                value = _try_get(client, f"zoo/alive/{i}")
                if value != seen[i][0]:
                    seen[i] = (value, now)
                elif now - seen[i][1] > c.peer_timeout:
                    exit_now(1, f"{c.label}: process {i} has given no sign of life for "
                                f"{c.peer_timeout:g} s (its machine or process is gone); "
                                f"{RESUME_HINT}")
        except Exception as exc:  # the coordination service itself is gone: process 0 died
            if _stop.is_set():
                return
            exit_now(1, f"{c.label} lost the coordinator at {c.coordinator} "
                        f"({first_line(exc)}); {RESUME_HINT}")


_READER_EXIT = 2.0  # seconds process 0 gives acknowledged readers to exit before it may

RESUME_HINT = "stop every process, then run the same commands with --resume"


def _try_get(client, key: str) -> str | None:
    try:
        return client.key_value_try_get(key)
    except Exception as exc:
        if "NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


def explained(exc: BaseException) -> ZooError | None:
    """What an exception from a step of several processes means, in one line (None: not known).

    A collective whose peer is gone fails at once (:class:`PeerLost`); JAX refuses values that
    differ between processes where they must be equal.
    """
    if _active is None or isinstance(exc, ZooError):
        return None
    text = f"{type(exc).__name__}: {exc}"
    if "is not the same on each process" in text:
        return ZooError(
            f"{_active.label}: the model's starting values differ between the processes; every "
            f"process must build the same model (the builder draws random numbers outside "
            f"Keras' seeded generators?)"
        )
    if not _LOST.search(text):
        return None
    return PeerLost(f"{_active.label} lost a peer during training ({first_line(exc)}); {RESUME_HINT}")


def exit_now(code: int, message: str | None = None) -> None:
    """End this process at once with ``code``, after ``message`` as one line on stderr.

    A normal exit would run JAX's shutdown, which waits at a barrier for every peer: for a peer
    that is gone, until JAX's own timeout, and then aborts with a stack trace.
    """
    if message:
        print(f"Error: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def share(key: str, value: Any | None = None, timeout: float = 86400.0, *, acknowledged: float = 0.0) -> Any:
    """Process 0's ``value`` on every process (JSON): process 0 gives it, the others wait for it.

    Waiting long is safe: the watchdog ends the wait if process 0 is gone. ``acknowledged``:
    process 0 waits up to that many seconds for every other process to have read it (before it
    exits, which takes the coordination service with it).
    """
    assert _active is not None
    client = _client()
    if not _active.writer:
        value = json.loads(client.blocking_key_value_get(f"zoo/share/{key}", int(timeout * 1000)))
        client.key_value_set(f"zoo/read/{key}/{_active.process_id}", "1")
        return value
    client.key_value_set(f"zoo/share/{key}", json.dumps(value))
    with contextlib.suppress(Exception):  # a reader that is gone does not stop process 0
        for i in range(1, _active.num_processes if acknowledged else 1):
            client.blocking_key_value_get(f"zoo/read/{key}/{i}", int(acknowledged * 1000))
    if acknowledged:
        # A reader that has read it still has to print and exit; if process 0 exited first, the
        # coordination service would go with it and JAX would abort the reader (SIGABRT).
        time.sleep(_READER_EXIT)
    return value


def agree(key: str, value: str) -> None:
    """Check that every process has the same ``value`` (e.g. its weights' digest), or fail."""
    assert _active is not None
    client = _client()
    client.key_value_set(f"zoo/agree/{key}/{_active.process_id}", value)
    values = [client.blocking_key_value_get(f"zoo/agree/{key}/{i}", 600_000) for i in range(_active.num_processes)]
    if len(set(values)) != 1:
        shown = ", ".join(f"process {i}: {v}" for i, v in enumerate(values))
        raise ZooError(f"the processes ended training with different {key} ({shown})")


def share_folder(folder: Path) -> None:
    """Process 0's files in ``folder`` (a run's backup), copied into ``folder`` on every other
    process, so that all restore the same state at the same time: assigning to a variable that
    spans processes is itself a collective, which process 0 cannot do alone."""
    import numpy as np
    from jax.experimental import multihost_utils

    assert _active is not None
    sizes = share("folder", {p.name: p.stat().st_size for p in folder.iterdir()} if _active.writer else None)
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in sorted(sizes.items()):
        path = folder / name
        data = np.fromfile(path, np.uint8) if _active.writer else np.zeros(size, np.uint8)
        data = multihost_utils.broadcast_one_to_all(data)
        if not _active.writer:
            data.tofile(path)


def finish() -> None:
    """Leave the cluster together once training is done (a barrier); process 0 may export after."""
    global _active
    if _active is None:
        return
    import jax

    _client().key_value_set(f"zoo/done/{_active.process_id}", "1")
    _stop.set()
    jax.distributed.shutdown()
    _active = None


