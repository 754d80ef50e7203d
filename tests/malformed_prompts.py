"""Broken API prompts, as an artist might paste them: one case a line.

Each case is (id, edits, needles). The edits turn the good prompt (the shipped SD3.5 edit workflow on
the demo model at 8 steps, tests/test_malformed.py) into the broken one; the needles are what the
error text must hold: the node, the input and the fix (or a tuple of such lists, one of which it
must hold: combo_refused). Nodes are named by their role in the graph
(ROLES, resolved in the test), or by the id of a node that an "add" edit made. An edit is one of:

    ("set", node, input, value)    set an input; a value ["node", slot] is a link
    ("drop", node, input)          remove an input (a link that is missing)
    ("add", id, class, inputs)     add a node
    ("swap", node, class, inputs)  put another node class in the node's place: every link to it stays

A float input given as a string stays a string in the prompt; NaN is sent as JSON's NaN literal,
which Python's json module (and so ComfyUI's /prompt) reads.
"""
NAN = float("nan")
STEPS = 8  # the good prompt's steps


def combo_refused(title, node_class, name, value, choices):
    """The needles for a combo value outside its list, as either place may catch it: the node's own
    check (a host that validates V3 combos only in the web UI, as 0.3.75), or the host's validation
    before running (0.33: a 400 naming the node's class and the input). Both name the choices."""
    return ([title, f"{name} {value!r}", ", ".join(choices)],
            [node_class, f"input {name}", f"{value!r} not in {list(choices)!r}"])


def missing(text, needles):
    """The needles that ``text`` lacks: for alternatives (a tuple of needle lists), those of the nearest one."""
    alternatives = needles if isinstance(needles, tuple) else (needles,)
    return min(([n for n in alt if n not in text] for alt in alternatives), key=len)


# role -> how the test finds its node in the converted workflow
ROLES = {
    "photo": "LoadImage", "encode": "VAEEncode", "schedule": "BasicScheduler", "flip": "FlipSigmas",
    "model": "ModelSamplingSD3", "vae": "VAELoader", "inversion": "RFInversionSampler",
    "reverse": "ControlledReverseSampler", "invert": "the SamplerCustomAdvanced of the inversion",
    "edit": "the SamplerCustomAdvanced of the edit",
}

CASES = [
    ("gamma above its range", [("set", "inversion", "gamma", 1.5)], ["RFInversionSampler", "gamma", "1.5", "max of 1.0"]),
    ("gamma below its range", [("set", "inversion", "gamma", -0.1)], ["RFInversionSampler", "gamma", "min of 0.0"]),
    ("gamma a string", [("set", "inversion", "gamma", "half")], ["RFInversionSampler", "gamma", "half", "FLOAT"]),
    ("gamma NaN", [("set", "inversion", "gamma", NAN)], ["RF-Inversion Sampler", "gamma", "NaN", "between 0 and 1"]),
    ("eta above its range", [("set", "reverse", "eta", 1.5)], ["ControlledReverseSampler", "eta", "max of 1.0"]),
    ("eta a string", [("set", "reverse", "eta", "strong")], ["ControlledReverseSampler", "eta", "strong", "FLOAT"]),
    ("eta NaN", [("set", "reverse", "eta", NAN)], ["Controlled Reverse Sampler", "eta", "NaN", "between 0 and 1"]),
    ("start equal to stop", [("set", "reverse", "start", 0.3), ("set", "reverse", "stop", 0.3)],
     ["Controlled Reverse Sampler", "start (0.3) must be below stop (0.3)", "Set start to 0"]),
    ("start above stop", [("set", "reverse", "start", 0.5), ("set", "reverse", "stop", 0.2)],
     ["Controlled Reverse Sampler", "start (0.5) must be below stop (0.2)", "Set start to 0"]),
    ("stop above its range", [("set", "reverse", "stop", 2)], ["ControlledReverseSampler", "stop", "max of 1.0"]),
    ("reference link missing", [("drop", "reverse", "reference")], ["ControlledReverseSampler", "reference", "Required input is missing"]),
    ("reference of the wrong type", [("set", "reverse", "reference", ["schedule", 0])], ["ControlledReverseSampler", "reference", "SIGMAS", "LATENT"]),
    ("reference from a photo of another size",
     [("add", "bigger", "ImageScale", {"image": ["photo", 0], "upscale_method": "nearest-exact", "width": 96, "height": 64, "crop": "disabled"}),
      ("add", "bigger_latent", "VAEEncode", {"pixels": ["bigger", 0], "vae": ["vae", 0]}),
      ("set", "reverse", "reference", ["bigger_latent", 0])],
     ["Controlled Reverse Sampler", "reference latent has shape (1, 16, 8, 12)", "(1, 16, 8, 8)", "Connect the same image latent that was inverted"]),
    ("reference batch of 2 for one image",
     [("add", "two", "RepeatLatentBatch", {"samples": ["encode", 0], "amount": 2}), ("set", "reverse", "reference", ["two", 0])],
     ["Controlled Reverse Sampler", "reference latent has shape (2, 16, 8, 8)", "(1, 16, 8, 8)", "Connect the same image latent"]),
    ("reference batch of 2 for a batch of 3",
     [("add", "two", "RepeatLatentBatch", {"samples": ["encode", 0], "amount": 2}),
      ("add", "three", "RepeatLatentBatch", {"samples": ["encode", 0], "amount": 3}),
      ("set", "invert", "latent_image", ["three", 0]), ("set", "reverse", "reference", ["two", 0])],
     ["Controlled Reverse Sampler", "reference latent has shape (2, 16, 8, 8)", "(3, 16, 8, 8)", "Connect the same image latent"]),
    ("edit sigmas of length 1",
     [("add", "split", "SplitSigmas", {"sigmas": ["schedule", 0], "step": STEPS}), ("set", "edit", "sigmas", ["split", 1])],
     ["Controlled Reverse Sampler", "sigmas", "1 value", "steps"]),
    ("inversion sigmas of length 1",
     [("add", "split", "SplitSigmas", {"sigmas": ["schedule", 0], "step": STEPS}), ("set", "flip", "sigmas", ["split", 1])],
     ["RF-Inversion Sampler", "sigmas", "1 value", "steps"]),
    ("steps 0", [("set", "schedule", "steps", 0)], ["BasicScheduler", "steps", "min of 1"]),
    ("FlipSigmas missing", [("set", "invert", "sigmas", ["schedule", 0])], ["RF-Inversion Sampler", "sigmas must increase", "Connect FlipSigmas"]),
    ("FlipSigmas on the edit too", [("set", "edit", "sigmas", ["flip", 0])], ["Controlled Reverse Sampler", "sigmas must decrease", "without FlipSigmas"]),
    ("RandomNoise on the inversion",
     [("add", "random", "RandomNoise", {"noise_seed": 0}), ("set", "invert", "noise", ["random", 0])],
     ["RF-Inversion Sampler", "noise", "Connect DisableNoise"]),
    ("RandomNoise on the edit",
     [("add", "random", "RandomNoise", {"noise_seed": 0}), ("set", "edit", "noise", ["random", 0])],
     ["Controlled Reverse Sampler", "noise", "Connect DisableNoise"]),
    ("an SD1.5-class model", [("swap", "model", "RFTestTinySD15", {})],
     ["RF-Inversion Sampler", "not a rectified-flow model", "EPS", "Use a flow model"]),
    ("a photo with NaN", [("add", "broken", "RFTestNaNImage", {"image": ["photo", 0]}), ("set", "encode", "pixels", ["broken", 0])],
     ["RF-Inversion Sampler", "latent_image", "NaN", "VAE Encode"]),
    ("seed past the largest value", [("set", "inversion", "seed", 2 ** 64)], ["RFInversionSampler", "seed", "max of 18446744073709551615"]),
    ("seed negative", [("set", "reverse", "seed", -1)], ["ControlledReverseSampler", "seed", "min of 0"]),
    ("solver not in the list", [("set", "inversion", "solver", "rk4")],
     combo_refused("RF-Inversion Sampler", "RFInversionSampler", "solver", "rk4", ["euler", "midpoint", "fireflow"])),
    ("eta_trend not in the list", [("set", "reverse", "eta_trend", "cosine")],
     combo_refused("Controlled Reverse Sampler", "ControlledReverseSampler", "eta_trend", "cosine",
                   ["constant", "linear_increase", "linear_decrease"])),
    ("stochastic with fireflow", [("set", "reverse", "stochastic", True)], ["Controlled Reverse Sampler", "stochastic", "Set solver to euler"]),
    ("gamma missing", [("drop", "inversion", "gamma")], ["RFInversionSampler", "gamma", "Required input is missing"]),
]
