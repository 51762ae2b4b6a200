"""Fast solvers (solvers.py): DPM-Solver++(2M) and its SDE variant against diffusers' DPMSolverMultistepScheduler
step by step, EDM's Heun against diffusers' HeunDiscreteScheduler(use_karras_sigmas=True), and Heun/Euler against the
exact probability-flow ODE solution for Gaussian data (second / first order)."""
import math
import types

import numpy as np
import pytest
import torch

from diffpipe.diffusion.noise import ImageNoise
from diffpipe.diffusion.schedule import NoiseSchedule, cosine_betas, linear_betas
from diffpipe.diffusion.solvers import (dpm_solver_pp_2m_sample, dpm_solver_timesteps, heun_sample, karras_sigmas,
                                        sigma_table, sigma_to_t, solver_nfe, solver_timesteps, t_to_alpha_bar,
                                        t_to_sigma)

T = 1000
SHAPE = (2, 3, 3)
SEEDS = [11, 12, 13]
# diffusers calls np.array on torch tensors, which numpy 2 warns about with this torch: not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are a few dozen numbers: intra-op threads only spin (seconds on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def schedule(name: str) -> NoiseSchedule:
    return NoiseSchedule(linear_betas(T, 1e-4, 0.02) if name == "linear" else cosine_betas(T))


def diffusers_config(name: str) -> dict:
    """The same betas in diffusers' terms (its "squaredcos_cap_v2" is Nichol & Dhariwal's cosine, eq. 17)."""
    if name == "linear":
        return dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    return dict(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")


def toy_eps(s: NoiseSchedule):
    """A fixed analytic noise predictor, nonlinear in x and smooth in (fractional) t: sigma_t x + alpha_t p(x, t), so
    x0_pred = alpha_t x - sigma_t p(x, t) stays O(1) (sigma_t x alone is the exact eps of data at 0)."""
    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, *([1] * (x.dim() - 1)))
        ab = t_to_alpha_bar(s, t).to(x)
        t = t.to(x)
        p = 0.3 * torch.tanh(x) * torch.cos(t / 150.0) + 0.05 * torch.sin(t / 37.0)
        return (1 - ab).sqrt() * x + ab.sqrt() * p
    return eps


def toy_denoise(s: NoiseSchedule):
    """The Denoise contract built from toy_eps: x0 = (x - sqrt(1 - ab) eps) / sqrt(ab), ab at (fractional) t."""
    toy = toy_eps(s)

    def denoise(x, t):
        eps = toy(x, t)
        ab = t_to_alpha_bar(s, t).to(x).view(-1, *([1] * (x.dim() - 1)))
        return (x - (1 - ab).sqrt() * eps) / ab.sqrt(), eps
    return denoise


def gaussian_denoise(s: NoiseSchedule, mu: float, std: float):
    """The exact denoiser of data x0 ~ N(mu, std²) per pixel: with x̂ = x_t / alpha_t = x0 + sigma eps (EDM's
    sigma), E[x0 | x_t] = mu + std² / (std² + sigma²) (x̂ - mu), and eps = (x̂ - x0_pred) / sigma."""
    def denoise(x, t):
        sigma = t_to_sigma(s, t).to(x).view(-1, *([1] * (x.dim() - 1)))
        x_hat = x * (1 + sigma ** 2).sqrt()
        x0 = mu + std ** 2 / (std ** 2 + sigma ** 2) * (x_hat - mu)
        return x0, (x_hat - x0) / sigma
    return denoise


def exact_ode(x_hat: torch.Tensor, sigma_from: float, sigma_to: float, mu: float, std: float) -> torch.Tensor:
    """The probability-flow ODE dx̂/dsigma = (x̂ - D(x̂; sigma)) / sigma = sigma / (std² + sigma²) (x̂ - mu) for
    Gaussian data, solved: x̂(sigma) - mu = (x̂(sigma_0) - mu) sqrt((std² + sigma²) / (std² + sigma_0²))."""
    return mu + (x_hat - mu) * math.sqrt((std ** 2 + sigma_to ** 2) / (std ** 2 + sigma_from ** 2))


class _Float64(types.ModuleType):
    """A module seen through a lens that reads its `float32` as float64 (all else passes through)."""

    def __init__(self, module, float64):
        super().__init__(module.__name__)
        self._module, self.float32 = module, float64

    def __getattr__(self, name):
        return getattr(self._module, name)


@pytest.fixture
def diffusers64(monkeypatch):
    """diffusers' DPM-Solver and Heun schedulers computing in float64: their modules' `torch.float32` (betas, the
    upcast of the sample and noise in `step`) and `np.float32` (the sigma table of `set_timesteps`) read as float64.
    Their code runs unchanged; only the rounding to float32 goes, so that 1e-6 compares algorithms, not roundings."""
    pytest.importorskip("diffusers")
    from diffusers.schedulers import scheduling_dpmsolver_multistep, scheduling_heun_discrete
    for module in (scheduling_dpmsolver_multistep, scheduling_heun_discrete):
        monkeypatch.setattr(module, "torch", _Float64(torch, torch.float64))
        monkeypatch.setattr(module, "np", _Float64(np, np.float64))
    return scheduling_dpmsolver_multistep.DPMSolverMultistepScheduler, scheduling_heun_discrete.HeunDiscreteScheduler


def test_cosine_betas_are_diffusers_squaredcos_cap_v2(diffusers64):
    dpm, _ = diffusers64
    ours = cosine_betas(T)
    theirs = dpm(**diffusers_config("cosine")).betas
    assert theirs.dtype == torch.float64
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


@pytest.mark.parametrize("steps", [1, 5, 10, 20, 50, 999])
def test_dpm_solver_timesteps_are_diffusers_linspace(steps):
    pytest.importorskip("diffusers")
    from diffusers import DPMSolverMultistepScheduler
    sched = DPMSolverMultistepScheduler(**diffusers_config("linear"))
    sched.set_timesteps(steps)
    assert dpm_solver_timesteps(T, steps) == sched.timesteps.tolist()
    assert dpm_solver_timesteps(T, 10) == [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
    with pytest.raises(ValueError):
        dpm_solver_timesteps(T, T)


def run_diffusers_dpm(scheduler_cls, name, algorithm, steps, x_T, step_noise):
    toy = toy_eps(schedule(name))
    sched = scheduler_cls(**diffusers_config(name), algorithm_type=algorithm, solver_order=2, solver_type="midpoint",
                          prediction_type="epsilon", lower_order_final=True, final_sigmas_type="zero",
                          timestep_spacing="linspace")
    sched.set_timesteps(steps)
    x = x_T.clone()
    for i, t in enumerate(sched.timesteps):
        eps = toy(x, t.repeat(len(x)))
        x = sched.step(eps, t, x, variance_noise=step_noise[i] if algorithm.startswith("sde") else None).prev_sample
    return x


@pytest.mark.parametrize("steps", [5, 10, 20])
@pytest.mark.parametrize("algorithm", ["dpmsolver++", "sde-dpmsolver++"])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_dpm_solver_pp_2m_matches_diffusers(diffusers64, name, algorithm, steps):
    """Step for step the same x as diffusers on the same x_T and (SDE) the same per-step noise: our ImageNoise's
    draws, handed to diffusers' `step(..., variance_noise=)`. The last step's noise is multiplied by sigma = 0 in
    diffusers and not drawn here."""
    dpm, _ = diffusers64
    s = schedule(name)
    noise = ImageNoise(SEEDS, SHAPE)
    x_T = noise.randn().double()
    stochastic = algorithm == "sde-dpmsolver++"
    ours = dpm_solver_pp_2m_sample(toy_denoise(s), s, noise, dpm_solver_timesteps(T, steps), stochastic=stochastic,
                                   x_T=x_T)
    reference = ImageNoise(SEEDS, SHAPE)
    reference.randn()  # x_T
    step_noise = [reference.randn().double() for _ in range(steps - 1)] + [torch.zeros_like(x_T)]
    theirs = run_diffusers_dpm(dpm, name, algorithm, steps, x_T, step_noise)
    assert ours.dtype == theirs.dtype == torch.float64
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-6, diff
    assert noise.draws == (steps if stochastic else 1)


@pytest.mark.parametrize("algorithm", ["dpmsolver++", "sde-dpmsolver++"])
def test_dpm_solver_pp_2m_float32_matches_diffusers_as_shipped(algorithm):
    """diffusers as it ships (float32 tables and steps) against our float32 run: the same to float32 rounding."""
    pytest.importorskip("diffusers")
    from diffusers import DPMSolverMultistepScheduler
    s = schedule("linear")
    noise = ImageNoise(SEEDS, SHAPE)
    x_T = noise.randn()
    ours = dpm_solver_pp_2m_sample(toy_denoise(s), s, noise, dpm_solver_timesteps(T, 10),
                                   stochastic=algorithm.startswith("sde"), x_T=x_T)
    reference = ImageNoise(SEEDS, SHAPE)
    reference.randn()
    step_noise = [reference.randn() for _ in range(9)] + [torch.zeros_like(x_T)]
    theirs = run_diffusers_dpm(DPMSolverMultistepScheduler, "linear", algorithm, 10, x_T, step_noise)
    assert ours.dtype == theirs.dtype == torch.float32
    assert (ours - theirs).abs().max().item() <= 1e-5  # measured 4.8e-7 (ODE), 1.7e-6 (SDE)


@pytest.mark.parametrize("steps", [5, 10, 20])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_heun_matches_diffusers_karras(diffusers64, name, steps):
    """EDM's Heun on the eq. 5 grid == HeunDiscreteScheduler(use_karras_sigmas=True): the same sigmas, the same
    fractional timesteps at every network call, the same x. diffusers starts from whatever sample it is given; ours
    starts from x_T sqrt(1 + sigma_max²) (x_T / alpha_{T-1}), handed to both."""
    _, heun = diffusers64
    s = schedule(name)
    sched = heun(**diffusers_config(name), use_karras_sigmas=True, prediction_type="epsilon")
    sched.set_timesteps(steps)
    sigmas = karras_sigmas(s, steps)
    torch.testing.assert_close(torch.cat([sched.sigmas[::2], sched.sigmas[-1:]]), sigmas, atol=0, rtol=1e-12)
    np.testing.assert_allclose(sched.timesteps.numpy(), solver_timesteps("heun", s, steps), atol=1e-9, rtol=0)

    x_T = ImageNoise(SEEDS, SHAPE).randn().double()
    x = x_T * math.sqrt(1 + sigmas[0].item() ** 2)
    toy = toy_eps(s)
    for t in sched.timesteps:
        eps = toy(sched.scale_model_input(x, t), t.repeat(len(x)))
        x = sched.step(eps, t, x).prev_sample
    ours = heun_sample(toy_denoise(s), s, ImageNoise(SEEDS, SHAPE), steps, x_T=x_T)
    diff = (ours - x).abs().max().item()
    assert diff <= 1e-6, diff


MU, STD = 0.3, 0.5


def heun_errors(second_order: bool, steps_list, at_sigma_min: bool) -> list[float]:
    """Max |x_0 - exact| for the exact Gaussian denoiser, linear schedule, from the same x_T. at_sigma_min: the
    reference is the exact ODE solution at sigma_min followed by the solver's own last step (Euler to sigma = 0,
    which is x̂ -> D(x̂; sigma_min)): the error of the steps from sigma_max to sigma_min alone, without the fixed
    O(sigma_min²) error of that last step (about 1e-4 here), which stays as the steps grow."""
    s = schedule("linear")
    x_T = ImageNoise(SEEDS, SHAPE).randn().double()
    table = sigma_table(s)
    sigma_min, sigma_max = table[0].item(), table[-1].item()
    x_hat = x_T * math.sqrt(1 + sigma_max ** 2)
    if at_sigma_min:
        x_min = exact_ode(x_hat, sigma_max, sigma_min, MU, STD)
        exact = MU + STD ** 2 / (STD ** 2 + sigma_min ** 2) * (x_min - MU)
    else:
        exact = exact_ode(x_hat, sigma_max, 0.0, MU, STD)
    denoise = gaussian_denoise(s, MU, STD)
    return [(heun_sample(denoise, s, ImageNoise(SEEDS, SHAPE), n, second_order=second_order, x_T=x_T) - exact)
            .abs().max().item() for n in steps_list]


def test_heun_is_second_order_on_the_exact_gaussian_ode():
    """Doubling the steps divides Heun's error by about 4 (measured 4.48, 4.23, 4.11 from 20 to 160 steps: the
    asymptotic 4 from above), and the error against the exact solution to sigma = 0 falls alike to 80 steps
    (4.54, 4.50; beyond, it meets the last Euler step's fixed error)."""
    steps = [20, 40, 80, 160]
    err = heun_errors(True, steps, at_sigma_min=True)
    ratios = [a / b for a, b in zip(err, err[1:])]
    assert all(3.5 < r < 5.5 for r in ratios), (err, ratios)
    assert abs(ratios[-1] - 4) < 0.5, ratios
    err0 = heun_errors(True, steps[:3], at_sigma_min=False)
    assert all(3.5 < a / b < 5.5 for a, b in zip(err0, err0[1:])), err0
    assert err0[-1] < 5e-3  # measured 4.2e-3 at 80 steps (NFE 159)


def test_euler_is_first_order_on_the_exact_gaussian_ode():
    """The contrast: Euler (Heun without its correction) halves its error when the steps double (measured 1.97,
    1.98)."""
    err = heun_errors(False, [20, 40, 80], at_sigma_min=False)
    ratios = [a / b for a, b in zip(err, err[1:])]
    assert all(1.8 < r < 2.2 for r in ratios), (err, ratios)


def pushforward_moments(sample_fn) -> tuple[float, float]:
    """For Gaussian data the exact denoiser is affine in x_t, so every deterministic solver maps x_T affinely:
    x_0 = b + a x_T. With x_T ~ N(0, I) the output is N(b, a²) exactly: two runs (x_T = 0, 1) give its mean and
    std."""
    out = sample_fn(torch.tensor([0.0, 1.0], dtype=torch.float64).view(2, 1, 1, 1)).flatten()
    return out[0].item(), (out[1] - out[0]).item()


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_deterministic_solvers_reach_the_gaussian_moments(name):
    """Data N(0.3, 1) per pixel (unit variance, as normalised data), exact denoiser. The exact ODE maps the prior
    N(0, I) at t = T-1 to N(mu - alpha mu a, a²), a = std / sqrt(ab std² + 1 - ab) (= the data's moments to 1e-5).
    DPM-Solver++(2M) with 10 steps (NFE 10) comes within 6% of the std (measured -5.3% linear, -2.3% cosine; with
    an exact last step, t = 100 -> sigma = 0, they would be +0.07%, -0.9%), with 20 within 1%. Heun on the linear
    schedule: +19.7% with 10 steps (NFE 19), +4.0% with 20 (NFE 39)."""
    mu, std = 0.3, 1.0
    s = schedule(name)
    ab = s.alpha_bar_f64[-1].item()
    a = std / math.sqrt(ab * std ** 2 + 1 - ab)
    exact_mean, exact_std = mu - math.sqrt(ab) * mu * a, a
    denoise = gaussian_denoise(s, mu, std)
    for steps, tol in [(10, 0.06), (20, 0.01)]:
        mean, sd = pushforward_moments(lambda x_T: dpm_solver_pp_2m_sample(
            denoise, s, None, dpm_solver_timesteps(T, steps), x_T=x_T))
        assert abs(mean - exact_mean) < 1e-3 and abs(sd / exact_std - 1) < tol, (steps, mean, sd)
    if name == "linear":
        for steps, tol in [(10, 0.22), (20, 0.05)]:
            mean, sd = pushforward_moments(lambda x_T: heun_sample(denoise, s, None, steps, x_T=x_T))
            assert abs(mean - exact_mean) < 1e-3 and abs(sd / exact_std - 1) < tol, (steps, mean, sd)


@pytest.mark.parametrize("solver", ["dpmpp_2m", "dpmpp_2m_sde", "heun", "euler"])
def test_network_calls_are_counted_and_at_the_listed_timesteps(solver):
    s = schedule("linear")
    seen = []

    def denoise(x, t):
        seen.append(t[0].item())
        assert t.dtype == torch.float32 and torch.all(t == t[0])
        return toy_denoise(s)(x, t)

    steps = 7
    noise = ImageNoise(SEEDS, SHAPE)
    if solver.startswith("dpmpp"):
        out = dpm_solver_pp_2m_sample(denoise, s, noise, dpm_solver_timesteps(T, steps),
                                      stochastic=solver.endswith("sde"))
    else:
        out = heun_sample(denoise, s, noise, steps, second_order=solver == "heun")
    assert out.dtype == torch.float32 and out.shape == (len(SEEDS), *SHAPE)
    assert len(seen) == solver_nfe(solver, steps) == {"heun": 13}.get(solver, 7)
    np.testing.assert_allclose(seen, solver_timesteps(solver, s, steps), rtol=1e-6)


def test_sigma_t_helpers_invert_each_other_and_hit_the_table():
    s = schedule("linear")
    table = sigma_table(s)
    torch.testing.assert_close(t_to_sigma(s, torch.arange(T)), table, atol=0, rtol=1e-12)
    torch.testing.assert_close(t_to_alpha_bar(s, torch.arange(T)), s.alpha_bar_f64, atol=0, rtol=1e-12)
    t = torch.tensor([0.0, 0.25, 17.5, 500.0, 998.9, 999.0], dtype=torch.float64)
    torch.testing.assert_close(sigma_to_t(s, t_to_sigma(s, t)), t, atol=1e-9, rtol=0)


def test_sigma_to_t_is_diffusers():
    """diffusers' _sigma_to_t on the same table, including sigmas outside it (clipped to [0, T-1])."""
    pytest.importorskip("diffusers")
    from diffusers import HeunDiscreteScheduler
    s = schedule("linear")
    table = sigma_table(s)
    sigmas = np.array([1e-3, table[0].item(), 0.5, 3.0, 80.0, table[-1].item(), 500.0])
    theirs = HeunDiscreteScheduler(**diffusers_config("linear"))._sigma_to_t(sigmas, np.log(table.numpy()))
    np.testing.assert_allclose(sigma_to_t(s, torch.from_numpy(sigmas)).numpy(), theirs, atol=1e-9)


@pytest.mark.parametrize("solver", ["dpmpp_2m", "heun"])
def test_x0_bounds_clamp_every_prediction_and_callback_sees_each_step(solver):
    s = schedule("linear")

    def wild(x, t):  # x0 predictions far outside [-1, 1]
        eps = -3.0 * x
        ab = t_to_alpha_bar(s, t).to(x).view(-1, 1, 1, 1)
        return (x - (1 - ab).sqrt() * eps) / ab.sqrt(), eps

    calls = []
    cb = lambda i, t, x_t, x0: calls.append((i, x0.abs().max().item()))  # noqa: E731
    noise = ImageNoise(SEEDS, SHAPE)
    if solver == "dpmpp_2m":
        out = dpm_solver_pp_2m_sample(wild, s, noise, dpm_solver_timesteps(T, 6), callback=cb, x0_bounds=(-1.0, 1.0))
    else:
        out = heun_sample(wild, s, noise, 6, callback=cb, x0_bounds=(-1.0, 1.0))
    assert [i for i, _ in calls] == list(range(6))
    assert all(m <= 1.0 for _, m in calls)
    assert out.abs().max().item() <= 1.0 + 1e-6  # the last step lands on the clamped x0 (DPM) / D (Heun's Euler)


def test_stochastic_images_do_not_depend_on_the_batch():
    """Per-image noise streams: SDE-DPM-Solver++ and Heun with churn give an image the same in any batch."""
    s = schedule("linear")
    runs = {
        "sde": lambda seeds: dpm_solver_pp_2m_sample(toy_denoise(s), s, ImageNoise(seeds, SHAPE),
                                                     dpm_solver_timesteps(T, 8), stochastic=True),
        "churn": lambda seeds: heun_sample(toy_denoise(s), s, ImageNoise(seeds, SHAPE), 8, s_churn=10.0),
    }
    for run in runs.values():
        torch.testing.assert_close(run([5, 6, 7])[1:2], run([6]), atol=1e-6, rtol=0)


def test_heun_churn():
    """Algorithm 2: churn only where S_tmin <= sigma_i <= S_tmax, one noise draw per churned step, and none with the
    window empty (then it is Algorithm 1). The churned level is capped at sigma_max, so the first step has none."""
    s = schedule("linear")
    plain = heun_sample(toy_denoise(s), s, ImageNoise(SEEDS, SHAPE), 8)
    empty = ImageNoise(SEEDS, SHAPE)
    torch.testing.assert_close(heun_sample(toy_denoise(s), s, empty, 8, s_churn=40.0, s_tmin=1e3), plain,
                               atol=0, rtol=0)
    assert empty.draws == 1
    noise = ImageNoise(SEEDS, SHAPE)
    churned = heun_sample(toy_denoise(s), s, noise, 8, s_churn=40.0, s_tmin=0.05, s_tmax=50.0)
    sigmas = karras_sigmas(s, 8)[:-1]
    assert noise.draws == 1 + int(((sigmas >= 0.05) & (sigmas <= 50.0)).sum())
    assert (churned - plain).abs().max().item() > 1e-3
