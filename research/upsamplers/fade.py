"""FADE (Lu et al., ECCV 2022): fusing the assets of decoder and encoder for upsampling.

As the official `FADE` (poppinace/fade, FADE_H2L.py) with scale 2. x is the decoder
feature (coarse), guide.skip the encoder feature (fine):
- kernels: semi-shift convolution. Both features are compressed by 1×1 convs to
  `embedding_dim` (the encoder's with bias, the decoder's without), and one shared 3×3
  conv (weights and bias) is applied to each; the decoder's coarse result is repeated
  2×2 and added to the encoder's fine one, then a softmax over the k² = `up_kernel`²
  taps. The official code applies the 3×3 conv to the encoder feature with stride 2 on
  four one-pixel-shifted paddings, one per sub-pixel; that is exactly a 'SAME' 3×3
  conv evaluated at every fine pixel, which is what is done here (the converter test
  checks it against the official shifted form).
- reassembly of x's k×k neighbourhood (CARAFE, zero outside the map);
- gate: g = sigmoid of a 1×1 conv (C -> 1) of the *decoder* feature x, repeated 2×2;
  out = g·skip + (1 − g)·reassembled.
The gate mixes skip and x channel by channel, so skip must have x's C channels (U-Net:
yes; FCN: no, its x holds K class scores, so FADE is refused there) and `features` must
be None or C. Initialisation as the official: xavier-uniform 1×1 convs, xavier-normal
3×3 conv, zero biases.

`from_torch_state_dict(state_dict)` converts the official module's state dict, keys
`gate_generator.conv.{weight,bias}`, `kernel_generator.conv1_en.{weight,bias}`,
`kernel_generator.conv1_de.weight`, `kernel_generator.conv2_kernels` [k², E, 3, 3] and
`kernel_generator.conv2_bias` [k²].
"""

from flax import linen as nn
import jax

from research.upsamplers import base
from research.upsamplers import reassembly


class FADE(base.Upsampler):
  embedding_dim: int = 64
  up_kernel: int = 5

  kind = 'fade'
  keeps_channels = True
  skip_like_x = True
  needs = ('skip',)

  @nn.compact
  def __call__(self, x, guide):  # x: [B, H, W, C], guide.skip: [B, 2H, 2W, C]
    guide = self.check(x, guide)
    skip = guide.skip
    reassembly.check_skip(self.kind, x, skip, same_channels=True)
    xavier_uniform = nn.initializers.xavier_uniform()
    en = nn.Conv(self.embedding_dim, (1, 1), kernel_init=xavier_uniform, name='encoder_compressor')(
      skip
    )  # [B, 2H, 2W, E]
    de = nn.Conv(
      self.embedding_dim,
      (1, 1),
      use_bias=False,
      kernel_init=xavier_uniform,
      name='decoder_compressor',
    )(x)  # [B, H, W, E]
    encoder = nn.Conv(
      self.up_kernel**2,
      (3, 3),
      padding=1,
      kernel_init=nn.initializers.variance_scaling(1.0, 'fan_avg', 'normal'),
      name='content_encoder',
    )
    logits = encoder(en) + reassembly.nearest2x(encoder(de))  # [B, 2H, 2W, k²]
    kernels = jax.nn.softmax(logits, axis=-1)
    gate = nn.Conv(1, (1, 1), kernel_init=xavier_uniform, name='gate')(x)
    gate = jax.nn.sigmoid(reassembly.nearest2x(gate))  # [B, 2H, 2W, 1]
    return gate * skip + (1 - gate) * reassembly.reassemble(x, kernels)


def from_torch_state_dict(state_dict) -> dict:
  """Official FADE `state_dict()` -> this module's params (for `module.apply`)."""
  conv = reassembly.flax_conv_kernel
  arr = reassembly.as_array
  return {
    'encoder_compressor': {
      'kernel': conv(state_dict['kernel_generator.conv1_en.weight']),
      'bias': arr(state_dict['kernel_generator.conv1_en.bias']),
    },
    'decoder_compressor': {'kernel': conv(state_dict['kernel_generator.conv1_de.weight'])},
    'content_encoder': {
      'kernel': conv(state_dict['kernel_generator.conv2_kernels']),
      'bias': arr(state_dict['kernel_generator.conv2_bias']),
    },
    'gate': {
      'kernel': conv(state_dict['gate_generator.conv.weight']),
      'bias': arr(state_dict['gate_generator.conv.bias']),
    },
  }
