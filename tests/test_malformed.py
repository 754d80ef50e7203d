"""Broken API prompts sent to the running server (the corpus: tests/malformed_prompts.py).

Each one gets back a validation error (the /prompt answer) or a node error (the execution_error in
/history) whose text names the node, the input and the fix; the server stays up, and the next good
prompt completes with the same image as before.
"""
import copy
import json

import pytest
from harness import session
from malformed_prompts import CASES, ROLES, STEPS, missing

GOOD = {"image": "three.png", "edit_text": "an 8", "steps": STEPS, "gamma": 0.25, "eta": 0.9, "stop": 0.5}


@pytest.fixture(scope="module")
def good(demo_server):
    """The good prompt and the hash of its image."""
    prompt = session.edit_prompt(demo_server.get("/object_info"), name="malformed_good", **GOOD)
    entry = session.run(demo_server, prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return prompt, session.sha256(entry)


def roles(prompt):
    """ROLES -> node ids in the good prompt."""
    found = {role: [k for k, n in prompt.items() if n["class_type"] == kind] for role, kind in ROLES.items()}
    ids = session.ids_of(prompt)
    found["invert"], found["edit"] = [ids["inversion"]], [ids["reverse"]]
    assert all(len(v) == 1 for v in found.values()), found
    return {role: v[0] for role, v in found.items()}


def broken(prompt, edits):
    """The good prompt with a case's edits applied."""
    prompt, where = copy.deepcopy(prompt), roles(prompt)

    def resolve(value):
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
            return [where.get(value[0], value[0]), value[1]]
        return value

    for op, node, *rest in edits:
        if op == "set":
            prompt[where[node]]["inputs"][rest[0]] = resolve(rest[1])
        elif op == "drop":
            del prompt[where[node]]["inputs"][rest[0]]
        elif op in ("add", "swap"):
            node_id = where[node] if op == "swap" else node
            prompt[node_id] = {"class_type": rest[0], "inputs": {k: resolve(v) for k, v in rest[1].items()}}
        else:
            raise ValueError(f"unknown edit {op!r}")
    return prompt


def error_text(server, prompt):
    """The text that the server gives back for a prompt that must fail: its validation errors, or the
    node error of its run. Fails the test if the prompt runs through."""
    prompt_id, refused = server.submit(prompt)
    if refused:
        lines = [f"{refused['error']['message']}: {refused['error'].get('details', '')}"]
        for node_id, node in refused.get("node_errors", {}).items():
            for e in node["errors"]:
                lines.append(f"{node['class_type']} (node {node_id}), input {e.get('extra_info', {}).get('input_name')}: "
                             f"{e['message']}: {e['details']}")
        return "\n".join(lines)
    status = server.wait(prompt_id, timeout=120)["status"]
    assert status["status_str"] == "error", f"the broken prompt ran through: {status}"
    errors = [m[1] for m in status["messages"] if m[0] == "execution_error"]
    assert errors, status
    return f"{errors[0]['node_type']} (node {errors[0]['node_id']}): {errors[0]['exception_message']}"


@pytest.mark.parametrize("edits,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_broken_prompt_gets_a_message_and_the_server_goes_on(demo_server, good, edits, needles):
    prompt, image = good
    text = error_text(demo_server, broken(prompt, edits))
    lacks = missing(text, needles)
    assert not lacks, f"the message lacks {lacks}:\n{text}"
    assert "Traceback" not in text
    entry = session.run(demo_server, prompt)
    assert entry["status"]["status_str"] == "success" and session.sha256(entry) == image


def test_the_corpus_covers_the_issue():
    names = {c[0] for c in CASES}
    assert len(CASES) >= 20 and len(names) == len(CASES)
    for required in ("gamma above its range", "eta above its range", "gamma a string", "start above stop",
                     "reference link missing", "reference from a photo of another size", "edit sigmas of length 1",
                     "steps 0", "FlipSigmas missing", "RandomNoise on the inversion", "an SD1.5-class model",
                     "a photo with NaN", "seed past the largest value",
                     "reference batch of 2 for one image"):
        assert required in names, required


def test_a_seed_at_the_largest_value_runs(demo_server, good):
    """The widget's largest seed is a good seed: both samplers draw from it."""
    prompt = broken(good[0], [("set", "inversion", "seed", 2 ** 64 - 1), ("set", "reverse", "seed", 2 ** 64 - 1),
                              ("set", "reverse", "stochastic", True), ("set", "reverse", "solver", "euler")])
    entry = session.run(demo_server, prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:2000]
    assert session.sha256(entry) not in (None, good[1])


def test_a_mask_of_another_size_is_resized_by_the_host(demo_server, good):
    """Not an error: ComfyUI resizes a noise mask to the latent for every sampler before the sampler
    sees it (comfy.sampler_helpers.prepare_mask), so the pack gets a mask of the latent's size. A solid
    mask of 32 x 48 on the 64 x 64 photo gives the image that the same mask at 64 x 64 gives."""
    def masked(width, height):
        return broken(good[0], [("add", "mask", "SolidMask", {"value": 1.0, "width": width, "height": height}),
                                ("add", "masked", "SetLatentNoiseMask", {"samples": ["encode", 0], "mask": ["mask", 0]}),
                                ("set", "invert", "latent_image", ["masked", 0])])
    other, same = (session.run(demo_server, masked(*size)) for size in ((32, 48), (64, 64)))
    assert other["status"]["status_str"] == same["status"]["status_str"] == "success"
    assert session.sha256(other) == session.sha256(same) is not None
