"""CARAFE (Wang et al., ICCV 2019): content-aware reassembly of features.

As mmcv's `CARAFEPack` (mmcv/ops/carafe.py) with scale 2: a 1×1 channel compressor
(C -> `compressed_channels`), a content encoder (`encoder_kernel`² conv, dilation
`encoder_dilation`, 'SAME') predicting 4·G·k² logits per coarse pixel (k = `up_kernel`,
G = `up_group`), torch's pixel shuffle (logit channel m·4 + r1·2 + r2 goes to fine pixel
(2i + r1, 2j + r2) as kernel channel m = g·k² + t), a softmax over the k² taps, and the
reassembly of x's k×k neighbourhood of each output's source pixel, zero outside the map
(`reassembly.reassemble`). Initialisation as `CARAFEPack.init_weights`: xavier-uniform
compressor, normal(0, 0.001) encoder, zero biases.

Like the official module it keeps x's C channels: `features` must be None or C (there is
no projection to add; FCN asks for features = K = x's channels, which fits).

`from_torch_state_dict(state_dict)` converts a `CARAFEPack` state dict, keys
`channel_compressor.{weight,bias}` and `content_encoder.{weight,bias}` (torch Conv2d
layouts [O, I, kh, kw]), to this module's params.
"""

from flax import linen as nn
import jax

from research.upsamplers import base
from research.upsamplers import reassembly


class CARAFE(base.Upsampler):
  compressed_channels: int = 64
  up_kernel: int = 5
  up_group: int = 1
  encoder_kernel: int = 3
  encoder_dilation: int = 1

  kind = 'carafe'
  keeps_channels = True

  @nn.compact
  def __call__(self, x, guide=None):  # x: [B, H, W, C] -> [B, 2H, 2W, C]
    self.check(x, guide)
    b, h, w, c = x.shape
    if c % self.up_group:
      raise ValueError(f'carafe needs up_group dividing the {c} channels; got {self.up_group}.')
    if self.encoder_kernel % 2 == 0 or self.up_kernel % 2 == 0:
      raise ValueError(
        f'carafe needs odd encoder_kernel and up_kernel (centred windows); got '
        f'{self.encoder_kernel} and {self.up_kernel}.'
      )
    g, kk = self.up_group, self.up_kernel**2
    compressed = nn.Conv(
      self.compressed_channels,
      (1, 1),
      kernel_init=nn.initializers.xavier_uniform(),
      name='channel_compressor',
    )(x)
    pad = (self.encoder_kernel - 1) * self.encoder_dilation // 2
    logits = nn.Conv(
      4 * g * kk,
      (self.encoder_kernel,) * 2,
      padding=pad,
      kernel_dilation=self.encoder_dilation,
      kernel_init=nn.initializers.normal(0.001),
      name='content_encoder',
    )(compressed)  # [B, H, W, G·k²·4]
    logits = logits.reshape(b, h, w, g * kk, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    kernels = jax.nn.softmax(logits.reshape(b, 2 * h, 2 * w, g, kk), axis=-1)
    return reassembly.reassemble(x, kernels)


def from_torch_state_dict(state_dict) -> dict:
  """mmcv `CARAFEPack.state_dict()` -> this module's params (for `module.apply`)."""
  return {
    'channel_compressor': {
      'kernel': reassembly.flax_conv_kernel(state_dict['channel_compressor.weight']),
      'bias': reassembly.as_array(state_dict['channel_compressor.bias']),
    },
    'content_encoder': {
      'kernel': reassembly.flax_conv_kernel(state_dict['content_encoder.weight']),
      'bias': reassembly.as_array(state_dict['content_encoder.bias']),
    },
  }
