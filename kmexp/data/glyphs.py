"""Procedurally generated glyph classes: the bundled, offline few-shot dataset.

An Omniglot stand-in for the default run and the tests (KM Sec. IV-C needs Omniglot and
mini-ImageNet, which cannot be downloaded here). Each class is a "character" of 2-4
random quadratic Bezier strokes; each of its examples redraws it with jittered control
points, a small random rotation, scale and shift, and a random pen pressure, like the 20
drawers of an Omniglot character. Images are 28x28, one channel, strokes 1 on a 0
background (Omniglot after learn2learn's ``1 - x``).

Everything is a pure function of ``seed`` and the class index, so a class looks the
same whatever the number of classes generated.
"""

from __future__ import annotations

import math

import numpy as np
import torch

CURVE_POINTS = 64  # points splatted along each stroke (< 0.5 px apart)
PEN_SIGMA_PX = 0.8


def _class_strokes(rng: np.random.Generator) -> np.ndarray:
    """Control points (strokes, 3, 2) of one character in the unit square."""
    n = int(rng.integers(2, 5))
    return rng.uniform(0.15, 0.85, size=(n, 3, 2))


def _draw(strokes: np.ndarray, rng: np.random.Generator, samples: int) -> np.ndarray:
    """``samples`` jittered copies of a character: (samples, strokes, 3, 2) control points."""
    ctrl = strokes[None] + rng.normal(0.0, 0.035, size=(samples, *strokes.shape))
    angle = rng.normal(0.0, math.radians(8), size=samples)
    scale = rng.uniform(0.9, 1.1, size=samples)
    shift = rng.normal(0.0, 0.04, size=(samples, 2))
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (samples, 2, 2)
    centred = ctrl - 0.5
    return np.einsum("sij,snkj->snki", rot, centred) + 0.5 + shift[:, None, None, :]


def _render(ctrl: np.ndarray, gains: np.ndarray, image_size: int) -> torch.Tensor:
    """Rasterize quadratic Bezier strokes: (samples, 1, size, size) in [0, 1].

    Dense points along each curve are splatted bilinearly onto the pixel grid, blurred with
    a Gaussian pen, and saturated with a per-sample gain (larger = bolder).
    """
    s = len(ctrl)
    t = torch.linspace(0.0, 1.0, CURVE_POINTS)[:, None]
    p = torch.from_numpy(ctrl).float()  # (s, n, 3, 2)
    curve = ((1 - t) ** 2) * p[:, :, None, 0] + (2 * (1 - t) * t) * p[:, :, None, 1] + (t**2) * p[:, :, None, 2]
    xy = curve.reshape(s, -1, 2) * image_size - 0.5  # pixel coordinates
    base = xy.floor()
    frac = xy - base
    canvas = torch.zeros(s, image_size * image_size)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        col, row = base[..., 0] + dx, base[..., 1] + dy
        w = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
        inside = (col >= 0) & (col < image_size) & (row >= 0) & (row < image_size)
        index = (row * image_size + col).clamp(0, image_size * image_size - 1).long()
        canvas.scatter_add_(1, index, w * inside)
    canvas = canvas.clamp(max=1.0).reshape(s, 1, image_size, image_size)
    r = torch.arange(-2, 3, dtype=torch.float32)
    pen = torch.exp(-(r**2) / (2 * PEN_SIGMA_PX**2))
    pen = (pen[:, None] * pen[None, :]) / pen.sum() ** 2
    blurred = torch.nn.functional.conv2d(canvas, pen[None, None], padding=2)
    gain = torch.from_numpy(gains).float()[:, None, None, None]
    return 1.0 - torch.exp(-gain * blurred)


def make_glyphs(num_classes: int = 100, samples_per_class: int = 20, image_size: int = 28,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All glyphs: images (num_classes * samples_per_class, 1, size, size) in [0, 1] and labels."""
    images, labels = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ops on tiny tensors: waking up threads costs more than it saves
    try:
        for c in range(num_classes):
            rng = np.random.default_rng((seed, c))
            ctrl = _draw(_class_strokes(rng), rng, samples_per_class)
            gains = rng.uniform(3.0, 8.0, size=samples_per_class)  # pen pressure: larger = bolder
            images.append(_render(ctrl, gains, image_size))
            labels.append(torch.full((samples_per_class,), c, dtype=torch.long))
    finally:
        torch.set_num_threads(threads)
    return torch.cat(images), torch.cat(labels)
