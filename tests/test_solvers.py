"""The solvers (SOLVERS.md) in the real host, through SamplerCustomAdvanced, with exact fields in Flux's
model class, under Flux's shift and SD3's shift 3: the control targets stay exact for every solver,
the second-order solvers are second order on one pass, and network calls are counted, not assumed."""
import pytest
import torch

from harness import exact_models as em
from malformed_prompts import combo_refused, missing
from test_malformed import error_text
from test_samplers import SHAPE, STEPS, SHIFTS, Flow, partial, rel, y1_of

SOLVERS = ["euler", "midpoint", "fireflow"]
FIELDS = ["gaussian", "mixture"]
CALLS = {"euler": lambda n: n, "midpoint": lambda n: 2 * n, "fireflow": lambda n: n + 1}
S = 0.5  # the Gaussian's standard deviation (Flow's field)


@pytest.fixture(scope="module")
def flow(node):
    return Flow(node)


def field_of(flow, kind):
    if kind == "gaussian":
        return flow.field
    return em.GaussianMixture([flow.mu, -flow.mu], [0.5, 0.3], [0.5, 0.5])


def counted(flow, model, action):
    """The result of ``action`` and the network calls it made."""
    before = flow.calls(model)
    out = action()
    return out, flow.calls(model) - before


# --- the control targets, for every solver ---------------------------------------------------

@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("steps", STEPS)
def test_gamma_one_and_eta_one_stay_exact(flow, solver, field, shift, steps):
    model = flow.model(shift, field_of(flow, field))
    sigmas = flow.sigmas(model, steps)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=1.0, seed=7, solver=solver)
    assert rel(inverted["samples"], model.model.process_latent_out(y1_of(7, SHAPE))) <= 1e-5
    half = flow.invert(model, image, sigmas, gamma=0.5, solver=solver)
    out = flow.reverse(model, half, image, sigmas, eta=1.0, start=0.0, stop=1.0, solver=solver)["samples"]
    assert rel(out, image["samples"]) <= 1e-5


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("steps", STEPS)
def test_partial_strength_targets_stay_exact(flow, solver, shift, steps):
    model = flow.model(shift)
    sigmas = partial(flow.sigmas(model, steps))
    flipped = flow.node("FlipSigmas").execute(sigmas)[0]
    s0, s1 = float(flipped[0]), float(flipped[-1])
    image = flow.image(model, 1)
    y0, y1 = model.model.process_latent_in(image["samples"]), y1_of(7, SHAPE)
    expected = model.model.process_latent_out(y1 + (y0 - y1) * (1 - s1) / (1 - s0))  # the line toward y1
    inverted = flow.invert(model, image, sigmas, gamma=1.0, solver=solver)
    assert rel(inverted["samples"], expected) <= 1e-5
    out = flow.reverse(model, inverted, image, sigmas, eta=1.0, start=0.0, stop=1.0, solver=solver)["samples"]
    assert rel(out, image["samples"]) <= 1e-5


def test_eta_window_edges_stay_exact_for_fireflow(flow):
    """fireflow carries the network's velocity over a step, never the controlled field: with eta = 1 on
    the last step only, after steps without control, the reverse still lands on y0."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=0.5, solver="fireflow")
    out = flow.reverse(model, inverted, image, sigmas, eta=1.0, start=0.875, stop=1.0, solver="fireflow")
    assert rel(out["samples"], image["samples"]) <= 1e-5


# --- order of accuracy ----------------------------------------------------------------------

def exact_inversion(flow, model, latent, sigma_start):
    """Where the Gaussian field's flow from the input latent, taken as the state at ``sigma_start``,
    arrives at sigma = 1, in model space: x_s = (1 - s) mu + sqrt((1 - s)^2 S^2 + s^2) / S (x0 - mu)
    inverted at sigma_start for x0, then evaluated at 1: (x0 - mu) / S."""
    mu = flow.mu.double()
    x = model.model.process_latent_in(latent["samples"]).double()
    a = 1.0 - sigma_start
    x0 = mu + (x - a * mu) * S / (a * a * S * S + sigma_start ** 2) ** 0.5
    return (x0 - mu) / S


def pass_errors(flow, shift, solver, steps_list):
    """One-pass (inversion) and round-trip errors, and the network calls of each pass, per step count."""
    model = flow.model(shift)
    image = flow.image(model, 1)
    rows = []
    for steps in steps_list:
        sigmas = flow.sigmas(model, steps)
        flipped = flow.node("FlipSigmas").execute(sigmas)[0]
        target = exact_inversion(flow, model, image, float(flipped[0]))
        inverted, inv_calls = counted(flow, model, lambda: flow.invert(model, image, sigmas, gamma=0.0, solver=solver))
        back, rev_calls = counted(flow, model, lambda: flow.reverse(model, inverted, image, sigmas, eta=0.0, solver=solver))
        rows.append({"steps": steps, "one_pass": rel(model.model.process_latent_in(inverted["samples"]), target),
                     "round_trip": rel(back["samples"], image["samples"]), "calls": (inv_calls, rev_calls)})
    return rows


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("solver", SOLVERS)
def test_order_of_accuracy_and_network_calls(flow, shift, solver):
    e14, e28 = pass_errors(flow, shift, solver, (14, 28))
    for row in (e14, e28):
        n = row["steps"]
        assert row["calls"] == (CALLS[solver](n), CALLS[solver](n)), row
    one_pass = e14["one_pass"] / e28["one_pass"]
    round_trip = e14["round_trip"] / e28["round_trip"]
    if solver == "euler":  # first order: doubling the steps about halves the error
        assert 1.6 < one_pass < 2.5, (e14, e28)
        assert 1.6 < round_trip < 2.5, (e14, e28)
    else:  # second order: at least 4 times smaller, on one pass and on the round trip
        assert one_pass >= 4.0, (e14, e28)
        assert round_trip >= 4.0, (e14, e28)


def test_at_56_network_calls_the_second_order_solvers_reconstruct_30_times_better(flow):
    """The paper's budget, 28 + 28 network calls, on the Gaussian field under Flux's shift."""
    budget = {"euler": 28, "midpoint": 14, "fireflow": 27}  # steps per pass for 28 calls per pass
    errors = {}
    for solver, steps in budget.items():
        (row,) = pass_errors(flow, "flux", solver, (steps,))
        assert sum(row["calls"]) == 56, (solver, row)
        errors[solver] = row["round_trip"]
    assert errors["midpoint"] * 30 <= errors["euler"], errors
    assert errors["fireflow"] * 30 <= errors["euler"], errors


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("node_id,args", [("RFInversionSampler", (0.5, 0)),
                                          ("ControlledReverseSampler", ({"samples": torch.zeros(SHAPE)}, 0.9, 0.0,
                                                                        0.25, "constant", False, 0))])
def test_a_solver_outside_the_list(node, node_id, args):
    with pytest.raises(ValueError) as error:
        node(node_id).execute(*args, "rk4")
    message = str(error.value)
    title = {"RFInversionSampler": "RF-Inversion Sampler", "ControlledReverseSampler": "Controlled Reverse Sampler"}
    for needle in (title[node_id], "solver", "'rk4'", "euler, midpoint, fireflow"):
        assert needle in message, message


@pytest.mark.parametrize("solver", ["midpoint", "fireflow"])
def test_stochastic_with_a_second_order_solver_is_refused(node, solver):
    with pytest.raises(ValueError) as error:
        node("ControlledReverseSampler").execute({"samples": torch.zeros(SHAPE)}, 0.9, 0.0, 0.25, "constant", True, 0,
                                                 solver)
    message = str(error.value)
    for needle in ("Controlled Reverse Sampler", "stochastic", solver, "Set solver to euler"):
        assert needle in message, message


def test_the_server_reports_an_unknown_solver_naming_the_node_input_and_choices(server):
    """A pasted workflow with a wrong solver: the host's validation refuses it (0.33 checks V3 combos
    before running), or the node's own check does (0.3.75 checks them only in the web UI); either way
    the message names the node, the input and the choices."""
    prompt = {
        "1": {"class_type": "RFInversionSampler", "inputs": {"gamma": 0.5, "seed": 0, "solver": "rk4"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    text = error_text(server, prompt)
    needles = combo_refused("RF-Inversion Sampler", "RFInversionSampler", "solver", "rk4", ["euler", "midpoint", "fireflow"])
    assert not missing(text, needles), text


def test_the_solver_is_the_last_input_of_both_nodes(server):
    """Saved workflows store widget values by position: the new input must come after all the others."""
    info = server.get("/object_info")
    for node_id, before in (("RFInversionSampler", ["gamma", "seed"]),
                            ("ControlledReverseSampler", ["reference", "eta", "start", "stop", "eta_trend",
                                                          "stochastic", "seed"])):
        order = info[node_id]["input_order"]
        assert order["required"] == before and order["optional"][0] == "solver", order  # later inputs follow it
        solver = info[node_id]["input"]["optional"]["solver"]
        assert solver[1]["options"] == SOLVERS and solver[1]["default"] == "euler"
        assert "network call" in solver[1]["tooltip"]
