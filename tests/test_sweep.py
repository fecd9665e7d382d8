"""Sweeps: grids, workdir names, status and locks, the Slurm script, and one tiny sweep end
to end (a finished cell skipped, a partial one run, a failing one reported)."""

import json
import os
import pathlib
import shlex
import socket
import stat
import subprocess
import sys
import textwrap

from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import pytest

from research import models
from research import sweep
from research import workdir as workdir_lib

EXPERIMENTS = sweep.REPO / 'experiments'


def test_axis_product_zip():
  arch, up = sweep.axis('model.arch', ['fcn8s', 'unet']), sweep.axis('model.upsampler', 'ab')
  seeds = sweep.axis('seed', range(3))
  grid = sweep.product(arch, up, seeds)
  assert len(grid) == 12
  assert grid[0] == {'model.arch': 'fcn8s', 'model.upsampler': 'a', 'seed': 0}
  assert grid[1] == {'model.arch': 'fcn8s', 'model.upsampler': 'a', 'seed': 1}  # last fastest
  assert grid[-1] == {'model.arch': 'unet', 'model.upsampler': 'b', 'seed': 2}
  assert len({json.dumps(c, sort_keys=True) for c in grid}) == 12

  zipped = sweep.zip_(
    sweep.axis('model.width', [8, 16]), sweep.axis('optim.learning_rate', [3e-3, 1e-3])
  )
  assert zipped == [
    {'model.width': 8, 'optim.learning_rate': 3e-3},
    {'model.width': 16, 'optim.learning_rate': 1e-3},
  ]
  assert len(sweep.product(zipped, seeds)) == 6
  with pytest.raises(ValueError, match='equal length'):
    sweep.zip_(arch, seeds)
  with pytest.raises(ValueError, match='same key'):
    sweep.product(seeds, seeds)
  with pytest.raises(ValueError, match='no values'):
    sweep.axis('seed', [])


def test_cell_names_are_short_safe_unique_and_stable():
  grid = [{'model.arch': 'unet', 'model.upsampler': 'nearest', 'seed': 0}]
  assert sweep.cell_names(grid) == ['arch=unet,upsampler=nearest,seed=0']
  # Growing the grid keeps existing names; the order of cells does not matter.
  bigger = grid + [{'model.arch': 'segnet', 'model.upsampler': 'nearest', 'seed': 1}]
  assert sweep.cell_names(bigger)[0] == sweep.cell_names(grid)[0]
  assert sweep.cell_names(bigger[::-1])[::-1] == sweep.cell_names(bigger)
  # Two keys ending alike are spelled out in full.
  clash = [{'model.width': 8, 'data.width': 64}]
  assert sweep.cell_names(clash) == ['model.width=8,data.width=64']
  # Unsafe characters are replaced, and a hash of the exact cell keeps names unique.
  odd = [
    {'data.name': 'a/b'},
    {'data.name': 'a b'},
    {'data.name': 'a_b'},
    {'t': (1, 2)},
    {'lr': 1e-3},
    {'flag': True},
    {},
  ]
  names = sweep.cell_names(odd)
  assert len(set(names)) == len(names)
  assert names[2] == 'name=a_b' and names[0].startswith('name=a_b-') and names[1] != names[0]
  assert names[4:] == ['lr=0.001', 'flag=True', 'default']
  for name in names:
    assert all(c.isalnum() or c in '._+-=,' for c in name), name
  assert sweep.cell_names(odd) == names  # stable: a pure function of the cells
  long = [{'data.name': 'x' * 300}]
  assert len(sweep.cell_names(long)[0]) <= 255
  with pytest.raises(ValueError, match='same workdir name'):
    sweep.cell_names([{'seed': 0}, {'seed': 0}])


def test_experiment_grids():
  every = sweep.get_sweep(str(EXPERIMENTS / 'decoder_ablation.py'))
  rows = {(c['model.arch'], c['model.upsampler']) for c in every}
  assert len(rows) == 37 and len(every) == 5 * 37  # each architecture, what it can take
  assert ('unet', 'fade') in rows and ('segnet', 'fade') not in rows
  assert ('fcn8s', 'sapa_b') in rows and ('fcn8s', 'sapa_i') not in rows
  cells = sweep.get_sweep(str(EXPERIMENTS / 'decoder_ablation.py') + ':decoders=classic,seeds=3')
  assert len(cells) == 72
  names = sweep.cell_names(cells)
  assert len(set(names)) == 72 and 'arch=segnet,upsampler=max_unpool,seed=2' in names
  assert [c['seed'] for c in cells[:24]] == [0] * 24  # every configuration's seed 0 first
  assert (
    len(
      sweep.get_sweep(
        str(EXPERIMENTS / 'decoder_ablation.py') + ':steps=2,seeds=1,decoders=classic'
      )
    )
    == 24
  )
  skips = sweep.get_sweep(str(EXPERIMENTS / 'fcn_skips.py'))
  assert len(skips) == 36 and {c['model.arch'] for c in skips} == {'fcn32s', 'fcn16s', 'fcn8s'}

  ablation = sweep.load_experiment(str(EXPERIMENTS / 'decoder_ablation.py'))
  fcn_skips = sweep.load_experiment(str(EXPERIMENTS / 'fcn_skips.py'))
  config = ablation.get_config('steps=2')
  assert config.num_steps == 2 and config.model.width == 8
  cell = {'model.arch': 'fcn8s', 'model.upsampler': 'max_unpool', 'seed': 1}
  assert (
    sweep.apply_overrides(fcn_skips.get_config(), cell).to_dict()
    == sweep.apply_overrides(ablation.get_config(), cell).to_dict()
  )
  with pytest.raises(ValueError, match='no get_sweep'):
    sweep.get_sweep(str(EXPERIMENTS / 'quick.py'))

  # The long variant: the ablation's U-Net rows, differing only in run length and eval cadence.
  long_spec = str(EXPERIMENTS / 'decoder_ablation_long.py')
  long_cells = sweep.get_sweep(long_spec)
  assert len(long_cells) == 24 and set(sweep.cell_names(long_cells)) <= set(names)
  long = sweep.load_experiment(long_spec)
  cell = {'model.arch': 'unet', 'model.upsampler': 'pixel_shuffle', 'seed': 2}
  long_config = sweep.apply_overrides(long.get_config(), cell).to_dict()
  short_config = sweep.apply_overrides(ablation.get_config(), cell).to_dict()
  assert long_config['num_steps'] == 2400 and long.get_config('steps=2').num_steps == 2
  for key in ('num_steps', 'eval_every', 'checkpoint_every'):
    del long_config[key], short_config[key]
  assert long_config == short_config


def test_checkerboard_and_clustering_grids():
  spec = str(EXPERIMENTS / 'checkerboard.py')
  cells = sweep.get_sweep(spec)
  assert len(cells) == 24 and len(set(sweep.cell_names(cells))) == 24
  config = sweep.load_experiment(spec).get_config()
  for cell in cells[:8]:  # every decoder of the study builds and runs in the U-Net
    c = sweep.apply_overrides(config, cell)
    model = models.build(
      'unet',
      upsampler=c.model.upsampler,
      num_classes=3,
      width=2,
      upsampler_options=c.model.upsampler_options.to_dict(),
      depth=1,
    )
    x = np.zeros((1, 8, 8, 3), np.float32)
    assert model.apply(model.init(jax.random.key(0), x), x).shape == (1, 8, 8, 3)
  clustering = sweep.get_sweep(str(EXPERIMENTS / 'clustering.py'))
  assert len(clustering) == 54 and len(set(sweep.cell_names(clustering))) == 54


def test_apply_overrides_refuses_unknown_keys_and_types():
  config = sweep.load_experiment(str(EXPERIMENTS / 'quick.py')).get_config()
  config.lock()
  new = sweep.apply_overrides(config, {'model.upsampler': 'bilinear', 'optim.learning_rate': 1})
  assert new.model.upsampler == 'bilinear' and config.model.upsampler == 'nearest'
  with pytest.raises(ValueError, match=r"model has no field 'upsamplr'.*upsampler"):
    sweep.apply_overrides(config, {'model.upsamplr': 'bilinear'})
  with pytest.raises(ValueError, match="seed has no field 'x'"):
    sweep.apply_overrides(config, {'seed.x': 1})
  with pytest.raises(ValueError, match='does not fit'):
    sweep.apply_overrides(config, {'num_steps': 'many'})


def test_override_flags_parse_back_to_the_same_config(tmp_path):
  """The command of a cell, parsed by config_flags, gives the config the sweep checked."""
  path = tmp_path / 'cfg.py'
  path.write_text(
    textwrap.dedent("""\
      import ml_collections
      def get_config(arg=None):
        return ml_collections.ConfigDict(dict(a=1, lr=0.1, name='x', flag=False, t=(1, 2),
                                              opts={}, nested=dict(k='v')))
      def get_sweep(arg=None):
        return [{'a': 3, 'lr': 1e-5, 'name': 'a b,c=d', 'flag': True, 't': (3, 4, 5),
                 'opts': {'kernel_size': 3}, 'nested.k': 'w'}]
      """)
  )
  [cell] = sweep.plan(str(path), sweep.get_sweep(str(path)), str(tmp_path / 'root'))
  argv = [
    'prog',
    *[a for a in cell.command[3:] if not a.startswith(('--workdir', '--config.progress'))],
  ]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=values, sys_argv=argv)
  values(argv)
  expected = sweep.apply_overrides(sweep.load_experiment(str(path)).get_config(), cell.overrides)
  assert values.config.to_dict() == expected.to_dict()


def _finished(workdir, miou=0.5):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump({}, f)
  with open(os.path.join(workdir, 'final.json'), 'w') as f:
    json.dump({'step': 2, 'test': {'miou': miou}}, f)


def _dead_pid():
  proc = subprocess.Popen([sys.executable, '-c', ''])
  proc.wait()
  return proc.pid


def test_seeds_together_share_one_command(tmp_path):
  cells = sweep.product(
    sweep.axis('model.upsampler', ['nearest', 'bilinear']), sweep.axis('seed', range(3))
  )
  planned = sweep.plan('experiments/quick.py', cells, str(tmp_path), seeds_together=2)
  jobs = sweep.jobs(planned)
  assert [[c.name for c in job] for job in jobs] == [
    ['upsampler=nearest,seed=0', 'upsampler=nearest,seed=1'],
    ['upsampler=nearest,seed=2'],
    ['upsampler=bilinear,seed=0', 'upsampler=bilinear,seed=1'],
    ['upsampler=bilinear,seed=2'],
  ]
  together = jobs[0][0].command
  assert f'--workdir={tmp_path}/upsampler=nearest,seed={{seed}}' in together
  assert '--seeds=0,1' in together and '--config.model.upsampler=nearest' in together
  assert not any(w.startswith('--config.seed') for w in together)
  alone = jobs[1][0].command
  assert '--config.seed=2' in alone and not any(w.startswith('--seeds') for w in alone)
  assert len(sweep.jobs(sweep.plan('experiments/quick.py', cells, str(tmp_path)))) == 6
  script = sweep.slurm_script(planned, str(tmp_path), 'x')
  assert '#SBATCH --array=0-3\n' in script
  branch = shlex.split(next(l for l in script.splitlines() if l.strip().startswith('0)')))
  pointer = branch.index('echo')  # seed 1's log.txt points to seed 0's, as in local sweeps
  assert branch[pointer + 1 : pointer + 4] == [
    f'Trained together with upsampler=nearest,seed=0: see {jobs[0][0].workdir}/log.txt',
    '>>',
    f'{jobs[0][1].workdir}/log.txt',
  ]
  assert branch[branch.index('run_cell') + 2 : -1] == list(together)
  sweep.write_index(str(tmp_path), 'experiments/quick.py', {}, planned)
  assert [c['task'] for c in sweep.read_index(str(tmp_path))['cells']] == [0, 0, 1, 2, 2, 3]
  # Names hashed for their unsafe characters still group: the hash leaves the seed out.
  dicts = sweep.product(
    [{'model.upsampler_options': {'kernel_size': 3}}], sweep.axis('seed', [0, 1])
  )
  assert (
    len(sweep.jobs(sweep.plan('experiments/quick.py', dicts, str(tmp_path), seeds_together=2))) == 1
  )


class FakeProcess:
  """Stands in for launch.train's process: records its command, trains nothing."""

  pid = _dead_pid()  # not this test's: handing a lock to it must show
  launched = []

  def __init__(self, command, **kwargs):
    del kwargs
    self.launched.append(command)

  def wait(self):
    return 0


def test_a_seed_held_elsewhere_is_left_out_of_its_group(tmp_path, monkeypatch):
  cells = sweep.plan(
    'experiments/quick.py', [{'seed': s} for s in range(3)], str(tmp_path), seeds_together=3
  )
  (job,) = sweep.jobs(cells)
  for cell in cells:
    os.makedirs(cell.workdir)
  monkeypatch.setattr(sweep.local.subprocess, 'Popen', FakeProcess)
  monkeypatch.setattr(FakeProcess, 'launched', [])
  monkeypatch.setattr(sweep.local.time, 'sleep', lambda seconds: None)

  def run(busy):
    """run_job while another live process (this one) holds `busy`'s lock."""
    FakeProcess.launched.clear()
    for seed in busy:
      assert sweep.acquire_lock(cells[seed].workdir)
    results = {r.cell.overrides['seed']: r.outcome for r in sweep.run_job(job)}
    for seed in busy:  # still the other process's
      with open(os.path.join(cells[seed].workdir, sweep.LOCK)) as f:
        assert json.load(f)['pid'] == os.getpid()
      sweep.release_lock(cells[seed].workdir)
    assert not any(os.path.exists(os.path.join(c.workdir, sweep.LOCK)) for c in cells)
    (command,) = FakeProcess.launched
    return results, command

  results, command = run(busy=[1])
  assert results == {0: 'failed', 1: 'running', 2: 'failed'}  # failed: no final.json here
  assert '--seeds=0,2' in command and '--seeds=0,1,2' in job[0].command
  log = lambda seed: (pathlib.Path(cells[seed].workdir) / sweep.LOG).read_text()
  assert '--seeds=0,2' in log(0) and log(2).endswith(
    f'Trained together with seed=0: see {cells[0].workdir}/log.txt\n'
  )
  assert not os.path.exists(os.path.join(cells[1].workdir, sweep.LOG))
  results, command = run(busy=[0, 2])  # one seed left: it trains alone, in its own log
  assert results == {0: 'running', 1: 'failed', 2: 'running'} and '--seeds=1' in command
  assert '--seeds=1' in log(1) and 'Trained together' not in log(1)


def test_status_and_locks(tmp_path):
  cells = sweep.plan('experiments/quick.py', [{'seed': s} for s in range(5)], str(tmp_path))
  done, partial, running, stale, missing = (c.workdir for c in cells)
  _finished(done)
  os.makedirs(os.path.join(partial, 'checkpoints', '100'))
  assert sweep.acquire_lock(running)  # held by this (live) process
  assert not sweep.acquire_lock(running)
  os.makedirs(stale)
  with open(os.path.join(stale, sweep.LOCK), 'w') as f:
    json.dump({'pid': _dead_pid(), 'host': socket.gethostname()}, f)
  assert [sweep.status(c.workdir) for c in cells] == [
    'done',
    'partial',
    'running',
    'missing',
    'missing',
  ]
  listing = sweep.format_status(cells)
  assert 'done     seed=0' in listing and 'running  seed=2' in listing
  assert listing.endswith('5 cells: 1 done, 1 running, 1 partial, 2 missing.')
  assert sweep.acquire_lock(stale)  # the dead process's lock is taken over
  with open(os.path.join(stale, sweep.LOCK)) as f:
    assert json.load(f)['pid'] == os.getpid()
  for workdir in (running, stale):
    sweep.release_lock(workdir)
    assert not os.path.exists(os.path.join(workdir, sweep.LOCK))
  os.makedirs(missing)
  with open(os.path.join(missing, sweep.LOCK), 'w') as f:
    json.dump({'pid': _dead_pid(), 'host': 'another-host'}, f)
  assert sweep.status(missing) == 'running'  # cannot be checked from here: assumed live


def test_index_holds_one_experiment(tmp_path):
  cells = sweep.plan('experiments/quick.py', [{'seed': 0}], str(tmp_path))
  sweep.write_index(str(tmp_path), 'experiments/quick.py', {}, cells)
  sweep.write_index(str(tmp_path), 'experiments/quick.py', {}, cells)  # same sweep: fine
  with pytest.raises(ValueError, match='holds a sweep of experiments/quick.py'):
    sweep.write_index(str(tmp_path), 'experiments/quick.py:steps=2', {}, cells)
  with pytest.raises(ValueError, match='command line overrides'):
    sweep.plan('experiments/quick.py', [{'seed': 0}], str(tmp_path), {'seed': 1})


def test_select_runs_some_rows_and_seeds_first(tmp_path):
  grid = sweep.product(
    sweep.axis('model.upsampler', ['nearest', 'bilinear', 'carafe']), sweep.axis('seed', range(3))
  )
  cells = sweep.plan('experiments/quick.py', grid, str(tmp_path))
  chosen = sweep.select(cells, ['upsampler=nearest|carafe', 'seed=0|2'])
  assert [c.name for c in chosen] == [
    'upsampler=nearest,seed=0',
    'upsampler=nearest,seed=2',
    'upsampler=carafe,seed=0',
    'upsampler=carafe,seed=2',
  ]
  assert sweep.select(cells, ['model.upsampler=bilinear']) == [c for c in cells if 'bil' in c.name]
  assert sweep.select(cells, []) == cells
  with pytest.raises(ValueError, match='no cell has upsampler=carfe; its values: bilinear, carafe'):
    sweep.select(cells, ['upsampler=carfe'])
  with pytest.raises(ValueError, match="KEY one of the grid's keys: seed, upsampler"):
    sweep.select(cells, ['arch=unet'])


def _write_run(workdir, seconds, miou=0.5):
  """A finished run with what an archive keeps and what it leaves (checkpoints, a log)."""
  _finished(workdir, miou)
  np.savez_compressed(os.path.join(workdir, 'per_image_test.npz'), boundary_f1=np.ones(3))
  os.makedirs(os.path.join(workdir, 'checkpoints', '2'))
  pathlib.Path(workdir, sweep.LOG).write_text('log')
  start = os.path.getmtime(os.path.join(workdir, 'final.json')) - seconds
  os.utime(os.path.join(workdir, 'config.json'), (start, start))


def test_archive_keeps_finished_cells_and_restores_them(tmp_path):
  grid = sweep.product(
    sweep.axis('model.upsampler', ['nearest', 'bilinear']), sweep.axis('seed', [0])
  )
  root, archive, fresh = (str(tmp_path / d) for d in ('root', 'archive', 'fresh'))
  cells = sweep.plan('experiments/quick.py', grid, root)
  sweep.write_index(root, 'experiments/quick.py', {}, cells)
  done, partial = (c.workdir for c in cells)
  _write_run(done, seconds=100)
  os.makedirs(partial)
  pathlib.Path(partial, 'config.json').write_text('{}')

  assert sweep.archive.save(root, archive) == (1, 0)
  kept = os.path.join(archive, cells[0].name)
  assert sorted(os.listdir(kept)) == [
    'config.json',
    'final.json',
    'per_image_test.npz',
    sweep.archive.TIMING,
  ]
  assert sweep.archive.wall_seconds(kept) == pytest.approx(100, abs=1)
  assert not os.path.exists(os.path.join(archive, cells[1].name))  # unfinished: not archived
  # A finished cell is archived once: a rerun in the root does not replace it.
  _finished(done, miou=0.9)
  assert sweep.archive.save(root, archive) == (0, 1)
  assert json.load(open(os.path.join(kept, 'final.json')))['test']['miou'] == 0.5

  assert sweep.archive.restore(str(tmp_path / 'none yet'), fresh) == 0
  assert sweep.archive.restore(archive, fresh) == 1
  restored = os.path.join(fresh, cells[0].name)
  assert sweep.status(restored) == 'done'
  assert sweep.archive.wall_seconds(restored) == pytest.approx(100, abs=1)
  assert sweep.archive.restore(archive, fresh) == 0  # never over a cell the root holds
  assert sweep.archive.restore(archive, root) == 0
  assert json.load(open(os.path.join(done, 'final.json')))['test']['miou'] == 0.9

  # The archive's index: the cells without this machine's commands.
  assert [sorted(c) for c in sweep.read_index(archive)['cells']] == [
    ['index', 'name', 'overrides']
  ] * 2

  other = str(tmp_path / 'other')
  sweep.write_index(other, 'experiments/quick.py:steps=2', {}, cells)
  with pytest.raises(ValueError, match='an archive keeps one sweep'):
    sweep.archive.save(other, archive)
  with pytest.raises(ValueError, match='an archive keeps one sweep'):
    sweep.archive.restore(archive, other)
  this = {'config': 'experiments/quick.py', 'overrides': {'num_steps': 3}}
  with pytest.raises(ValueError, match='an archive keeps one sweep'):
    sweep.archive.restore(archive, str(tmp_path / 'empty'), this)
  # An argument that leaves the config as it was (here the default; `seeds=1` in a grid
  # cut short) is the same sweep.
  same = str(tmp_path / 'same')
  sweep.write_index(same, 'experiments/quick.py:steps=200', {}, cells)
  assert sweep.archive.restorable(archive, same) == [c.name for c in cells[:1]]
  gone = str(tmp_path / 'gone')  # an experiment that no longer loads: its spec decides
  sweep.write_index(gone, 'experiments/gone.py', {}, cells)
  with pytest.raises(ValueError, match='an archive keeps one sweep'):
    sweep.archive.restorable(archive, gone)
  # Where the data lives is not part of the sweep: another machine's archive restores.
  elsewhere = {'config': 'experiments/quick.py', 'overrides': {'data.data_dir': '/b'}}
  assert sweep.archive.restorable(archive, str(tmp_path / 'b'), elsewhere) == [cells[0].name]
  # A live lock (a sweep starting that cell) keeps restore away from it.
  assert sweep.acquire_lock(os.path.join(str(tmp_path / 'locked'), cells[0].name))
  assert sweep.archive.restore(archive, str(tmp_path / 'locked')) == 0

  # A finished cell whose archived twin ran another config is refused, naming both.
  pathlib.Path(done, 'config.json').write_text('{"num_steps": 7}')
  with pytest.raises(ValueError, match='ran different configs.*num_steps'):
    sweep.archive.save(root, archive)


def test_refuse_stale_lists_every_cell_that_ran_another_config(tmp_path):
  """launch.sweep and launch.archive refuse cells of a changed experiment through this."""
  from experiments import quick

  config = quick.get_config()
  checks = []
  for name, steps in (('same', config.num_steps), ('changed', 7), ('new', None)):
    workdir = str(tmp_path / name)
    if steps is not None:
      os.makedirs(workdir)
      ran = config.copy_and_resolve_references()
      ran.num_steps = steps
      workdir_lib.write_config(ran, workdir)
    checks.append((name, config, workdir))
  sweep.cells.refuse_stale(checks[:1] + checks[2:], 'ROOT')  # nothing stale: no error
  with pytest.raises(ValueError, match=r'1 cell\(s\) under ROOT .*another --archive\)') as e:
    sweep.cells.refuse_stale(checks, 'ROOT', archive='ARCH')
  assert str(e.value).endswith(f'\nchanged: num_steps: 7 -> {config.num_steps}')


@pytest.mark.slow
def test_slurm_backend_writes_a_well_formed_array(tmp_path, tiny_dir):
  bin_dir = tmp_path / 'bin'  # a fake sbatch that records what it was asked to submit
  bin_dir.mkdir()
  (bin_dir / 'sbatch').write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/submitted\necho Submitted\n')
  (bin_dir / 'sbatch').chmod(stat.S_IRWXU)
  root = tmp_path / 'root'
  spec = 'experiments/decoder_ablation.py:steps=2,seeds=1,decoders=classic'
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.sweep',
      f'--config={spec}',
      f'--root={root}',
      '--backend=slurm',
      '--sbatch_options=--partition=cpu,--time=1:00:00',
      '--config.data.variant=res64_tiny',
      f'--config.data.data_dir={tiny_dir}',
    ],
    cwd=sweep.REPO,
    capture_output=True,
    text=True,
    env={**os.environ, 'PATH': f'{bin_dir}:{os.environ["PATH"]}'},
  )
  assert out.returncode == 0, out.stderr[-3000:]
  script_path = root / 'sweep.sbatch'
  assert (tmp_path / 'submitted').read_text().strip() == str(script_path)
  script = script_path.read_text()
  lines = script.splitlines()
  assert lines[0] == '#!/bin/bash'
  first_command = next(i for i, l in enumerate(lines) if l and not l.startswith('#'))
  directives = [l for l in lines if l.startswith('#SBATCH')]
  assert all(lines.index(d) < first_command for d in directives)  # sbatch reads them only there
  assert '#SBATCH --array=0-23' in directives and '#SBATCH --partition=cpu' in directives
  assert f'#SBATCH --output={root}/slurm/%A_%a.out' in directives and (root / 'slurm').is_dir()
  subprocess.run(['bash', '-n', str(script_path)], check=True)
  cells = sweep.plan(spec, [{'seed': 0}, {'seed': 1}], str(root))
  assert '#SBATCH --array=0-1%4\n' in sweep.slurm_script(cells, str(root), 'x', at_once=4)

  index = json.loads((root / 'cells.json').read_text())
  assert index['config'] == spec and index['overrides']['data.variant'] == 'res64_tiny'
  assert [c['index'] for c in index['cells']] == list(range(24))
  branches = {}
  for line in lines:
    if line.strip()[:1].isdigit():
      number, rest = line.strip().split(') ', 1)
      branches[int(number)] = shlex.split(rest.removesuffix(';;'))
  assert sorted(branches) == list(range(24))
  for cell in index['cells']:
    words = branches[cell['task']]
    command = words[words.index('run_cell') + 2 :]
    assert command == shlex.split(cell['command'])
    assert f'--workdir={root}/{cell["name"]}' in command
    assert f'--config.data.data_dir={tiny_dir}' in command
    assert words[words.index('run_cell') + 1] == f'{root}/{cell["name"]}/log.txt'
    for key, value in cell['overrides'].items():
      assert f'--config.{key}={value}' in command


TINY_EXPERIMENT = """\
from experiments import quick
from research import sweep


def get_config(arg=None):
  c = quick.get_config(arg)
  c.data.variant = 'res64_tiny'
  c.data.image_size = 32
  c.model.options = {'depth': 2}
  c.model.width = 4
  c.batch_size = 8
  c.eval_batch_size = 8
  c.log_every = 1
  return c


def get_sweep(arg=None):
  return (sweep.product(sweep.axis('model.upsampler', ['nearest']), sweep.axis('seed', [0, 1]))
          + [{'model.upsampler': 'bogus', 'seed': 0}])
"""


@pytest.mark.slow
def test_local_sweep_skips_finished_runs_partial_and_reports_failures(tmp_path, tiny_dir):
  """One real 2-step cell; the finished one is hand-made; 'bogus' fails inside its cell."""
  experiment = tmp_path / 'tiny.py'
  experiment.write_text(TINY_EXPERIMENT)
  spec, root = f'{experiment}:steps=2', tmp_path / 'root'
  common = {'data.data_dir': str(tiny_dir)}
  cells = sweep.plan(spec, sweep.get_sweep(spec), str(root), common)
  done, partial, failing = cells
  assert [c.name for c in cells] == [
    'upsampler=nearest,seed=0',
    'upsampler=nearest,seed=1',
    'upsampler=bogus,seed=0',
  ]

  def cell_config(cell, arg='steps=2'):
    return sweep.apply_overrides(
      sweep.load_experiment(str(experiment)).get_config(arg), {**common, **cell.overrides}
    )

  _finished(done.workdir)
  workdir_lib.write_config(cell_config(done), done.workdir)
  before = open(os.path.join(done.workdir, 'final.json')).read()
  # A partial cell as a killed sweep leaves it: its config.json, and the lock of a dead process.
  os.makedirs(partial.workdir)
  workdir_lib.write_config(cell_config(partial), partial.workdir)
  with open(os.path.join(partial.workdir, sweep.LOCK), 'w') as f:
    json.dump({'pid': _dead_pid(), 'host': socket.gethostname()}, f)

  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.sweep',
      f'--config={spec}',
      f'--root={root}',
      '--parallel=2',
      f'--config.data.data_dir={tiny_dir}',
      f'--archive={tmp_path / "archive"}',
    ],
    cwd=sweep.REPO,
    capture_output=True,
    text=True,
  )
  assert out.returncode == 1, out.stderr[-3000:]
  assert 'Archived 2 newly finished cells' in out.stdout
  assert sweep.status(str(tmp_path / 'archive' / partial.name)) == 'done'
  assert '1 of 3 cells already done; running 2' in out.stdout
  assert '3 cells: 2 done, 0 running, 0 partial, 1 missing.' in out.stdout
  report = out.stdout.split('1 cell(s) failed:')[1]
  assert 'upsampler=bogus,seed=0: exit code 2' in report  # a configuration error: one line, exit 2
  assert "Unknown upsampler 'bogus'" in report  # the tail of its log
  assert open(os.path.join(done.workdir, 'final.json')).read() == before
  assert not os.path.exists(os.path.join(done.workdir, sweep.LOG))  # not even started
  final = json.load(open(os.path.join(partial.workdir, 'final.json')))
  assert final['step'] == 2
  assert 'launch.train' in open(os.path.join(partial.workdir, sweep.LOG)).read()
  # The failed cell did not claim its workdir: fixing the typo is enough to run it.
  assert [sweep.status(c.workdir) for c in cells] == ['done', 'done', 'missing']
  assert not any(os.path.exists(os.path.join(c.workdir, sweep.LOCK)) for c in cells)
  assert [c['name'] for c in sweep.read_index(str(root))['cells']] == [c.name for c in cells]

  # The experiment changed (3 steps): finished cells of the old one are refused, not reused.
  changed = subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.sweep',
      f'--config={experiment}:steps=3',
      f'--root={root}',
      f'--config.data.data_dir={tiny_dir}',
      '--dry_run',
    ],
    cwd=sweep.REPO,
    capture_output=True,
    text=True,
  )
  assert changed.returncode != 0
  assert 'hold runs of a different config' in changed.stderr
  assert 'upsampler=nearest,seed=0:' in changed.stderr and 'num_steps: 2 -> 3' in changed.stderr
  assert open(os.path.join(done.workdir, 'final.json')).read() == before


@pytest.mark.slow
def test_local_sweep_trains_seeds_together(tmp_path, tiny_dir):
  experiment = tmp_path / 'tiny.py'
  experiment.write_text(TINY_EXPERIMENT)
  root = tmp_path / 'root'
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.sweep',
      f'--config={experiment}:steps=2',
      f'--root={root}',
      '--config.seeds_together=2',
      f'--config.data.data_dir={tiny_dir}',
    ],
    cwd=sweep.REPO,
    capture_output=True,
    text=True,
  )
  assert out.returncode == 1, out.stderr[-3000:]  # the 'bogus' cell fails alone
  assert 'running 3 in 2 processes' in out.stdout
  assert '3 cells: 2 done, 0 running, 0 partial, 1 missing.' in out.stdout
  seed0, seed1 = root / 'upsampler=nearest,seed=0', root / 'upsampler=nearest,seed=1'
  assert 'Trained together with upsampler=nearest,seed=0' in (seed1 / sweep.LOG).read_text()
  assert '--seeds=0,1' in (seed0 / sweep.LOG).read_text()
  for seed, workdir in [(0, seed0), (1, seed1)]:
    final = json.loads((workdir / 'final.json').read_text())
    assert final['cost']['seeds_together'] == 2
    assert json.loads((workdir / 'config.json').read_text())['seed'] == seed


def test_progress_lines_from_the_cells_metrics(tmp_path):
  cells = sweep.plan('experiments/quick.py', [{'seed': s} for s in range(3)], str(tmp_path))
  for cell in cells:
    os.makedirs(cell.workdir)
    with open(os.path.join(cell.workdir, 'config.json'), 'w') as f:
      json.dump({'num_steps': 100}, f)
  with open(os.path.join(cells[0].workdir, 'metrics.jsonl'), 'w') as f:
    for step in (25, 50):
      f.write(
        json.dumps({'step': step, 'train/loss': 1.0 / step, 'train/step_seconds': 0.5}) + '\n'
      )
  now = 1000.0
  running = {0: (cells[0], now - 30), 1: (cells[1], now - 5)}
  text = sweep.progress.lines(running, [], 3, 2, now)
  assert text[0] == '  seed=0: step 50/100, loss 0.020, 0m25s left'  # 50 steps × 0.5 s
  assert text[1] == '  seed=1: starting (0m05s)'
  # No cell finished yet: a cell takes what the running one projects (30 + 25 s); 3 to go, 2
  # at a time.
  assert text[2] == '  sweep: 3 cell(s) to finish, about 1m22s left'
  assert sweep.progress.lines({}, [60.0, 120.0], 2, 1, now)[-1] == (
    '  sweep: 2 cell(s) to finish, about 3m00s left'
  )
