"""RF-Inversion for ComfyUI: ComfyUI's entry point.

Registers the nodes the V3 way. No NODE_CLASS_MAPPINGS on purpose: ComfyUI's loader would then
ignore comfy_entrypoint. The host is imported when ComfyUI calls the entry point, not at import,
so that the package also imports outside ComfyUI (pytest imports the repo root as a package).
"""


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .nodes import NODES

    class RFInversionExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODES)

    return RFInversionExtension()
