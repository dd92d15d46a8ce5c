"""Make a small concept set for TCAV from what is on this machine (no download):

    OUT/striped/  parallel stripes: random angle, period, width, colour pair and waviness
    OUT/dotted/   polka dots: random size, spacing, jitter and colours
    OUT/zigzag/   zigzag lines: random angle, period, amplitude and colours
    OUT/random/   random crops of the demo clips (bikes, carphone, bigbuckbunny): counterexamples

    python scripts/make_concepts.py --out concepts/ [--count 30] [--random 120] [--size 224] [--seed 0]
    deepvis tcav --concept striped=concepts/striped --concept dotted=concepts/dotted \\
                 --random concepts/random --class zebra --layers _blocks.10,_blocks.14 --out tcav/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolbox.output_set import OutputSet  # noqa: E402
from toolbox.sources import open_source  # noqa: E402

CLIPS = ("bikes", "carphone", "bigbuckbunny")


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark and a light colour (BGR float): mostly near-grey pairs (black and white, as a zebra's),
    sometimes freely coloured."""
    if rng.random() < 0.6:
        return rng.uniform(0, 60) + rng.uniform(-10, 10, 3), rng.uniform(180, 250) + rng.uniform(-10, 10, 3)
    return rng.uniform(0, 140, 3), rng.uniform(120, 255, 3)


def _grid(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by ``angle``: (u along, v across), each (size, size) float."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    return x * c + y * s, -x * s + y * c


def _paint(mask: np.ndarray, dark: np.ndarray, light: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(size, size) mask in [0, 1] -> uint8 BGR picture, with a little noise."""
    image = dark[None, None] + mask[..., None] * (light - dark)[None, None]
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def striped(size: int, rng: np.random.Generator) -> np.ndarray:
    u, v = _grid(size, rng.uniform(0, np.pi))
    period = rng.uniform(10, 36)
    wave = rng.uniform(0, 8) * np.sin(u / rng.uniform(20, 60))  # zebra stripes are not ruler-straight
    phase = ((v + wave) / period) % 1.0
    mask = (phase < rng.uniform(0.35, 0.6)).astype(np.float32)
    return _paint(cv2.GaussianBlur(mask, (0, 0), 0.8), *_colour_pair(rng), rng)


def dotted(size: int, rng: np.random.Generator) -> np.ndarray:
    spacing = rng.uniform(16, 40)
    radius = spacing * rng.uniform(0.18, 0.35)
    u, v = _grid(size, rng.uniform(0, np.pi / 2))
    row = np.floor(v / spacing)
    du = (u + (row % 2) * spacing / 2) % spacing - spacing / 2  # staggered rows
    dv = v % spacing - spacing / 2
    mask = (du ** 2 + dv ** 2 <= radius ** 2).astype(np.float32)
    dark, light = _colour_pair(rng)
    if rng.random() < 0.5:
        dark, light = light, dark  # light dots on dark, or dark dots on light
    return _paint(cv2.GaussianBlur(mask, (0, 0), 0.8), light, dark, rng)


def zigzag(size: int, rng: np.random.Generator) -> np.ndarray:
    u, v = _grid(size, rng.uniform(0, np.pi))
    period = rng.uniform(14, 36)
    tooth = rng.uniform(16, 48)
    amplitude = rng.uniform(4, 12)
    triangle = amplitude * (2 * np.abs((u / tooth) % 1.0 - 0.5) * 2 - 1)
    phase = ((v + triangle) / period) % 1.0
    mask = (phase < rng.uniform(0.3, 0.5)).astype(np.float32)
    return _paint(cv2.GaussianBlur(mask, (0, 0), 0.8), *_colour_pair(rng), rng)


TEXTURES = {"striped": striped, "dotted": dotted, "zigzag": zigzag}


def clip_crops(count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random square crops (side 25-100 % of the frame's height) of random demo frames."""
    crops = []
    per_clip = [count // len(CLIPS) + (i < count % len(CLIPS)) for i in range(len(CLIPS))]
    for clip, n in zip(CLIPS, per_clip):
        with open_source(clip) as source:
            total = source.frame_count or 100
            for index in sorted(rng.choice(total, size=n, replace=n > total)):
                source.seek(int(index))
                frame = source.read()
                h, w = frame.image.shape[:2]
                side = int(rng.uniform(0.25, 1.0) * min(h, w))
                y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
                crops.append(cv2.resize(frame.image[y : y + side, x : x + side], (size, size),
                                        interpolation=cv2.INTER_AREA))
    return crops


def make_concepts(out: str | Path, count: int = 30, random_count: int = 120, size: int = 224, seed: int = 0) -> Path:
    """Write the concept set (module docstring) as one output set; -> the folder."""
    rng = np.random.default_rng(seed)
    with OutputSet(out, job="make_concepts") as outputs:
        for name, draw in TEXTURES.items():
            for i in range(count):
                outputs.write_image(f"{name}/{name}_{i:03d}.png", draw(size, rng))
        for i, crop in enumerate(clip_crops(random_count, size, rng)):
            outputs.write_image(f"random/random_{i:03d}.png", crop)
    return Path(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, default=30, help="images per texture concept")
    parser.add_argument("--random", type=int, default=120, help="random crops of the demo clips")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote {make_concepts(args.out, args.count, args.random, args.size, args.seed)}")


if __name__ == "__main__":
    main()
