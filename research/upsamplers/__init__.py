"""Every ×2 upsampler behind one registry.

Each entry is a subclass of `base.Upsampler` (the contract: `module(x, guide)` on
`x: [B, H, W, C]` returning `[B, 2H, 2W, F]`, and the `base.Guide` fields it needs from
the encoder). To add one: write `research/upsamplers/<name>.py` with the module and add
one line to `_REGISTRY` below; the registry, model, bench and table tests then cover it.
"""

from flax import linen as nn

from research.upsamplers import base
from research.upsamplers import bilinear
from research.upsamplers import bilinear_additive
from research.upsamplers import carafe
from research.upsamplers import dysample
from research.upsamplers import fade
from research.upsamplers import fixed
from research.upsamplers import indexnet
from research.upsamplers import max_unpool
from research.upsamplers import pixel_shuffle
from research.upsamplers import resize_conv
from research.upsamplers import sapa
from research.upsamplers import transpose_conv

_REGISTRY = {
  'nearest': fixed.Nearest,
  'bed_of_nails': fixed.BedOfNails,
  'max_unpool': max_unpool.MaxUnpool,
  'transpose_conv': transpose_conv.TransposeConv,
  'bilinear': bilinear.Bilinear,
  'resize_conv': resize_conv.ResizeConv,
  'pixel_shuffle': pixel_shuffle.PixelShuffle,
  'bilinear_additive': bilinear_additive.BilinearAdditive,
  # Dynamic and guided (issue 17): content-aware kernels, sampling offsets, indices.
  'carafe': carafe.CARAFE,
  'fade': fade.FADE,
  'sapa_i': sapa.SAPAI,
  'sapa_b': sapa.SAPAB,
  'dysample': dysample.DySample,
  'indexnet': indexnet.IndexUnpool,  # with research.models.index_pool.IndexPool
}


Guide = base.Guide
Upsampler = base.Upsampler


def names():
  """The registered upsampler names, sorted."""
  return sorted(_REGISTRY)


def get(name):
  """The module class registered under `name`."""
  if name not in _REGISTRY:
    raise ValueError(f'Unknown upsampler {name!r}; known upsamplers: {", ".join(names())}.')
  return _REGISTRY[name]


def build(name, /, **options) -> nn.Module:
  """Instantiates upsampler `name`; `options` are its module fields (and Flax's `name`)."""
  cls = get(name)
  valid = set(cls.__dataclass_fields__) - {'parent'}
  unknown = sorted(set(options) - valid)
  if unknown:
    raise ValueError(
      f'Upsampler {name!r} has no option(s) {unknown}; '
      f'its options are: {", ".join(sorted(valid - {"name"}))}.'
    )
  return cls(**options)
