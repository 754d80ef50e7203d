"""Test-only nodes for the long-session tests (tests/test_session.py, tests/test_malformed.py), loaded
beside the pack and the demo's prompt node on the demo-model server (harness/session.py).

- ``RFTestCountCalls`` (MODEL, label) -> MODEL: counts the model's denoised estimates under a label
  through the post-CFG hook, as demo/evaluate.py counts network calls; GET /rf_test/calls reads the
  counts. Put between the model and a guider, it observes and changes nothing.
- ``RFTestHash`` (IMAGE): an output node that reports the SHA-256 of the image tensor's bytes in the
  history, so runs are compared bit for bit and not through 8-bit PNGs.
- ``RFTestNaNImage`` (IMAGE) -> IMAGE: the image with one NaN pixel, as a broken upstream node gives.
- ``RFTestTinySD15``: an SD1.5-class model (ComfyUI's SD15 config, a UNet of width 32): a model that
  is not a rectified-flow model, for the pack's check. Its weights are zeros; no test calls it.
"""
import collections
import hashlib

CALLS = collections.Counter()


def count_calls(model, label):
    model = model.clone()

    def count(args):
        CALLS[label] += 1
        return args["denoised"]

    model.set_model_sampler_post_cfg_function(count)
    return model


def tiny_sd15():
    import comfy.model_patcher
    import comfy.supported_models
    import torch
    config = comfy.supported_models.SD15({
        "context_dim": 64, "model_channels": 32, "use_linear_in_transformer": False, "adm_in_channels": None,
        "use_temporal_attention": False, "in_channels": 4, "out_channels": 4, "num_res_blocks": [1, 1],
        "channel_mult": [1, 2], "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1],
        "transformer_depth_middle": 1, "use_spatial_transformer": True, "legacy": False, "image_size": 32,
    })
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    for t in model.diffusion_model.parameters():
        torch.nn.init.zeros_(t)
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def add_routes():
    from aiohttp import web
    from server import PromptServer

    @PromptServer.instance.routes.get("/rf_test/calls")
    async def calls(request):
        return web.json_response(dict(CALLS))


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension, io

    # Alike in shape only (duplicates pairs them with tests/test_nodes' nodes): V3's declarative schema
    # and a short execute. Their inputs, outputs and work differ; a helper that built the schemas would
    # only move each node's arguments away from it.
    class CountCalls(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="RFTestCountCalls", display_name="Count Calls (test)", category="testing/rf_inversion",
                             inputs=[io.Model.Input("model"), io.String.Input("label")], outputs=[io.Model.Output()])

        @classmethod
        def execute(cls, model, label) -> io.NodeOutput:
            return io.NodeOutput(count_calls(model, label))

    class Hash(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="RFTestHash", display_name="Hash (test)", category="testing/rf_inversion",
                             inputs=[io.Image.Input("image")], outputs=[], is_output_node=True)

        @classmethod
        def execute(cls, image) -> io.NodeOutput:
            data = image.detach().cpu().contiguous()
            digest = hashlib.sha256(data.numpy().tobytes()).hexdigest()
            return io.NodeOutput(ui={"sha256": [digest], "shape": [list(data.shape)]})

    class NaNImage(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="RFTestNaNImage", display_name="NaN Image (test)", category="testing/rf_inversion",
                             inputs=[io.Image.Input("image")], outputs=[io.Image.Output()])

        @classmethod
        def execute(cls, image) -> io.NodeOutput:
            image = image.clone()
            image[:, 0, 0, :] = float("nan")
            return io.NodeOutput(image)

    class TinySD15(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="RFTestTinySD15", display_name="Tiny SD1.5 (test)", category="testing/rf_inversion",
                             inputs=[], outputs=[io.Model.Output()])

        @classmethod
        def execute(cls) -> io.NodeOutput:
            return io.NodeOutput(tiny_sd15())

    class SessionTestNodes(ComfyExtension):
        async def get_node_list(self):
            return [CountCalls, Hash, NaNImage, TinySD15]

    add_routes()
    return SessionTestNodes()
