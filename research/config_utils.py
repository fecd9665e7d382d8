"""Helpers for experiment configs: big_vision-style argument strings."""

import ast

import ml_collections


def parse_arg(arg, **defaults):
  """Parses 'key=value,key2=value2' (the part after ':' in a config path) over `defaults`.

  Values are Python literals where they parse as such ('3', '1e-3', 'True'), else strings.
  Unknown keys are refused with the list of valid ones, so a typo is not silently ignored.
  """
  result = ml_collections.ConfigDict(defaults)
  if not arg:
    return result
  for item in arg.split(','):
    if '=' not in item:
      raise ValueError(
        f'Config argument {item!r} is not of the form key=value; valid keys: '
        f'{", ".join(sorted(defaults))}.'
      )
    key, value = item.split('=', 1)
    if key not in defaults:
      raise ValueError(
        f'Unknown config argument {key!r}; valid keys: {", ".join(sorted(defaults))}.'
      )
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    result[key] = value
  return result
