"""
Launching: Detectron2's ``launch`` (spawns workers, tcp:// init) or ``torchrun`` (env:// init).

Under ``torchrun`` the process group is created from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``LOCAL_WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT``; Detectron2's local process group is
then built the same way ``launch`` builds it, so ``comm.get_local_rank()`` is right.

User errors (``errors.py``) raised in a worker are reported once, without a traceback, however
many workers hit them: a spawned worker writes its message to a file of the launching process
(the first one to do so wins) and exits with ``EXIT_USER_ERROR``; the launching process then
raises ``UserError`` with that message instead of torch's ``ProcessExitedException`` /
``ProcessRaisedException``. Under ``torchrun`` there is no launching process of ours: the first
worker of the machine to claim a file in torchrun's folder of this attempt prints the message
(torchrun then reports the failed worker in its own words).
"""

import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

from .errors import EXIT_USER_ERROR, UserError, debug_enabled, user_error_message

__all__ = ["launched_by_torchrun", "launch", "report_user_error"]

_MESSAGE_FILE = "user_error.txt"


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ
    )


def _print_user_error(message: str) -> None:
    """``<program>: error: <message>`` on stderr, after whatever stdout holds."""
    sys.stdout.flush()
    print(f"{os.path.basename(sys.argv[0]) or 'train_net.py'}: error: {message}", file=sys.stderr)
    sys.stderr.flush()


def report_user_error(message: str) -> None:
    """
    Print a user error as ``<program>: error: <message>``; under ``torchrun``, only in the
    first worker of the machine to report one (every worker runs the same command line).
    """
    if not launched_by_torchrun() or _claim(_torchrun_claim_path(), message):
        _print_user_error(message)


def _create_local_group(num_per_machine: int) -> None:
    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(num_per_machine)
        return
    # Detectron2 0.6 has no create_local_process_group: its local group is a module global
    # that its own launch sets.
    num_machines = dist.get_world_size() // num_per_machine
    for i in range(num_machines):
        ranks = list(range(i * num_per_machine, (i + 1) * num_per_machine))
        pg = dist.new_group(ranks)
        if i == dist.get_rank() // num_per_machine:
            comm._LOCAL_PROCESS_GROUP = pg


def _claim(path: str, message: str) -> bool:
    """Write ``message`` to ``path`` unless it exists; whether this call created it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(message)
    return True


def _torchrun_claim_path() -> str:
    # torchrun gives every worker an error file in a folder of this attempt, shared by the
    # workers of this machine and emptied at each restart; without it (log dir disabled), a
    # file named after the agent, the workers' common parent.
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE", "")
    attempt_dir = os.path.dirname(os.path.dirname(error_file)) if error_file else ""
    if attempt_dir and os.path.isdir(attempt_dir):
        return os.path.join(attempt_dir, "d2_sampling_" + _MESSAGE_FILE)
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return os.path.join(tempfile.gettempdir(), f"d2_sampling-{os.getppid()}-{restart}.error")


def _exit(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_worker(main_func, message_file: Optional[str], *args):
    """
    Run ``main_func(*args)`` in a distributed worker (spawned, with ``message_file`` of the
    launching process, or torchrun's, with ``None``).

    A user error: its message goes to ``message_file`` (or, under torchrun, is printed by the
    first worker of the machine), and the worker exits with ``EXIT_USER_ERROR``; with
    ``--debug`` / ``D2_SAMPLING_DEBUG=1`` it propagates with its traceback.

    With torch 2.3's gloo backend, leaving the process group to the interpreter's exit can
    abort a worker (SIGABRT) after a successful run, and ``destroy_process_group()`` after a
    barrier was seen to block a worker forever in a minority of trials. So, for gloo only:
    barrier, flush, and leave with ``os._exit(0)``; the run's outputs (checkpoints, metrics,
    logs) are all written and closed by then. NCCL workers exit normally.
    """
    try:
        ret = main_func(*args)
    except Exception as e:
        message = None if debug_enabled() else user_error_message(e)
        if message is None:
            raise
        if message_file is not None:
            _claim(message_file, message)  # the launching process prints it
        else:
            report_user_error(message)
        # Not sys.exit: the same gloo exit trouble as below, and peers may be mid-collective.
        _exit(EXIT_USER_ERROR)
    if dist.is_initialized() and dist.get_world_size() > 1 and dist.get_backend() == "gloo":
        comm.synchronize()
        _exit(0)
    return ret


def _torchrun_main(main_func, args, timeout):
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    has_gpu = torch.cuda.is_available()
    if has_gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend="nccl" if has_gpu else "gloo", init_method="env://", timeout=timeout
    )
    _create_local_group(local_world)
    comm.synchronize()
    return _run_worker(main_func, None, *args)


class _DropTermination(logging.Filter):
    """Drops torch's "Terminating process N via signal SIGTERM" once a user error is reported."""

    def __init__(self, message_file: str):
        super().__init__()
        self.message_file = message_file

    def filter(self, record):
        return not os.path.exists(self.message_file)


@contextmanager
def _message_file():
    folder = tempfile.mkdtemp(prefix="d2_sampling-launch-")
    path = os.path.join(folder, _MESSAGE_FILE)
    spawn_logger = logging.getLogger("torch.multiprocessing.spawn")
    quiet = _DropTermination(path)
    spawn_logger.addFilter(quiet)
    try:
        yield path
    finally:
        spawn_logger.removeFilter(quiet)
        shutil.rmtree(folder, ignore_errors=True)


def launch(
    main_func,
    num_gpus_per_machine,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    timeout=timedelta(minutes=30),
):
    """
    Run ``main_func(*args)`` on every worker. Under ``torchrun`` the workers already exist and
    the ``--num-gpus/--num-machines/--machine-rank/--dist-url`` arguments are ignored (torchrun's
    own flags say the same things); otherwise Detectron2's ``launch`` spawns them (gloo when
    there is no CUDA). One worker: ``main_func`` runs in this process.

    Raises:
        UserError: a spawned worker hit a user error (its message, once).
    """
    if launched_by_torchrun():
        return _torchrun_main(main_func, args, timeout)
    if num_machines * num_gpus_per_machine == 1:
        return main_func(*args)
    with _message_file() as message_file:
        try:
            return d2_launch(
                _run_worker,
                num_gpus_per_machine,
                num_machines=num_machines,
                machine_rank=machine_rank,
                dist_url=dist_url,
                args=(main_func, message_file, *args),
                timeout=timeout,
            )
        except (ProcessExitedException, ProcessRaisedException):
            # Whichever worker torch saw end first (a peer of the one that reported may have
            # lost its connection to it first), a reported user error is the cause.
            if os.path.isfile(message_file):
                with open(message_file) as f:
                    raise UserError(f.read()) from None
            raise
