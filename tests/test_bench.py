"""The benchmark's pieces: the real train step it times, and the PyTorch twin of the U-Net."""

import jax
import numpy as np
import pytest

from experiments import base
from research import cost
from research import models
from research.bench import measure
from research.bench import peaks
from research.bench import train_step
from research.upsamplers import transpose_conv


def test_train_step_measures_the_real_step(tiny_dir):
  c = base.get_config()
  c.data.variant, c.data.data_dir, c.data.image_size = 'res64_tiny', str(tiny_dir), 32
  c.model.width, c.model.options, c.batch_size = 4, {'depth': 2}, 8
  one, two = train_step.train_step(c, repeats=1), train_step.train_step(c, num_seeds=2, repeats=1)
  assert one['params'] == two['params'] > 0
  assert one['images_per_second'] > 0 and two['images_per_second'] > 0
  stages = one['trace_seconds'] + one['lower_seconds'] + one['xla_compile_seconds']
  assert min(one['trace_seconds'], one['lower_seconds'], one['xla_compile_seconds']) > 0
  assert stages == pytest.approx(one['compile_seconds'])
  # XLA's FLOP count grows at least in proportion to the seeds trained together.
  assert two['gflops_per_second'] * two['step_ms'] > 1.9 * one['gflops_per_second'] * one['step_ms']


def test_interleaved_timing_rewarms_each_entry_every_round():
  order = []
  calls = {name: (lambda name=name: order.append(name)) for name in 'abc'}
  seconds = cost.interleaved_median_seconds(calls, repeats=5, warmup=1, rounds=2)
  # Warm-up, then two rounds: each entry once untimed, then 3 and 2 of its 5 timed calls.
  assert ''.join(order) == 'abc' + 'aaaabbbbcccc' + 'aaabbbccc'
  assert sorted(seconds) == list('abc')
  order.clear()
  cost.median_seconds(lambda: order.append('x'), repeats=3, warmup=2)
  assert order == ['x'] * 5


def test_upsampler_rows_give_each_upsampler_its_own_times():
  rows = measure.upsampler_rows(
    ['nearest', 'max_unpool', 'transpose_conv'], batch=1, size=4, channels=2, repeats=1
  )
  assert [r['upsampler'] for r in rows] == ['nearest', 'max_unpool', 'transpose_conv']
  for row in rows:
    assert row['forward_ms'] > 0 and row['forward_backward_ms'] > 0
  assert [r['params'] for r in rows][:2] == [0, 0] and rows[2]['params'] > 0


def test_pytorch_side_by_side_times_both_frameworks_on_the_same_network(tiny_dir):
  pytest.importorskip('torch')
  c = base.get_config()
  c.data.variant, c.data.data_dir, c.data.image_size = 'res64_tiny', str(tiny_dir), 32
  c.model.options, c.batch_size = {'depth': 2}, 4
  row = train_step.torch_side_by_side(c, 'transpose_conv', width=4, repeats=1)
  assert row['params'] > 0 and row['speedup'] > 0 and row['conv_impl'] in ('xla', 'onednn')
  assert min(row['jax_ms'], row['torch_nchw_ms'], row['torch_channels_last_ms']) > 0


def test_design_costs_are_measured_per_design():
  rows = measure.design_rows(
    [('unet', 4), ('fullres', 4)], num_classes=3, image_size=16, batch=2, repeats=1
  )
  assert [r['arch'] for r in rows] == ['unet', 'fullres']
  for row in rows:
    model = models.build(row['arch'], upsampler='nearest', num_classes=3, width=4)
    params = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
    assert row['params'] == cost.count_params(params)
    assert row['forward_ms_per_image'] > 0 and row['forward_memory_mb'] > 0
  # At equal width, full resolution costs more per image than downsampling first.
  assert rows[1]['gflops_per_image'] > rows[0]['gflops_per_image'] > 0


def test_group_norm_rows_time_both_implementations():
  (row,) = measure.group_norm_rows(2, [(8, 16)], repeats=1)
  assert row['shape'] == '2×8×8×16' and row['flax_ms'] > 0 and row['fused_ms'] > 0
  try:
    import torch  # noqa: F401  (optional dependency: skips without it)

    assert row['torch_ms'] > 0
  except ImportError:
    assert 'torch_ms' not in row


def test_peak_is_a_number_with_its_derivation_or_unknown():
  peak, note = peaks.peak_gflops()
  assert note and (peak is None or peak > 0)


@pytest.mark.parametrize(
  'vendor,family,model,per_cycle,name',
  [
    ('AuthenticAMD', 25, 0x01, 32, 'AMD Zen 3'),  # EPYC 7003 (Milan)
    ('AuthenticAMD', 25, 0x11, 32, 'AMD Zen 4'),  # EPYC 9004 (Genoa)
    ('GenuineIntel', 6, 0x8F, 64, 'Intel Sapphire Rapids'),  # Xeon 4th gen, AMX
    ('GenuineIntel', 6, 0x55, None, 'model 85'),  # Skylake-SP: FMA units depend on the SKU
    ('GenuineIntel', 25, 0x01, None, 'GenuineIntel CPU family 25'),  # AMD's family, not AMD
  ],
)
def test_cpu_peaks_know_the_machines_processors(vendor, family, model, per_cycle, name):
  info = {'vendor_id': vendor, 'cpu family': str(family), 'model': str(model), 'cpu MHz': '2000.0'}
  peak, note = peaks.cpu_peak_gflops(info, cores=2)
  assert peak == (None if per_cycle is None else 2 * 2.0 * per_cycle) and name in note
  with_smt = {**info, 'siblings': '4', 'cpu cores': '2'}  # two threads per core
  smt_peak, _ = peaks.cpu_peak_gflops(with_smt, cores=2)
  assert smt_peak == (None if per_cycle is None else 2.0 * per_cycle)


def test_an_intel_processor_with_amx_is_known_by_its_flags_whatever_model_it_reports():
  # A VM of ours with AMX reports model 0xA7 (Rocket Lake, which has none).
  info = {'vendor_id': 'GenuineIntel', 'cpu family': '6', 'model': '167', 'cpu MHz': '2000.0'}
  assert peaks.cpu_peak_gflops(info, cores=2)[0] is None
  peak, note = peaks.cpu_peak_gflops({**info, 'flags': 'avx512f amx_bf16 amx_tile'}, cores=2)
  assert peak == 2 * 2.0 * 64 and 'AMX' in note


def test_bench_header_names_the_processor_and_its_instruction_sets():
  info = {
    'model name': 'Intel(R) Xeon(R) Platinum 8480+',
    'cpu family': '6',
    'model': '143',
    'flags': 'fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8',
  }
  assert peaks.describe_cpu(info) == (
    'Intel(R) Xeon(R) Platinum 8480+ (family 6 model 143; avx2, avx512f, avx512_bf16, '
    'amx_tile, amx_bf16)'
  )
  zen3 = {'model name': 'AMD EPYC', 'cpu family': '25', 'model': '1', 'flags': 'fpu avx2'}
  assert peaks.describe_cpu(zen3) == 'AMD EPYC (family 25 model 1; avx2)'


@pytest.mark.parametrize(
  'upsampler,options,depth',
  [('nearest', {}, 4), ('transpose_conv', {}, 4), ('transpose_conv', {'kernel_size': 3}, 2)],
)
def test_pytorch_unet_is_the_same_network(upsampler, options, depth):
  torch = pytest.importorskip('torch')
  from research import torch_reference  # optional dependency: imports torch

  flax_model = models.build(
    'unet', upsampler=upsampler, num_classes=6, width=8, upsampler_options=options, depth=depth
  )
  params = flax_model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
  torch_model = torch_reference.UNet(6, upsampler, 8, depth=depth, upsampler_options=options)
  assert torch_reference.count_params(torch_model) == cost.count_params(params)
  assert torch_model(torch.zeros(2, 3, 32, 32)).shape == (2, 6, 32, 32)
  with pytest.raises(ValueError, match=r"no option\(s\) \['overlap'\]"):
    torch_reference.UNet(6, 'transpose_conv', 8, upsampler_options={'overlap': 'max'})


@pytest.mark.parametrize('k', [2, 3, 4, 5])
def test_pytorch_conv_transpose_is_the_same_linear_map(k):
  """ConvTranspose2d(k, stride 2, padding (k-1)//2, output_padding) = conv_transpose_2x."""
  torch = pytest.importorskip('torch')
  from research import torch_reference  # optional dependency: imports torch

  rng = np.random.default_rng(k)
  y = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
  kernel = rng.standard_normal((k, k, 3, 4)).astype(np.float32)
  layer = torch_reference._upsampler('transpose_conv', 3, {'kernel_size': k, 'use_bias': False})
  layer.out_channels = 4
  layer.weight = torch.nn.Parameter(torch.from_numpy(kernel.transpose(2, 3, 0, 1).copy()))
  expected = np.asarray(transpose_conv.conv_transpose_2x(y, kernel))
  got = layer(torch.from_numpy(y.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_convolution_rows_cover_every_kernel_of_the_model():
  # conv_impl='xla': model_convolutions finds lax's convolutions in the jaxpr, not oneDNN's.
  model = models.build(
    'unet', upsampler='nearest', num_classes=3, width=4, depth=2, conv_impl='xla'
  )
  x = np.zeros((2, 16, 16, 3), np.float32)
  rows = measure.convolution_rows(model, x, repeats=1)
  params = model.init(jax.random.key(0), x)
  kernels = sorted(
    tuple(v.shape)
    for path, v in jax.tree_util.tree_leaves_with_path(params)
    if 'kernel' in jax.tree_util.keystr(path)
  )
  found = sorted(tuple(map(int, r['kernel'].split('×'))) for r in rows for _ in range(r['count']))
  assert found == kernels
  # Only the first convolution reads the image, whose gradient a train step never needs.
  assert [r['input_grad_needed'] for r in rows].count(False) == 1
  for row in rows:
    assert (
      row['jax_forward_ms'] > 0 and row['jax_input_grad_ms'] > 0 and row['jax_kernel_grad_ms'] > 0
    )
    try:
      import torch  # noqa: F401  (optional dependency: skips without it)

      assert row['torch_kernel_grad_ms'] > 0
    except ImportError:
      assert 'torch_kernel_grad_ms' not in row
