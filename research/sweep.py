"""Sweeps: a grid of config overrides, one workdir per cell, run locally or as a Slurm array.

An experiment file defines its grid next to `get_config(arg)` as `get_sweep(arg)`, a
list of cells, each a dict of dotted config keys -> values:

  def get_sweep(arg=None):
    return sweep.product(sweep.axis('model.arch', ['fcn8s', 'unet']),
                         sweep.axis('model.upsampler', ['nearest', 'transpose_conv']),
                         sweep.axis('seed', range(3)))

Every cell is one `python -m launch.train --config FILE[:ARG] --workdir ROOT/NAME
--config.KEY=VALUE ...` process, so that a crash stays inside its cell (with
config.seeds_together > 1, the seeds of a cell share one process). launch.train
resumes a partial workdir and returns at once for a finished one, hence running a sweep
again after a crash or a kill finishes it without redoing work.
"""
import concurrent.futures
import copy
import dataclasses
import datetime
import hashlib
import importlib.util
import itertools
import json
import os
import pathlib
import re
import shlex
import socket
import subprocess
import sys
import threading
import time

import ml_collections

from research import workdir as workdir_lib

REPO = pathlib.Path(__file__).resolve().parents[1]  # cells run here, so `-m launch.train` resolves
INDEX = 'cells.json'
LOCK = 'sweep.lock'
LOG = 'log.txt'
STATUSES = ('done', 'running', 'partial', 'missing')
_UNSAFE = re.compile(r'[^A-Za-z0-9._+-]')  # '=' and ',' separate the parts of a name
_MAX_NAME = 200  # below the usual 255-byte limit on a file name, with room for the hash


# Grids.


def axis(key: str, values) -> list[dict]:
  """One config key taking each of `values`: [{key: v0}, {key: v1}, ...]."""
  values = list(values)
  if not values:
    raise ValueError(f'Axis {key!r} has no values.')
  return [{key: v} for v in values]


def product(*axes) -> list[dict]:
  """Every combination of one cell of each axis; the last axis varies fastest."""
  cells = []
  for parts in itertools.product(*axes):
    cell = {}
    for part in parts:
      shared = sorted(set(cell) & set(part))
      if shared:
        raise ValueError(f'Axes of a product set the same key(s) {shared}; combine them with '
                         'zip_ or drop one.')
      cell.update(part)
    cells.append(cell)
  return cells


def zip_(*axes) -> list[dict]:
  """Cell i of every axis merged: axes move together (e.g. a learning rate per width)."""
  sizes = [len(a) for a in axes]
  if len(set(sizes)) > 1:
    raise ValueError(f'zip_ needs axes of equal length; got lengths {sizes}.')
  return [product(*[[part] for part in parts])[0] for parts in zip(*axes)]


# Names.


def short_keys(keys) -> dict[str, str]:
  """Dotted key -> its last component, or the full key where two keys share one."""
  keys = list(dict.fromkeys(keys))
  last = [k.rsplit('.', 1)[-1] for k in keys]
  return {k: k if last.count(s) > 1 else s for k, s in zip(keys, last)}


def safe(text: str) -> str:
  """`text` with every character outside [A-Za-z0-9._+-] replaced by '_'."""
  return _UNSAFE.sub('_', text)


def flag_value(value) -> str:
  """`value` as ml_collections' config_flags parse it back: strings as they are, the rest
  as Python literals (numbers, bools, None, tuples, dicts). Names spell values so too."""
  return value if isinstance(value, str) else repr(value)


def cell_names(cells) -> list[str]:
  """Workdir names: 'arch=unet,upsampler=nearest,seed=0', stable across runs.

  A name depends only on its cell and on which keys the sweep uses (for the short form),
  not on the other cells' values, so growing a grid keeps the existing names. Characters
  outside [A-Za-z0-9._+-] become '_'; such lossy or over-long names get a hash of the
  exact cell appended, so that names stay unique.
  """
  short = short_keys(k for cell in cells for k in cell)
  names = []
  for cell in cells:
    raw = ','.join(f'{short[k]}={flag_value(v)}' for k, v in cell.items()) or 'default'
    name = ','.join(f'{safe(short[k])}={safe(flag_value(v))}' for k, v in cell.items()) or 'default'
    if name != raw or len(name) > _MAX_NAME:
      # The seed is left out of the hash (its value is in the name), so that the names of a
      # cell's seeds differ only there and the seeds can train together (seed_groups).
      rest = {k: v for k, v in cell.items() if k != 'seed'}
      digest = hashlib.sha1(json.dumps(rest, sort_keys=True, default=repr).encode()).hexdigest()
      name = f'{name[:_MAX_NAME]}-{digest[:8]}'
    names.append(name)
  seen = {}
  for i, name in enumerate(names):
    j = seen.setdefault(name.lower(), i)  # lower(): case-insensitive file systems
    if j != i:
      raise ValueError(f'Cells {j} and {i} get the same workdir name {name!r}: '
                       f'{cells[j]} vs {cells[i]}. Each cell of a sweep must be distinct.')
  return names


# Configs and commands.


def apply_overrides(config, overrides: dict):
  """A copy of `config` with `overrides` set; unknown keys and wrong types are refused."""
  config = copy.deepcopy(config)
  for key, value in overrides.items():
    parts, node = key.split('.'), config
    for depth, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        where = '.'.join(parts[:depth]) or 'the config'
        valid = (', '.join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict)
                 else f'none, it is a {type(node).__name__}')
        raise ValueError(f'Override {key}={value!r}: {where} has no field {part!r}; '
                         f'its fields: {valid}.')
      if depth < len(parts) - 1:
        node = node[part]
    try:
      node[parts[-1]] = value
    except (TypeError, ValueError) as e:
      raise ValueError(f'Override {key}={value!r} does not fit the config: {e}') from None
  return config


def split_spec(spec: str) -> tuple[str, str | None]:
  """'file.py:arg' -> ('file.py', 'arg'); the argument is optional, as for config_flags."""
  path, _, arg = spec.partition(':')
  return path, arg or None


def load_experiment(path: str):
  """The experiment module at `path` (imported from the file, as config_flags does)."""
  spec = importlib.util.spec_from_file_location(f'experiment_{pathlib.Path(path).stem}', path)
  if spec is None or not os.path.exists(path):
    raise FileNotFoundError(f'No experiment file {path!r}.')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_sweep(spec: str) -> list[dict]:
  """The cells of experiment `spec` ('file.py[:arg]'), from its `get_sweep(arg)`."""
  path, arg = split_spec(spec)
  module = load_experiment(path)
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'{path} defines no get_sweep(arg); add one returning a list of cells, '
                     'e.g. sweep.product(sweep.axis("model.upsampler", [...]), '
                     'sweep.axis("seed", range(3))).')
  cells = [dict(c) for c in module.get_sweep(arg)]
  if not cells:
    raise ValueError(f'{spec}: get_sweep returned no cells.')
  return cells


def _portable_spec(spec: str) -> str:
  """The config path relative to the repo when inside it (cells run from the repo root)."""
  path, arg = split_spec(spec)
  path = os.path.abspath(path)
  if pathlib.Path(path).is_relative_to(REPO):
    path = os.path.relpath(path, REPO)
  return path if arg is None else f'{path}:{arg}'


@dataclasses.dataclass(frozen=True)
class Cell:
  """One run of a sweep: its overrides, its workdir and the command that trains it."""
  index: int
  name: str
  overrides: dict
  workdir: str
  command: tuple[str, ...]


def _seed_template(names: list[str], seeds: list, short_seed: str) -> str | None:
  """The workdir name with {seed} where the seed goes, if all of `names` fit it."""
  templates = {n.replace(f'{short_seed}={s}', f'{short_seed}={{seed}}') for n, s in zip(names, seeds)}
  if len(templates) != 1:
    return None
  template = templates.pop()
  fits = all(template.replace('{seed}', str(s)) == n for n, s in zip(names, seeds))
  return template if fits and '{seed}' in template else None


def seed_groups(cells: list[dict], names: list[str],
                seeds_together: int) -> list[tuple[list[int], str]]:
  """The cells to train in one program, each group with its workdir name: cells equal but
  for an integer `seed`, in chunks of at most `seeds_together`, whose names differ only in
  the seed, named by the template with {seed}; every other cell alone, under its own name."""
  if seeds_together <= 1:
    return [([i], name) for i, name in enumerate(names)]
  short_seed = short_keys(k for cell in cells for k in cell).get('seed')
  rest = {}
  for i, cell in enumerate(cells):
    if isinstance(cell.get('seed'), int) and short_seed:
      key = json.dumps({k: v for k, v in cell.items() if k != 'seed'}, sort_keys=True,
                       default=repr)
      rest.setdefault(key, []).append(i)
    else:
      rest[f'#{i}'] = [i]
  groups = []
  for members in rest.values():
    for start in range(0, len(members), seeds_together):
      chunk = members[start:start + seeds_together]
      seeds = [cells[i].get('seed') for i in chunk]
      template = len(chunk) > 1 and _seed_template([names[i] for i in chunk], seeds, short_seed)
      if template:
        groups.append((chunk, template))
      else:
        groups.extend(([i], names[i]) for i in chunk)
  return sorted(groups)


def plan(spec: str, cells: list[dict], root: str, common: dict | None = None,
         python: str = sys.executable, seeds_together: int = 1) -> list[Cell]:
  """The cells of a sweep with their workdirs under `root` and their launch.train commands.

  `common` overrides (the sweep's own --config.KEY=VALUE flags) apply to every cell. With
  `seeds_together` > 1, cells that differ only in `seed` share one command that trains
  them together (launch.train --seeds=... --workdir=ROOT/...seed={seed}...).
  """
  common = dict(common or {})
  spec, root = _portable_spec(spec), os.path.abspath(root)
  names = cell_names(cells)
  for overrides, name in zip(cells, names):
    shared = sorted(set(overrides) & set(common))
    if shared:
      raise ValueError(f'Cell {name!r} sets {shared}, which the command line overrides for every '
                       'cell too; drop one of them.')
  commands = {}
  for group, name in seed_groups(cells, names, seeds_together):
    overrides = dict(cells[group[0]])
    seeds = [cells[i]['seed'] for i in group] if len(group) > 1 else []
    if seeds:
      del overrides['seed']  # --seeds and the {seed} in the workdir name set it
    workdir = os.path.join(root, name)
    # No progress bar: log.txt would fill with carriage-return updates.
    command = (python, '-m', 'launch.train', f'--config={spec}', f'--workdir={workdir}',
               *([f'--seeds={",".join(map(str, seeds))}'] if seeds else []),
               '--config.progress=False',
               *(f'--config.{k}={flag_value(v)}' for k, v in {**common, **overrides}.items()))
    commands.update({i: command for i in group})
  return [Cell(i, name, overrides, os.path.join(root, name), commands[i])
          for i, (overrides, name) in enumerate(zip(cells, names))]


def jobs(cells: list[Cell]) -> list[list[Cell]]:
  """`cells` grouped into processes: cells whose seeds train together share one command."""
  by_command = {}
  for cell in cells:
    by_command.setdefault(cell.command, []).append(cell)
  return list(by_command.values())


# Status and locks.


def _lock_alive(path: str) -> bool:
  """Whether the process named in lock file `path` runs; a lock from another host counts
  as live (its process cannot be checked from here)."""
  try:
    with open(path) as f:
      lock = json.load(f)
  except (FileNotFoundError, ValueError):
    return False
  if lock.get('host') != socket.gethostname():
    return True
  try:
    os.kill(int(lock['pid']), 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, and another user's
    pass
  return True


def status(workdir: str) -> str:
  """'done' (final.json), 'running' (a live lock), 'partial' (config or checkpoints) or
  'missing'."""
  if os.path.exists(os.path.join(workdir, 'final.json')):
    return 'done'
  if _lock_alive(os.path.join(workdir, LOCK)):
    return 'running'
  if any(os.path.exists(os.path.join(workdir, f)) for f in ('config.json', 'checkpoints')):
    return 'partial'
  return 'missing'


def _write_lock(path: str, pid: int):
  with open(path, 'w') as f:
    json.dump({'pid': pid, 'host': socket.gethostname()}, f)


def acquire_lock(workdir: str) -> bool:
  """Takes the cell's lock for this process; False if a live process holds it.

  The lock is created by a hard link of a complete file, so that it never exists half
  written; a lock whose process is gone (a killed sweep) is taken over.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK)
  tmp = f'{path}.{os.getpid()}.{threading.get_ident()}.tmp'
  _write_lock(tmp, os.getpid())
  try:
    for _ in range(2):
      try:
        os.link(tmp, path)
        return True
      except FileExistsError:
        if _lock_alive(path):
          return False
        try:
          os.remove(path)
        except FileNotFoundError:
          pass
    return False
  finally:
    os.remove(tmp)


def _hand_lock_to(workdir: str, pid: int):
  """Names the training process in the lock: it is the one that must be alive."""
  path = os.path.join(workdir, LOCK)
  tmp = f'{path}.{os.getpid()}.{threading.get_ident()}.tmp'
  _write_lock(tmp, pid)
  os.replace(tmp, path)


def release_lock(workdir: str):
  try:
    os.remove(os.path.join(workdir, LOCK))
  except FileNotFoundError:
    pass


def counts(cells: list[Cell]) -> str:
  statuses = [status(c.workdir) for c in cells]
  return f'{len(cells)} cells: ' + ', '.join(f'{statuses.count(s)} {s}' for s in STATUSES) + '.'


def format_status(cells: list[Cell]) -> str:
  """One line per cell with its status, then the counts."""
  width = len(str(len(cells) - 1))
  lines = [f'{c.index:>{width}}  {status(c.workdir):<7}  {c.name}' for c in cells]
  return '\n'.join(lines + [counts(cells)])


# Index of a sweep root.


def read_index(root: str) -> dict:
  path = os.path.join(root, INDEX)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{root} has no {INDEX}: it is not a sweep root, or its sweep has not '
                            'been launched yet (python -m launch.sweep --config ... --root ROOT).')
  with open(path) as f:
    return json.load(f)


def write_index(root: str, spec: str, common: dict, cells: list[Cell]):
  """ROOT/cells.json: the experiment and each cell's index, Slurm array task (cells whose
  seeds train together share one), name, overrides and command.

  A root holds one experiment: another config or other command-line overrides are
  refused, since their cells would not be comparable (and their names could collide).
  """
  task = {c.index: t for t, job in enumerate(jobs(cells)) for c in job}  # Slurm array index
  index = {'config': _portable_spec(spec), 'overrides': common,
           'cells': [{'index': c.index, 'task': task[c.index], 'name': c.name,
                      'overrides': c.overrides, 'command': shlex.join(c.command)} for c in cells]}
  index = json.loads(json.dumps(index, default=repr))
  if os.path.exists(os.path.join(root, INDEX)):
    old = read_index(root)
    if (old['config'], old['overrides']) != (index['config'], index['overrides']):
      raise ValueError(f'{root} holds a sweep of {old["config"]} with overrides '
                       f'{old["overrides"]}; this one is {index["config"]} with '
                       f'{index["overrides"]}. Use another --root (a root holds one experiment).')
  os.makedirs(root, exist_ok=True)
  workdir_lib.write_text_atomic(os.path.join(root, INDEX), json.dumps(index, indent=2) + '\n')


# Local backend.


@dataclasses.dataclass(frozen=True)
class Result:
  cell: Cell
  outcome: str  # 'done', 'failed' or 'running' (elsewhere: skipped)
  detail: str = ''


def tail(path: str, lines: int = 30) -> str:
  try:
    with open(path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])
  except FileNotFoundError:
    return '(no log)\n'


def _with_seeds(command: tuple[str, ...], seeds) -> tuple[str, ...]:
  """`command` (seeds trained together) with its --seeds flag narrowed to `seeds`."""
  flag = f'--seeds={",".join(map(str, seeds))}'
  narrowed = tuple(flag if word.startswith('--seeds=') else word for word in command)
  assert narrowed != command or flag in command, f'no --seeds flag to narrow in {command}'
  return narrowed


def _pointer(first: Cell) -> str:
  """The line in a seed's log.txt when its output goes to `first`'s (seeds trained together)."""
  return f'Trained together with {first.name}: see {os.path.join(first.workdir, LOG)}'


def _take_locks(job: list[Cell]) -> tuple[list[Cell], list[Cell]]:
  """`job`'s cells split into (locked now by this process, held by another live one).

  All or none first: another sweep may be taking the same group's locks one by one, and
  the group should not end up split between two processes. Only if some are still held
  after a second try are the free ones taken alone.
  """
  for attempt in range(2):
    taken = [c for c in job if acquire_lock(c.workdir)]
    if len(taken) == len(job) or attempt:
      return taken, [c for c in job if c not in taken]
    for cell in taken:
      release_lock(cell.workdir)
    time.sleep(1)


def run_job(job: list[Cell], stop: threading.Event | None = None) -> list[Result]:
  """Trains one process's cells (one, or seeds trained together) under their locks,
  appending its output to the first cell's log.txt (the others' logs point there).

  Seeds whose lock another live process holds are left to it; the rest train without them.
  """
  taken, busy = _take_locks(job)
  results = [Result(c, 'running', 'skipped: another live process holds its lock') for c in busy]
  if not taken:
    return results
  command = taken[0].command
  if any(word.startswith('--seeds=') for word in command):  # exactly the seeds locked here
    command = _with_seeds(command, [c.overrides['seed'] for c in taken])
  try:
    if stop is not None and stop.is_set():
      return results + [Result(c, 'failed', 'not started: the sweep was interrupted')
                        for c in taken]
    start = time.time()
    header = (f'\n=== {datetime.datetime.now().isoformat(timespec="seconds")} '
              f'{shlex.join(command)}\n')
    for cell in taken[1:]:
      with open(os.path.join(cell.workdir, LOG), 'a') as log:
        log.write(header + _pointer(taken[0]) + '\n')
    with open(os.path.join(taken[0].workdir, LOG), 'a') as log:
      log.write(header)
      log.flush()
      proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
      for cell in taken:
        _hand_lock_to(cell.workdir, proc.pid)
      returncode = proc.wait()
    seconds = time.time() - start
  except OSError as e:  # the job could not even start (disk full, ...): its failure alone
    return results + [Result(c, 'failed', f'could not run: {e}') for c in taken]
  finally:
    for cell in taken:
      release_lock(cell.workdir)
  for cell in taken:
    if status(cell.workdir) == 'done':
      results.append(Result(cell, 'done', f'{seconds:.0f} s'))
    elif returncode != 0:
      results.append(Result(cell, 'failed', f'exit code {returncode} after {seconds:.0f} s'))
    else:
      results.append(Result(cell, 'failed', 'exited without writing final.json'))
  return results


def run_local(cells: list[Cell], parallel: int = 1) -> list[Result]:
  """Runs `cells` in up to `parallel` processes at a time; one failure stops no other.

  On KeyboardInterrupt no further process starts; running ones get the terminal's SIGINT too.
  """
  if parallel < 1:
    raise ValueError(f'parallel must be >= 1; got {parallel}.')
  stop = threading.Event()
  results = []
  with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
    futures = [pool.submit(run_job, job, stop) for job in jobs(cells)]
    try:
      for future in concurrent.futures.as_completed(futures):
        for result in future.result():
          results.append(result)
          print(f'[{len(results)}/{len(cells)}] {result.outcome:<7} {result.cell.name} '
                f'({result.detail})', flush=True)
    except KeyboardInterrupt:
      stop.set()
      pool.shutdown(wait=False, cancel_futures=True)
      print('Interrupted: starting no further cells; waiting for the running ones to stop.',
            flush=True)
      raise
  return sorted(results, key=lambda r: r.cell.index)


def summary(cells: list[Cell], results: list[Result], tail_lines: int = 30) -> str:
  """What the sweep has now, and for each failed cell the end of its log."""
  lines = [counts(cells)]
  for r in results:
    if r.outcome == 'running':
      lines.append(f'Not run here, running elsewhere: {r.cell.name}')
  failed = [r for r in results if r.outcome == 'failed']
  if failed:
    lines.append(f'{len(failed)} cell(s) failed:')
  for r in failed:
    log = os.path.join(r.cell.workdir, LOG)
    lines.append(f'--- {r.cell.name}: {r.detail}; last {tail_lines} lines of {log}:')
    lines.append(tail(log, tail_lines).rstrip('\n'))
  return '\n'.join(lines)


# Slurm backend.


def slurm_script(cells: list[Cell], root: str, job_name: str, options=(),
                 at_once: int | None = None) -> str:
  """An sbatch job array with one task per process (a cell, or seeds trained together),
  each running its command, at most `at_once` tasks at a time if given.

  Slurm's own messages go to ROOT/slurm/%A_%a.out; the training output is appended to
  the (first) cell's log.txt as with the local backend.
  """
  root = os.path.abspath(root)
  tasks = jobs(cells)
  lines = ['#!/bin/bash',
           f'#SBATCH --job-name={job_name}',
           f'#SBATCH --array=0-{len(tasks) - 1}' + (f'%{at_once}' if at_once else ''),
           f'#SBATCH --output={os.path.join(root, "slurm", "%A_%a.out")}',
           *(f'#SBATCH {o}' for o in options),
           f'# One array task per cell or group of seeds; the index is {os.path.join(root, INDEX)}.',
           '# Resubmitting is safe: finished cells return at once, partial ones resume.',
           'set -euo pipefail',
           f'cd {shlex.quote(str(REPO))}',
           'case "$SLURM_ARRAY_TASK_ID" in']
  for task, job in enumerate(tasks):
    log = os.path.join(job[0].workdir, LOG)
    mkdirs = ' '.join(shlex.quote(c.workdir) for c in job)
    # Seeds trained together: each other seed's log.txt points to the first one's.
    pointers = ''.join(f'echo {shlex.quote(_pointer(job[0]))} >> '
                       f'{shlex.quote(os.path.join(c.workdir, LOG))} && ' for c in job[1:])
    lines.append(f'  {task}) mkdir -p {mkdirs} && {pointers}'
                 f'exec {shlex.join(job[0].command)} >> {shlex.quote(log)} 2>&1 ;;')
  lines += ['  *) echo "No task $SLURM_ARRAY_TASK_ID in this sweep." >&2; exit 2 ;;', 'esac', '']
  return '\n'.join(lines)
