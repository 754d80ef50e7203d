"""RF-Inversion for ComfyUI: ComfyUI's entry point.

Registers the nodes the V3 way. No NODE_CLASS_MAPPINGS on purpose: ComfyUI's loader would then
ignore comfy_entrypoint.
"""
from comfy_api.latest import ComfyExtension, io

from .nodes import NODES


class RFInversionExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> RFInversionExtension:
    return RFInversionExtension()
