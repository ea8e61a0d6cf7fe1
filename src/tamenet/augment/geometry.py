"""Geometric transforms of image batches with given parameters: flips, one affine warp, elastic deformation.

Pure functions of the images and their per-image parameters (no random numbers here), so the same call moves an
image and its dense target together (equivariance, E4; `tamenet.augment.equivariance`). Images are [N, C, H, W];
pixel coordinates run x = 0..W-1, y = 0..H-1 with the centre c = ((W-1)/2, (H-1)/2). A matrix A maps a source
pixel to its place in the output, out(A p) = image(p), sampled by `kornia.geometry.transform.warp_affine`
(align_corners=True, zeros outside).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def flip(x: torch.Tensor, fire: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    """The images with `fire` [N] mirrored along `axis` (-1: left-right, -2: up-down), exactly: torch.flip."""
    return torch.where(fire.view(-1, *([1] * (x.dim() - 1))), x.flip(axis), x)


def affine_matrices(
    height: int,
    width: int,
    *,
    angle: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    fragment: torch.Tensor | None = None,
    fragment_centre: torch.Tensor | None = None,
) -> torch.Tensor:
    """Matrices A [N, 3, 3] of `A = T(c + shift) R(angle) S(scale) T(-c) C`, in pixels.

    angle [N] in degrees, counter-clockwise as displayed (y down); scale [N] (> 1 zooms in); shift [N, 2] in
    pixels (x, y). C crops the fragment of side share `fragment` [N] centred at `fragment_centre` [N, 2]
    (pixels) and resizes it to the whole image: C = T(c) S(1 / fragment) T(-fragment_centre).
    """
    n, device, dtype = angle.shape[0], angle.device, angle.dtype
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=device, dtype=dtype).expand(n, 2)
    theta = angle * (math.pi / 180.0)
    cos, sin = torch.cos(theta) * scale, torch.sin(theta) * scale
    a = torch.zeros(n, 3, 3, device=device, dtype=dtype)
    # y points down: a counter-clockwise turn on screen is x' = cos x + sin y, y' = -sin x + cos y
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = cos, sin, -sin, cos
    a[:, 2, 2] = 1.0
    a[:, :2, 2] = centre + shift - torch.einsum("nij,nj->ni", a[:, :2, :2], centre)
    if fragment is not None:
        crop = torch.zeros_like(a)
        inv = 1.0 / fragment
        crop[:, 0, 0], crop[:, 1, 1], crop[:, 2, 2] = inv, inv, 1.0
        crop[:, :2, 2] = centre - inv.unsqueeze(1) * fragment_centre
        a = a @ crop
    return a


def warp(x: torch.Tensor, matrices: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Each image moved by its matrix (`affine_matrices`), zeros where nothing maps: out(A p) = x(p)."""
    from kornia.geometry.transform import warp_affine  # imported on use: kornia is slow to import

    return warp_affine(x, matrices[:, :2, :], dsize=(x.shape[-2], x.shape[-1]), mode=mode, padding_mode="zeros",
                       align_corners=True)


def rotate(x: torch.Tensor, degrees: float | torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """The images turned counter-clockwise (as displayed) by `degrees` about their centre."""
    n = x.shape[0]
    angle = torch.as_tensor(degrees, dtype=x.dtype, device=x.device).expand(n).clone()
    one = torch.ones(n, dtype=x.dtype, device=x.device)
    zero = torch.zeros(n, 2, dtype=x.dtype, device=x.device)
    return warp(x, affine_matrices(x.shape[-2], x.shape[-1], angle=angle, scale=one, shift=zero), mode=mode)


def elastic_field(noise: torch.Tensor, alpha: torch.Tensor, *, sigma: float) -> torch.Tensor:
    """A smooth displacement field [N, 2, H, W] in pixels: white noise [N, 2, H, W] blurred by a Gaussian of
    `sigma` pixels, scaled to a root-mean-square length of alpha [N] pixels (Simard et al., "Best practices for
    convolutional neural networks applied to visual document analysis", ICDAR 2003)."""
    from kornia.filters import gaussian_blur2d  # imported on use

    h, w = noise.shape[-2:]
    size = min(2 * math.ceil(2 * sigma) + 1, 2 * ((min(h, w) - 1) // 2) + 1)
    smooth = gaussian_blur2d(noise, (size, size), (sigma, sigma), border_type="reflect")
    rms = smooth.square().sum(1, keepdim=True).mean((-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
    return smooth / rms * alpha.view(-1, 1, 1, 1)


def displace(x: torch.Tensor, field: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """out(p) = x(p + field(p)): each pixel reads its source `field` [N, 2, H, W] (x, y) pixels away; zeros outside."""
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gx = (xs + field[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + field[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)
