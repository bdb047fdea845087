"""Pre-emption: on SIGTERM or SIGUSR1 a training run finishes the step in flight, writes a checkpoint and
stops with :data:`PREEMPTED_EXIT`; ``--resume`` continues exactly from that step.

Schedulers stop jobs with SIGTERM (time limit, pre-emption), often after a warning signal chosen by the
job (SLURM: ``#SBATCH --signal=USR1@120``). Under ``torchrun`` the ranks agree at every step boundary
(an all-reduce of a stop flag over a gloo group, on the CPU, so GPUs are not synchronised for it): a
signal that reaches any rank stops all of them after the same step. The run folder then holds
``preempted.json`` (the signal and where the run stopped), which a job script can test to re-submit
the job; it is removed when the run is resumed.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from msmae.utils import STOP_SIGNALS as SIGNALS

log = logging.getLogger(__name__)

PREEMPTED_EXIT = 75                 # EX_TEMPFAIL (sysexits.h): stopped by a signal after a checkpoint; resume
MARKER = "preempted.json"


class Preempted(Exception):
    """A run stopped by a signal after writing its checkpoint (``--resume`` continues it)."""

    def __init__(self, signal_name: str, where: str, run_dir: str | Path | None = None):
        self.signal_name, self.where, self.run_dir = signal_name, where, run_dir
        super().__init__(f"stopped by {signal_name} after {where}; a checkpoint was written: run the same command "
                         f"with --resume to continue")


class StopRequest:
    """Catches SIGTERM / SIGUSR1 (in the main thread) until :meth:`close`; :meth:`due` at a step boundary says
    whether every rank stops now. Call ``due`` on every rank at the same points."""

    def __init__(self, info):
        self.info = info
        self.signal_name: str | None = None
        self._previous: dict = {}
        self._group = None
        if info.distributed:
            self._group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._caught)

    def _caught(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name

    def due(self) -> bool:
        """True (on every rank) once any rank has caught a signal."""
        caught = self.signal_name  # read once: a signal may arrive while this runs
        code = signal.Signals[caught].value if caught else 0
        if self.info.distributed:  # the highest signal number caught by any rank (0: none)
            t = torch.tensor([code], dtype=torch.int32)
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._group)
            code = int(t.item())
        if code and self.signal_name is None:
            self.signal_name = signal.Signals(code).name
        return code > 0  # the same answer on every rank, whatever arrived after the all-reduce

    def close(self) -> None:
        """Restore the signal handlers that were there before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def stop(self, run_dir: Path | None, where: str, **state) -> Preempted:
        """Log, write ``run_dir/preempted.json`` (main process) and return the exception to raise."""
        log.warning("%s caught: stopped after %s with a checkpoint", self.signal_name, where)
        if run_dir is not None and self.info.is_main:
            from msmae.utils import atomic_write_json

            atomic_write_json(Path(run_dir) / MARKER, {"signal": self.signal_name, "stopped_after": where,
                                                       "exit_status": PREEMPTED_EXIT, **state})
        return Preempted(self.signal_name or "a signal", where, run_dir)


def clear_marker(run_dir: str | Path) -> None:
    """Remove ``run_dir/preempted.json`` (a resumed run is no longer pre-empted)."""
    (Path(run_dir) / MARKER).unlink(missing_ok=True)
