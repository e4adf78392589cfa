"""Batched image augmentation on whatever device the images live on (the GPU-resident data path).

The standard CIFAR recipe of DARTS (Liu et al., 2019), applied to a whole uint8 batch at once with no
Python loop over images:

1. random crop: pad with zeros (black pixels, before normalisation) by `crop_padding` on every side and
   take an H x W window at a uniform offset;
2. horizontal flip with probability 1/2;
3. normalise per channel: `(x / 255 - mean) / std`;
4. cutout (DeVries & Taylor, 2017): a `cutout` x `cutout` square whose centre is uniform over the image,
   clipped at the borders, is set to 0 *after* normalisation, exactly as DARTS' `Cutout` multiplies the
   normalised tensor by a 0/1 mask. The square spans rows/columns centre - side//2 .. centre + side//2 - 1,
   so an odd side loses one pixel, as in DARTS.

Crop and flip are one gather with per-image row/column indices. Every random number is drawn from a
CPU `torch.Generator` and only the small (5, B) table of draws is moved to the device, so the same
generator state gives the same batch on CPU and on GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Stats = Sequence[float] | torch.Tensor


def _channel_stats(values: Stats, like: torch.Tensor) -> torch.Tensor:
    """Per-channel statistic in [0, 1] pixel units -> (1, C, 1, 1) float32 in [0, 255] units on like's device."""
    t = torch.as_tensor(values, dtype=torch.float32, device=like.device)
    return (t * 255.0).view(1, -1, 1, 1)


def normalize(images: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """uint8 images -> float32 `(x / 255 - mean) / std`, per channel.

    Args:
        images: uint8 (B, C, H, W).
        mean: per-channel mean in [0, 1] pixel units (a sequence or a tensor already on the device).
        std: per-channel standard deviation in [0, 1] pixel units.

    Returns:
        float32 (B, C, H, W) on the same device.
    """
    m = _channel_stats(mean, images)  # (1, C, 1, 1)
    s = _channel_stats(std, images)  # (1, C, 1, 1)
    return images.to(torch.float32).sub_(m).div_(s)


def augment(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    crop_padding: int = 0,
    flip: bool = False,
    cutout: int = 0,
    mean: Stats,
    std: Stats,
) -> torch.Tensor:
    """Random crop with zero padding, horizontal flip, normalisation and cutout on a whole batch.

    Args:
        images: uint8 (B, C, H, W), on any device.
        generator: a CPU generator; the only source of randomness. Each call draws, in this order,
            crop offsets (if `crop_padding`), flip coins (if `flip`) and cutout centres (if `cutout`).
        crop_padding: zero padding on each side before the random H x W crop; 0 = no crop.
        flip: flip each image left-right with probability 1/2.
        cutout: side of the square set to 0 after normalisation; 0 = off.
        mean: per-channel mean in [0, 1] pixel units.
        std: per-channel standard deviation in [0, 1] pixel units.

    Returns:
        float32 (B, C, H, W), normalised, on the images' device.
    """
    if generator.device.type != "cpu":
        raise ValueError("augment draws its random numbers from a CPU generator")
    b, c, h, w = images.shape
    p = crop_padding
    draws = torch.zeros(5, b, dtype=torch.int64)  # rows: dy, dx, flip, cutout cy, cutout cx
    if p > 0:
        draws[0:2] = torch.randint(0, 2 * p + 1, (2, b), generator=generator)
    if flip:
        draws[2] = torch.randint(0, 2, (b,), generator=generator)
    if cutout > 0:
        draws[3] = torch.randint(0, h, (b,), generator=generator)
        draws[4] = torch.randint(0, w, (b,), generator=generator)
    draws = draws.to(images.device, non_blocking=True)  # one small host-to-device copy per batch

    if p > 0 or flip:
        if p > 0:
            images = F.pad(images, (p, p, p, p))  # (B, C, H + 2p, W + 2p), zeros = black
        rows = torch.arange(h, device=images.device) + draws[0, :, None]  # (B, H) into the padded image
        col = torch.arange(w, device=images.device)  # (W,)
        col = torch.where(draws[2, :, None].bool(), col.flip(0), col)  # (B, W): crop window, maybe flipped
        cols = col + draws[1, :, None]  # (B, W)
        bi = torch.arange(b, device=images.device).view(b, 1, 1, 1)
        ci = torch.arange(c, device=images.device).view(1, c, 1, 1)
        images = images[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)

    x = normalize(images, mean, std)  # (B, C, H, W) float32

    if cutout > 0:
        half = cutout // 2
        ys = torch.arange(h, device=x.device)  # (H,)
        xs = torch.arange(w, device=x.device)  # (W,)
        in_rows = (ys >= draws[3, :, None] - half) & (ys < draws[3, :, None] + half)  # (B, H)
        in_cols = (xs >= draws[4, :, None] - half) & (xs < draws[4, :, None] + half)  # (B, W)
        mask = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W); clipping at borders is implicit
        x.masked_fill_(mask[:, None], 0.0)
    return x
