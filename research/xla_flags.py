"""XLA flags that this codebase sets by default, before JAX starts a backend.

XLA reads XLA_FLAGS once, when the first backend starts, so the entry points (launch/*,
tests/conftest.py) call `apply()` before anything starts JAX (after that it has no effect).
A flag the user's XLA_FLAGS already names is left as the user set it. XLA aborts the
process on a flag it does not know, so the defaults apply only with the jaxlib they were
measured with; UPSAMPLING_LAB_XLA_DEFAULTS=0 turns them off. Each default is measured by
`python -m launch.bench --suites=levers` (results/bench_cpu.md).
"""

import os

import jaxlib

MEASURED_WITH = ('0.10.2',)  # jaxlib versions whose XLA has these flags and values
DEFAULTS = {
  # XLA:CPU sends convolutions to YNNPACK, which runs the U-Net's 3×3 convolutions (and
  # both of their gradients) ~1.3× slower than XLA's own path on Zen 4; its elementwise
  # and reduction fusions stay on. GPUs and TPUs ignore the flag.
  '--xla_cpu_experimental_ynn_fusion_type': '-individual_convolution',
}


def without(xla_flags: str, other: str) -> list[str]:
  """The flags of `xla_flags` whose names `other` does not set."""
  named = {flag.split('=')[0] for flag in other.split()}
  return [flag for flag in xla_flags.split() if flag.split('=')[0] not in named]


def with_defaults(xla_flags: str) -> str:
  """`xla_flags` with each default appended unless it names that flag already."""
  defaults = ' '.join(f'{name}={value}' for name, value in DEFAULTS.items())
  return ' '.join([xla_flags.strip(), *without(defaults, xla_flags)]).strip()


def apply() -> None:
  if (
    jaxlib.__version__ in MEASURED_WITH
    and os.environ.get('UPSAMPLING_LAB_XLA_DEFAULTS', '1') != '0'
  ):
    os.environ['XLA_FLAGS'] = with_defaults(os.environ.get('XLA_FLAGS', ''))
