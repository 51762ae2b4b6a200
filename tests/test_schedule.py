"""Math identities and pinned values of the noise schedules (DDPM eq. 4 and 7; iDDPM eq. 17; angle rates)."""
import math

import pytest
import torch

from helpers import diffusion_cfg

from diffpipe.core.errors import ConfigError
from diffpipe.diffusion.schedule import NoiseSchedule, angle_signal_rates, cosine_betas, linear_betas


def test_linear_betas_endpoints_and_length():
    betas = linear_betas(1000, 1e-4, 0.02)
    assert betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(0.02)


def test_posterior_variance_pinned_values():
    s = NoiseSchedule.from_config(diffusion_cfg())
    # beta_tilde_0 = 0 (alpha_bar_{-1} = 1); at t = 999 it is just below beta_999 = 0.02.
    assert s.posterior_variance[0].item() == 0.0
    expected = 0.02 * (1 - s.alpha_bar_f64[998].item()) / (1 - s.alpha_bar_f64[999].item())
    assert s.posterior_variance[999].item() == pytest.approx(expected, rel=1e-6)
    assert 0.0199 < s.posterior_variance[999].item() < 0.02
    # alpha_bar_T for the DDPM schedule is ~4e-5: x_T is almost pure noise.
    assert s.alpha_bar[-1].item() == pytest.approx(4.04e-5, rel=0.02)


def test_q_sample_statistics_match_closed_form():
    s = NoiseSchedule.from_config(diffusion_cfg())
    torch.manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    for t_val in (0, 250, 999):
        t = torch.full((20000,), t_val)
        x_t = s.q_sample(x0, t, torch.randn_like(x0))
        ab = s.alpha_bar[t_val].item()
        assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=0.02)
        assert x_t.var().item() == pytest.approx(1 - ab, abs=0.03)


def test_x0_round_trip():
    s = NoiseSchedule.from_config(diffusion_cfg())
    torch.manual_seed(1)
    x0, eps = torch.rand(8, 1, 4, 4) * 2 - 1, torch.randn(8, 1, 4, 4)
    t = torch.tensor([0, 1, 10, 100, 500, 900, 998, 999])
    x0_back = s.predict_x0(s.q_sample(x0, t, eps), t, eps)
    torch.testing.assert_close(x0_back, x0, atol=2e-3, rtol=0)  # t = 999 divides by sqrt(4e-5)


def test_cosine_alpha_bar_follows_formula():
    T, s_ = 1000, 0.008
    s = NoiseSchedule(cosine_betas(T, s_))
    for t in (0, 100, 500, 900):
        f = lambda u: math.cos((u / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
        assert s.alpha_bar_f64[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-6)


def test_angle_rates_closed_forms():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    signal, noise = angle_signal_rates(t, 0.95, 0.02)
    torch.testing.assert_close(signal ** 2 + noise ** 2, torch.ones_like(t))
    assert signal[0].item() == pytest.approx(0.95)
    assert signal[-1].item() == pytest.approx(0.02)
    assert torch.all(signal[1:] < signal[:-1])
    sched = NoiseSchedule.from_config(diffusion_cfg(num_timesteps=100, schedule="angle"))
    assert sched.alpha_bar_f64[-1].item() == pytest.approx(0.02 ** 2)


@pytest.mark.parametrize("kwargs, key", [
    ({"beta_start": 0.02, "beta_end": 0.01}, "diffusion.beta_end"),
    ({"num_timesteps": 0}, "diffusion.num_timesteps"),
    ({"beta_start": 0.0}, "diffusion.beta_start"),
])
def test_bad_schedule_params_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        diffusion_cfg(**kwargs)
