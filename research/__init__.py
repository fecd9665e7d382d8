"""upsampling lab: the library. Importing it sets the XLA defaults of research.xla_flags."""
from research import xla_flags as _xla_flags

_xla_flags.apply()
