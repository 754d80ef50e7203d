"""Thin V3 node classes; the math lives in ``sampler/``."""
from .samplers import NODES  # noqa: F401
