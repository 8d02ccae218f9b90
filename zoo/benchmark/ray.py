"""Run a sweep's jobs as Ray tasks (``pip install "keras-zoo[ray]"``).

Every job is one task that reserves ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs. Its training
runs in a child process of the Ray worker, as in a sweep without Ray, with TensorFlow's thread
pools limited to those CPUs before anything is computed, and is killed with the worker; the
worker then measures the export, its own pools limited the same way. A worker is reused for the
next job of the sweep (all of them ask for the same CPUs, and a fresh one would import TensorFlow
again, about 4 s here); a GPU task gets a fresh worker, Ray's default, so TensorFlow in it sees
only that task's GPU. The worker returns the record to the driver (this process), which alone
appends it to ``results.jsonl``. A job that fails is a failed record and the others go on
(``retry_exceptions=False``); a task lost with its worker or node is run again
(``max_retries``), and finds the run directory the lost one left, which it resumes. Workers
write run directories, exports and logs into ``--out`` themselves: on a cluster of several
machines it must be a shared file system mounted at the same path on every node, and every node
needs the same zoo and plugins installed.

Without an address, Ray starts a cluster on this machine only (listening on 127.0.0.1, with
every CPU) and stops it at the end.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import registry

from ..errors import ZooError, ZooUsageError
from .child import attempt, failed_record, limit_threads
from .jobs import LOCAL_CLUSTER, Job, Shard, check_address, host_port
from .records import where

RETRIES = 3  # for tasks lost with their worker or node
CONNECT_SECONDS = 5


def check_jobs(jobs: Sequence[Any]) -> None:
    """Refuse a model registered in this process only: no Ray worker can import it."""
    local = sorted({j.config.model for j in jobs if registry.resolve(j.config.model).local})
    if local:
        raise ZooUsageError(
            f"model '{local[0]}' is registered in this process only (zoo.register): Ray workers cannot "
            f"import it; make it a plugin (entry point zoo.models) or run the sweep without `ray`"
        )


class RayCluster:
    """``with RayCluster(address, ...) as cluster: cluster.run(jobs, out)``: connected (or started)
    on entry, its resources checked against the request; disconnected (or stopped) on exit."""

    def __init__(self, address: str = LOCAL_CLUSTER, *, cpus_per_job: int = 1, gpus_per_job: float = 0) -> None:
        check_address(address)
        self.address, self.cpus, self.gpus = address, cpus_per_job, gpus_per_job
        self.shown = "on this machine" if address == LOCAL_CLUSTER else f"at {address}"

    def __enter__(self) -> RayCluster:
        if self.address == LOCAL_CLUSTER and "ray" not in sys.modules:
            # Ray binds a machine's public address unless told this is not a cluster: a sweep's
            # own cluster is for this machine alone.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError:
            raise ZooUsageError('`ray` needs Ray: pip install "keras-zoo[ray]"') from None
        self.ray = ray
        # Each job has its log in OUT/logs; Ray's own notices would bury the progress lines.
        settings = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.address == LOCAL_CLUSTER:
            ray.init(address=LOCAL_CLUSTER, num_cpus=os.cpu_count(), include_dashboard=False, **settings)
        else:
            self._check_reachable()
            try:
                ray.init(address=self.address, **settings)
            except ConnectionError as exc:
                raise ZooError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
        try:
            self._check_resources()
        except BaseException:
            ray.shutdown()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.ray.shutdown()  # stops the cluster this process started; leaves another one running

    def _check_reachable(self) -> None:
        """Fail within seconds, naming the address, where Ray itself would retry for minutes."""
        from ray._private import services

        client = self.address.startswith("ray://")  # Ray Client: its server, not the cluster's GCS
        try:
            resolved = (self.address.removeprefix("ray://") if client
                        else services.canonicalize_bootstrap_address_or_die(self.address))
        except (ConnectionError, ValueError) as exc:
            raise ZooError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
        host, port = host_port(resolved) or (resolved, 0)
        try:
            socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
        except OSError as exc:
            shown = self.address if resolved == self.address else f"{self.address} ({resolved})"
            raise ZooError(f"cannot reach the Ray cluster at {shown}: {exc.strerror or exc}") from None
        if client:
            return
        try:  # something answers there: is it a Ray cluster's GCS?
            from ray._raylet import InnerGcsClient

            InnerGcsClient.standalone(resolved, None, CONNECT_SECONDS * 1000)
        except ImportError:  # another Ray version than the extra pins: ray.init will tell
            pass
        except Exception as exc:  # noqa: BLE001  (Ray's RpcError has no public class)
            raise ZooError(f"no Ray cluster answers at {self.address}: {exc}") from None

    def _check_resources(self) -> None:
        """Refuse a request no node can ever satisfy (Ray would leave its tasks pending forever)."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        for name, amount, option in (("CPU", self.cpus, "cpus_per_job"), ("GPU", self.gpus, "gpus_per_job")):
            most = max((n.get(name, 0) for n in nodes), default=0)
            if amount > most:
                has = f"at most {most:g} {name}s on one node" if most else f"no {name}s"
                raise ZooUsageError(f"`{option}` {amount:g}: the Ray cluster {self.shown} has {has}")

    def run(self, jobs: Sequence[Any], out: Path, *, shard: Shard | None = None) -> Iterator[tuple[Any, dict]]:
        """Every job as a task: (job, record) pairs as they finish, in the order they finish."""

        task = self.ray.remote(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=RETRIES, retry_exceptions=False
        )(_task)
        extra = {"shard": str(shard) if shard else None}
        pending = {task.remote(job.to_dict(), str(out), self.cpus, extra): job for job in jobs}
        try:
            while pending:
                (ready,), _ = self.ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready)
                try:
                    record = self.ray.get(ready)
                except self.ray.exceptions.RayError as exc:
                    first = (str(exc).strip().splitlines() or [""])[0]
                    lost = not isinstance(exc, self.ray.exceptions.RayTaskError)  # not the task's own error
                    error = f"{type(exc).__name__}{f' after {RETRIES} retries' if lost else ''}: {first}"
                    record = failed_record(job, error, out, {"host": None, "pid": None, **extra, "ray": None})
                yield job, record
        finally:
            for ref in pending:  # interrupted: nothing of this sweep keeps running on the cluster
                self.ray.cancel(ref, force=True)


    def tune(self, arguments: dict[str, Any], workers: int | None) -> list[dict[str, Any]]:
        """``workers`` workers of one study (zoo tune; None: as many as the cluster's CPUs hold,
        at most one per trial), each a task that resolves the study itself and runs trials until
        the budget is met; a lost task is run again and continues it (its trial is failed and
        retried by the study). Returns each worker's summary."""
        if workers is None:
            workers = max(1, min(int(self.ray.cluster_resources().get("CPU", 1) // self.cpus), arguments["trials"]))
        task = self.ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=RETRIES,
                               retry_exceptions=False)(_tune_task)
        refs = [task.remote({**arguments, "shard": f"{i}/{workers}"}, self.cpus) for i in range(1, workers + 1)]
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:  # a worker's own error, such as a bad storage
            cause = exc.as_instanceof_cause()
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
            raise ZooError(f"a tuning worker on Ray failed: {first}") from None
        finally:  # failed or interrupted: no worker of this study keeps running on the cluster
            _, running = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in running:  # only those: force-cancelling a finished task can crash Ray's core worker
                self.ray.cancel(ref, force=True)


def _tune_task(arguments: dict[str, Any], threads: int) -> dict[str, Any]:
    """One worker of a study in a Ray worker: TensorFlow limited to its CPUs, then trials."""
    import ray

    from ..tuning import report, run
    from ..tuning.request import resolve

    limit_threads(threads)
    request = resolve(arguments.pop("model"), **arguments)
    summary = report.finish(request, run.work(request, lambda line: None))
    return {"node_ip": ray.util.get_node_ip_address(), "shard": request.worker, "running": summary.running,
            "best": summary.best, "recipe": str(summary.recipe) if summary.recipe else None}


def _task(job: dict[str, Any], out: str, threads: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One job in a Ray worker: TensorFlow limited to its CPUs (effective in the worker's first
    task, the same for every task of a sweep), then train and measure."""
    import ray

    limit_threads(threads)
    context = ray.get_runtime_context()
    here = {**where(None), **extra, "ray": {
        "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
        "resources": context.get_assigned_resources(),  # what Ray reserved for this task: {"CPU": 2.0}
    }}
    return attempt(Job.from_dict(job), Path(out), threads=threads, where=here)

