"""The Slurm backend: a sweep as one sbatch job array, a task per process."""
import os
import shlex

from research.sweep import cells as cells_lib


def slurm_script(cells: list[cells_lib.Cell], root: str, job_name: str, options=(),
                 at_once: int | None = None) -> str:
  """An sbatch job array with one task per process (a cell, or seeds trained together),
  each running its command, at most `at_once` tasks at a time if given.

  Slurm's own messages go to ROOT/slurm/%A_%a.out; the training output is appended to
  the (first) cell's log.txt as with the local backend.
  """
  root = os.path.abspath(root)
  tasks = cells_lib.jobs(cells)
  lines = ['#!/bin/bash',
           f'#SBATCH --job-name={job_name}',
           f'#SBATCH --array=0-{len(tasks) - 1}' + (f'%{at_once}' if at_once else ''),
           f'#SBATCH --output={os.path.join(root, "slurm", "%A_%a.out")}',
           *(f'#SBATCH {o}' for o in options),
           f'# One array task per cell or group of seeds; the index is {os.path.join(root, cells_lib.INDEX)}.',
           '# Resubmitting is safe: finished cells return at once, partial ones resume.',
           'set -euo pipefail',
           f'cd {shlex.quote(str(cells_lib.REPO))}',
           'case "$SLURM_ARRAY_TASK_ID" in']
  for task, job in enumerate(tasks):
    log = os.path.join(job[0].workdir, cells_lib.LOG)
    mkdirs = ' '.join(shlex.quote(c.workdir) for c in job)
    # Seeds trained together: each other seed's log.txt points to the first one's.
    pointers = ''.join(f'echo {shlex.quote(cells_lib.log_pointer(job[0]))} >> '
                       f'{shlex.quote(os.path.join(c.workdir, cells_lib.LOG))} && ' for c in job[1:])
    lines.append(f'  {task}) mkdir -p {mkdirs} && {pointers}'
                 f'exec {shlex.join(job[0].command)} >> {shlex.quote(log)} 2>&1 ;;')
  lines += ['  *) echo "No task $SLURM_ARRAY_TASK_ID in this sweep." >&2; exit 2 ;;', 'esac', '']
  return '\n'.join(lines)
