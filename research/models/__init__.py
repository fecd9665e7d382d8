"""Segmentation architectures that take any upsampler by name.

`build(arch, upsampler=..., num_classes=..., width=..., **options)` returns a Linen
module mapping images `[B, H, W, 3]` to logits `[B, H, W, num_classes]`.
"""

import dataclasses
import functools

from flax import linen as nn

from research import upsamplers
from research.models import base
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


def build(
  arch: str, *, upsampler: str, num_classes: int, width: int = 16, upsampler_options=None, **options
) -> nn.Module:
  """Architecture `arch` with every upsampling step done by `upsampler`."""
  if arch not in _REGISTRY:
    raise ValueError(f'Unknown architecture {arch!r}; known architectures: {", ".join(names())}.')
  upsamplers.get(upsampler)  # unknown names fail here, with the list, before tracing
  if num_classes < 1 or width < 1:
    raise ValueError(f'num_classes and width must be positive; got {num_classes}, {width}.')
  cls = _REGISTRY[arch]
  valid = sorted(
    _fields(arch)
    - {'parent', 'name', 'num_classes', 'upsampler', 'upsampler_options', 'width', 'skips'}
  )  # skips: the arch name
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise ValueError(
      f'Architecture {arch!r} has no option(s) {unknown}; its options are: {", ".join(valid)}.'
    )
  model = cls(
    num_classes=num_classes,
    upsampler=upsampler,
    upsampler_options=dict(upsampler_options or {}),
    width=width,
    **options,
  )
  check_guide(arch, model)
  return model


def check_guide(arch: str, model) -> None:
  """Refuses an upsampler that needs a guide field the architecture cannot give, naming
  the field and the architectures (with the `pool` setting) that give it."""
  given = model.guide_fields()
  if given is None:  # no upsampling (the design_costs baselines)
    return
  needs = upsamplers.get(model.upsampler).needs
  missing = [name for name in needs if name not in given]
  if missing:
    name = missing[0]
    setting = f' with pool={model.pool_kind()}' if hasattr(model, 'pool_kind') else ''
    raise ValueError(
      f'Upsampler {model.upsampler!r} needs {upsamplers.base.GUIDE_FIELDS[name]}, '
      f'which {arch!r}{setting} does not give; architectures that give it: '
      f'{_providers(name)}.'
    )
  if upsamplers.get(model.upsampler).skip_like_x and not model.SKIP_LIKE_X:
    like = ', '.join(a for a in names() if _REGISTRY[a](num_classes=1).SKIP_LIKE_X)
    raise ValueError(
      f'Upsampler {model.upsampler!r} needs a skip with the channels of the '
      f'upsampled feature, which {arch!r} does not give (its decoder upsamples '
      f'other channels than its encoder has); architectures that give it: {like}.'
    )


def compatible(arch: str, upsampler: str, **options) -> bool:
  """Whether `arch` can take `upsampler` (what the decoder ablation's grids ask)."""
  try:
    build(arch, upsampler=upsampler, num_classes=1, **options)
  except ValueError:
    return False
  return True


def _providers(field: str) -> str:
  """'a, b with model.options.pool=index; c': who gives `field`, grouped by the pool
  setting it takes (none named where every setting gives it)."""
  groups = {}
  for arch in names():
    pools = list(base.POOLS) if 'pool' in _fields(arch) else [None]
    giving = [
      p
      for p in pools
      if field
      in (_REGISTRY[arch](num_classes=1, **({'pool': p} if p else {})).guide_fields() or ())
    ]
    if giving:
      suffix = '' if giving == pools else f' with model.options.pool={"|".join(giving)}'
      groups.setdefault(suffix, []).append(arch)
  return '; '.join(', '.join(archs) + suffix for suffix, archs in groups.items())


def _fields(arch: str) -> set:
  """The module fields of architecture `arch` (its options and the ones build fills); not
  its ClassVars, which `__dataclass_fields__` also lists."""
  cls = _REGISTRY[arch]
  return {
    f.name for f in dataclasses.fields(cls.func if isinstance(cls, functools.partial) else cls)
  }
