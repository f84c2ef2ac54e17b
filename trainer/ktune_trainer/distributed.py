"""Running one training across processes (DistributedDataParallel), and stopping them all together.

A launcher (``torchrun``, a Kubeflow PyTorchJob, an Indexed Job with the variables set) starts one
process per rank with ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
in the environment. Without ``WORLD_SIZE`` (or with 1) the trainer runs as a single process, as before.

Every rank runs the same number of optimizer steps, so the ranks meet in the same collectives. Two
kinds of event must end every rank at the same point, or the others would wait in a collective for a
rank that has gone: a signal (SIGTERM, SIGINT) and a non-finite loss. While the process group is up, a
signal is therefore only recorded, and at each step (before the backward pass) and each evaluation
the ranks all-reduce ``[non-finite rank + 1, signal number]`` with MAX; every rank then stops for the
same reason. The main rank's evaluation is the one long stretch without a collective, so the signal
handler raises there at once and the main rank carries the signal to the next agreement.

A rank that dies without a word (SIGKILL, OOM) leaves the others waiting in a collective until
PyTorch's timeout; the launcher stops them first (torchrun does; a PyTorchJob fails or restarts them).

torch is imported by the functions that need it: the CLI imports this module for `Stopped` alone.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"
ENV_LOCAL_RANK = "LOCAL_RANK"
ENV_MASTER_ADDR = "MASTER_ADDR"
ENV_MASTER_PORT = "MASTER_PORT"


class Stopped(BaseException):
    """Raised when a signal stops the run: at once, or (distributed) at the ranks' next agreement."""

    def __init__(self, signum: int, rank: int | None = None) -> None:
        super().__init__(signum)
        self.signum = signum
        self.rank = rank
        """The rank the signal was sent to, when it was another one."""


class LaunchError(ValueError):
    """The launcher's variables are inconsistent; the message names the variable."""


def _integer(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise LaunchError(f"{name}={raw!r} is not an integer (set by the launcher, e.g. torchrun)") from None


@dataclass
class World:
    """This process's place among the ranks of one training run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    stop_signum: int = 0
    """A signal received while signals are deferred (0: none)."""
    _deferring: bool = field(default=False, repr=False)
    _backend: str = field(default="gloo", repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> World:
        env = os.environ if environ is None else environ
        size = _integer(env, ENV_WORLD_SIZE, 1)
        rank = _integer(env, ENV_RANK, 0)
        local_rank = _integer(env, ENV_LOCAL_RANK, rank)
        if size < 1:
            raise LaunchError(f"{ENV_WORLD_SIZE}={size}: must be at least 1")
        if not 0 <= rank < size:
            raise LaunchError(f"{ENV_RANK}={rank}: must be in 0..{size - 1} ({ENV_WORLD_SIZE}={size})")
        if size > 1:
            missing = [name for name in (ENV_MASTER_ADDR, ENV_MASTER_PORT) if not env.get(name, "").strip()]
            if missing:
                raise LaunchError(
                    f"{ENV_WORLD_SIZE}={size} but {' and '.join(missing)} unset: set them to rank 0's address "
                    "and a free port, or launch with torchrun"
                )
        return cls(rank=rank, size=size, local_rank=local_rank)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def handle_signal(self, signum: int, _frame: object) -> None:
        """The SIGTERM/SIGINT handler: records the signal and raises unless signals are deferred."""
        self.stop_signum = self.stop_signum or signum
        if not self._deferring:
            raise Stopped(signum)

    def device(self, device: torch.device) -> torch.device:
        """On CUDA each local rank has its own GPU."""
        import torch

        if self.distributed and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    @contextmanager
    def collective(self, device: torch.device) -> Iterator[None]:
        """The process group (gloo on CPU, NCCL on CUDA) is up and signals are deferred inside.

        A signal recorded but not yet shared when the block ends is raised on leaving it.
        """
        if not self.distributed:
            yield
            return
        import torch.distributed as dist

        self._backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(self._backend, rank=self.rank, world_size=self.size)
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            dist.destroy_process_group()
        if self.stop_signum:
            raise Stopped(self.stop_signum)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Local work of one rank (the main rank's evaluation): a signal ends it at once.

        The signal is not re-raised here: it stays recorded and is shared at the next `agree`.
        """
        if not self._deferring:
            yield
            return
        self._deferring = False
        try:
            yield
        except Stopped:
            pass
        finally:
            self._deferring = True

    def agree(self, non_finite: bool, device: torch.device) -> tuple[int | None, int, int | None]:
        """(a rank whose loss is non-finite, a signal, the rank it was sent to) over all ranks.

        Single process: this process's own state, without communication.
        """
        if not self.distributed:
            return (self.rank if non_finite else None), self.stop_signum, None
        import torch
        import torch.distributed as dist

        flags = torch.tensor(
            [self.rank + 1 if non_finite else 0, self.stop_signum, self.rank + 1 if self.stop_signum else 0],
            dtype=torch.int64,
            device=device if self._backend == "nccl" else torch.device("cpu"),
        )
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        bad, signum, signalled = (int(value) for value in flags.tolist())
        return (bad - 1 if bad else None), signum, (signalled - 1 if signalled else None)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model under DistributedDataParallel (it averages gradients in the backward pass)."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def install_signal_handlers(world: World) -> None:
    """Makes `world` handle SIGTERM and SIGINT (the caller restores the previous handlers)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, world.handle_signal)
