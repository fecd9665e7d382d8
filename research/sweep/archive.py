"""A sweep's finished cells kept apart from its workdirs, small enough to commit.

A benchmark costs more CPU-hours than one machine's disk lives: workdirs vanish with the
machine, and the cells run on it with them. An archive (e.g. results/runs/benchmark/unet)
keeps, per finished cell, what tables and findings read: config.json, final.json,
metrics.jsonl, per_image_*.npz (and per_clip_*.npz of video runs), and its wall time
(timing.json, since copies lose file times); no checkpoints, logs or events (about 0.2 MB
a cell). It holds the sweep's cells.json, so launch.table and launch.findings read it as
they read a sweep root.

`save` adds the root's finished cells that the archive lacks; `restore` puts the archive's
cells back into a root that lacks them, so that the sweep skips them and its
tables count them. Neither ever replaces a finished cell: an archived result stays as it
was, and a cell finished in the root is not overwritten by its archived twin.
"""

import functools
import json
import os
import shutil

import ml_collections

from research import workdir as workdir_lib
from research.sweep import cells as cells_lib
from research.sweep import locks

TIMING = 'timing.json'
_FILES = ('config.json', 'metrics.jsonl')  # then per_image_*.npz, timing.json, final.json


def _files(workdir: str) -> list[str]:
  """The files of a finished cell that an archive copies (timing.json is written anew and
  final.json, which marks the cell done, comes last)."""
  per_image = sorted(  # per_image_<split>.npz, and per_clip_<split>.npz of video runs
    f
    for f in os.listdir(workdir)
    if f.startswith(('per_image_', 'per_clip_')) and f.endswith('.npz')
  )
  return [f for f in _FILES if os.path.exists(os.path.join(workdir, f))] + per_image


def wall_seconds(workdir: str) -> float:
  """A finished cell's wall time: its timing.json where it has one (archived cells), else
  from config.json to final.json (a resumed run rewrites config.json: its last part)."""
  path = os.path.join(workdir, TIMING)
  if os.path.exists(path):
    with open(path) as f:
      return float(json.load(f)['wall_seconds'])
  start = os.path.getmtime(os.path.join(workdir, 'config.json'))
  return max(os.path.getmtime(os.path.join(workdir, 'final.json')) - start, 0.0)


def _copy_cell(source: str, dest: str):
  """Copies a finished cell's kept files into `dest` (created), each by a rename of a
  temporary file, final.json last: a reader of `dest` sees it finished only once
  everything is there, and an interrupted copy leaves no temporary file behind."""
  os.makedirs(dest, exist_ok=True)
  seconds = wall_seconds(source)
  for name in [*_files(source), 'final.json']:
    if name == 'final.json':
      workdir_lib.write_json_atomic(os.path.join(dest, TIMING), {'wall_seconds': seconds})
    tmp = os.path.join(dest, f'.{name}.{os.getpid()}.tmp')
    try:
      shutil.copyfile(os.path.join(source, name), tmp)
      os.replace(tmp, os.path.join(dest, name))
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)


@functools.cache
def _base_config(spec: str) -> tuple[str, str]:
  """The experiment file of `spec` and the config its argument makes, as sorted JSON: an
  argument that only sizes the grid (`seeds=1`) leaves the sweep the same."""
  path, arg = cells_lib.split_spec(spec)
  try:
    config = cells_lib.load_experiment(os.path.join(cells_lib.REPO, path)).get_config(arg)
  except (FileNotFoundError, ValueError):  # gone or changed since: only the spec itself
    return spec, None
  return path, config.to_json_best_effort(sort_keys=True)


def _sweep(index: dict) -> tuple:
  """What makes two indexes the same sweep: the experiment's config and the command-line
  overrides that change results (not where the data is, how many seeds share a process, nor
  how many seeds or rows the grid has: archived cells are checked one by one)."""
  overrides = {k: v for k, v in index['overrides'].items() if k not in workdir_lib.RUNTIME_KEYS}
  return _base_config(index['config']), overrides


def check_same_sweep(index: dict, other: dict, where: str, other_where: str):
  """Refuses, in one line, two indexes of different sweeps."""
  if index['config'] == other['config'] and index['overrides'] == other['overrides']:
    return
  if _sweep(index) != _sweep(other):
    raise ValueError(
      f'{where} holds the sweep {index["config"]!r} with overrides {index["overrides"]}, '
      f'{other_where} {other["config"]!r} with {other["overrides"]}: an archive keeps one '
      'sweep; use another archive directory.'
    )


def _read(archive: str) -> dict | None:
  path = os.path.join(archive, cells_lib.INDEX)
  return cells_lib.read_index(archive) if os.path.exists(path) else None


def _check_cell(source: str, dest: str):
  """Refuses a finished cell whose archived twin ran another config, naming both."""
  with open(os.path.join(dest, 'config.json')) as f:
    archived = ml_collections.ConfigDict({**workdir_lib.ADDED_KEYS, **json.load(f)})
  try:
    workdir_lib.check_config(archived, source)
  except ValueError as e:
    raise ValueError(
      f'{source} and its archived twin {dest} ran different configs, so one of them is '
      "not this sweep's: delete the wrong one. " + str(e).split('Differences:')[1].strip()
    ) from None


def save(root: str, archive: str) -> tuple[int, int]:
  """Adds the finished cells of the sweep root `root` to `archive`; returns (cells added,
  finished cells already archived and left as they were). The archive's cells.json lists
  the cells of every grid saved into it (no commands: they hold this machine's paths)."""
  index, archived = cells_lib.read_index(root), _read(archive)
  if archived is not None:
    check_same_sweep(index, archived, root, archive)
  added = kept = 0
  for cell in index['cells']:
    source = os.path.join(root, cell['name'])
    dest = os.path.join(archive, cell['name'])
    if locks.status(source) != 'done':
      continue
    if os.path.exists(os.path.join(dest, 'final.json')):
      _check_cell(source, dest)
      kept += 1
      continue
    _copy_cell(source, dest)
    added += 1
  cells = {c['name']: c for c in (archived or {'cells': []})['cells']}
  cells.update(
    {c['name']: {k: c[k] for k in ('index', 'name', 'overrides')} for c in index['cells']}
  )
  merged = {
    'config': index['config'],
    'overrides': _sweep(index)[1],
    'cells': sorted(cells.values(), key=lambda c: c['index']),
  }
  workdir_lib.write_json_atomic(os.path.join(archive, cells_lib.INDEX), merged)
  return added, kept


def restorable(archive: str, root: str, index: dict | None = None) -> list[str]:
  """The archive's finished cells that `root` lacks (restore's candidates). `index`: the
  sweep about to run (config and overrides); another sweep's archive is refused."""
  archived = _read(archive)
  if archived is None:
    return []
  for other, where in ((index, 'this command'), (_read(root), root)):
    if other is not None:
      check_same_sweep(archived, other, archive, where)
  return [
    c['name']
    for c in archived['cells']
    if locks.status(os.path.join(archive, c['name'])) == 'done'
    and locks.status(os.path.join(root, c['name'])) == 'missing'
  ]


def restore(archive: str, root: str, index: dict | None = None) -> int:
  """Copies the archive's finished cells into the sweep root `root` where they are
  missing, each under the cell's lock; returns how many. A cell that `root` holds in any
  state is left alone (a partial one resumes and finishes on its own checkpoints). An
  archive not written yet restores nothing."""
  restored = 0
  for name in restorable(archive, root, index):
    dest = os.path.join(root, name)
    if not locks.acquire_lock(dest):
      continue  # a sweep is running it
    try:
      if locks.status(dest) == 'running':  # only our own lock there: nothing else ran it
        _copy_cell(os.path.join(archive, name), dest)
        restored += 1
    finally:
      locks.release_lock(dest)
  return restored
