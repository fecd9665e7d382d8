"""The local backend: a sweep's processes here, a few at a time, each cell's output in its
log.txt, and a summary that names the failures."""

import concurrent.futures
import dataclasses
import datetime
import os
import shlex
import subprocess
import threading
import time

from research.sweep import cells as cells_lib
from research.sweep import locks
from research.sweep import progress


@dataclasses.dataclass(frozen=True)
class Result:
  cell: cells_lib.Cell
  outcome: str  # 'done', 'failed' or 'running' (elsewhere: skipped)
  detail: str = ''
  seconds: float | None = None  # how long its process ran


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


def _take_locks(job: list[cells_lib.Cell]) -> tuple[list[cells_lib.Cell], list[cells_lib.Cell]]:
  """`job`'s cells split into (locked now by this process, held by another live one).

  All or none first: another sweep may be taking the same group's locks one by one, and
  the group should not end up split between two processes. Only if some are still held
  after a second try are the free ones taken alone.
  """
  for attempt in range(2):
    taken = [c for c in job if locks.acquire_lock(c.workdir)]
    if len(taken) == len(job) or attempt:
      return taken, [c for c in job if c not in taken]
    for cell in taken:
      locks.release_lock(cell.workdir)
    time.sleep(1)


def run_job(
  job: list[cells_lib.Cell], stop: threading.Event | None = None, running: dict | None = None
) -> list[Result]:
  """Trains one process's cells (one, or seeds trained together) under their locks,
  appending its output to the first cell's log.txt (the others' logs point there).

  Seeds whose lock another live process holds are left to it; the rest train without them.
  `running` ({cell index: (cell, start time)}) holds the cells while their process runs.
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
      return results + [
        Result(c, 'failed', 'not started: the sweep was interrupted') for c in taken
      ]
    start = time.time()
    header = (
      f'\n=== {datetime.datetime.now().isoformat(timespec="seconds")} {shlex.join(command)}\n'
    )
    for cell in taken[1:]:
      with open(os.path.join(cell.workdir, cells_lib.LOG), 'a') as log:
        log.write(header + cells_lib.log_pointer(taken[0]) + '\n')
    with open(os.path.join(taken[0].workdir, cells_lib.LOG), 'a') as log:
      log.write(header)
      log.flush()
      proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cells_lib.REPO)
      for cell in taken:
        locks.hand_lock_to(cell.workdir, proc.pid)
        if running is not None:
          running[cell.index] = (cell, start)
      returncode = proc.wait()
    seconds = time.time() - start
  except OSError as e:  # the job could not even start (disk full, ...): its failure alone
    return results + [Result(c, 'failed', f'could not run: {e}') for c in taken]
  finally:
    for cell in taken:
      locks.release_lock(cell.workdir)
      if running is not None:
        running.pop(cell.index, None)
  for cell in taken:
    if locks.status(cell.workdir) == 'done':
      results.append(Result(cell, 'done', f'{seconds:.0f} s', seconds))
    elif returncode != 0:
      results.append(Result(cell, 'failed', f'exit code {returncode} after {seconds:.0f} s'))
    else:
      results.append(Result(cell, 'failed', 'exited without writing final.json'))
  return results


def run_local(cells: list[cells_lib.Cell], parallel: int = 1) -> list[Result]:
  """Runs `cells` in up to `parallel` processes at a time; one failure stops no other.

  On KeyboardInterrupt no further process starts; running ones get the terminal's SIGINT too.
  """
  if parallel < 1:
    raise ValueError(f'parallel must be >= 1; got {parallel}.')
  stop = threading.Event()
  results, running, durations = [], {}, []
  monitor = progress.Monitor(running, durations, len(cells), parallel)
  monitor.start()
  with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
    futures = [pool.submit(run_job, job, stop, running) for job in cells_lib.jobs(cells)]
    try:
      for future in concurrent.futures.as_completed(futures):
        for result in future.result():
          results.append(result)
          durations.append(result.seconds if result.outcome == 'done' else None)
          monitor.say(
            f'[{len(results)}/{len(cells)}] {result.outcome:<7} {result.cell.name} '
            f'({result.detail})'
          )
    except KeyboardInterrupt:
      stop.set()
      pool.shutdown(wait=False, cancel_futures=True)
      monitor.say('Interrupted: starting no further cells; waiting for the running ones to stop.')
      raise
    finally:
      monitor.stop()
  return sorted(results, key=lambda r: r.cell.index)


def summary(cells: list[cells_lib.Cell], results: list[Result], tail_lines: int = 30) -> str:
  """What the sweep has now, and for each failed cell the end of its log."""
  lines = [locks.counts(cells)]
  for r in results:
    if r.outcome == 'running':
      lines.append(f'Not run here, running elsewhere: {r.cell.name}')
  failed = [r for r in results if r.outcome == 'failed']
  if failed:
    lines.append(f'{len(failed)} cell(s) failed:')
  for r in failed:
    log = os.path.join(r.cell.workdir, cells_lib.LOG)
    lines.append(f'--- {r.cell.name}: {r.detail}; last {tail_lines} lines of {log}:')
    lines.append(tail(log, tail_lines).rstrip('\n'))
  return '\n'.join(lines)
