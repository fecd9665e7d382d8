"""The Slurm backend: a sweep as one sbatch job array, a task per process."""

import os
import shlex

from research import preemption
from research.sweep import cells as cells_lib

WARNING_SECONDS = 120  # SIGUSR1 this long before the time limit: time to save a checkpoint

# run_cell LOG COMMAND...: COMMAND with its output appended to LOG; Slurm's USR1 warning to the
# batch shell is handed on to it; if it then exits with preemption.EXIT_CODE (checkpoint saved),
# the task requeues itself.
_RUN_CELL = [
  'run_cell() {',
  '  local log=$1 rc=0 warned= pid=',
  '  shift',
  '  trap \'warned=1; if [ -n "$pid" ]; then kill -USR1 "$pid" 2>/dev/null || true; fi\' USR1',
  '  "$@" >> "$log" 2>&1 &',
  '  pid=$!',
  '  if [ -n "$warned" ]; then kill -USR1 "$pid" 2>/dev/null || true; fi  # came before $pid',
  '  wait "$pid" || rc=$?',
  '  while kill -0 "$pid" 2>/dev/null; do rc=0; wait "$pid" || rc=$?; done  # wait was '
  'interrupted by the trap',
  f'  if [ "$rc" -eq {preemption.EXIT_CODE} ] && [ -n "$warned" ]; then',
  '    echo "Preempted: requeueing ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}." >> "$log"',
  '    scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" >> "$log" 2>&1 || true',
  '  fi',
  '  return "$rc"',
  '}',
]


def slurm_script(
  cells: list[cells_lib.Cell], root: str, job_name: str, options=(), at_once: int | None = None
) -> str:
  """An sbatch job array with one task per process (a cell, or seeds trained together),
  each running its command, at most `at_once` tasks at a time if given.

  Slurm's own messages go to ROOT/slurm/%A_%a.out; the training output is appended to
  the (first) cell's log.txt as with the local backend. Preemption: the script asks for
  SIGUSR1 `WARNING_SECONDS` before the time limit (--signal, to the batch shell, which hands
  it to the run) and may be requeued (--requeue); a run that saved its checkpoint on that
  warning exits with preemption.EXIT_CODE and its task requeues itself, to resume where it
  stopped. USR1 and not TERM: scancel sends TERM, and a cancelled task must stay cancelled
  (the run still saves on TERM, and a later requeue resumes from there). With several tasks
  per array task (--ntasks, --nodes), the run starts through srun, one process per task,
  each initialising jax.distributed from Slurm's environment.
  """
  root = os.path.abspath(root)
  tasks = cells_lib.jobs(cells)
  several = any(
    o.split('=')[0] in ('--ntasks', '-n', '--nodes', '-N', '--ntasks-per-node') for o in options
  )
  launcher = 'srun ' if several else ''
  lines = [
    '#!/bin/bash',
    f'#SBATCH --job-name={job_name}',
    f'#SBATCH --array=0-{len(tasks) - 1}' + (f'%{at_once}' if at_once else ''),
    f'#SBATCH --output={os.path.join(root, "slurm", "%A_%a.out")}',
    '#SBATCH --requeue',
    '#SBATCH --open-mode=append',
    f'#SBATCH --signal=B:USR1@{WARNING_SECONDS}',
    *(f'#SBATCH {o}' for o in options),
    '# One array task per cell or group of seeds; the index is '
    f'{os.path.join(root, cells_lib.INDEX)}.',
    '# Resubmitting is safe: finished cells return at once, partial ones resume.',
    'set -euo pipefail',
    f'cd {shlex.quote(str(cells_lib.REPO))}',
    *_RUN_CELL,
    'case "$SLURM_ARRAY_TASK_ID" in',
  ]
  for task, job in enumerate(tasks):
    log = os.path.join(job[0].workdir, cells_lib.LOG)
    mkdirs = ' '.join(shlex.quote(c.workdir) for c in job)
    # Seeds trained together: each other seed's log.txt points to the first one's.
    pointers = ''.join(
      f'echo {shlex.quote(cells_lib.log_pointer(job[0]))} >> '
      f'{shlex.quote(os.path.join(c.workdir, cells_lib.LOG))} && '
      for c in job[1:]
    )
    lines.append(
      f'  {task}) mkdir -p {mkdirs} && {pointers}'
      f'run_cell {shlex.quote(log)} {launcher}{shlex.join(job[0].command)} ;;'
    )
  lines += ['  *) echo "No task $SLURM_ARRAY_TASK_ID in this sweep." >&2; exit 2 ;;', 'esac', '']
  return '\n'.join(lines)
