"""The files of a run: config.json, metrics.jsonl, TensorBoard events, final.json.

Only process 0 writes. A workdir belongs to one config: a second, different config is
refused rather than mixed into it.
"""
import json
import os

import jax
import ml_collections

# Fields that change how a run executes but not what it computes: they may differ on resume.
RUNTIME_KEYS = ('progress', 'compilation_cache', 'distributed', 'num_devices', 'data.worker_count',
                'data.prefetch', 'data.data_dir', 'eval_batch_size')


def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v and prefix + k not in ('model.upsampler_options', 'model.options',
                                                        'data.label_map'):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[prefix + k] = v
  return out


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """JSON round-trip, so that tuples and lists compare equal across a restart."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def check_or_write_config(config, workdir: str):
  """Writes config.json, or checks that the one already there is the same run."""
  path = os.path.join(workdir, 'config.json')
  current = config_to_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    old, new = _flatten(previous), _flatten(current)
    diff = sorted(k for k in set(old) | set(new)
                  if k not in RUNTIME_KEYS and old.get(k, '<absent>') != new.get(k, '<absent>'))
    if diff:
      lines = '\n'.join(f'  {k}: {old.get(k, "<absent>")!r} -> {new.get(k, "<absent>")!r}'
                        for k in diff)
      raise ValueError(f'Workdir {workdir} holds a run of a different config; refusing to mix '
                       f'them. Use another --workdir or delete this one. Differences:\n{lines}')
    return
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path, 'w') as f:
      json.dump(current, f, indent=2, sort_keys=True)


def read_final(workdir: str):
  path = os.path.join(workdir, 'final.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_json_atomic(path: str, obj):
  """Writes via a temporary file, so a kill never leaves a half-written final.json."""
  if jax.process_index() != 0:
    return
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


class MetricWriter:
  """metrics.jsonl (one JSON object per log step and per eval) and TensorBoard scalars.

  On resume from step N, lines for steps after N (written before the kill, then lost
  with the un-checkpointed state) are dropped, so the file reads as one clean run.
  """

  def __init__(self, workdir: str, resume_step: int):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    if not self.active:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)['step'] <= resume_step]
      with open(self.path, 'w') as f:
        f.writelines(kept)
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self.tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, metrics: dict):
    if not self.active:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': step, **metrics}, sort_keys=True) + '\n')
    for key, value in metrics.items():
      if isinstance(value, (int, float)) and value is not None:
        self.tb.add_scalar(key, value, step)
    self.tb.flush()

  def close(self):
    if self.active:
      self.tb.close()
