"""Which cells are done, running or partial, and the per-workdir locks that keep two
processes off one cell."""

import json
import os
import socket
import threading

from research.sweep import cells as cells_lib

LOCK = 'sweep.lock'
STATUSES = ('done', 'running', 'partial', 'missing')


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


def hand_lock_to(workdir: str, pid: int):
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


def counts(cells: list[cells_lib.Cell]) -> str:
  statuses = [status(c.workdir) for c in cells]
  return f'{len(cells)} cells: ' + ', '.join(f'{statuses.count(s)} {s}' for s in STATUSES) + '.'


def format_status(cells: list[cells_lib.Cell]) -> str:
  """One line per cell with its status, then the counts."""
  width = len(str(len(cells) - 1))
  lines = [f'{c.index:>{width}}  {status(c.workdir):<7}  {c.name}' for c in cells]
  return '\n'.join(lines + [counts(cells)])
