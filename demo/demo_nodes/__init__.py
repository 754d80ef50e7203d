"""The demo models' nodes (a V3 node pack that only the demo's server loads; it is not part of the
RF-Inversion pack's public node list).

``Load Demo Text Encoder`` loads the emoji model's text encoder (demo/models/text_encoders): a small
CLIP text transformer trained with the model, with ComfyUI's own CLIP tokenizer, returned as a real
CLIP that the stock ``CLIPTextEncode`` encodes a typed prompt with. ComfyUI's ``CLIPLoader`` cannot
load it: it builds CLIP-L, -G and -H from fixed configs (768 wide and more, 12 layers and more), and
reads no size from the file. This node builds the same classes at the size the file's metadata gives
(harness/small_clip.py; the server that loads this pack has the repository root on PYTHONPATH).

The demo's flow model is conditioned on a digit class, not on text through a text encoder: ComfyUI's
text encoders (CLIP, T5) are hundreds of megabytes. ``Digit Prompt`` reads a digit from a short
prompt ("an 8", "a seven", "3") and gives the CONDITIONING that the model was trained on: an 11-way
one-hot (ten digits and the empty prompt) as SD3's pooled vector and as one context token. A prompt
with no digit in it is the empty prompt, the unconditional model that inversion uses.
"""
import re

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NULL_CLASS, N_COND = 10, 11


def digit_of(text):
    """The digit a prompt names, or None for the empty prompt. Raises on two different digits."""
    found = [int(d) for d in re.findall(r"\d", text or "")]
    found += [WORDS.index(w) for w in re.findall(r"[a-z]+", (text or "").lower()) if w in WORDS]
    if len(set(found)) > 1:
        raise ValueError(f"Digit Prompt: the prompt {text!r} names more than one digit ({sorted(set(found))}); "
                         "name one digit, e.g. 'an 8', or leave it empty for the empty prompt.")
    return found[0] if found else None


def conditioning(text):
    """ComfyUI CONDITIONING for ``text``: [[context (1, 1, 11), {"pooled_output": (1, 11)}]]."""
    import torch
    digit = digit_of(text)
    vec = torch.zeros(1, N_COND)
    vec[0, NULL_CLASS if digit is None else digit] = 1.0
    return [[vec[:, None, :].clone(), {"pooled_output": vec.clone()}]]


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension, io

    # Alike in shape only (duplicates pairs these two with each other, with the test nodes and with
    # nodes/samplers.py): V3's declarative schema and a short execute. Their inputs, outputs and work
    # differ; a helper that built the schemas would only move each node's arguments away from it.
    class DigitPrompt(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id="RFDemoDigitPrompt",
                display_name="Digit Prompt (RF-Inversion demo)",
                category="conditioning",
                description="The demo model's text encoder: reads one digit from the prompt ('an 8', 'a seven') and "
                            "conditions the demo model on it. An empty prompt, or one with no digit, is the "
                            "unconditional model (use it for inversion and as CFG's negative).",
                inputs=[io.String.Input("text", default="an 8",
                                        tooltip="A prompt naming one digit, as a numeral or a word. Empty: the empty prompt.")],
                outputs=[io.Conditioning.Output()],
            )

        @classmethod
        def execute(cls, text) -> io.NodeOutput:
            return io.NodeOutput(conditioning(text))

    class DemoTextEncoderLoader(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            import folder_paths
            return io.Schema(
                node_id="RFDemoTextEncoderLoader",
                display_name="Load Demo Text Encoder (RF-Inversion demo)",
                category="advanced/loaders",
                description="Loads the emoji demo model's small text encoder from models/text_encoders: ComfyUI's CLIP "
                            "tokenizer and CLIP text transformer at the size the file gives. Encode prompts with the "
                            "ordinary CLIP Text Encode node.",
                inputs=[io.Combo.Input("clip_name", options=folder_paths.get_filename_list("text_encoders"))],
                outputs=[io.Clip.Output()],
            )

        @classmethod
        def execute(cls, clip_name) -> io.NodeOutput:
            import folder_paths
            from harness import small_clip
            return io.NodeOutput(small_clip.load(folder_paths.get_full_path_or_raise("text_encoders", clip_name)))

    class DemoExtension(ComfyExtension):
        async def get_node_list(self):
            return [DigitPrompt, DemoTextEncoderLoader]

    return DemoExtension()
