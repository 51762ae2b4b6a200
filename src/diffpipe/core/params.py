"""The schema of `params.yaml`: one frozen dataclass per section, and the rules within and across sections.

This is the one place that says which settings exist. There are no defaults: every key lives in
`params.yaml` and a missing one is an error naming it. Every stage loads and checks the whole file with
`load_params` before any work, so a bad `dvc exp run -S …` fails in the first stage that runs, in one line.

Why one module rather than a dataclass beside each user: the whole file must be checked by every stage,
and this module imports nothing heavier than the loader, so checking params never makes a stage depend on
the networks or the metrics code (see the deps in dvc.yaml). The code that uses a section imports its
class from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from .config import from_dict, read_yaml, require
from .errors import ConfigError

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16"]


# ---- prepare -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageFolderConfig:
    """`prepare.images`: how image folders are read (used only when the input is a folder)."""

    image_size: int  # S: output images are S×S
    channels: int  # 1 = luminance (ITU-R 601-2, Pillow's "L"), 3 = RGB
    background: tuple[int, ...]  # RGB 0-255 that transparent pixels are composited onto
    reference_fraction: float  # share of the images held out as FID/KID reference, in [0, 1)
    split_seed: int  # seed of the train/reference permutation

    def check(self, key: str) -> None:
        require(self.image_size >= 1, f"{key}.image_size", f"must be >= 1, got {self.image_size}")
        require(self.channels in (1, 3), f"{key}.channels", f"must be 1 (grey) or 3 (RGB), got {self.channels}")
        require(len(self.background) == 3 and all(0 <= v <= 255 for v in self.background), f"{key}.background",
                f"must be three integers 0-255 (an RGB colour), got {list(self.background)}")
        require(0.0 <= self.reference_fraction < 1.0, f"{key}.reference_fraction",
                f"must be in [0, 1) (a share of the images), got {self.reference_fraction}")
        require(self.split_seed >= 0, f"{key}.split_seed", f"must be >= 0, got {self.split_seed}")


@dataclass(frozen=True)
class PrepareConfig:
    train_limit: int  # use the first N training rows; 0 = all
    reference_limit: int  # use the first N reference rows (FID/KID real images); 0 = all
    preview_count: int  # training images shown in the preview grid
    num_classes: int  # labels are integers 0 .. num_classes - 1, written beside the images; 0 = unlabelled data
    images: ImageFolderConfig

    def check(self, key: str) -> None:
        require(self.train_limit >= 0, f"{key}.train_limit", f"must be >= 0 (0 = all rows), got {self.train_limit}")
        require(self.num_classes == 0 or self.num_classes >= 2, f"{key}.num_classes",
                f"must be 0 (unlabelled data) or at least 2 classes, got {self.num_classes}")
        require(self.reference_limit >= 0, f"{key}.reference_limit",
                f"must be >= 0 (0 = all rows), got {self.reference_limit}")
        require(self.preview_count >= 1, f"{key}.preview_count", f"must be >= 1, got {self.preview_count}")


# ---- diffusion -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffusionConfig:
    """The noise schedule. Each schedule reads its own keys; all are kept so `-S diffusion.schedule=…` works."""

    num_timesteps: int  # T
    schedule: Literal["linear", "cosine", "angle"]
    beta_start: float  # linear
    beta_end: float  # linear
    cosine_s: float  # cosine (improved DDPM offset s)
    max_signal_rate: float  # angle (the flowers DDIM system)
    min_signal_rate: float  # angle

    def check(self, key: str) -> None:
        require(self.num_timesteps >= 1, f"{key}.num_timesteps", f"must be >= 1, got {self.num_timesteps}")
        if self.schedule == "linear":
            require(0 < self.beta_start < 1, f"{key}.beta_start", f"must be in (0, 1), got {self.beta_start}")
            require(0 < self.beta_end < 1, f"{key}.beta_end", f"must be in (0, 1), got {self.beta_end}")
            require(self.beta_end > self.beta_start, f"{key}.beta_end",
                    f"must be greater than {key}.beta_start ({self.beta_end} <= {self.beta_start})")
        if self.schedule == "cosine":
            require(self.cosine_s > 0, f"{key}.cosine_s", f"must be > 0, got {self.cosine_s}")
        if self.schedule == "angle":
            require(0 < self.min_signal_rate < self.max_signal_rate < 1, f"{key}.max_signal_rate",
                    f"and {key}.min_signal_rate must satisfy 0 < min_signal_rate < max_signal_rate < 1")


# ---- model ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UNetConfig:
    """`model.unet`: the MNIST DDPM system's U-Net, built from channel lists and layer counts."""

    down_ch: tuple[int, ...]
    mid_ch: tuple[int, ...]
    up_ch: tuple[int, ...]
    down_sample: tuple[bool, ...]
    num_down_layers: int
    num_mid_layers: int
    num_up_layers: int
    t_emb_dim: int
    norm_groups: int
    num_heads: int
    attn_down: tuple[bool, ...]  # one flag per DownC block
    attn_mid: bool
    attn_up: tuple[bool, ...]  # one flag per UpC block

    def check(self, key: str) -> None:
        nd = len(self.down_ch) - 1
        require(nd >= 1, f"{key}.down_ch", f"needs at least 2 entries, got {list(self.down_ch)}")
        require(len(self.mid_ch) >= 2, f"{key}.mid_ch", f"needs at least 2 entries, got {list(self.mid_ch)}")
        require(len(self.down_sample) == nd, f"{key}.down_sample",
                f"needs len({key}.down_ch) - 1 = {nd} flags, got {len(self.down_sample)}")
        require(len(self.up_ch) == nd + 1, f"{key}.up_ch",
                f"needs as many entries as {key}.down_ch ({nd + 1}), got {len(self.up_ch)}")
        require(len(self.attn_down) == nd, f"{key}.attn_down",
                f"needs {nd} flags (one per down block), got {len(self.attn_down)}")
        require(len(self.attn_up) == nd, f"{key}.attn_up", f"needs {nd} flags (one per up block), got {len(self.attn_up)}")
        for name in ("num_down_layers", "num_mid_layers", "num_up_layers"):
            require(getattr(self, name) >= 1, f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        require(self.t_emb_dim >= 2 and self.t_emb_dim % 2 == 0, f"{key}.t_emb_dim",
                f"must be even and >= 2, got {self.t_emb_dim}")
        require(self.norm_groups >= 1, f"{key}.norm_groups", f"must be >= 1, got {self.norm_groups}")
        require(self.num_heads >= 1, f"{key}.num_heads", f"must be >= 1, got {self.num_heads}")
        for name in ("down_ch", "mid_ch", "up_ch"):
            for c in getattr(self, name):
                require(c >= 1 and c % self.norm_groups == 0, f"{key}.{name}",
                        f"has channel count {c}, which is not divisible by {key}.norm_groups = {self.norm_groups}")
                require(c % 2 == 0, f"{key}.{name}", f"has odd channel count {c}; down/up-sampling halves channels")
        require(self.mid_ch[0] == self.down_ch[-1], f"{key}.mid_ch",
                f"must start with the last down channel count {self.down_ch[-1]}, got {self.mid_ch[0]}")
        attention = [c for c, a in zip(self.down_ch[1:], self.attn_down) if a]
        attention += list(self.mid_ch[1:]) if self.attn_mid else []
        attention += [c for c, a in zip(self.up_ch[1:], self.attn_up) if a]
        for c in attention:
            require(c % self.num_heads == 0, f"{key}.num_heads", f"({self.num_heads}) must divide every attention width ({c})")
        self.channel_plan()  # raises ConfigError if the up path does not fit the skips

    @property
    def total_downsampling(self) -> int:
        return 2 ** sum(self.down_sample)

    def channel_plan(self) -> list[tuple[int, int, bool]]:
        """Per UpC block: (channels entering its first resnet block, out channels, up flag).

        The source's arithmetic: Upsample halves the incoming channels, then the skip (the input of the
        matching DownC) is concatenated; the sum must equal up_ch[i], the block's declared width.
        """
        skips = list(self.down_ch[:-1])
        x_ch = self.mid_ch[-1]
        plan = []
        for i, up in enumerate(reversed(self.down_sample)):
            in_ch, out_ch = self.up_ch[i], self.up_ch[i + 1]
            if up and x_ch != in_ch:
                raise ConfigError(
                    f"params key `model.unet.up_ch` entry {i} ({in_ch}) must equal the channels reaching that up "
                    f"block ({x_ch}, from model.unet.mid_ch / the previous up block) because it is up-sampled")
            concat = (x_ch // 2 if up else x_ch) + skips.pop()
            if concat != in_ch:
                raise ConfigError(
                    f"params key `model.unet.up_ch` entry {i} ({in_ch}) must equal the up-sampled channels plus "
                    f"the skip channels ({concat}); adjust model.unet.up_ch or model.unet.down_ch")
            plan.append((concat, out_ch, up))
            x_ch = out_ch
        return plan

    def check_image(self, channels: int, size: int) -> None:
        """Fail before training if the data's image size does not fit the down-sampling."""
        f = self.total_downsampling
        if size % f != 0:
            raise ConfigError(f"params key `model.unet.down_sample` down-samples by {f} in total, which does not "
                              f"divide the image size {size}")


@dataclass(frozen=True)
class ResUNetConfig:
    """`model.resunet`: the flowers DDIM system's residual U-Net, built from a width list and a block depth."""

    widths: tuple[int, ...]
    block_depth: int
    embedding_dims: int
    embedding_min_frequency: float
    embedding_max_frequency: float

    def check(self, key: str) -> None:
        require(len(self.widths) >= 2, f"{key}.widths", f"needs at least 2 entries, got {list(self.widths)}")
        require(all(w >= 1 for w in self.widths), f"{key}.widths", "entries must be >= 1")
        require(self.block_depth >= 1, f"{key}.block_depth", f"must be >= 1, got {self.block_depth}")
        require(self.embedding_dims >= 2 and self.embedding_dims % 2 == 0, f"{key}.embedding_dims",
                f"must be even and >= 2, got {self.embedding_dims}")
        require(0 < self.embedding_min_frequency < self.embedding_max_frequency, f"{key}.embedding_max_frequency",
                "must exceed embedding_min_frequency > 0")

    def check_image(self, channels: int, size: int) -> None:
        f = 2 ** (len(self.widths) - 1)
        if size % f != 0:
            raise ConfigError(f"params key `model.resunet.widths` down-samples by {f} in total "
                              f"({len(self.widths) - 1} pooling steps), which does not divide the image size {size}")


@dataclass(frozen=True)
class ModelConfig:
    """`model.arch` picks the network; each has its own sub-section, both always present."""

    arch: Literal["unet", "resunet"]
    num_classes: int  # 0 = unconditional (the source systems); K = a learned label embedding (K classes + a null
    # token) added to the time / noise embedding: class-conditional, with classifier-free guidance
    unet: UNetConfig
    resunet: ResUNetConfig

    def check(self, key: str) -> None:
        require(self.num_classes == 0 or self.num_classes >= 2, f"{key}.num_classes",
                f"must be 0 (unconditional) or at least 2 classes, got {self.num_classes}")

    def check_image(self, channels: int, size: int) -> None:
        (self.unet if self.arch == "unet" else self.resunet).check_image(channels, size)


# ---- train ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    repeats: int  # passes over the training set per epoch (the flowers source repeats its set 5 times)
    batch_size: int
    keep: Literal["best", "last"]  # the checkpoint kept: lowest mean epoch loss (MNIST source) or final (flowers)
    lr: float
    lr_schedule: Literal["constant", "cosine"]  # cosine: decays to 0 at the last step (ties the run to train.epochs)
    warmup_steps: int  # linear learning-rate warm-up over the first N optimizer steps (0 = none)
    loss: Literal["mse", "l1"]
    min_snr_gamma: float  # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 = uniform, DDPM's L_simple
    ema_decay: float
    ema_warmup: bool  # decay_t = min(decay, (1 + step) / (10 + step)): early EMA tracks the weights
    normalize: bool  # per-channel mean/std normalisation of the data (the flowers DDIM system)
    seed: int
    device: Device
    precision: Precision
    compile: bool
    channels_last: bool
    log_every: int
    grid_images: int  # per-epoch preview grid: images (0 = none)
    grid_steps: int  # per-epoch preview grid: DDIM steps (eta 0)
    checkpoint_every: int  # save the resumable state every N steps (and at each epoch end); 0 = epoch ends only
    processes: int  # torchrun processes (DistributedDataParallel); each step's batch is split between them
    cond_drop_prob: float  # with model.num_classes: share of images trained with the null label (classifier-free
    # guidance, Ho & Salimans 2021), drawn per image position (noise.LABEL_DROP); unused when unconditional

    def check(self, key: str) -> None:
        require(0.0 <= self.cond_drop_prob < 1.0, f"{key}.cond_drop_prob",
                f"must be in [0, 1) (a share of the images), got {self.cond_drop_prob}")
        require(self.epochs >= 1, f"{key}.epochs", f"must be >= 1, got {self.epochs}")
        require(self.processes >= 1, f"{key}.processes", f"must be >= 1, got {self.processes}")
        require(self.batch_size >= self.processes, f"{key}.batch_size",
                f"({self.batch_size}) must be at least {key}.processes ({self.processes}): each process needs images")
        require(self.repeats >= 1, f"{key}.repeats", f"must be >= 1, got {self.repeats}")
        require(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        require(self.warmup_steps >= 0, f"{key}.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(self.min_snr_gamma >= 0, f"{key}.min_snr_gamma", f"must be >= 0 (0 = off), got {self.min_snr_gamma}")
        require(0 <= self.ema_decay < 1, f"{key}.ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        require(self.seed >= 0, f"{key}.seed", f"must be >= 0, got {self.seed}")
        require(self.log_every >= 1, f"{key}.log_every", f"must be >= 1, got {self.log_every}")
        require(self.grid_images >= 0, f"{key}.grid_images", f"must be >= 0, got {self.grid_images}")
        require(self.grid_steps >= 1, f"{key}.grid_steps", f"must be >= 1, got {self.grid_steps}")
        require(self.checkpoint_every >= 0, f"{key}.checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")

    def preview_sampler(self) -> "SamplerSpec":
        """The per-epoch preview: deterministic DDIM, x0 clamped where the data range is [-1, 1]."""
        return SamplerSpec(sampler="ddim", steps=self.grid_steps, eta=0.0, clip_x0=not self.normalize)


# ---- sampling ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplerSpec:
    """One sampler setting, wherever one is named: `sample`, each `sweep.points.<name>`, the training preview.

    DDPM walks all T steps (its `steps` is only range-checked); DDIM walks `steps` of them with noise `eta`.
    """

    sampler: Literal["ddpm", "ddim"]
    steps: int  # DDIM S
    eta: float  # DDIM eta (eq. 16): 0 deterministic, 1 DDPM-like
    clip_x0: bool  # clamp x0_pred to the data range [-1, 1] at every step (in data units, also with
    # train.normalize); the source clamps only for display

    def check(self, key: str) -> None:
        require(self.steps >= 1, f"{key}.steps", f"must be >= 1, got {self.steps}")
        require(0.0 <= self.eta <= 1.0, f"{key}.eta", f"must be in [0, 1], got {self.eta}")

    def check_timesteps(self, num_timesteps: int, key: str) -> None:
        require(self.steps <= num_timesteps, f"{key}.steps",
                f"({self.steps}) must not exceed the number of diffusion steps T = {num_timesteps}")


@dataclass(frozen=True)
class SampleConfig(SamplerSpec):
    """`sample`: a sampler spec (the keys above) plus how many images, in what batches, and the pictures."""

    num_images: int
    batch_size: int
    first_seed: int  # image i uses seed first_seed + i
    device: Device
    precision: Precision
    grid_images: int
    process_seeds: int  # reverse-process pictures for seeds first_seed … first_seed + process_seeds - 1
    process_frames: int  # GIF frames (evenly spaced steps)
    strip_columns: int  # x0-prediction columns in the strip
    processes: int  # torchrun processes: images are split between them by index and gathered
    labels: tuple[int, ...]  # class-conditional models: image i gets labels[i % len(labels)]; [] = unconditional
    guidance_scale: float  # w: eps = eps_uncond + w (eps_cond - eps_uncond); 1 = conditional, 0 = unconditional

    def check(self, key: str) -> None:
        super().check(key)
        for name, low in (("num_images", 1), ("batch_size", 1), ("first_seed", 0), ("grid_images", 1), ("processes", 1),
                          ("process_seeds", 1), ("process_frames", 2), ("strip_columns", 2)):
            require(getattr(self, name) >= low, f"{key}.{name}", f"must be >= {low}, got {getattr(self, name)}")
        require(all(c >= 0 for c in self.labels), f"{key}.labels", f"must be class numbers >= 0, got {list(self.labels)}")
        require(self.guidance_scale >= 0, f"{key}.guidance_scale", f"must be >= 0, got {self.guidance_scale}")
        require(self.labels or self.guidance_scale == 1.0, f"{key}.guidance_scale",
                f"({self.guidance_scale}) guides towards a label: set {key}.labels, or keep 1.0 for unlabelled samples")

    def check_labels(self, num_classes: int, where: str) -> None:
        """The requested labels fit a model of `num_classes` classes (0 = unconditional), read from `where`."""
        if self.labels and num_classes == 0:
            raise ConfigError(f"params key `sample.labels` asks for labels {list(self.labels)}, but {where} is an "
                              "unconditional model (model.num_classes = 0)")
        bad = [c for c in self.labels if c >= num_classes]
        if bad:
            raise ConfigError(f"params key `sample.labels` has class {bad[0]}, but {where} has {num_classes} classes "
                              f"(0-{num_classes - 1})")


# ---- classifier ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierConfig:
    """`classifier`: the small CNN behind the in-domain metrics (trained on the labelled training split)."""

    widths: tuple[int, ...]  # one conv block per entry (3x3 conv -> BatchNorm -> ReLU -> 2x2 max-pool)
    feature_dim: int  # the penultimate layer: the features of the Frechet distance `fd_classifier`
    epochs: int
    batch_size: int
    lr: float  # Adam, cosine-annealed to 0 over the run
    seed: int  # initial weights and batch order
    device: Device

    def check(self, key: str) -> None:
        require(len(self.widths) >= 1, f"{key}.widths", "needs at least one conv block width")
        require(all(w >= 1 for w in self.widths), f"{key}.widths", f"entries must be >= 1, got {list(self.widths)}")
        for name in ("feature_dim", "epochs", "batch_size"):
            require(getattr(self, name) >= 1, f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        require(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        require(self.seed >= 0, f"{key}.seed", f"must be >= 0, got {self.seed}")

    def check_image(self, size: int) -> None:
        """Each block halves the image: fail before training if nothing would be left."""
        require(size >= 2 ** len(self.widths), "classifier.widths",
                f"has {len(self.widths)} blocks, each halving the image; {size} px images allow at most "
                f"{max(size.bit_length() - 1, 0)}")


# ---- evaluation ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalConfig:
    num_real: int  # first N reference images used for the real statistics
    batch_size: int  # images per Inception (and classifier) forward pass
    kid_subset_size: int  # images per KID subset (<= num_real and <= number of samples)
    kid_subsets: int
    confidence: float  # `confident_fraction`: share of samples whose top classifier probability is >= this
    device: Device
    seed: int  # KID subset sampling
    processes: int  # torchrun processes for the Inception features (evaluate and reference_features)

    def check(self, key: str) -> None:
        require(self.processes >= 1, f"{key}.processes", f"must be >= 1, got {self.processes}")
        require(self.num_real >= 2, f"{key}.num_real",
                f"must be at least 2 (a covariance needs two samples), got {self.num_real}")
        require(self.batch_size >= 1, f"{key}.batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.kid_subset_size >= 2, f"{key}.kid_subset_size",
                f"must be at least 2 (unbiased MMD), got {self.kid_subset_size}")
        require(self.kid_subset_size <= self.num_real, f"{key}.kid_subset_size",
                f"must not exceed {key}.num_real ({self.num_real}), got {self.kid_subset_size}")
        require(self.kid_subsets >= 1, f"{key}.kid_subsets", f"must be at least 1, got {self.kid_subsets}")
        require(0.0 < self.confidence <= 1.0, f"{key}.confidence", f"must be in (0, 1], got {self.confidence}")


@dataclass(frozen=True)
class TimestepLossConfig:
    buckets: int
    num_images: int
    batch_size: int
    seed: int

    def check(self, key: str) -> None:
        for name in ("buckets", "num_images", "batch_size"):
            require(getattr(self, name) >= 1, f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class SweepConfig:
    """`sweep`: sampler settings compared from one checkpoint; each point is a `sweep@<name>` stage."""

    num_images: int  # per point, seeds first_seed … first_seed + num_images - 1
    batch_size: int
    first_seed: int
    kid_subset_size: int
    kid_subsets: int
    points: dict[str, SamplerSpec]  # sampled with `sample.labels` at `sample.guidance_scale`
    guidance_scales: tuple[float, ...]  # class-conditional models: one more point per scale, `guidance_point`'s
    # sampler with `sample.labels`, scored also by the classifier's agreement with the label; [] = none
    guidance_point: str  # the point whose sampler settings the guidance points use

    def check(self, key: str) -> None:
        require(self.num_images >= 2, f"{key}.num_images", f"must be >= 2, got {self.num_images}")
        require(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        require(2 <= self.kid_subset_size <= self.num_images, f"{key}.kid_subset_size",
                f"must be in [2, {key}.num_images = {self.num_images}], got {self.kid_subset_size}")
        require(self.kid_subsets >= 1, f"{key}.kid_subsets", f"must be >= 1, got {self.kid_subsets}")
        require(len(self.points) >= 1, f"{key}.points", "needs at least one named point")
        require(all(w >= 0 for w in self.guidance_scales), f"{key}.guidance_scales",
                f"must be >= 0, got {list(self.guidance_scales)}")
        require(not self.guidance_scales or self.guidance_point in self.points, f"{key}.guidance_point",
                f"({self.guidance_point!r}) must name one of {key}.points: {sorted(self.points)}")

    def point(self, name: str) -> SamplerSpec:
        if name not in self.points:
            raise ConfigError(f"params key `sweep.points.{name}` does not exist; points: {sorted(self.points)}")
        return self.points[name]


# ---- the whole file ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Params:
    prepare: PrepareConfig
    diffusion: DiffusionConfig
    model: ModelConfig
    train: TrainConfig
    sample: SampleConfig
    classifier: Optional[ClassifierConfig]  # `classifier: null` for unlabelled data (no classifier stage)
    evaluate: EvalConfig
    timestep_loss: TimestepLossConfig
    sweep: Optional[SweepConfig]  # `sweep: null` in a pipeline without a sampler sweep

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
            require(not self.sweep.guidance_scales or bool(self.sample.labels), "sweep.guidance_scales",
                    "needs sample.labels: guidance steers towards requested labels")
            for name, point in self.sweep.points.items():
                point.check_timesteps(T, f"sweep.points.{name}")
            require(self.sweep.kid_subset_size <= self.evaluate.num_real, "sweep.kid_subset_size",
                    f"({self.sweep.kid_subset_size}) must not exceed evaluate.num_real ({self.evaluate.num_real}), "
                    "the number of reference features")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check the whole params file; any problem is one ConfigError naming the key."""
    return from_dict(Params, read_yaml(path), "")
