"""A run's checkpoints: one orbax manager per workdir, the latest step, and a restore that
survives a broken checkpoint (a truncated file after a crash, say) by setting it aside and
falling back to the newest readable one."""

import datetime
import os
import shutil

from absl import logging
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

BROKEN = 'checkpoints_broken'  # where unreadable checkpoints are kept, never deleted
_set_aside = set()  # workdirs whose checkpoint this process set aside already


class SetAside(Exception):
  """A checkpoint could not be read and was moved aside: look for the latest step again."""


def directory(workdir: str) -> str:
  return os.path.join(workdir, 'checkpoints')


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
    directory(workdir), options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  )


def latest_step(workdir: str):
  """The step of the workdir's latest checkpoint, or None; creates nothing."""
  if not os.path.isdir(directory(workdir)):
    return None
  with ocp.CheckpointManager(directory(workdir)) as m:
    return m.latest_step()


def restore(checkpoint_manager: ocp.CheckpointManager, workdir: str, step: int, abstract):
  """The state saved at `step`; an unreadable checkpoint is moved to workdir/checkpoints_broken
  (kept for inspection), said in one line, and SetAside raised so that the caller restarts
  from the newest readable checkpoint (or from scratch). Only one per workdir and process: a
  crash leaves at most the newest checkpoint broken, so a second failure is another cause (a
  changed model or config, say) and is raised as it is, moving nothing."""
  try:
    return checkpoint_manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # any unreadable checkpoint: truncated files, bad metadata, ...
    if workdir in _set_aside:
      raise
    _set_aside.add(workdir)
    checkpoint_manager.close()
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    target = os.path.join(workdir, BROKEN, f'{step}-{stamp}')
    if jax.process_index() == 0:  # one process moves it; the others wait for that
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(os.path.join(directory(workdir), str(step)), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'checkpoint {step} of {workdir} set aside')
    reason = ' '.join(str(e).split())[:200]
    logging.warning(
      'Checkpoint at step %d of %s is unreadable (%s: %s); moved it to %s and '
      'falling back to the newest readable one.',
      step,
      workdir,
      type(e).__name__,
      reason,
      target,
    )
    raise SetAside(f'step {step} of {workdir}') from e
