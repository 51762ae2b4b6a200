"""The schema of `params.yaml`: one frozen dataclass per section, and the rules within and across sections.

This is the one place that says which settings exist and what they mean. Each field is declared once, with
`key(...)` (core/config.py): its type (the annotation), a one-line description, its allowed range (checked by
the loader) and, for a key added later to `model`, `diffusion` or `train`, the `legacy` value that older
checkpoints load with. docs/params.md is generated from these declarations: `python scripts/params_doc.py
--write`. The `check` methods hold only the rules that tie keys together.

There are no defaults: every key lives in `params.yaml` and a missing one is an error naming it. Every stage
loads and checks the whole file with `load_params` before any work, so a bad `dvc exp run -S …` fails in the
first stage that runs, in one line. The network's own arithmetic (does the U-Net's up path fit its skips, does
the image size fit the down-sampling) is checked where the network is built (nets/builder.py `check_model`),
before any training.

Why one module rather than a dataclass beside each user: the whole file must be checked by every stage,
and this module imports nothing heavier than the loader, so checking params never makes a stage depend on
the networks or the metrics code (see the deps in dvc.yaml). The code that uses a section imports its
class from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from .config import from_dict, key, read_yaml, require
from .errors import ConfigError

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16"]


# ---- prepare -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageFolderConfig:
    """`prepare.images`: how image folders are read (used only when the input is a folder)."""

    image_size: int = key("S: output images are S×S pixels", ge=1)
    channels: int = key("1 = luminance (ITU-R 601-2, Pillow's `L`), 3 = RGB", choices={1: "grey", 3: "RGB"})
    background: tuple[int, ...] = key("RGB colour that transparent pixels are composited onto", ge=0, le=255,
                                      length=3, why="an RGB colour")
    reference_fraction: float = key("share of the images held out as FID/KID reference images", ge=0, lt=1)
    split_seed: int = key("seed of the train/reference permutation", ge=0)


@dataclass(frozen=True)
class PrepareConfig:
    """`prepare`: which rows of the data are used, the preview grid, and the labels."""

    train_limit: int = key("use the first N training rows; 0 = all", ge=0)
    reference_limit: int = key("use the first N reference rows (the FID/KID real images); 0 = all", ge=0)
    preview_count: int = key("training images shown in the preview grid", ge=1)
    num_classes: int = key("labels are integers 0 … num_classes - 1, written beside the images; 0 = unlabelled data",
                           ge=2, or_zero=True, why="0 = unlabelled data")
    images: ImageFolderConfig = key("how an image-folder input is read")


# ---- diffusion -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffusionConfig:
    """`diffusion`: the noise schedule and what the network predicts. Each schedule reads its own keys; all are
    kept so that `-S diffusion.schedule=…` works."""

    num_timesteps: int = key("T, the number of diffusion steps", ge=1)
    schedule: Literal["linear", "cosine", "angle"] = key(
        "linear betas (DDPM), cosine alpha-bar (improved DDPM) or the angle schedule (the flowers DDIM system)")
    beta_start: float = key("linear schedule: beta at the first step", gt=0, lt=1, when=("schedule", "linear"))
    beta_end: float = key("linear schedule: beta at the last step", gt=0, lt=1, when=("schedule", "linear"))
    cosine_s: float = key("cosine schedule: the offset s of improved DDPM", gt=0, when=("schedule", "cosine"))
    max_signal_rate: float = key("angle schedule: signal rate at t = 0", gt=0, lt=1, when=("schedule", "angle"))
    min_signal_rate: float = key("angle schedule: signal rate at t = 1", gt=0, lt=1, when=("schedule", "angle"))
    prediction: Literal["eps", "v", "x0"] = key(
        "what the network outputs and training regresses it on: the noise eps (DDPM), v = sqrt(alpha_bar) eps - "
        "sqrt(1 - alpha_bar) x0 (Salimans & Ho 2022) or x0 itself; every sampler takes any of them",
        legacy="eps")
    zero_terminal_snr: bool = key("rescale the betas so that alpha_bar at the last step is exactly 0, the first "
                                  "unchanged (zero terminal SNR, Lin et al. 2023, Algorithm 1); needs prediction v "
                                  "or x0", legacy=False)

    def check(self, key: str) -> None:
        require(not (self.zero_terminal_snr and self.prediction == "eps"), f"{key}.zero_terminal_snr",
                f"needs {key}.prediction v or x0: at ᾱ = 0 the noise eps says nothing of x0 (got prediction eps)")
        if self.schedule == "linear":
            require(self.beta_end > self.beta_start, f"{key}.beta_end",
                    f"must be greater than {key}.beta_start ({self.beta_end} <= {self.beta_start})")
        if self.schedule == "angle":
            require(self.min_signal_rate < self.max_signal_rate, f"{key}.max_signal_rate",
                    f"and {key}.min_signal_rate must satisfy 0 < min_signal_rate < max_signal_rate < 1")


# ---- model ---------------------------------------------------------------------------------------------

HALVES = "down/up-sampling halves channels"

@dataclass(frozen=True)
class UNetConfig:
    """`model.unet`: the MNIST DDPM system's U-Net, built from channel lists and layer counts. Whether the up
    path fits the skips is the network's own arithmetic (nets/unet.py `channel_plan`)."""

    down_ch: tuple[int, ...] = key("channels of the first conv, then of each DownC block", ge=1, even=True, min_len=2,
                                   why=HALVES)
    mid_ch: tuple[int, ...] = key("channels entering the MidC blocks (= the last down_ch), then of each MidC block",
                                  ge=1, even=True, min_len=2, why=HALVES)
    up_ch: tuple[int, ...] = key("channels entering each UpC block (up-sampled input + skip), then the last one's "
                                 "output", ge=1, even=True, why=HALVES)
    down_sample: tuple[bool, ...] = key("per DownC block: halve the image size (the UpC blocks mirror it)")
    num_down_layers: int = key("resnet blocks (each with its attention) per DownC block", ge=1)
    num_mid_layers: int = key("attention + resnet pairs per MidC block, after its first resnet block", ge=1)
    num_up_layers: int = key("resnet blocks (each with its attention) per UpC block", ge=1)
    t_emb_dim: int = key("width of the sinusoidal time embedding and its MLP", ge=2, even=True)
    norm_groups: int = key("GroupNorm groups; must divide every channel count", ge=1)
    num_heads: int = key("attention heads; must divide every attention width", ge=1)
    attn_down: tuple[bool, ...] = key("per DownC block: self-attention after each resnet block")
    attn_mid: bool = key("self-attention in the MidC blocks")
    attn_up: tuple[bool, ...] = key("per UpC block: self-attention after each resnet block")

    def check(self, key: str) -> None:
        nd = len(self.down_ch) - 1
        require(len(self.down_sample) == nd, f"{key}.down_sample",
                f"needs len({key}.down_ch) - 1 = {nd} flags, got {len(self.down_sample)}")
        require(len(self.up_ch) == nd + 1, f"{key}.up_ch",
                f"needs as many entries as {key}.down_ch ({nd + 1}), got {len(self.up_ch)}")
        require(len(self.attn_down) == nd, f"{key}.attn_down",
                f"needs {nd} flags (one per down block), got {len(self.attn_down)}")
        require(len(self.attn_up) == nd, f"{key}.attn_up", f"needs {nd} flags (one per up block), got {len(self.attn_up)}")
        for name in ("down_ch", "mid_ch", "up_ch"):
            for c in getattr(self, name):
                require(c % self.norm_groups == 0, f"{key}.{name}",
                        f"has channel count {c}, which is not divisible by {key}.norm_groups = {self.norm_groups}")
        require(self.mid_ch[0] == self.down_ch[-1], f"{key}.mid_ch",
                f"must start with the last down channel count {self.down_ch[-1]}, got {self.mid_ch[0]}")
        attention = [c for c, a in zip(self.down_ch[1:], self.attn_down) if a]
        attention += list(self.mid_ch[1:]) if self.attn_mid else []
        attention += [c for c, a in zip(self.up_ch[1:], self.attn_up) if a]
        for c in attention:
            require(c % self.num_heads == 0, f"{key}.num_heads", f"({self.num_heads}) must divide every attention width ({c})")


@dataclass(frozen=True)
class ResUNetConfig:
    """`model.resunet`: the flowers DDIM system's residual U-Net, built from a width list and a block depth."""

    widths: tuple[int, ...] = key("channels of each resolution level; each level after the first halves the image",
                                  ge=1, min_len=2)
    block_depth: int = key("residual blocks per level (down and up)", ge=1)
    embedding_dims: int = key("width of the sinusoidal noise-variance embedding", ge=2, even=True)
    embedding_min_frequency: float = key("lowest frequency of the sinusoidal embedding", gt=0)
    embedding_max_frequency: float = key("highest frequency of the sinusoidal embedding", gt=0)

    def check(self, key: str) -> None:
        require(self.embedding_min_frequency < self.embedding_max_frequency, f"{key}.embedding_max_frequency",
                "must exceed embedding_min_frequency > 0")


@dataclass(frozen=True)
class ModelConfig:
    """`model`: `model.arch` picks the network; each has its own sub-section, both always present."""

    arch: Literal["unet", "resunet"] = key("the network: the MNIST DDPM U-Net or the flowers DDIM residual U-Net")
    num_classes: int = key("0 = unconditional; K = a learned label embedding (K classes + a null token) added to "
                           "the time / noise embedding: class-conditional, with classifier-free guidance",
                           ge=2, or_zero=True, why="0 = unconditional", legacy=0)
    unet: UNetConfig = key("the U-Net (used with arch: unet)")
    resunet: ResUNetConfig = key("the residual U-Net (used with arch: resunet)")


# ---- train ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    """`train`: the optimiser, the loss, the EMA, the device, and what the run writes on the way."""

    epochs: int = key("training epochs", ge=1)
    repeats: int = key("passes over the training set per epoch (the flowers source repeats its set 5 times)", ge=1,
                       legacy=1)
    batch_size: int = key("images per optimizer step (split between the processes)", ge=1)
    keep: Literal["best", "last"] = key("the checkpoint kept: lowest mean epoch loss (MNIST source) or final "
                                        "weights (flowers source)", legacy="best")
    lr: float = key("Adam learning rate (the peak, with warm-up or a cosine decay)", gt=0)
    lr_schedule: Literal["constant", "cosine"] = key("cosine: decays to 0 at the last step (ties the run to "
                                                     "train.epochs)", legacy="constant")
    warmup_steps: int = key("linear learning-rate warm-up over the first N optimizer steps; 0 = none", ge=0,
                            legacy=0)
    loss: Literal["mse", "l1"] = key("the loss on the network's output against its target (diffusion.prediction)")
    min_snr_gamma: float = key("Min-SNR-gamma loss weight (Hang et al. 2023) min(SNR, gamma) / SNR for eps, "
                               "/ (SNR + 1) for v, alone for x0; 0 = off (uniform, DDPM's L_simple)", ge=0,
                               legacy=0.0)
    timesteps: Literal["uniform", "lognormal"] = key(
        "the training noise levels: t uniform over the T steps (DDPM), or EDM's log-normal over sigma = "
        "sqrt((1 - alpha_bar) / alpha_bar), ln sigma ~ N(lognormal_mean, lognormal_std²) (Karras et al. 2022, "
        "sec. 5), each step t drawn with the probability that falls in its sigma bin", legacy="uniform")
    lognormal_mean: float = key("timesteps lognormal: the mean of ln sigma (EDM's P_mean)", legacy=-1.2,
                                when=("timesteps", "lognormal"))
    lognormal_std: float = key("timesteps lognormal: the standard deviation of ln sigma (EDM's P_std)", gt=0,
                               legacy=1.2, when=("timesteps", "lognormal"))
    ema_decay: float = key("decay of the exponential moving average of the weights (sampling uses the EMA)",
                           ge=0, lt=1)
    ema_warmup: bool = key("decay_t = min(decay, (1 + step) / (10 + step)): early EMA tracks the weights")
    normalize: bool = key("per-channel mean/std normalisation of the data (the flowers DDIM system)")
    seed: int = key("initial weights, batch order and training noise", ge=0)
    device: Device = key("auto = cuda if available, else cpu")
    precision: Precision = key("bf16 = autocast (the schedule's math stays fp32)")
    compile: bool = key("torch.compile the network")
    channels_last: bool = key("channels-last memory layout (faster convolutions on CPU); sampling uses the same")
    log_every: int = key("log the loss every N optimizer steps", ge=1)
    grid_images: int = key("per-epoch preview grid: images; 0 = none", ge=0)
    grid_steps: int = key("per-epoch preview grid: the sampler's steps", ge=1)
    grid_sampler: Literal["ddim", "dpmpp_2m", "dpmpp_2m_sde", "heun"] = key(
        "per-epoch preview grid: the sampler (as sample.sampler; DDPM's T steps would cost too much here)",
        legacy="ddim")
    grid_eta: float = key("per-epoch preview grid: the sampler's eta (as sample.eta)", ge=0, le=1, legacy=0.0)
    checkpoint_every: int = key("save the resumable state every N steps (and at each epoch end); 0 = epoch ends "
                                "only", ge=0)
    processes: int = key("torchrun processes (DistributedDataParallel); each step's batch is split between them",
                         ge=1, legacy=1)
    cond_drop_prob: float = key("with model.num_classes: share of images trained with the null label "
                                "(classifier-free guidance), drawn per image position; unused when unconditional",
                                ge=0, lt=1, legacy=0.1)

    def check(self, key: str) -> None:
        require(self.batch_size >= self.processes, f"{key}.batch_size",
                f"({self.batch_size}) must be at least {key}.processes ({self.processes}): each process needs images")

    def preview_sampler(self) -> "SamplerSpec":
        """The per-epoch preview: grid_sampler at grid_steps and grid_eta, x0 clamped where the data range is [-1, 1]."""
        return SamplerSpec(sampler=self.grid_sampler, steps=self.grid_steps, eta=self.grid_eta,
                           clip_x0=not self.normalize)


# ---- sampling ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplerSpec:
    """One sampler setting, wherever one is named: `sample`, each `sweep.points.<name>`, the training preview.

    DDPM walks all T steps (its `steps` is only range-checked); DDIM walks `steps` of them with noise `eta`;
    the solvers (diffusion/solvers.py) take `steps` steps: DPM-Solver++(2M) and its SDE variant one network
    evaluation each, Heun (EDM) two each but the last, with `eta` as its churn.
    """

    sampler: Literal["ddpm", "ddim", "dpmpp_2m", "dpmpp_2m_sde", "heun"] = key(
        "DDPM (ancestral, all T steps), DDIM (a subsequence of the steps), DPM-Solver++(2M) (deterministic), "
        "SDE-DPM-Solver++(2M) (stochastic) or Heun (EDM's second-order sampler)")
    steps: int = key("steps S of DDIM and the solvers (DDPM always walks all T); network evaluations per image: "
                     "S, Heun 2S - 1", ge=1)
    eta: float = key("DDIM: eta (eq. 16), 0 = deterministic, 1 = DDPM-like noise; Heun: EDM's churn per step "
                     "gamma = min(eta, sqrt(2) - 1) (0 = deterministic); DDPM and DPM-Solver++: unused", ge=0, le=1)
    clip_x0: bool = key("clamp x0_pred to the data range [-1, 1] at every step (in data units, also with "
                        "train.normalize); the source clamps only for display")

    def check_timesteps(self, num_timesteps: int, key: str) -> None:
        require(self.steps <= num_timesteps, f"{key}.steps",
                f"({self.steps}) must not exceed the number of diffusion steps T = {num_timesteps}")
        if self.sampler.startswith("dpmpp"):
            require(self.steps < num_timesteps, f"{key}.steps",
                    f"({self.steps}) of DPM-Solver++ must be below the number of diffusion steps T = {num_timesteps}")


@dataclass(frozen=True)
class SampleConfig(SamplerSpec):
    """`sample`: a sampler (the keys of SamplerSpec: sampler, steps, eta, clip_x0) plus how many images, in what
    batches, and the pictures."""

    num_images: int = key("images sampled (the FID/KID set)", ge=1)
    batch_size: int = key("images per sampling batch", ge=1)
    first_seed: int = key("image i uses seed first_seed + i", ge=0)
    device: Device = key("auto = cuda if available, else cpu")
    precision: Precision = key("bf16 = autocast (the schedule's math stays fp32)")
    grid_images: int = key("images in the sample grid", ge=1)
    process_seeds: int = key("reverse-process pictures for seeds first_seed … first_seed + process_seeds - 1", ge=1)
    process_frames: int = key("GIF frames (evenly spaced steps)", ge=2)
    strip_columns: int = key("x0-prediction columns in the strip", ge=2)
    processes: int = key("torchrun processes: images are split between them by index and gathered", ge=1)
    labels: tuple[int, ...] = key("class-conditional models: image i gets labels[i % len(labels)]; [] = "
                                  "unconditional", ge=0)
    guidance_scale: float = key("w: eps = eps_uncond + w (eps_cond - eps_uncond); 1 = conditional, "
                                "0 = unconditional", ge=0)

    def check(self, key: str) -> None:
        require(self.labels or self.guidance_scale == 1.0, f"{key}.guidance_scale",
                f"({self.guidance_scale}) guides towards a label: set {key}.labels, or keep 1.0 for unlabelled samples")

    def check_labels(self, num_classes: int, where: str) -> None:
        check_labels(self.labels, num_classes, where, "sample.labels")


def check_labels(labels: tuple[int, ...], num_classes: int, where: str, key: str) -> None:
    """Requested labels (params key `key`) fit a model of `num_classes` classes (0 = unconditional) read from
    `where`."""
    if labels and num_classes == 0:
        raise ConfigError(f"params key `{key}` asks for labels {list(labels)}, but {where} is an unconditional "
                          "model (model.num_classes = 0)")
    bad = [c for c in labels if c >= num_classes]
    if bad:
        raise ConfigError(f"params key `{key}` has class {bad[0]}, but {where} has {num_classes} classes "
                          f"(0-{num_classes - 1})")


# ---- classifier ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierConfig:
    """`classifier`: the small CNN behind the in-domain metrics (trained on the labelled training split)."""

    widths: tuple[int, ...] = key("one conv block per entry (3x3 conv, BatchNorm, ReLU, 2x2 max-pool)",
                                  ge=1, min_len=1)
    feature_dim: int = key("width of the penultimate layer: the features of the Frechet distance fd_classifier",
                           ge=1)
    epochs: int = key("training epochs", ge=1)
    batch_size: int = key("images per optimizer step", ge=1)
    lr: float = key("Adam learning rate, cosine-annealed to 0 over the run", gt=0)
    seed: int = key("initial weights and batch order", ge=0)
    device: Device = key("auto = cuda if available, else cpu")

    def check_image(self, size: int) -> None:
        """Each block halves the image: fail before training if nothing would be left."""
        require(size >= 2 ** len(self.widths), "classifier.widths",
                f"has {len(self.widths)} blocks, each halving the image; {size} px images allow at most "
                f"{max(size.bit_length() - 1, 0)}")


# ---- evaluation ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalConfig:
    """`evaluate`: FID/KID against the held-out real images, and the classifier's in-domain metrics."""

    num_real: int = key("first N reference images used for the real statistics", ge=2,
                        why="a covariance needs two samples")
    batch_size: int = key("images per Inception (and classifier) forward pass", ge=1)
    kid_subset_size: int = key("images per KID subset (<= num_real and <= the number of samples)", ge=2,
                               why="unbiased MMD")
    kid_subsets: int = key("KID subsets averaged", ge=1)
    confidence: float = key("confident_fraction: share of samples whose top classifier probability is >= this",
                            gt=0, le=1)
    device: Device = key("auto = cuda if available, else cpu")
    seed: int = key("KID subset sampling")
    processes: int = key("torchrun processes for the Inception features (evaluate and reference_features)", ge=1)

    def check(self, key: str) -> None:
        require(self.kid_subset_size <= self.num_real, f"{key}.kid_subset_size",
                f"must not exceed {key}.num_real ({self.num_real}), got {self.kid_subset_size}")


@dataclass(frozen=True)
class TimestepLossConfig:
    """`timestep_loss`: the held-out noise-prediction error in timestep buckets (a DVC plot)."""

    buckets: int = key("timestep buckets (equal ranges of t)", ge=1)
    num_images: int = key("held-out images, each noised at a timestep of every bucket", ge=1)
    batch_size: int = key("images per forward pass", ge=1)
    seed: int = key("timesteps and noise")


@dataclass(frozen=True)
class SweepConfig:
    """`sweep`: sampler settings compared from one checkpoint; the one `sweep` stage samples and scores each
    point in turn, from the checkpoint and the reference features alone (it reads no other stage's settings)."""

    num_images: int = key("images per point, seeds first_seed … first_seed + num_images - 1", ge=2)
    batch_size: int = key("images per sampling batch", ge=1)
    first_seed: int = key("image i uses seed first_seed + i")
    kid_subset_size: int = key("images per KID subset (<= num_images and <= the reference features' rows)", ge=2)
    kid_subsets: int = key("KID subsets averaged", ge=1)
    kid_seed: int = key("KID subset sampling")
    feature_batch_size: int = key("images per Inception (and classifier) forward pass", ge=1)
    device: Device = key("auto = cuda if available, else cpu")
    labels: tuple[int, ...] = key("class-conditional models: image i of every point gets labels[i % len(labels)]; "
                                  "[] = unconditional", ge=0)
    guidance_scale: float = key("w of the points (the guidance points set their own); 1 = conditional", ge=0)
    points: dict[str, SamplerSpec] = key("name -> sampler settings, sampled with sweep.labels at "
                                         "sweep.guidance_scale", min_len=1)
    guidance_scales: tuple[float, ...] = key("class-conditional models: one more point per scale, guidance_point's "
                                             "sampler with sweep.labels, scored also by the classifier's agreement "
                                             "with the label; [] = none", ge=0)
    guidance_point: str = key("the point whose sampler settings the guidance points use")

    def check(self, key: str) -> None:
        require(self.kid_subset_size <= self.num_images, f"{key}.kid_subset_size",
                f"must be in [2, {key}.num_images = {self.num_images}], got {self.kid_subset_size}")
        require(not self.guidance_scales or self.guidance_point in self.points, f"{key}.guidance_point",
                f"({self.guidance_point!r}) must name one of {key}.points: {sorted(self.points)}")
        require(self.labels or self.guidance_scale == 1.0, f"{key}.guidance_scale",
                f"({self.guidance_scale}) guides towards a label: set {key}.labels, or keep 1.0 for unlabelled samples")
        require(not self.guidance_scales or bool(self.labels), f"{key}.guidance_scales",
                f"needs {key}.labels: guidance steers towards requested labels")

    def check_labels(self, num_classes: int, where: str) -> None:
        check_labels(self.labels, num_classes, where, "sweep.labels")

    def point(self, name: str) -> SamplerSpec:
        if name not in self.points:
            raise ConfigError(f"params key `sweep.points.{name}` does not exist; points: {sorted(self.points)}")
        return self.points[name]


# ---- the whole file ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Params:
    """The whole params file: one section per stage."""

    prepare: PrepareConfig = key("the data: rows used, the image-folder reader, labels")
    diffusion: DiffusionConfig = key("the noise schedule and the prediction target (stored in the checkpoint)")
    model: ModelConfig = key("the network (stored in the checkpoint)")
    train: TrainConfig = key("training (stored in the checkpoint)")
    sample: SampleConfig = key("the sample stage: its sampler, the images and the pictures")
    classifier: Optional[ClassifierConfig] = key("the in-domain classifier; null for unlabelled data (no "
                                                 "classifier stage)")
    evaluate: EvalConfig = key("the evaluate stage's metrics")
    timestep_loss: TimestepLossConfig = key("the held-out loss per timestep bucket")
    sweep: Optional[SweepConfig] = key("the sampler sweep; null in a pipeline without one")

    def check(self, key: str) -> None:
        """Rules across sections."""
        T = self.diffusion.num_timesteps
        self.sample.check_timesteps(T, "sample")
        if self.classifier is not None:
            require(self.prepare.num_classes >= 2, "prepare.num_classes",
                    f"is {self.prepare.num_classes} (unlabelled data), but a classifier needs labels: set the number "
                    "of classes, or `classifier: null`")
        require(self.train.grid_steps <= T, "train.grid_steps",
                f"({self.train.grid_steps}) must not exceed the number of diffusion steps T = {T}")
        require(self.evaluate.kid_subset_size <= self.sample.num_images, "evaluate.kid_subset_size",
                f"({self.evaluate.kid_subset_size}) must not exceed sample.num_images ({self.sample.num_images})")
        if self.prepare.reference_limit:
            require(self.evaluate.num_real <= self.prepare.reference_limit, "evaluate.num_real",
                    f"({self.evaluate.num_real}) must not exceed prepare.reference_limit ({self.prepare.reference_limit})")
        require(self.model.num_classes in (0, self.prepare.num_classes), "model.num_classes",
                f"({self.model.num_classes}) must be 0 (unconditional) or prepare.num_classes "
                f"({self.prepare.num_classes}), the classes of the data")
        if self.sample.labels:
            self.sample.check_labels(self.model.num_classes, "params.yaml's `model`")
        if self.sweep is not None:
            if self.sweep.labels:
                self.sweep.check_labels(self.model.num_classes, "params.yaml's `model`")
            for name, point in self.sweep.points.items():
                point.check_timesteps(T, f"sweep.points.{name}")
            require(self.sweep.kid_subset_size <= self.evaluate.num_real, "sweep.kid_subset_size",
                    f"({self.sweep.kid_subset_size}) must not exceed evaluate.num_real ({self.evaluate.num_real}), "
                    "the rows of the reference features")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check the whole params file; any problem is one ConfigError naming the key."""
    return from_dict(Params, read_yaml(path), "")
