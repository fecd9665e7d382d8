"""Segmentation architectures that take any upsampler by name.

`build(arch, upsampler=..., num_classes=..., width=..., **options)` returns a Linen
module mapping images `[B, H, W, 3]` to logits `[B, H, W, num_classes]`.
"""
import functools

from flax import linen as nn

from research import upsamplers
from research.models import baselines
from research.models import fcn
from research.models import segnet
from research.models import unet

_REGISTRY = {
    'fcn32s': functools.partial(fcn.FCN, skips=0),
    'fcn16s': functools.partial(fcn.FCN, skips=1),
    'fcn8s': functools.partial(fcn.FCN, skips=2),
    'unet': unet.UNet,
    'segnet': segnet.SegNet,
    'sliding_window': baselines.SlidingWindow,  # no upsampling: experiments/design_costs.py
    'fullres': baselines.FullRes,
}


def names():
  """The registered architecture names, sorted."""
  return sorted(_REGISTRY)


def build(arch: str, *, upsampler: str, num_classes: int, width: int = 16,
          upsampler_options=None, **options) -> nn.Module:
  """Architecture `arch` with every upsampling step done by `upsampler`."""
  if arch not in _REGISTRY:
    raise ValueError(f'Unknown architecture {arch!r}; known architectures: {", ".join(names())}.')
  upsamplers.get(upsampler)  # unknown names fail here, with the list, before tracing
  if num_classes < 1 or width < 1:
    raise ValueError(f'num_classes and width must be positive; got {num_classes}, {width}.')
  cls = _REGISTRY[arch]
  fields = set((cls.func if isinstance(cls, functools.partial) else cls).__dataclass_fields__)
  valid = sorted(fields - {'parent', 'name', 'num_classes', 'upsampler', 'upsampler_options',
                           'width', 'skips'})  # skips is what the arch name says
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise ValueError(f'Architecture {arch!r} has no option(s) {unknown}; its options are: '
                     f'{", ".join(valid)}.')
  return cls(num_classes=num_classes, upsampler=upsampler,
             upsampler_options=dict(upsampler_options or {}), width=width, **options)
