"""What a local sweep shows while its cells train: each running cell's step, loss and time
left (from its metrics.jsonl), and the sweep's time left; on a terminal one line per running
cell, redrawn in place, elsewhere (a log file) a block every few minutes."""

import json
import os
import sys
import threading
import time


def cell_progress(workdir: str):
  """{'step', 'num_steps', 'loss', 'seconds_per_step'} of a cell's run so far, or None
  before its first logged step."""
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      num_steps = json.load(f)['num_steps']
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f if '"train/loss"' in line]
  except (OSError, ValueError, KeyError):
    return None
  if not records:
    return None
  last = records[-1]
  timed = [r['train/step_seconds'] for r in records if 'train/step_seconds' in r]
  return {
    'step': last['step'],
    'num_steps': num_steps,
    'loss': last['train/loss'],
    'seconds_per_step': timed[-1] if timed else None,
  }


def duration(seconds) -> str:
  if seconds is None:
    return '?'
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{secs:02d}s'


def lines(running: dict, done_seconds: list, remaining: int, parallel: int, now: float) -> list:
  """One line per running cell ({index: (cell, start time)}) and one for the sweep: `remaining`
  cells
  not finished, running ones included; a cell's length is estimated from the finished ones
  (`done_seconds`), else from the running ones' rates."""
  out, projected = [], []
  for _, (cell, started) in sorted(running.items()):
    p = cell_progress(cell.workdir)
    if p is None:
      out.append(f'  {cell.name}: starting ({duration(now - started)})')
      continue
    left = (p['num_steps'] - p['step']) * p['seconds_per_step'] if p['seconds_per_step'] else None
    if left is not None:
      projected.append(now - started + left)
    out.append(
      f'  {cell.name}: step {p["step"]}/{p["num_steps"]}, loss {p["loss"]:.3f}, '
      f'{duration(left)} left'
    )
  per_cell = (
    sum(done_seconds) / len(done_seconds)
    if done_seconds
    else sum(projected) / len(projected)
    if projected
    else None
  )
  total = None if per_cell is None else per_cell * remaining / max(1, min(parallel, remaining))
  out.append(f'  sweep: {remaining} cell(s) to finish, about {duration(total)} left')
  return out


class Monitor(threading.Thread):
  """Shows `lines` for the cells in `running` until stopped (a daemon thread)."""

  def __init__(
    self,
    running: dict,
    finished: list,
    total: int,
    parallel: int,
    stream=sys.stdout,
    interval: float = 2.0,
    plain_interval: float = 300.0,
  ):
    super().__init__(daemon=True)
    self.running, self.finished, self.total, self.parallel = running, finished, total, parallel
    self.stream, self.tty = stream, stream.isatty()
    self.interval = interval if self.tty else plain_interval
    self.stop_event, self.drawn, self.lock = threading.Event(), 0, threading.Lock()

  def run(self):
    while not self.stop_event.wait(self.interval):
      self.draw()

  def draw(self):
    with self.lock:
      remaining = self.total - len(self.finished)
      block = lines(
        dict(self.running),
        [r for r in self.finished if r is not None],
        remaining,
        self.parallel,
        time.time(),
      )
      if self.tty:  # move up over the last block and redraw it
        self.stream.write(f'\x1b[{self.drawn}F' if self.drawn else '')
        self.stream.write(''.join(f'\x1b[K{line}\n' for line in block))
        self.drawn = len(block)
      else:
        self.stream.write('\n'.join(block) + '\n')
      self.stream.flush()

  def say(self, text: str):
    """A line above the progress block (a cell finished, ...)."""
    with self.lock:
      if self.tty and self.drawn:
        self.stream.write(f'\x1b[{self.drawn}F\x1b[J')
        self.drawn = 0
      self.stream.write(text + '\n')
      self.stream.flush()

  def stop(self):
    self.stop_event.set()
    self.join()
    if self.tty and self.drawn:
      with self.lock:
        self.stream.write(f'\x1b[{self.drawn}F\x1b[J')
        self.stream.flush()
