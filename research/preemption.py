"""Preemption: SIGUSR1 (the Slurm script's warning before the time limit), SIGTERM (scancel,
a preemption) and Ctrl-C checkpoint the run at the current step, then it stops with EXIT_CODE
("preempted, rerun to resume"); the same command resumes it.

One process: a handler notes the notice and the training loop reads it after each step; a
notice during set-up or compilation stops the run at its first step, one during the final
evaluation lets the run finish. Several processes (jax.distributed): SIGTERM belongs to JAX's
preemption service, which agrees on a step at which every host saves
(multihost_utils.reached_preemption_sync_point); SIGUSR1 and Ctrl-C are handed to it as a
SIGTERM of this process. Entry points call `install()` at start, so that a notice at any time
is caught; `Watcher` installs the handlers around the training loop for library callers too.
"""

import os
import signal

from absl import logging
import jax
from jax.experimental import multihost_utils

EXIT_CODE = 75  # EX_TEMPFAIL: try again later
_state = {'notice': None}  # the first notice's signal name, until the loop stops on it


class Preempted(Exception):
  """The run saved a checkpoint at `step` and stopped on a preemption notice."""

  def __init__(self, step: int, workdirs):
    self.step = step
    super().__init__(
      f'Preempted at step {step}: checkpoint saved in {", ".join(workdirs)}. '
      'Run the same command again to resume.'
    )


def _note(signum, frame):
  del frame
  if _state['notice'] and signum == signal.SIGINT:
    raise KeyboardInterrupt  # a second Ctrl-C: stop now
  _state['notice'] = signal.Signals(signum).name
  logging.warning(
    '%s received: saving a checkpoint at the end of this step (pid %d).',
    _state['notice'],
    os.getpid(),
  )


def _to_sigterm(signum, frame):
  del signum, frame
  os.kill(os.getpid(), signal.SIGTERM)


def install() -> dict:
  """Handlers for the notices (see the module docstring); returns the previous ones. Only the
  main thread can set handlers: elsewhere (a library caller's thread) nothing is installed."""
  if jax.distributed.is_initialized():  # not process_count(): it would start the backend
    handlers = {signal.SIGUSR1: _to_sigterm, signal.SIGINT: _to_sigterm}
  else:
    handlers = {signal.SIGTERM: _note, signal.SIGUSR1: _note, signal.SIGINT: _note}
  previous = {}
  for sig, handler in handlers.items():
    try:
      previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
      pass
  return previous


class Watcher:
  """A context manager around the training loop: `reached(step)` is True once a notice came
  (on every host at the same step); the previous handlers come back on exit."""

  def __enter__(self):
    self._previous = install()
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    _state['notice'] = None  # handled (or the loop ended without it: nothing to save)
    return False

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # the preemption service is off: only this host's notice counts
        return _state['notice'] is not None
    return _state['notice'] is not None
