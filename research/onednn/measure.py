"""oneDNN's convolutions against XLA's and PyTorch's on the default U-Net, in one run.

  python -m research.onednn.measure [--repeats 10] [--layers] [--steps]

Per layer: each convolution of the model's forward pass (bench.model_convolutions) by XLA,
oneDNN (research.onednn) with OpenMP's default threads and with 1 ('onednn', 'onednn_1t'),
PyTorch channels_last, forward and both gradients, interleaved. Per step: the real sharded
train step (bench.compile_train_step) with conv_impl 'xla' and 'onednn' (both thread counts),
and PyTorch eager channels_last, interleaved.
"""
import argparse
import functools

import jax
import numpy as np

from experiments import base
from research import bench
from research import onednn
from research import torch_reference


def with_threads(n: int, call):
  """call, run with n oneDNN threads (0: OpenMP's default)."""
  def run():
    onednn.set_threads(n)
    return call()
  return run


def layer_rows(config, repeats: int) -> list[dict]:
  """{x, kernel, count, then ms per (who, what)} for each convolution of config's model."""
  import torch  # pylint: disable=g-import-not-at-top
  c = config.copy_and_resolve_references()
  c.model.options.conv_impl = 'xla'  # its jaxpr then lists lax's convolutions
  model = bench.train.build_model(c, 6)
  x = np.zeros((c.batch_size, c.data.image_size, c.data.image_size, 3), np.float32)
  rows = []
  for conv in bench.model_convolutions(model, x):
    p = conv['params']
    kx, kk, kd = jax.random.split(jax.random.key(0), 3)
    cx = jax.random.normal(kx, conv['x'])
    ck = jax.random.normal(kk, conv['kernel']) * 0.1
    impls = {'xla': lambda a, k, conv=conv: conv['primitive'].bind(a, k, **conv['params']),
             'onednn': lambda a, k, p=p: onednn.conv_general_dilated(
                 a, k, p['window_strides'], p['padding'], p['rhs_dilation'],
                 p['feature_group_count'])}
    dy = jax.random.normal(kd, jax.eval_shape(impls['xla'], cx, ck).shape)
    calls = {}
    for who, f in impls.items():
      programs = {'forward': (f, (cx, ck)),
                  'input_grad': (lambda a, k, g, f=f: jax.vjp(lambda a: f(a, k), a)[1](g)[0],
                                 (cx, ck, dy)),
                  'kernel_grad': (lambda a, k, g, f=f: jax.vjp(lambda k: f(a, k), k)[1](g)[0],
                                  (cx, ck, dy))}
      for what, (fn, args) in programs.items():
        calls[who, what] = functools.partial(jax.jit(fn).lower(*args).compile(), *args)
        if who == 'onednn':
          calls['onednn_1t', what] = with_threads(1, calls[who, what])
          calls[who, what] = with_threads(0, calls[who, what])
    kh, kw = conv['kernel'][:2]
    last = torch.channels_last
    tx = torch.from_numpy(np.array(cx)).permute(0, 3, 1, 2).contiguous(memory_format=last)
    tk = torch.from_numpy(np.array(ck)).permute(3, 2, 0, 1).contiguous(memory_format=last)
    tg = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2).contiguous(memory_format=last)
    pad = (kh // 2, kw // 2)  # the U-Net's convolutions are all stride-1 'SAME'
    calls['torch', 'forward'] = lambda: torch.nn.functional.conv2d(tx, tk, padding=pad)
    calls['torch', 'input_grad'] = lambda: torch.nn.grad.conv2d_input(tx.shape, tk, tg,
                                                                      padding=pad)
    calls['torch', 'kernel_grad'] = lambda: torch.nn.grad.conv2d_weight(tx, tk.shape, tg,
                                                                        padding=pad)
    row = {'x': '×'.join(map(str, conv['x'])), 'kernel': '×'.join(map(str, conv['kernel'])),
           'count': conv['count'], 'input_grad_needed': conv['x'] != x.shape}
    row.update(bench._milliseconds(calls, repeats))  # pylint: disable=protected-access
    rows.append(row)
  return rows


def step_row(config, repeats: int) -> dict:
  """ms per train step: conv_impl 'xla', 'onednn', PyTorch eager channels_last."""
  import torch  # pylint: disable=g-import-not-at-top
  calls = {}
  for impl in ('xla', 'onednn'):
    c = config.copy_and_resolve_references()
    c.model.options.conv_impl = impl
    calls[impl] = bench.compile_train_step(c)[1]
  calls['onednn_1t'] = with_threads(1, calls['onednn'])
  calls['onednn'] = with_threads(0, calls['onednn'])
  s, b = config.data.image_size, config.batch_size
  rng = np.random.default_rng(0)
  torch.manual_seed(0)
  model = torch_reference.UNet(6, config.model.upsampler, config.model.width, depth=4,
                               upsampler_options=config.model.upsampler_options.to_dict())
  calls['torch'] = torch_reference.make_train_step(
      model, rng.random((b, s, s, 3), np.float32), rng.integers(0, 6, (b, s, s)),
      config.optim.learning_rate, config.optim.weight_decay, config.optim.grad_clip,
      channels_last=True)
  return bench._milliseconds(calls, repeats, warmup=3)  # pylint: disable=protected-access


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--layers', action='store_true')
  parser.add_argument('--steps', action='store_true')
  args = parser.parse_args()
  config = base.get_config()
  print(f'oneDNN: {onednn.load_error() or "loaded"}; batch {config.batch_size}, '
        f'{config.data.image_size}², {config.model.arch} width {config.model.width}, '
        f'{config.model.upsampler}')
  if args.layers:
    totals = dict.fromkeys(('xla', 'onednn', 'onednn_1t', 'torch'), 0.)
    who = '/'.join(totals)
    print(f'x | kernel | n | fwd {who} | dx {who} | dW {who} | onednn÷torch fwd, dx, dW')
    for r in layer_rows(config, args.repeats):
      ms = lambda what: '/'.join(f'{r[who, what]:.2f}' for who in totals)
      ratio = ', '.join(f'{r["onednn", w] / r["torch", w]:.2f}'
                        for w in ('forward', 'input_grad', 'kernel_grad'))
      print(f'{r["x"]} | {r["kernel"]} | {r["count"]} | {ms("forward")} | '
            f'{ms("input_grad")} | {ms("kernel_grad")} | {ratio}')
      for who in totals:
        totals[who] += r['count'] * (r[who, 'forward'] + r[who, 'kernel_grad']
                                     + r['input_grad_needed'] * r[who, 'input_grad'])
    print('all convolutions of a step, ms: ' + ', '.join(f'{k} {v:.1f}' for k, v in totals.items()))
  if args.steps:
    ms = step_row(config, args.repeats)
    b = config.batch_size
    print('train step ms: ' + ', '.join(f'{k} {v:.1f} ({1e3 * b / v:.0f} images/s)'
                                        for k, v in ms.items()))
    print(f'onednn ÷ torch images/s: {ms["torch"] / ms["onednn"]:.2f}×; xla ÷ torch: '
          f'{ms["torch"] / ms["xla"]:.2f}×')


if __name__ == '__main__':
  main()
