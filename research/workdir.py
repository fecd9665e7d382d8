"""The files of a run: config.json, metrics.jsonl, TensorBoard events, final.json.

Only process 0 writes. A workdir belongs to one config: a second, different config is
refused rather than mixed into it.
"""

import json
import os
import time
from typing import Mapping

import jax
import ml_collections
import numpy as np

from research.data import catalog

# Fields that change how a run executes but not what it computes: they may differ on resume.
RUNTIME_KEYS = (
  'progress',
  'compilation_cache',
  'distributed',
  'num_devices',
  'model.conv_impl',
  'data.worker_count',
  'data.prefetch',
  'data.data_dir',
  'eval_batch_size',
  'seeds_together',
)


# Keys added to the configs after runs were written: a stored config without one ran with
# this value, so a resume or a finished cell still matches.
ADDED_KEYS = {'method': 'train'}


def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    if (
      isinstance(v, dict)
      and v
      and prefix + k not in ('model.upsampler_options', 'model.options', 'data.label_map')
    ):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[prefix + k] = v
  return out


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """JSON round-trip, so that tuples and lists compare equal across a restart; the data
  variant resolved (the dataset's default for ''), as a run records what it read."""
  as_dict = json.loads(config.to_json_best_effort(sort_keys=True))
  if 'data' in as_dict and 'variant' in as_dict['data']:
    as_dict['data']['variant'] = catalog.resolved_variant(config.data)
  return as_dict


def check_config(config, workdir: str):
  """Refuses a workdir whose config.json is another run's; writes nothing."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = json.load(f)
  old, new = {**ADDED_KEYS, **_flatten(previous)}, _flatten(config_to_dict(config))
  diff = sorted(
    k
    for k in set(old) | set(new)
    if k not in RUNTIME_KEYS and old.get(k, '<absent>') != new.get(k, '<absent>')
  )
  if diff:
    lines = '\n'.join(
      f'  {k}: {old.get(k, "<absent>")!r} -> {new.get(k, "<absent>")!r}' for k in diff
    )
    raise ValueError(
      f'Workdir {workdir} holds a run of a different config; refusing to mix '
      f'them. Use another --workdir or delete this one. Differences:\n{lines}'
    )


def checked_workdirs(workdirs: Mapping[int, str]) -> dict[int, str]:
  """{seed: absolute workdir}, refusing none at all or two seeds sharing one (every
  method's runner takes its seeds' workdirs through this)."""
  if not workdirs:
    raise ValueError('No seeds to train: workdirs is empty.')
  workdirs = {int(s): os.path.abspath(w) for s, w in workdirs.items()}
  if len(set(workdirs.values())) < len(workdirs):
    raise ValueError(f'Each seed needs its own workdir; got {workdirs}.')
  return workdirs


def with_seed(config, seed: int):
  """A copy of `config` for one seed of a run."""
  c = config.copy_and_resolve_references()
  c.seed = seed
  return c


def write_config(config, workdir: str):
  """Claims the workdir for this config (after check_config and a successful set-up)."""
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    write_json_atomic(os.path.join(workdir, 'config.json'), config_to_dict(config))


def read_final(workdir: str):
  path = os.path.join(workdir, 'final.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_text_atomic(path: str, text: str):
  """Writes via a temporary file and a rename: readers never see half a file, and a kill
  or a failure leaves the previous version in place."""
  tmp = f'{path}.{os.getpid()}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_npz_atomic(path: str, arrays: dict):
  """Arrays to an .npz file, replaced by a rename: a reader never sees half a file."""
  tmp = f'{path}.{os.getpid()}.tmp.npz'
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def write_json_atomic(path: str, obj):
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


class MetricWriter:
  """metrics.jsonl (one JSON object per log step and per eval) and TensorBoard scalars.

  On resume from step N, lines for steps after N (written before the kill, then lost
  with the un-checkpointed state) are dropped, and so is a line a kill cut short, so the
  file reads as one clean run. TensorBoard's event files are append-only; every writer
  starts with a purge marker at step N + 1 (N = 0 for a run restarted from scratch), which
  tells TensorBoard to hide the earlier events after N, so its curves too show each step
  once.
  """

  def __init__(self, workdir: str, resume_step: int):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.records = []
    if not self.active:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        for line in f:
          try:
            record = json.loads(line)
          except json.JSONDecodeError:
            continue
          if record['step'] <= resume_step:
            self.records.append(record)
      write_text_atomic(
        self.path, ''.join(json.dumps(r, sort_keys=True) + '\n' for r in self.records)
      )
    from tensorboardX import SummaryWriter  # only process 0 writes events: others never load it

    # TensorBoard reads event files in name order; names hold the time in seconds, so the
    # suffix (nanoseconds, fixed width) orders a resume within the same second too.
    self.tb = SummaryWriter(
      os.path.join(workdir, 'tensorboard'),
      purge_step=resume_step + 1,
      filename_suffix=f'.{time.time_ns()}.{os.getpid()}',
    )

  def write(self, step: int, metrics: dict):
    if not self.active:
      return
    record = {'step': step, **metrics}
    self.records.append(record)
    with open(self.path, 'a') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')
    for key, value in metrics.items():
      if isinstance(value, (int, float)):
        self.tb.add_scalar(key, value, step)
    self.tb.flush()

  def values(self, key: str) -> list:
    """Every logged value of `key` in this run (resumed parts included), in step order."""
    return [r[key] for r in self.records if key in r]

  def close(self):
    if self.active:
      self.tb.close()
