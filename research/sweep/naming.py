"""Cell names: short, readable, filesystem-safe directory names from a cell's overrides."""

import hashlib
import json
import re

_UNSAFE = re.compile(r'[^A-Za-z0-9._+-]')  # '=' and ',' separate the parts of a name
_MAX_NAME = 200  # below the usual 255-byte limit on a file name, with room for the hash


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
      raise ValueError(
        f'Cells {j} and {i} get the same workdir name {name!r}: '
        f'{cells[j]} vs {cells[i]}. Each cell of a sweep must be distinct.'
      )
  return names
