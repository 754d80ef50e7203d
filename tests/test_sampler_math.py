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
