"""The pure-torch math of sampler/, on its own (the module the host loaded, no host calls)."""
import pytest
import torch


@pytest.fixture(scope="module")
def rf(pack):
    return pack.sampler


def test_eta_window_follows_start_and_stop_as_fractions_of_the_steps(rf):
    etas = rf.eta_schedule(28, 0.9, 0.0, 0.25)
    assert etas[:7] == [0.9] * 7 and etas[7:] == [0.0] * 21  # the paper's 7 of 28
    assert rf.eta_schedule(10, 1.0, 0.3, 0.5) == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert rf.eta_schedule(4, 1.0, 0.1, 0.2) == [0.0] * 4  # a window with no step in it


def test_linear_trends_ramp_over_the_window(rf):
    up = rf.eta_schedule(8, 0.8, 0.0, 0.5, "linear_increase")
    down = rf.eta_schedule(8, 0.8, 0.0, 0.5, "linear_decrease")
    assert up[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and up[4:] == [0.0] * 4
    assert down[:4] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    for trend in rf.ETA_TRENDS:  # one step in the window: the full eta, no division by zero
        assert rf.eta_schedule(4, 0.7, 0.75, 1.0, trend) == [0, 0, 0, 0.7]
    with pytest.raises(ValueError, match="eta_trend"):
        rf.eta_schedule(4, 0.7, 0.0, 1.0, "cosine")


def test_gamma_one_ignores_the_model_even_where_it_is_huge(rf):
    x, y1 = torch.randn(2, 3), torch.randn(2, 3)
    huge = torch.full((2, 3), 1e30)
    u = rf.controlled_forward_velocity(x, huge, torch.tensor(1e-4), y1, 1.0)
    assert torch.equal(u, (y1 - x) / (1 - torch.tensor(1e-4)))
    u0 = rf.controlled_forward_velocity(x, huge, torch.tensor(0.5), y1, 0.0)
    assert torch.allclose(u0, (x - huge) / 0.5)


def test_the_inversion_telescopes_to_y1_on_any_increasing_schedule(rf):
    x = torch.randn(1, 4, 3, 3)
    y1 = torch.randn(1, 4, 3, 3)
    sigmas = torch.tensor([1e-4, 0.01, 0.3, 0.31, 0.9, 0.999, 1.0])
    out = rf.sample_rf_inversion(lambda x, s, **kw: torch.zeros_like(x), x, sigmas, disable=True, y1=y1, gamma=1.0)
    assert torch.allclose(out, y1, rtol=0, atol=1e-6)


def test_the_controlled_denoised_blend(rf):
    d, y0 = torch.randn(3, 2), torch.randn(1, 2)
    assert torch.equal(rf.controlled_denoised(d, y0, 0.0), d)
    assert torch.equal(rf.controlled_denoised(d, y0, 1.0), y0.expand(3, 2))
    assert torch.allclose(rf.controlled_denoised(d, y0, 0.25), 0.75 * d + 0.25 * y0)


def test_the_sde_step_ends(rf):
    x, d, xi = torch.randn(4), torch.randn(4), torch.randn(4)
    # the last step returns the denoised estimate: no noise left in the image
    assert torch.allclose(rf.rectified_sde_step(x, d, 0.2, 0.0, xi), d)
    # at sigma = 1 the drift is singular: a plain Euler step
    assert torch.allclose(rf.rectified_sde_step(x, d, 1.0, 0.9, xi), x - 0.1 * (x - d))
    # eta = 1 removes the noise (the paper's (1 - eta) factor)
    a = rf.rectified_sde_step(x, d, 0.5, 0.4, xi, eta=1.0)
    b = rf.rectified_sde_step(x, d, 0.5, 0.4, -xi, eta=1.0)
    assert torch.equal(a, b)
    # otherwise the noise has the variance 2 sigma (sigma - sigma_next) / (1 - sigma)
    c = rf.rectified_sde_step(x, d, 0.5, 0.4, torch.zeros(4))
    assert torch.allclose(rf.rectified_sde_step(x, d, 0.5, 0.4, xi) - c, xi * (2 * 0.5 * 0.1 / 0.5) ** 0.5)


def test_seeded_noise_is_randomnoise_and_leaves_the_global_state(rf):
    state = torch.get_rng_state()
    a = rf.seeded_noise((2, 3), 5, torch.zeros(()))
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(5)  # what ComfyUI's RandomNoise does with seed 5
    b = torch.randn((2, 3), dtype=torch.float32, generator=None)
    torch.set_rng_state(state)
    assert torch.equal(a, b)


# --- the step rules (SOLVERS.md) ---------------------------------------------------------------

class Linear:
    """D for the field dx/dsigma = x: D = x - sigma * x, whose exact flow is x * exp(sigma_next - sigma).
    Counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma, **kwargs):
        self.calls += 1
        s = sigma.reshape(-1, *[1] * (x.ndim - 1)) if torch.is_tensor(sigma) else sigma
        return x - s * x


def plain(x, sigma, denoised):
    return (x - denoised) / sigma


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("fireflow", 2)])
def test_each_step_rule_has_its_order_on_a_linear_field(rf, solver, order):
    step = rf.solver_step(solver)
    x = torch.ones(1, dtype=torch.float64)
    errors = []
    for n in (16, 32, 64):
        model, state, carried = Linear(), x, None
        levels = [0.2 + 0.5 * i / n for i in range(n + 1)]
        for a, b in zip(levels, levels[1:]):
            state, _, carried = step(model, plain, state, a, b, carried)
        assert model.calls == rf.network_calls(solver, n)
        errors.append(abs(float(state) - float(torch.exp(torch.tensor(0.5, dtype=torch.float64)))))
    for coarse, fine in zip(errors, errors[1:]):
        assert coarse / fine == pytest.approx(2 ** order, rel=0.15), errors


def test_network_calls_and_unknown_solvers(rf):
    assert [rf.network_calls(s, 28) for s in rf.SOLVERS] == [28, 56, 29]
    assert rf.network_calls("fireflow", 0) == 0
    with pytest.raises(ValueError, match="solver must be one of"):
        rf.solver_step("rk4")
    with pytest.raises(ValueError, match="Euler-Maruyama"):
        rf.sample_controlled_reverse(Linear(), torch.ones(1, 2), torch.tensor([1.0, 0.0]), disable=True,
                                     noise=lambda: torch.zeros(1, 2), solver="midpoint")


class CountingSigmas(torch.Tensor):
    """A schedule that counts its reads to the host (item, float, tolist, bool): on CUDA each one waits
    for the device."""
    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.tolist, torch.Tensor.__bool__):
            CountingSigmas.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("solver", ["euler", "midpoint", "fireflow"])
def test_the_schedule_is_read_on_the_host_once_per_run(rf, solver):
    x, y = torch.randn(1, 2, 3), torch.randn(1, 2, 3)
    up = torch.linspace(1e-4, 1.0, 9).as_subclass(CountingSigmas)
    down = torch.linspace(1.0, 0.0, 9).as_subclass(CountingSigmas)
    runs = [
        lambda: rf.sample_rf_inversion(Linear(), x, up, disable=True, y1=y, gamma=0.5, solver=solver),
        lambda: rf.sample_controlled_reverse(Linear(), x, down, disable=True, y0=y, etas=[0.9] * 8, solver=solver),
    ]
    if solver == "euler":
        runs += [lambda: rf.sample_controlled_reverse(Linear(), x, down, disable=True, y0=y, etas=[0.5] * 8,
                                                      noise=lambda: torch.zeros_like(x)),
                 lambda: rf.sample_rectified_sde(Linear(), x, down, disable=True)]
    for run in runs:
        CountingSigmas.reads = 0
        out = run()
        assert torch.isfinite(out.as_subclass(torch.Tensor)).all()
        assert CountingSigmas.reads == 1, "the schedule was read on the host more than once"
