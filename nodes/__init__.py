"""Thin V3 node classes; the math lives in ``sampler/``."""
from .edit_region import NODES as REGION_NODES
from .samplers import NODES as SAMPLER_NODES

NODES = [*SAMPLER_NODES, *REGION_NODES]
