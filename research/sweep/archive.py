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

import json
import os
import shutil

from research import workdir as workdir_lib
from research.sweep import cells as cells_lib
from research.sweep import locks

TIMING = 'timing.json'
_FILES = ('config.json', 'metrics.jsonl', 'final.json')  # final.json last: it marks done


def _files(workdir: str) -> list[str]:
  """The files of a finished cell that an archive keeps, final.json last."""
  per_image = sorted(  # per_image_<split>.npz, and per_clip_<split>.npz of video runs
    f
    for f in os.listdir(workdir)
    if f.startswith(('per_image_', 'per_clip_')) and f.endswith('.npz')
  )
  present = [f for f in (*_FILES, TIMING) if os.path.exists(os.path.join(workdir, f))]
  return [f for f in present if f != 'final.json'] + per_image + ['final.json']


def wall_seconds(workdir: str) -> float:
  """A finished cell's wall time: its timing.json where it has one (archived cells), else
  from config.json (written at its start) to final.json."""
  path = os.path.join(workdir, TIMING)
  if os.path.exists(path):
    with open(path) as f:
      return float(json.load(f)['wall_seconds'])
  start = os.path.getmtime(os.path.join(workdir, 'config.json'))
  return max(os.path.getmtime(os.path.join(workdir, 'final.json')) - start, 0.0)


def _copy_cell(source: str, dest: str):
  """Copies a finished cell's kept files into `dest` (created), final.json last, with
  timing.json; a reader of `dest` sees it finished only once everything is there."""
  os.makedirs(dest, exist_ok=True)
  seconds = wall_seconds(source)
  for name in _files(source):
    if name == 'final.json':
      workdir_lib.write_json_atomic(os.path.join(dest, TIMING), {'wall_seconds': seconds})
    if name != TIMING:
      tmp = os.path.join(dest, f'.{name}.tmp')
      shutil.copyfile(os.path.join(source, name), tmp)
      os.replace(tmp, os.path.join(dest, name))


def _check_same_sweep(index: dict, other: dict, where: str, other_where: str):
  if (index['config'], index['overrides']) != (other['config'], other['overrides']):
    raise ValueError(
      f'{where} holds the sweep {index["config"]!r} with overrides {index["overrides"]}, '
      f'{other_where} {other["config"]!r} with {other["overrides"]}: an archive keeps one '
      'sweep; use another archive directory.'
    )


def save(root: str, archive: str) -> tuple[int, int]:
  """Adds the finished cells of the sweep root `root` to `archive`; returns (cells added,
  finished cells already archived and left as they were)."""
  index = cells_lib.read_index(root)
  if os.path.exists(os.path.join(archive, cells_lib.INDEX)):
    _check_same_sweep(index, cells_lib.read_index(archive), root, archive)
  os.makedirs(archive, exist_ok=True)
  workdir_lib.write_json_atomic(os.path.join(archive, cells_lib.INDEX), index)
  added = kept = 0
  for cell in index['cells']:
    source = os.path.join(root, cell['name'])
    if locks.status(source) != 'done':
      continue
    dest = os.path.join(archive, cell['name'])
    if os.path.exists(os.path.join(dest, 'final.json')):
      kept += 1
      continue
    _copy_cell(source, dest)
    added += 1
  return added, kept


def restore(archive: str, root: str) -> int:
  """Copies the archive's finished cells into the sweep root `root` where they are
  missing; returns how many. A cell that `root` holds in any state is left alone (a
  partial one resumes and finishes on its own checkpoints). A root that holds another
  sweep is refused; an archive not written yet restores nothing."""
  if not os.path.exists(os.path.join(archive, cells_lib.INDEX)):
    return 0
  index = cells_lib.read_index(archive)
  if os.path.exists(os.path.join(root, cells_lib.INDEX)):
    _check_same_sweep(index, cells_lib.read_index(root), archive, root)
  restored = 0
  for cell in index['cells']:
    source = os.path.join(archive, cell['name'])
    dest = os.path.join(root, cell['name'])
    if locks.status(source) != 'done' or locks.status(dest) != 'missing':
      continue
    _copy_cell(source, dest)
    restored += 1
  return restored
