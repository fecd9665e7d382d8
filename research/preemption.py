"""Preemption: SIGUSR1 (the Slurm script's warning before the time limit), SIGTERM (scancel,
a preemption) and Ctrl-C checkpoint the run at the current step, then it stops with EXIT_CODE
("preempted, rerun to resume"); the same command resumes it.

One process: a signal handler raises a flag the training loop reads after each step. Several
processes (jax.distributed): JAX's preemption service catches the notice on any host and
agrees on a step at which every host saves (multihost_utils.reached_preemption_sync_point).
"""
import os
import signal

from absl import logging
import jax
from jax.experimental import multihost_utils

EXIT_CODE = 75  # EX_TEMPFAIL: try again later


class Preempted(Exception):
  """The run saved a checkpoint at `step` and stopped on a preemption notice."""

  def __init__(self, step: int, workdirs):
    self.step = step
    super().__init__(f'Preempted at step {step}: checkpoint saved in {", ".join(workdirs)}. '
                     'Run the same command again to resume.')


class Watcher:
  """A context manager: `reached(step)` is True once a notice came (every host at the same
  step). A second Ctrl-C interrupts at once."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    if jax.process_count() == 1:  # several: JAX's preemption service owns SIGTERM
      for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        try:
          self._previous[sig] = signal.signal(sig, self._notice)
        except ValueError:  # not the main thread (a library caller): no handler
          pass
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False

  def _notice(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = True
    logging.warning('%s received: saving a checkpoint at the end of this step (pid %d).',
                    signal.Signals(signum).name, os.getpid())

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # the preemption service is off: only this host's signal counts
        return self.requested
    return self.requested
