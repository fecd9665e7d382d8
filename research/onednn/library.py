"""Loading research/onednn/conv.cc's library (built by `make onednn`), registering its FFI
targets, and what a model's `conv_impl` means on this machine (resolve)."""

import ctypes
import functools
import os
from typing import Optional

import jax

IMPLS = ('auto', 'xla', 'onednn')
LIBRARY = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
  'build',
  'libonednn_conv.so',
)
TARGETS = {
  'forward': 'onednn_conv_forward',
  'input_grad': 'onednn_conv_input_grad',
  'kernel_grad': 'onednn_conv_kernel_grad',
}
_SYMBOLS = {
  'forward': 'OnednnConvForward',
  'input_grad': 'OnednnConvBackwardData',
  'kernel_grad': 'OnednnConvBackwardWeights',
}
_DIMS = ('NHWC', 'HWIO', 'NHWC')


@functools.cache
def load_error() -> Optional[str]:
  """None once the library is loaded and its FFI targets registered; otherwise why not."""
  if not os.path.exists(LIBRARY):
    return f'{LIBRARY} is not built'
  try:
    lib = ctypes.CDLL(LIBRARY)
  except OSError as e:
    return f'{LIBRARY} does not load ({e})'
  for kind, target in TARGETS.items():
    jax.ffi.register_ffi_target(
      target, jax.ffi.pycapsule(getattr(lib, _SYMBOLS[kind])), platform='cpu'
    )
  _LIB.append(lib)
  return None


_LIB = []  # the loaded library, once load_error() is None


def set_threads(n: int):
  """oneDNN's OpenMP threads per convolution from now on; 0 (the default): OpenMP's
  (OMP_NUM_THREADS, else all cores). Which is faster depends on what else runs on the
  cores (python -m research.onednn.measure compares 1 thread with the default)."""
  if load_error():
    refuse(load_error())
  _LIB[0].OnednnConvSetThreads(int(n))


def refuse(why: str):
  raise RuntimeError(
    f'conv_impl="onednn" cannot run: {why}. Build the library with '
    f'`make onednn` (part of `make test` and `make demo`), or use '
    f'conv_impl="auto" or "xla".'
  )
