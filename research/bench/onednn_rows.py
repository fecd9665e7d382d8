"""oneDNN's convolutions (research.onednn) against XLA's and PyTorch's on the default U-Net,
timed in turn in one run: each convolution of the model's forward pass (forward and both
gradients) by XLA, oneDNN with OpenMP's default threads and with one ('onednn', 'onednn_1t'),
oneDNN on bfloat16 operands where the processor has its kernels ('onednn_bf16'), and PyTorch
channels_last; and the real sharded train step with conv_impl 'xla' and 'onednn', in float32
and bfloat16 compute, against PyTorch eager."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from research import onednn
from research import steps
from research.bench import measure
from research.bench import train_step


def with_threads(n: int, call):
  """call, run with n oneDNN threads (0: OpenMP's default)."""

  def run():
    onednn.set_threads(n)
    return call()

  return run


@functools.cache
def _torch_threads() -> int:
  import torch  # optional dependency: the comparison needs PyTorch

  return torch.get_num_threads()  # first asked before any onednn_1t call changed the team


def with_torch_threads(call):
  """call, with PyTorch's OpenMP team size set first. PyTorch's bundled libgomp and
  oneDNN's share a soname, so one OpenMP runtime serves both: without this, the team of one
  that 'onednn_1t' leaves on the calling thread carries over and PyTorch runs on one core
  (measured: its convolutions took 1.8× as long)."""
  import torch  # optional dependency: the comparison needs PyTorch

  threads = _torch_threads()

  def run():
    torch.set_num_threads(threads)
    return call()

  return run


def layer_rows(config, repeats: int) -> list[dict]:
  """{x, kernel, count, then ms per (who, what)} for each convolution of config's model."""
  import torch  # optional dependency: the comparison needs PyTorch

  c = config.copy_and_resolve_references()
  c.model.conv_impl = 'xla'  # its jaxpr then lists lax's convolutions
  model = steps.build_model(c, 6)
  x = np.zeros((c.batch_size, c.data.image_size, c.data.image_size, 3), np.float32)
  rows = []
  for conv in measure.model_convolutions(model, x):
    p = conv['params']
    kx, kk, kd = jax.random.split(jax.random.key(0), 3)
    cx = jax.random.normal(kx, conv['x'])
    ck = jax.random.normal(kk, conv['kernel']) * 0.1
    impls = {
      'xla': lambda a, k, conv=conv: conv['primitive'].bind(a, k, **conv['params']),
      'onednn': lambda a, k, p=p: onednn.conv_general_dilated(
        a, k, p['window_strides'], p['padding'], p['rhs_dilation'], p['feature_group_count']
      ),
    }
    dy = jax.random.normal(kd, jax.eval_shape(impls['xla'], cx, ck).shape)
    operands = {who: (cx, ck, dy) for who in impls}
    if not onednn.bf16_error():  # oneDNN on the same operands rounded to bfloat16
      impls['onednn_bf16'] = impls['onednn']
      operands['onednn_bf16'] = tuple(v.astype(jnp.bfloat16) for v in (cx, ck, dy))
    calls = {}
    for who, f in impls.items():
      a, k, g = operands[who]
      programs = {
        'forward': (f, (a, k)),
        'input_grad': (lambda a, k, g, f=f: jax.vjp(lambda a: f(a, k), a)[1](g)[0], (a, k, g)),
        'kernel_grad': (lambda a, k, g, f=f: jax.vjp(lambda k: f(a, k), k)[1](g)[0], (a, k, g)),
      }
      for what, (fn, args) in programs.items():
        calls[who, what] = functools.partial(jax.jit(fn).lower(*args).compile(), *args)
        if who == 'onednn':
          calls['onednn_1t', what] = with_threads(1, calls[who, what])
        if who.startswith('onednn'):
          calls[who, what] = with_threads(0, calls[who, what])
    kh, kw = conv['kernel'][:2]
    last = torch.channels_last
    tx = torch.from_numpy(np.array(cx)).permute(0, 3, 1, 2).contiguous(memory_format=last)
    tk = torch.from_numpy(np.array(ck)).permute(3, 2, 0, 1).contiguous(memory_format=last)
    tg = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2).contiguous(memory_format=last)
    pad = (kh // 2, kw // 2)  # the U-Net's convolutions are all stride-1 'SAME'
    calls['torch', 'forward'] = with_torch_threads(
      lambda: torch.nn.functional.conv2d(tx, tk, padding=pad)
    )
    calls['torch', 'input_grad'] = with_torch_threads(
      lambda: torch.nn.grad.conv2d_input(tx.shape, tk, tg, padding=pad)
    )
    calls['torch', 'kernel_grad'] = with_torch_threads(
      lambda: torch.nn.grad.conv2d_weight(tx, tk.shape, tg, padding=pad)
    )
    row = {
      'x': '×'.join(map(str, conv['x'])),
      'kernel': '×'.join(map(str, conv['kernel'])),
      'count': conv['count'],
      'input_grad_needed': conv['x'] != x.shape,
    }
    row.update(measure.milliseconds(calls, repeats))
    rows.append(row)
  return rows


def step_row(config, repeats: int) -> dict:
  """ms per train step: conv_impl 'xla', 'onednn' (and one oneDNN thread), in float32 and,
  where oneDNN has bfloat16 kernels for this processor, in bfloat16 compute ('*_bf16';
  parameters and optimizer stay float32), and PyTorch eager channels_last (float32)."""
  import torch  # optional dependency: the comparison needs PyTorch

  from research import torch_reference  # imports torch

  dtypes = {'': 'float32'} if onednn.bf16_error() else {'': 'float32', '_bf16': 'bfloat16'}
  calls = {}
  for suffix, dtype in dtypes.items():
    for impl in ('xla', 'onednn'):
      c = config.copy_and_resolve_references()
      c.model.conv_impl, c.model.dtype = impl, dtype
      calls[impl + suffix] = train_step.compile_train_step(c)[1]
    calls[f'onednn_1t{suffix}'] = with_threads(1, calls['onednn' + suffix])
    calls['onednn' + suffix] = with_threads(0, calls['onednn' + suffix])
  s, b = config.data.image_size, config.batch_size
  rng = np.random.default_rng(0)
  torch.manual_seed(0)
  model = torch_reference.UNet(
    6,
    config.model.upsampler,
    config.model.width,
    depth=4,
    upsampler_options=config.model.upsampler_options.to_dict(),
  )
  calls['torch'] = with_torch_threads(
    torch_reference.make_train_step(
      model,
      rng.random((b, s, s, 3), np.float32),
      rng.integers(0, 6, (b, s, s)),
      config.optim.learning_rate,
      config.optim.weight_decay,
      config.optim.grad_clip,
      channels_last=True,
    )
  )
  return measure.milliseconds(calls, repeats, warmup=3)
