"""Several processes on MindSpore's own launcher, ``msrun``: what training and embedding need of it.

A job that outgrows one device runs as ``N`` copies of the same command started by ``msrun``
(MindSpore's launcher: it starts a scheduler and the workers, sets their ranks and kills the others
when one fails)::

    msrun --worker_num=2 --local_worker_num=2 --master_port=8118 --log_dir=logs --join=True \\
        python -m clip train --config vit-tiny --train-data train.csv --batch-size 64 --output runs/a

Each copy calls :func:`init` first: it joins MindSpore's communication
(``mindspore.communication.init()``, a process-wide setting, as any distributed MindSpore program)
and returns its :class:`ParallelContext` (rank and world size). Without ``msrun`` it returns the
single-process context and touches nothing. ``python -m clip train --workers N`` and
``python -m clip embed --workers N`` are a thin front to the same: :func:`launch` builds the
``msrun`` command line for one machine, runs it and reports the first failing rank's error.

The scheduler process that ``msrun`` starts runs the same command; MindSpore ends it inside
``mindspore.communication.init()``, so :func:`init` must come before any output is written.
"""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

__all__ = ["ParallelContext", "SINGLE", "launched_by_msrun", "msrun_world_size", "check_workers", "init",
           "free_port", "msrun_command", "launch", "add_launch_arguments", "DEFAULT_CLUSTER_TIMEOUT"]

#: seconds the processes wait for each other to form the cluster before failing (``msrun``'s
#: ``--cluster_time_out``; its own default is 600)
DEFAULT_CLUSTER_TIMEOUT = 120


@dataclass(frozen=True)
class ParallelContext:
    """This process's place among the data-parallel processes of a job.

    ``rank`` (0-based) and ``world_size``; rank 0 is the main process (it writes the outputs).
    The helpers below are collective: every rank must call them, in the same order."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_gather(self, array) -> np.ndarray:
        """``[W, *shape]``: every rank's ``array`` (same shape and dtype on every rank), in rank order."""
        array = np.asarray(array)
        if not self.distributed:
            return array[None]
        from mindspore import Tensor, ops

        gathered = ops.AllGather()(Tensor(array.reshape(1, -1)))  # [W, size]
        return gathered.asnumpy().reshape((self.world_size,) + array.shape)

    def barrier(self):
        """Return when every rank has reached this point."""
        if self.distributed:
            self.all_gather(np.zeros(1, np.int32))

    def min(self, value: int) -> int:
        """The smallest ``value`` over the ranks."""
        return int(self.all_gather(np.asarray([value], np.int32)).min())

    def check_same(self, settings: dict, what: str = "settings"):
        """Raise ``ValueError`` naming the entries of ``settings`` that differ between the ranks
        (each entry is compared through a digest of its JSON form)."""
        if not self.distributed:
            return
        names = sorted(settings)
        digests = np.asarray([_digest(settings[name]) for name in names] + [_digest(names)], np.int32)  # [K + 1]
        everyone = self.all_gather(digests)  # [W, K + 1]
        if (everyone == everyone[:1]).all():
            return
        if (everyone[:, -1] != everyone[0, -1]).any():
            raise ValueError(f"the ranks run different versions of this program ({what} with other names)")
        differing = [names[k] for k in range(len(names)) if (everyone[:, k] != everyone[0, k]).any()]
        ranks = sorted({int(r) for r in np.nonzero((everyone != everyone[:1]).any(axis=1))[0]})
        raise ValueError(f"the ranks were started with different {what}: {', '.join(differing)} differ between "
                         f"rank 0 and rank(s) {', '.join(map(str, ranks))}; start every rank with the same command")


#: the context of a single process
SINGLE = ParallelContext()


def _digest(value) -> int:
    text = json.dumps(value, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little", signed=True)


def launched_by_msrun() -> bool:
    """Whether this process was started by ``msrun`` (it sets ``MS_ROLE`` and ``MS_WORKER_NUM``)."""
    return "MS_WORKER_NUM" in os.environ and os.environ.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED")


def msrun_world_size() -> int:
    """The number of processes ``msrun`` started (``MS_WORKER_NUM``); 1 outside ``msrun``."""
    return int(os.environ.get("MS_WORKER_NUM", "1")) if launched_by_msrun() else 1


def check_workers(workers: int):
    """Under ``msrun``, a command's ``--workers`` must be left out (1) or name ``msrun``'s number of
    processes; raise ``ValueError`` otherwise."""
    world = msrun_world_size()
    if launched_by_msrun() and workers not in (1, world):
        raise ValueError(f"--workers {workers}, but msrun started {world} processes; under msrun omit --workers "
                         "or give msrun's --worker_num")


def init(device_target: str = None, device_id: int = None) -> ParallelContext:
    """Join the job's communication when started by ``msrun``; return this process's context.

    Outside ``msrun`` nothing happens and :data:`SINGLE` is returned. Under ``msrun``, the device is
    selected first (``device_target``, default: MindSpore's current one; on GPU and Ascend the
    device is ``device_id`` or ``msrun``'s ``DEVICE_ID``, the local rank), then
    ``mindspore.communication.init()`` joins the cluster (backend by device: ``mccl`` on CPU,
    ``nccl`` on GPU, ``hccl`` on Ascend). The cluster must form within ``msrun``'s
    ``--cluster_time_out``; otherwise this raises ``RuntimeError`` naming the scheduler's address.
    """
    if not launched_by_msrun():
        return SINGLE
    import mindspore as ms
    from mindspore import communication

    target = device_target or ms.get_context("device_target")
    if target in ("GPU", "Ascend"):
        if device_id is None:
            device_id = int(os.environ.get("DEVICE_ID", "0"))
        ms.set_device(target, device_id)
    elif device_target is not None:
        ms.set_device(target)
    try:
        communication.init()  # the scheduler process ends in here, when the job is over
    except RuntimeError as error:
        where = f"{os.environ.get('MS_SCHED_HOST', '?')}:{os.environ.get('MS_SCHED_PORT', '?')}"
        raise RuntimeError(f"this process (rank {os.environ.get('RANK_ID', '?')}) could not join the job: "
                           f"the scheduler at {where} and all {os.environ.get('MS_WORKER_NUM')} workers must be "
                           f"reachable within {os.environ.get('MS_TOPO_TIMEOUT', '?')} s ({_first_line(error)})") \
            from error
    return ParallelContext(communication.get_rank(), communication.get_group_size())


def _first_line(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# ---------------------------------------------------------------------------------------------
# the front: msrun on this machine

def add_launch_arguments(parser, workers_help: str, log_dir_default: str):
    """The options of a command that ``--workers N`` runs under msrun: ``--workers``,
    ``--master-port``, ``--cluster-timeout``, ``--log-dir`` (an argparse group of ``parser``)."""
    from ._argtypes import positive_int

    group = parser.add_argument_group("processes (data parallelism with msrun, see the README)")
    group.add_argument("--workers", type=positive_int, default=1, metavar="N",
                       help=workers_help + " (default: 1; under msrun: omit it or give msrun's number)")
    group.add_argument("--master-port", type=positive_int, metavar="PORT",
                       help="with --workers: the port of msrun's scheduler (default: a free one)")
    group.add_argument("--cluster-timeout", type=positive_int, default=DEFAULT_CLUSTER_TIMEOUT, metavar="SECONDS",
                       help="with --workers: fail if the processes have not all joined within this time "
                            f"(default: {DEFAULT_CLUSTER_TIMEOUT})")
    group.add_argument("--log-dir", metavar="DIR",
                       help=f"with --workers: msrun's logs, one per process (default: {log_dir_default})")
    return group


def free_port() -> int:
    """A TCP port that is free on this machine now (for the scheduler)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def msrun_command(workers: int, args, log_dir: str, master_port: int = None,
                  cluster_timeout: int = DEFAULT_CLUSTER_TIMEOUT, program=("-m", "clip")):
    """The ``msrun`` command line that runs ``python -m clip ARGS`` (``python PROGRAM ARGS``) as
    ``workers`` processes on this machine (``--join``: it waits for them and stops them all when
    one fails; only rank 0's output is echoed, every rank's is in ``log_dir/worker_<rank>.log``)."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    return [sys.executable, "-m", "mindspore.parallel.cluster.run",
            f"--worker_num={workers}", f"--local_worker_num={workers}",
            f"--master_port={master_port or free_port()}", f"--log_dir={log_dir}", "--join=True",
            f"--cluster_time_out={int(cluster_timeout)}", "--tail_worker_log=0",
            "python", *program, *args]


def launch(workers: int, args, log_dir: str, master_port: int = None,
           cluster_timeout: int = DEFAULT_CLUSTER_TIMEOUT, program=("-m", "clip")) -> int:
    """Run ``python -m clip ARGS`` (``python PROGRAM ARGS``) as ``workers`` processes under
    ``msrun``; return its exit code.

    The workers run this interpreter (its folder leads ``PATH``: ``msrun`` starts ``python``). On a
    failure the last error line of each failed rank's log is printed to stderr. Interrupted
    (Ctrl+C or SIGTERM), it has msrun stop every worker before raising ``KeyboardInterrupt``."""
    os.makedirs(log_dir, exist_ok=True)
    command = msrun_command(workers, args, log_dir, master_port, cluster_timeout, program)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("GLOG_v", "2")  # MindSpore's own log: warnings and errors (its INFO lines are many)
    print(f"starting {workers} processes with msrun (logs: {log_dir})", file=sys.stderr, flush=True)
    # stdout: msrun's notes and rank 0's log as it grows; stderr: msrun's own log, shown on failure.
    # msrun runs in a session of its own: an interruption (Ctrl+C, SIGTERM) reaches it from here,
    # as one SIGINT, on which it stops its workers (they run in sessions of their own too)
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _, launcher_output = process.communicate()
    except KeyboardInterrupt:
        _stop(process)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if process.returncode != 0:
        for line in _failures(log_dir, workers, launcher_output):
            print(line, file=sys.stderr)
    return process.returncode


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(process, grace: float = 30.0):
    """Ask msrun to stop its workers (SIGINT) and wait for it; kill it after ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_ERROR = re.compile(r"^(error: .*|\w*(Error|Exception): .*)$")


def _failures(log_dir, workers, launcher_output):
    """One line per rank whose log ends in an error, or msrun's own message."""
    lines = []
    for rank in range(workers):
        path = os.path.join(log_dir, f"worker_{rank}.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                errors = [line.strip() for line in f if _ERROR.match(line.strip())]
        except OSError:
            continue
        if errors:
            lines.append(f"rank {rank}: {errors[-1] if errors[-1].startswith('error: ') else 'error: ' + errors[-1]}")
    if not lines:
        messages = [line.strip() for line in launcher_output.splitlines() if "Error" in line or "ERROR" in line]
        detail = messages[-1] if messages else "no error message in the logs"
        lines.append(f"error: the {workers} processes failed ({detail}); see {log_dir}")
    else:
        lines.append(f"(every rank's output is in {log_dir})")
    return lines
