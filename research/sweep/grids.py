"""Grids: the cells of a sweep as lists of {dotted config key: value} dicts."""

import itertools


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
        raise ValueError(
          f'Axes of a product set the same key(s) {shared}; combine them with zip_ or drop one.'
        )
      cell.update(part)
    cells.append(cell)
  return cells


def zip_(*axes) -> list[dict]:
  """Cell i of every axis merged: axes move together (e.g. a learning rate per width)."""
  sizes = [len(a) for a in axes]
  if len(set(sizes)) > 1:
    raise ValueError(f'zip_ needs axes of equal length; got lengths {sizes}.')
  return [product(*[[part] for part in parts])[0] for parts in zip(*axes)]
