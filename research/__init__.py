"""upsampling lab: the library. Entry points (launch/, tests/conftest.py) apply the XLA
defaults of research.xla_flags before JAX starts; importing the library changes nothing."""
