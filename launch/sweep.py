r"""Runs an experiment's grid (its `get_sweep(arg)`): one launch.train workdir per cell.

  python -m launch.sweep --config experiments/decoder_ablation.py --root workdirs/decoder_ablation
  python -m launch.sweep --config experiments/decoder_ablation.py --root ... --dry_run
  python -m launch.sweep --config experiments/decoder_ablation.py --root ... --parallel 2
  python -m launch.sweep --config experiments/decoder_ablation.py --root ... --backend slurm \
      --sbatch_options=--partition=gpu,--gres=gpu:1,--time=2:00:00

Cells are named from their overrides (ROOT/arch=unet,upsampler=nearest,seed=0). With
`--config.seeds_together=3` (or a config that sets it), cells differing only in their seed
train together in one process and one compiled program (vmap over seeds). Running
the same command again skips finished cells and resumes partial ones. `--config.KEY=VALUE`
flags apply to every cell (e.g. --config.data.data_dir=...). Exits non-zero if a cell failed.
"""

import json
import os
import shutil
import subprocess

from absl import app
from absl import flags
from ml_collections import config_flags

from launch import cli
from research import data
from research import sweep
from research import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment file[:args] defining get_config and get_sweep.', lock_config=True
)
_ROOT = flags.DEFINE_string('root', None, 'Directory holding one workdir per cell.')
_BACKEND = flags.DEFINE_enum(
  'backend',
  'local',
  ['local', 'slurm'],
  'local: subprocesses here; slurm: write (and submit) an sbatch array.',
)
_PARALLEL = flags.DEFINE_integer(
  'parallel',
  1,
  'Processes (cells, or groups of seeds) at the same time (slurm: only if '
  'given; default unlimited).',
  lower_bound=1,
)
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'List the cells and their status; run nothing.')
_SBATCH_OPTIONS = flags.DEFINE_list(
  'sbatch_options', [], 'slurm: extra #SBATCH lines, e.g. --partition=gpu,--time=2:00:00.'
)
_ONLY = flags.DEFINE_multi_string(
  'only',
  [],
  'Run only the cells with KEY=VALUE|VALUE... (repeatable: all must hold), e.g. '
  "'upsampler=nearest|bilinear'.",
)
_ARCHIVE = flags.DEFINE_string(
  'archive',
  None,
  'Archive of finished cells: restored into --root before running, new ones added after.',
)
flags.mark_flags_as_required(['config', 'root'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  spec = config_flags.get_config_filename(flags.FLAGS['config'])
  common = config_flags.get_override_values(flags.FLAGS['config'])
  cells = sweep.plan(
    spec,
    sweep.get_sweep(spec),
    _ROOT.value,
    common,
    seeds_together=_CONFIG.value.get('seeds_together', 1),
  )
  selected = sweep.select(cells, _ONLY.value)
  if _ONLY.value and _BACKEND.value == 'slurm':
    raise ValueError(
      '--only runs cells here (--backend local); a Slurm array takes the whole grid.'
    )
  if _ARCHIVE.value:
    this = {'config': sweep.cells.portable_spec(spec), 'overrides': common}
    this = json.loads(json.dumps(this, default=repr))  # as cells.json holds it
    if _DRY_RUN.value:
      names = sweep.archive.restorable(_ARCHIVE.value, _ROOT.value, this)
      print(f'{len(names)} finished cells in {_ARCHIVE.value} would be restored first.')
    else:
      restored = sweep.archive.restore(_ARCHIVE.value, _ROOT.value, this)
      print(f'Restored {restored} finished cells from {_ARCHIVE.value}.')
  data_configs, checks = {}, []
  for cell in cells:  # typos in the grid fail here, before anything runs
    try:
      config = sweep.apply_overrides(_CONFIG.value, cell.overrides)
    except ValueError as e:
      raise ValueError(f'Cell {cell.index} ({cell.name}): {e}') from None
    data_configs.setdefault(config.data.to_json(sort_keys=True), config.data)
    checks.append((cell.name, config, cell.workdir))  # a finished cell is skipped below
  sweep.cells.refuse_stale(checks, _ROOT.value, _ARCHIVE.value)
  if _DRY_RUN.value:
    print(sweep.format_status(selected))
    return 0
  sweep.write_index(_ROOT.value, spec, common, cells)
  for data_config in data_configs.values():
    # Once here: cells that build a dataset at the same time collide, and a dataset that
    # must be prepared elsewhere fails now rather than in every cell.
    data.prepare(data_config)

  if _BACKEND.value == 'slurm':
    os.makedirs(os.path.join(_ROOT.value, 'slurm'), exist_ok=True)
    name = os.path.splitext(os.path.basename(sweep.split_spec(spec)[0]))[0]
    path = os.path.join(os.path.abspath(_ROOT.value), 'sweep.sbatch')
    at_once = _PARALLEL.value if flags.FLAGS['parallel'].present else None
    script = sweep.slurm_script(cells, _ROOT.value, name, _SBATCH_OPTIONS.value, at_once)
    workdir_lib.write_text_atomic(path, script)
    print(
      f'Wrote {path} ({len(sweep.jobs(cells))} array tasks for {len(cells)} cells) and '
      f'{sweep.INDEX}.'
    )
    if _ARCHIVE.value:
      print(
        'When the array has finished, archive its cells with: python -m launch.archive '
        f'--root {_ROOT.value} --archive {_ARCHIVE.value}'
      )
    if shutil.which('sbatch') is None:
      print(f'sbatch is not on PATH; submit from a Slurm login node with:\n  sbatch {path}')
      return 0
    return subprocess.run(['sbatch', path], check=False).returncode

  todo = [c for c in selected if sweep.status(c.workdir) != 'done']
  print(
    f'{len(selected) - len(todo)} of {len(selected)} cells already done; running {len(todo)} in '
    f'{len(sweep.jobs(todo))} processes ({_PARALLEL.value} at a time). Logs: '
    f'{_ROOT.value}/<cell>/{sweep.LOG}',
    flush=True,
  )
  try:
    results = sweep.run_local(todo, _PARALLEL.value)
  except KeyboardInterrupt:
    _save_archive()
    print(f'{sweep.counts(cells)} Run the same command again to go on.')
    return 130
  _save_archive()
  print(sweep.summary(cells, results))
  return int(any(r.outcome == 'failed' for r in results))


def _save_archive():
  """Archives the finished cells; a refusal is one line after the sweep's own report."""
  if not _ARCHIVE.value:
    return
  try:
    added, kept = sweep.archive.save(_ROOT.value, _ARCHIVE.value)
  except ValueError as e:
    print(f'Not archived: {e}')
    return
  print(f'Archived {added} newly finished cells in {_ARCHIVE.value} ({kept} were already).')


if __name__ == '__main__':
  cli.run(main)
