r"""FINDINGS.md: published claims about decoders against this lab's paired measurements.

  python -m launch.findings --root results/runs/benchmark --out results/FINDINGS.md

Reads the sweeps the claims of experiments/benchmark.py name (their archives or sweep
roots under --root: both hold cells.json and each finished cell's results) and
writes one row per claim: the paired difference with its 95% interval and a verdict
(research.tables.findings). Claims whose runs have not finished say so.
"""

import shlex
import sys

from absl import app
from absl import flags

from experiments import benchmark
from launch import cli
from research.tables import findings

_ROOT = flags.DEFINE_string(
  'root', 'results/runs/benchmark', 'Directory holding the sweeps (archives or roots).'
)
_OUT = flags.DEFINE_string('out', 'results/FINDINGS.md', 'The page to write.')
_SPLIT = flags.DEFINE_enum('split', 'test', ['val', 'test'], 'Split the differences are on.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  command = shlex.join(['python', '-m', 'launch.findings', *sys.argv[1:]])
  print(f'Wrote {findings.write(benchmark.CLAIMS, _ROOT.value, _OUT.value, _SPLIT.value, command)}')


if __name__ == '__main__':
  cli.run(main)
