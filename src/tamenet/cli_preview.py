"""`tamenet preview [RECIPE] --out grid.png`: what the recipe's augmentation does, before training on it.

A grid of examples: each row one original image and `--copies` augmented versions of it (successive steps of one
member's random stream, the same code path as training). Images come from the recipe's data set (viewed through
`model.input_shape` or its image shape, transformed in the standardized units training uses, drawn back in the
data's own units) or, with `--photos`, from scikit-learn's bundled colour photographs (`load_sample_images`,
RGB in [0, 1], down-sampled to `--size` pixels high). Other modalities plug in through `PREVIEWS`: a function
`(recipe, args) -> str` that writes `args.out` and returns a line to print.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

PREVIEWS: dict[str, str] = {
    "image": "tamenet.cli_preview:preview_images",
    "text": "tamenet.cli_preview:preview_texts",
    # "audio": "tamenet.augment.audio:preview_command",   (a modality adds one line)
}
"""Modality -> 'module:function' drawing its preview, `(recipe, args) -> str`."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("preview", help="draw a grid of original and augmented examples of a recipe's augmentation")
    p.add_argument("recipe", nargs="?", help="a YAML recipe file (default: the default job)")
    p.add_argument("--out", required=True, help="the PNG file to write (written atomically)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set augment.image.rotate=30 (repeatable)")
    p.add_argument("--modality", default="image", choices=list(PREVIEWS), help="what to preview (default image)")
    p.add_argument("--photos", action="store_true",
                   help="use scikit-learn's colour photographs (load_sample_images) instead of the recipe's data")
    p.add_argument("--size", type=int, default=96, help="--photos: height in pixels after down-sampling (default 96)")
    p.add_argument("--examples", type=int, default=6, help="originals shown, one per row (default 6)")
    p.add_argument("--copies", type=int, default=5, help="augmented versions of each original (default 5)")
    p.add_argument("--texts", help="--modality text: a file of example strings, one per line")
    p.add_argument("--member", type=int, default=0, help="the population member whose numbers and seed are used")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")


def run(args: argparse.Namespace) -> int:
    from .recipes import load_recipe, select_members
    from .config import population_size
    from .registry import lookup

    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise ValueError(f"--out: expected an image file name in an existing folder, got {args.out}"
                         + (" (a folder)" if out.is_dir() else f" (no folder {out.parent})"))
    recipe = load_recipe(args.recipe, args.overrides)
    members = population_size(recipe)
    if not 0 <= args.member < members:
        raise ValueError(f"--member: expected a member index in [0, {members - 1}], got {args.member}")
    for name, value in (("--examples", args.examples), ("--copies", args.copies), ("--size", args.size)):
        if value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
    recipe = select_members(recipe, [args.member])
    target = lookup(PREVIEWS, args.modality, "preview modality")
    module, _, function = target.partition(":")
    draw: Callable[[Any, argparse.Namespace], str] = getattr(__import__(module, fromlist=[function]), function)
    print(draw(recipe, args))
    return 0


def sample_photos(size: int) -> "Any":
    """scikit-learn's two bundled colour photographs as a tensor [2, 3, size, W] in [0, 1] (area down-sampling)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_sample_images

    photos = torch.stack([torch.from_numpy(image.copy()) for image in load_sample_images().images]).float()
    photos = photos.permute(0, 3, 1, 2) / 255.0
    width = round(photos.shape[-1] * size / photos.shape[-2])
    return F.interpolate(photos, size=(size, width), mode="area")


def preview_images(recipe, args: argparse.Namespace) -> str:
    """The image grid of `tamenet preview`; returns the line to print."""
    import torch

    from .augment.image import IMAGE_OPS, _scalar, augment_images, image_shape_of
    from .nn import mix_seed

    seed = recipe.seed[0] if isinstance(recipe.seed, list) else int(recipe.seed)
    if args.photos:
        originals = sample_photos(args.size)
        originals = originals[torch.arange(args.examples) % len(originals)]
        scale, shift, source = None, None, "scikit-learn sample photographs"
    else:
        from .data import load_dataset

        data = load_dataset(recipe.data)
        shape = image_shape_of(recipe.model.input_shape or data.image_shape, f"data set '{data.name}'")
        X = torch.from_numpy(data.X[: args.examples]).float()
        pool = torch.from_numpy(data.X).float()
        shift, scale = pool.mean(0), pool.std(0).clamp_min(1e-6)  # per feature, as training standardizes
        if not recipe.data.standardize:
            shift, scale = torch.zeros_like(shift), torch.ones_like(scale)
        originals = ((X - shift) / scale).view(-1, *shape)
        source = f"data set '{data.name}'"
    columns = [originals]
    for copy in range(args.copies):  # copy k: the member's draws at step k (a photo repeated gets fresh draws)
        columns.append(augment_images(originals, recipe.augment.image, seed=mix_seed(seed, 0x9E37), step=copy))
    grid = torch.stack(columns, 1)  # [examples, 1 + copies, C, H, W]
    if scale is not None:
        flat = grid.flatten(2) * scale + shift
        grid = flat.view(grid.shape)
    draw_grid(grid, args.out, title=f"{source}: originals (left) and {args.copies} augmented copies")
    line = f"preview: {args.examples} x {args.copies} augmented examples of {source} written to {args.out}"
    if not any(_scalar(getattr(recipe.augment.image, op), op) > 0 for op in IMAGE_OPS):
        line += " (no augment.image transform is on: the copies equal the originals)"
    return line


def draw_grid(grid, path: str, *, title: str) -> None:
    """A figure of images grid [R, K, C, H, W] (grey for C = 1, RGB for C = 3), each image on its own colour scale
    for grey, clipped to [0, 1] for RGB."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .track import save_figure

    rows, cols, channels = grid.shape[:3]
    aspect = grid.shape[-1] / grid.shape[-2]
    figure = Figure(figsize=(1.4 * cols * aspect + 0.4, 1.4 * rows + 0.6), dpi=110)
    FigureCanvasAgg(figure)
    lo, hi = float(grid.min()), float(grid.max())
    for r in range(rows):
        for c in range(cols):
            axes = figure.add_subplot(rows, cols, r * cols + c + 1)
            image = grid[r, c].detach().cpu()
            if channels == 3:
                axes.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                axes.imshow(image[0].numpy(), cmap="gray_r" if hi > 1.5 else "gray", vmin=lo, vmax=hi)
            axes.set_xticks([])
            axes.set_yticks([])
            if r == 0:
                axes.set_title("original" if c == 0 else f"aug {c}", fontsize=8)
    figure.suptitle(title, fontsize=9)
    save_figure(figure, path)


def preview_texts(recipe, args: argparse.Namespace) -> str:
    """Text: each example string of `--texts` and `--copies` augmented versions, drawn as lines of a PNG. Calls
    `tamenet.augment.text.preview_text(strings, strengths, copies=, seed=)`, the strengths being the recipe's
    `augment.text` numbers of the chosen member."""
    from dataclasses import fields

    try:
        from .augment.text import preview_text
    except ImportError as err:
        raise ValueError("--modality text: text augmentation (tamenet.augment.text) is not part of this "
                         "installation") from err
    section = getattr(recipe.augment, "text", None)
    if section is None:
        raise ValueError("--modality text: the recipe has no augment.text section in this version")
    if not args.texts:
        raise ValueError("--modality text: expected --texts FILE (example strings, one per line), got none")
    with open(args.texts, encoding="utf-8") as handle:
        texts = [line.strip() for line in handle if line.strip()][: args.examples]
    if not texts:
        raise ValueError(f"--texts {args.texts}: expected at least one non-empty line, got none")
    strengths = {f.name: _one(getattr(section, f.name)) for f in fields(section)
                 if isinstance(_one(getattr(section, f.name)), (int, float))}
    seed = recipe.seed[0] if isinstance(recipe.seed, list) else int(recipe.seed)
    lines = preview_text(texts, strengths, copies=args.copies, seed=seed)
    draw_lines(lines, args.out, title="originals and augmented strings")
    return f"preview: {len(texts)} x {args.copies} augmented strings written to {args.out}"


def _one(value):
    return value[0] if isinstance(value, list) and value else value


def draw_lines(lines: list[str], path: str, *, title: str) -> None:
    """Lines of text as a PNG (monospace, long lines wrapped at 110 characters)."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .track import save_figure

    wrapped = [part for line in lines for part in (textwrap.wrap(line, 110, subsequent_indent="    ") or [""])]
    figure = Figure(figsize=(11, 0.22 * len(wrapped) + 0.8), dpi=110)
    FigureCanvasAgg(figure)
    figure.text(0.01, 0.99, title + "\n\n" + "\n".join(wrapped), va="top", ha="left", family="monospace",
                fontsize=8)
    save_figure(figure, path)
