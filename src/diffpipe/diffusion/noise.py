"""Counter-based random numbers: every draw is a pure function of (key, counter), vectorised over a batch.

Philox4x32-10 (Salmon, Moraes, Dror, Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3"; the generator
behind cuRAND's and PyTorch's CUDA streams) maps a 64-bit key and a 128-bit counter to four 32-bit words.
It is written here in plain int64 tensor arithmetic, so one draw for a whole batch is a fixed handful of
element-wise kernels on any device, instead of one generator (and one kernel launch) per image.

Uses, each with its own `domain` (the counter's last word), so the streams never overlap:
- sampling (`ImageNoise`): key = the image's seed (`first_seed + i`), counter = (block, draw number, 0, SAMPLE).
  Image i's noise depends on its seed alone: not on the batch, the batch size, the device count or the
  process it runs in.
- training (training.py): key = train.seed, counter = (block, position lo, position hi, EPS / TIMESTEP /
  ORDER), where the position is the image's global index in the run (pass × images per pass + slot). k
  processes × batch B/k draw exactly what 1 process × B draws.

Normals come from pairs of 24-bit uniforms in (0, 1) by the Box–Muller transform (Box & Muller 1958).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

# Philox4x32 constants (Salmon et al. 2011, Random123): the round multipliers and the Weyl key increments.
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = 0xFFFFFFFF
ROUNDS = 10

# Counter domains (word 3): one per use, so no two uses ever share a counter.
SAMPLE, EPS, TIMESTEP, ORDER, LABEL_DROP = 0, 1, 2, 3, 4


def philox4x32(c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor,
               k0: torch.Tensor, k1: torch.Tensor, rounds: int = ROUNDS) -> tuple[torch.Tensor, ...]:
    """Philox4x32-`rounds` on int64 tensors holding 32-bit words (broadcastable); returns the four output words.

    The 32×32-bit products are exact in 64 bits; int64 multiplication wraps modulo 2^64 as unsigned would, and
    the masks recover the high and low halves whatever the sign bit.
    """
    for _ in range(rounds):
        p0, p1 = c0 * _M0, c2 * _M1
        c0, c1, c2, c3 = (((p1 >> 32) & _MASK32) ^ c1 ^ k0, p1 & _MASK32,
                          ((p0 >> 32) & _MASK32) ^ c3 ^ k1, p0 & _MASK32)
        k0, k1 = (k0 + _W0) & _MASK32, (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


def _split_key(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return key & _MASK32, (key >> 32) & _MASK32


def random_words(key: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, domain: int, count: int) -> torch.Tensor:
    """(B, count) uniform 32-bit words (as int64) for B streams; stream b has key[b] and counter words
    (block, c1[b], c2[b], domain). key, c1, c2: int64 (B,), values in [0, 2^64) for key and [0, 2^32) for c1, c2."""
    blocks = (count + 3) // 4
    j = torch.arange(blocks, dtype=torch.int64, device=key.device).unsqueeze(0)  # (1, blocks)
    k0, k1 = (k.unsqueeze(1) for k in _split_key(key))
    words = philox4x32(j, c1.unsqueeze(1), c2.unsqueeze(1), torch.full_like(j, domain), k0, k1)
    return torch.stack(words, dim=-1).reshape(len(key), blocks * 4)[:, :count]


def uniform_from_words(words: torch.Tensor) -> torch.Tensor:
    """32-bit words -> float32 uniforms in (0, 1) on the 2^-24 grid (never 0: the Box–Muller log is finite)."""
    return ((words >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


# On a CPU the element-wise rounds are memory-bound: streams are processed in chunks of about this many
# words, which stay in cache (2x faster than one pass over 10,000 MNIST images here; the values are the same).
CPU_CHUNK_WORDS = 1 << 19


def normal(key: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, domain: int, count: int) -> torch.Tensor:
    """(B, count) standard normals: Box–Muller on consecutive word pairs of the streams of `random_words`."""
    rows = max(1, CPU_CHUNK_WORDS // max(1, count))
    if key.device.type == "cpu" and len(key) > rows:
        return torch.cat([_normal(key[i:i + rows], c1[i:i + rows], c2[i:i + rows], domain, count)
                          for i in range(0, len(key), rows)])
    return _normal(key, c1, c2, domain, count)


def _normal(key: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, domain: int, count: int) -> torch.Tensor:
    pairs = (count + 1) // 2
    u = uniform_from_words(random_words(key, c1, c2, domain, 2 * pairs))
    radius = torch.sqrt(-2.0 * torch.log(u[:, 0::2]))
    angle = (2.0 * math.pi) * u[:, 1::2]
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1).reshape(len(key), -1)[:, :count]


def randint(key: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, domain: int, high: int) -> torch.Tensor:
    """(B,) integers in [0, high), one per stream, by Lemire's multiply-shift of a 32-bit word (bias < high/2^32)."""
    if not 1 <= high < 2 ** 31:
        raise ValueError(f"high must be in [1, 2^31), got {high}")
    return (random_words(key, c1, c2, domain, 1)[:, 0] * high) >> 32


def permutation(seed: int, stream: int, n: int, domain: int = ORDER, device: torch.device | str = "cpu") -> torch.Tensor:
    """A permutation of range(n), a pure function of (seed, stream): a stable sort of 64-bit random keys."""
    idx = torch.arange(n, dtype=torch.int64, device=device)
    key = torch.full_like(idx, seed)
    w = random_words(key, idx & _MASK32, torch.full_like(idx, stream), domain, 2)
    sort_key = (w[:, 0] << 31) ^ w[:, 1]  # 63 random bits: non-negative, ties practically never (and then stable)
    return torch.argsort(sort_key, stable=True)


def as_key(values, device: torch.device | str = "cpu") -> torch.Tensor:
    """Seeds (ints >= 0, < 2^63) -> int64 key tensor."""
    return torch.as_tensor(list(values) if not isinstance(values, torch.Tensor) else values,
                           dtype=torch.int64, device=device)


class ImageNoise:
    """Per-image Gaussian noise: image b's k-th draw is `normal` keyed by seeds[b] with counter (·, k, 0, SAMPLE).

    Each image's stream depends on its seed alone, so an image is the same in any batch, batch size, device
    count or process (NVlabs' EDM habit of a stream per image, without a generator per image).
    """

    def __init__(self, seeds: Sequence[int], image_shape: tuple[int, ...], device: torch.device | str = "cpu"):
        self.shape = tuple(image_shape)
        self.device = torch.device(device)
        self.key = as_key(seeds, self.device)
        self.count = math.prod(self.shape)
        self.draws = 0

    def randn(self) -> torch.Tensor:
        """(B, *image_shape) standard normal; every call draws the next step's noise."""
        step = torch.full_like(self.key, self.draws)
        self.draws += 1
        return normal(self.key, step, torch.zeros_like(self.key), SAMPLE, self.count).view(len(self.key), *self.shape)
