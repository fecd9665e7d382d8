"""A sweep's plan: its cells with their configs, workdirs and commands, the processes that
run them (seeds trained together share one), and the index of a sweep root (cells.json)."""

import copy
import dataclasses
import importlib.util
import json
import os
import pathlib
import shlex
import sys

import ml_collections

from research import workdir as workdir_lib
from research.sweep import naming

REPO = pathlib.Path(__file__).resolve().parents[2]  # cells run here, so `-m launch.train` resolves
INDEX = 'cells.json'
LOG = 'log.txt'


def apply_overrides(config, overrides: dict):
  """A copy of `config` with `overrides` set; unknown keys and wrong types are refused."""
  config = copy.deepcopy(config)
  for key, value in overrides.items():
    parts, node = key.split('.'), config
    for depth, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        where = '.'.join(parts[:depth]) or 'the config'
        valid = (
          ', '.join(sorted(node.keys()))
          if isinstance(node, ml_collections.ConfigDict)
          else f'none, it is a {type(node).__name__}'
        )
        raise ValueError(
          f'Override {key}={value!r}: {where} has no field {part!r}; its fields: {valid}.'
        )
      if depth < len(parts) - 1:
        node = node[part]
    try:
      node[parts[-1]] = value
    except (TypeError, ValueError) as e:
      raise ValueError(f'Override {key}={value!r} does not fit the config: {e}') from None
  return config


def refuse_stale(checks, root: str, archive: str | None = None):
  """Raises, listing them, when any (name, config, workdir) of `checks` holds a run of
  another config (research.workdir.check_config): a finished one is skipped, so its results
  would be mixed in with the experiment as it is now."""
  stale = []
  for name, config, workdir in checks:
    try:
      workdir_lib.check_config(config, workdir)
    except ValueError as e:
      stale.append(f'{name}: {str(e).split("Differences:")[1].strip()}')
  if stale:
    raise ValueError(
      f'{len(stale)} cell(s) under {root} hold runs of a different config '
      '(the experiment changed since they ran), so their results would be '
      'mixed in: delete them or use another --root'
      + (
        f' (those restored from {archive} are there too: use another --archive)' if archive else ''
      )
      + '.\n'
      + '\n'.join(stale[:10])
    )


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
    raise ValueError(
      f'{path} defines no get_sweep(arg); add one returning a list of cells, '
      'e.g. grids.product(grids.axis("model.upsampler", [...]), '
      'grids.axis("seed", range(3))) with research.sweep.grids.'
    )
  cells = [dict(c) for c in module.get_sweep(arg)]
  if not cells:
    raise ValueError(f'{spec}: get_sweep returned no cells.')
  return cells


def portable_spec(spec: str) -> str:
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
  templates = {
    n.replace(f'{short_seed}={s}', f'{short_seed}={{seed}}') for n, s in zip(names, seeds)
  }
  if len(templates) != 1:
    return None
  template = templates.pop()
  fits = all(template.replace('{seed}', str(s)) == n for n, s in zip(names, seeds))
  return template if fits and '{seed}' in template else None


def seed_groups(
  cells: list[dict], names: list[str], seeds_together: int
) -> list[tuple[list[int], str]]:
  """The cells to train in one program, each group with its workdir name: cells equal but
  for an integer `seed`, in chunks of at most `seeds_together`, whose names differ only in
  the seed, named by the template with {seed}; every other cell alone, under its own name."""
  if seeds_together <= 1:
    return [([i], name) for i, name in enumerate(names)]
  short_seed = naming.short_keys(k for cell in cells for k in cell).get('seed')
  rest = {}
  for i, cell in enumerate(cells):
    if isinstance(cell.get('seed'), int) and short_seed:
      key = json.dumps({k: v for k, v in cell.items() if k != 'seed'}, sort_keys=True, default=repr)
      rest.setdefault(key, []).append(i)
    else:
      rest[f'#{i}'] = [i]
  groups = []
  for members in rest.values():
    for start in range(0, len(members), seeds_together):
      chunk = members[start : start + seeds_together]
      seeds = [cells[i].get('seed') for i in chunk]
      template = len(chunk) > 1 and _seed_template([names[i] for i in chunk], seeds, short_seed)
      if template:
        groups.append((chunk, template))
      else:
        groups.extend(([i], names[i]) for i in chunk)
  return sorted(groups)


def plan(
  spec: str,
  cells: list[dict],
  root: str,
  common: dict | None = None,
  python: str = sys.executable,
  seeds_together: int = 1,
) -> list[Cell]:
  """The cells of a sweep with their workdirs under `root` and their launch.train commands.

  `common` overrides (the sweep's own --config.KEY=VALUE flags) apply to every cell. With
  `seeds_together` > 1, cells that differ only in `seed` share one command that trains
  them together (launch.train --seeds=... --workdir=ROOT/...seed={seed}...).
  """
  common = dict(common or {})
  spec, root = portable_spec(spec), os.path.abspath(root)
  names = naming.cell_names(cells)
  for overrides, name in zip(cells, names):
    shared = sorted(set(overrides) & set(common))
    if shared:
      raise ValueError(
        f'Cell {name!r} sets {shared}, which the command line overrides for every '
        'cell too; drop one of them.'
      )
  commands = {}
  for group, name in seed_groups(cells, names, seeds_together):
    overrides = dict(cells[group[0]])
    seeds = [cells[i]['seed'] for i in group] if len(group) > 1 else []
    if seeds:
      del overrides['seed']  # --seeds and the {seed} in the workdir name set it
    workdir = os.path.join(root, name)
    # No progress bar: log.txt would fill with carriage-return updates.
    command = (
      python,
      '-m',
      'launch.train',
      f'--config={spec}',
      f'--workdir={workdir}',
      *([f'--seeds={",".join(map(str, seeds))}'] if seeds else []),
      '--config.progress=False',
      *(f'--config.{k}={naming.flag_value(v)}' for k, v in {**common, **overrides}.items()),
    )
    commands.update({i: command for i in group})
  return [
    Cell(i, name, overrides, os.path.join(root, name), commands[i])
    for i, (overrides, name) in enumerate(zip(cells, names))
  ]


def select(cells: list[Cell], only: list[str]) -> list[Cell]:
  """The cells matching every `KEY=V1|V2|...` of `only`, for running some rows or seeds of
  a grid first. KEY is a grid key or its short form as in cell names (`upsampler`,
  `model.upsampler`); values are written as in cell names (naming.flag_value). Unknown
  keys and values that no cell has are refused, with what the grid holds."""
  keys = naming.short_keys(k for c in cells for k in c.overrides)
  by_name = {**{k: k for k in keys}, **{s: k for k, s in keys.items()}}
  for condition in only:
    name, sep, values = condition.partition('=')
    if not sep or not values or name not in by_name:
      raise ValueError(
        f"--only {condition!r}: want KEY=VALUE|VALUE..., KEY one of the grid's keys: "
        f'{", ".join(sorted(keys.values()))}.'
      )
    key, wanted = by_name[name], set(values.split('|'))
    present = {naming.flag_value(c.overrides[key]) for c in cells if key in c.overrides}
    if wanted - present:
      raise ValueError(
        f'--only {condition!r}: no cell has {name}={", ".join(sorted(wanted - present))}; '
        f'its values: {", ".join(sorted(present))}.'
      )
    cells = [c for c in cells if naming.flag_value(c.overrides.get(key)) in wanted]
  return cells


def jobs(cells: list[Cell]) -> list[list[Cell]]:
  """`cells` grouped into processes: cells whose seeds train together share one command."""
  by_command = {}
  for cell in cells:
    by_command.setdefault(cell.command, []).append(cell)
  return list(by_command.values())


def log_pointer(first: Cell) -> str:
  """The line in a seed's log.txt when its output goes to `first`'s (seeds trained together)."""
  return f'Trained together with {first.name}: see {os.path.join(first.workdir, LOG)}'


def read_index(root: str) -> dict:
  path = os.path.join(root, INDEX)
  if not os.path.exists(path):
    raise FileNotFoundError(
      f'{root} has no {INDEX}: it is not a sweep root, or its sweep has not '
      'been launched yet (python -m launch.sweep --config ... --root ROOT).'
    )
  with open(path) as f:
    return json.load(f)


def write_index(root: str, spec: str, common: dict, cells: list[Cell]):
  """ROOT/cells.json: the experiment and each cell's index, Slurm array task (cells whose
  seeds train together share one), name, overrides and command.

  A root holds one experiment: another config or other command-line overrides are
  refused, since their cells would not be comparable (and their names could collide).
  """
  task = {c.index: t for t, job in enumerate(jobs(cells)) for c in job}  # Slurm array index
  index = {
    'config': portable_spec(spec),
    'overrides': common,
    'cells': [
      {
        'index': c.index,
        'task': task[c.index],
        'name': c.name,
        'overrides': c.overrides,
        'command': shlex.join(c.command),
      }
      for c in cells
    ],
  }
  index = json.loads(json.dumps(index, default=repr))
  if os.path.exists(os.path.join(root, INDEX)):
    old = read_index(root)
    if (old['config'], old['overrides']) != (index['config'], index['overrides']):
      raise ValueError(
        f'{root} holds a sweep of {old["config"]} with overrides '
        f'{old["overrides"]}; this one is {index["config"]} with '
        f'{index["overrides"]}. Use another --root (a root holds one experiment).'
      )
  os.makedirs(root, exist_ok=True)
  workdir_lib.write_text_atomic(os.path.join(root, INDEX), json.dumps(index, indent=2) + '\n')
