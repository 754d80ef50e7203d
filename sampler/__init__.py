"""The math of the pack: pure torch, no ComfyUI import (see rf_inversion.py)."""
from .rf_inversion import (  # noqa: F401
    ETA_TRENDS,
    NoiseStream,
    controlled_denoised,
    controlled_forward_velocity,
    eta_schedule,
    rectified_sde_step,
    sample_controlled_reverse,
    sample_rectified_sde,
    sample_rf_inversion,
    seeded_noise,
    velocity,
)
