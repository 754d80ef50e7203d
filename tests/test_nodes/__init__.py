"""Test-only node pack: tiny stand-ins for the model loaders of the shipped workflows, and
observer nodes that report a tensor's shape and finiteness through the server's history.

The tests load it beside the pack (tests/conftest.py, TEST_PACKS) and swap each model loader of a
shipped workflow for the tiny loader with the same output types, keeping every link; nothing else
in the graph changes. V3 nodes through comfy_entrypoint, like the pack itself.
"""


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .tiny_models import NODES

    class RFInversionTestNodes(ComfyExtension):
        async def get_node_list(self):
            return list(NODES)

    return RFInversionTestNodes()
