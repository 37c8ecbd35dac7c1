"""Several processes on PyTorch's own engine: one per GPU with --mGPUs, any number under torchrun.

A process learns its place from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT; env:// rendezvous), so the same script runs on one machine or many.
NCCL connects GPU processes, gloo CPU processes (which is how the tests run two processes here).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's rank among world_size processes, and its rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_from_env() -> World:
    return World(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def init(use_cuda: bool) -> World:
    """Join the process group when started as one of several processes; returns this one's place."""
    world = world_from_env()
    if world.distributed and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://")
    return world


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch_per_gpu(main: Callable[[], Any]) -> None:
    """--mGPUs: run `main` in one process per visible GPU on this machine (rendezvous on localhost)."""
    count = torch.cuda.device_count()
    if count == 0:
        raise ValueError("--mGPUs needs CUDA GPUs, and none is visible; drop --mGPUs to train on the CPU or one device")
    if count == 1 or world_from_env().distributed:
        main()
        return
    launch_local(main, count)


class LostProcessError(RuntimeError):
    """One of the processes of a run died; the others were stopped."""


def launch_local(main: Callable[[], Any], count: int) -> None:
    """Run `main` in `count` processes of this machine (ranks 0..count-1). If one dies, the others
    are stopped at once and LostProcessError names it."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        torch.multiprocessing.spawn(_per_gpu_process, args=(main, count, port), nprocs=count, join=True)
    except torch.multiprocessing.ProcessExitedException as e:
        how = f"signal {e.signal_name}" if e.signal_name else f"exit code {e.exit_code}"
        raise LostProcessError(
            f"rank {e.error_index} of {count} died ({how}); the other processes were stopped. "
            "The newest checkpoint is intact: resume with --r"
        ) from None


def _per_gpu_process(local_rank: int, main: Callable[[], Any], count: int, port: int) -> None:
    os.environ.update(
        {
            "RANK": str(local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(count),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    main()


def first_message(message: str | None) -> str | None:
    """The first non-empty message across processes (every process gets it)."""
    if not dist.is_initialized():
        return message
    messages: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(messages, message)
    return next((m for m in messages if m), None)


def gather_to_main(items: list) -> list | None:
    """Concatenate every process's `items` on rank 0 (None elsewhere)."""
    if not dist.is_initialized():
        return items
    gathered: list[list] | None = [[] for _ in range(dist.get_world_size())] if dist.get_rank() == 0 else None
    dist.gather_object(items, gathered, dst=0)
    return [x for part in gathered for x in part] if gathered is not None else None
