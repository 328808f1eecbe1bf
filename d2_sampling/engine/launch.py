"""
Launching: Detectron2's ``launch`` (spawns workers, tcp:// init) or ``torchrun`` (env:// init).

Under ``torchrun`` the process group is created from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``LOCAL_WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT``; Detectron2's local process group is
then built the same way ``launch`` builds it, so ``comm.get_local_rank()`` is right.
"""

import logging
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

__all__ = ["launched_by_torchrun", "launch"]


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ
    )


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


def _run_and_clean_up(main_func, *args):
    """
    Run ``main_func`` in a distributed worker; with the gloo backend, end the worker once every
    worker is done.

    With torch 2.3's gloo backend, leaving the process group to the interpreter's exit can
    abort a worker (SIGABRT) after a successful run, and ``destroy_process_group()`` after a
    barrier was seen to block a worker forever in a minority of trials. So, for gloo only:
    barrier, flush, and leave with ``os._exit(0)``; the run's outputs (checkpoints, metrics,
    logs) are all written and closed by then. NCCL workers exit normally.
    """
    ret = main_func(*args)
    if dist.is_initialized() and dist.get_world_size() > 1 and dist.get_backend() == "gloo":
        comm.synchronize()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
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
    return _run_and_clean_up(main_func, *args)


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
    there is no CUDA).
    """
    if launched_by_torchrun():
        return _torchrun_main(main_func, args, timeout)
    return d2_launch(
        _run_and_clean_up,
        num_gpus_per_machine,
        num_machines=num_machines,
        machine_rank=machine_rank,
        dist_url=dist_url,
        args=(main_func, *args),
        timeout=timeout,
    )
