"""
A small synthetic COCO-format detection dataset, generated deterministically from a seed.

It is built to be a fair, fast benchmark for training-sample selection on a CPU:

- 5 classes of filled shapes (``circle, square, triangle, cross, star``) in random colours, so
  the class is carried by the shape, not by the colour;
- small, medium and large objects (COCO's area ranges all populated), several per image,
  partly overlapping (pairwise box IoU up to 0.35, later shapes drawn on top);
- clutter that looks like objects: outlines of the same shapes, open arcs, ellipses and
  stripes in the same colours (hard negatives), over a noisy, textured background;
- about 5% of training images hold no object at all (only clutter).

Images are written as PNG with a COCO json (boxes, areas and polygon segmentations), into
``$D2_SAMPLING_DATASETS`` (default ``~/.cache/d2_sampling/datasets``) on first use. The same
seed gives the same files everywhere; generation is atomic (temporary folder, then rename), so
concurrent workers never see half a dataset.
"""

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np

__all__ = [
    "SYNTHETIC_CLASSES",
    "SyntheticSpec",
    "SYNTHETIC_SPLITS",
    "dataset_root",
    "generate_synthetic_dataset",
    "synthetic_paths",
]

logger = logging.getLogger(__name__)

SYNTHETIC_CLASSES = ["circle", "square", "triangle", "cross", "star"]
_FORMAT_VERSION = 1
# First-use generation of synthetic_train takes ~40 s: a progress line every this many images.
_LOG_EVERY = 100


@dataclass(frozen=True)
class SyntheticSpec:
    """What one split contains. ``empty_fraction`` of the images hold only clutter."""

    num_images: int
    seed: int
    min_size: int = 224
    max_size: int = 320
    max_objects: int = 8
    empty_fraction: float = 0.05


SYNTHETIC_SPLITS: Dict[str, SyntheticSpec] = {
    "synthetic_train": SyntheticSpec(num_images=1000, seed=0),
    "synthetic_val": SyntheticSpec(num_images=200, seed=1, empty_fraction=0.0),
    # A handful of images for tests and smoke runs; two of the training ones are empty.
    "synthetic_mini_train": SyntheticSpec(num_images=16, seed=2, empty_fraction=0.125),
    "synthetic_mini_val": SyntheticSpec(num_images=8, seed=3, empty_fraction=0.0),
}


def dataset_root() -> Path:
    """Folder holding the generated datasets (``$D2_SAMPLING_DATASETS`` overrides it)."""
    env = os.environ.get("D2_SAMPLING_DATASETS")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/d2_sampling/datasets").expanduser()


def synthetic_paths(name: str, root: Optional[Path] = None):
    """Returns ``(json_file, image_root)`` of a registered synthetic split (not generated)."""
    if name not in SYNTHETIC_SPLITS:
        raise KeyError(f"Unknown synthetic dataset {name!r}; known: {sorted(SYNTHETIC_SPLITS)}")
    base = (root or dataset_root()) / f"{name}_v{_FORMAT_VERSION}"
    return base / "annotations.json", base / "images"


# ---------------------------------------------------------------------------------------------
# Shapes: each returns polygon vertices (N, 2) float, for a box centred at (cx, cy) of size s.
# ---------------------------------------------------------------------------------------------
def _polygon(name: str, cx: float, cy: float, w: float, h: float, rng) -> np.ndarray:
    if name == "circle":
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return np.stack([cx + w / 2 * np.cos(t), cy + h / 2 * np.sin(t)], 1)
    if name == "square":
        return np.array(
            [
                [cx - w / 2, cy - h / 2],
                [cx + w / 2, cy - h / 2],
                [cx + w / 2, cy + h / 2],
                [cx - w / 2, cy + h / 2],
            ]
        )
    if name == "triangle":
        apex = cx + (rng.uniform(-0.3, 0.3)) * w
        return np.array([[apex, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
    if name == "cross":
        a, b = w / 6, h / 6
        x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
        return np.array(
            [
                [cx - a, y0],
                [cx + a, y0],
                [cx + a, cy - b],
                [x1, cy - b],
                [x1, cy + b],
                [cx + a, cy + b],
                [cx + a, y1],
                [cx - a, y1],
                [cx - a, cy + b],
                [x0, cy + b],
                [x0, cy - b],
                [cx - a, cy - b],
            ]
        )
    if name == "star":
        t = np.linspace(-np.pi / 2, 3 * np.pi / 2, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([np.cos(t) * r, np.sin(t) * r], 1)
        # Normalise so the star fills its box exactly.
        pts = (pts - pts.min(0)) / (pts.max(0) - pts.min(0)) - 0.5
        return np.stack([cx + pts[:, 0] * w, cy + pts[:, 1] * h], 1)
    raise ValueError(name)


def _random_color(rng) -> tuple:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(120, 256), rng.integers(120, 256)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _background(h: int, w: int, rng) -> np.ndarray:
    base = rng.integers(40, 200, size=3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    # Low-frequency shading plus pixel noise.
    small = rng.normal(0, 25, size=(max(h // 32, 2), max(w // 32, 2), 3)).astype(np.float32)
    img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 8, size=(h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_clutter(img: np.ndarray, rng, count: int) -> None:
    """Object-like distractors: outlines, open arcs, thin ellipses, stripes."""
    h, w = img.shape[:2]
    for _ in range(count):
        kind = rng.integers(0, 4)
        color = _random_color(rng)
        s = rng.uniform(12, min(h, w) * 0.45)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if kind == 0:  # outline of a real class shape: looks like an object, is not one
            shape = SYNTHETIC_CLASSES[rng.integers(len(SYNTHETIC_CLASSES))]
            pts = _polygon(shape, cx, cy, s, s * rng.uniform(0.7, 1.3), rng)
            cv2.polylines(
                img, [np.round(pts).astype(np.int32)], True, color, int(rng.integers(1, 3))
            )
        elif kind == 1:  # open arc
            cv2.ellipse(
                img,
                (int(cx), int(cy)),
                (int(s / 2), int(s / 2)),
                0,
                float(rng.uniform(0, 360)),
                float(rng.uniform(0, 360)) + 90,
                color,
                2,
            )
        elif kind == 2:  # thin filled ellipse (a "blob" that is none of the classes)
            cv2.ellipse(
                img,
                (int(cx), int(cy)),
                (int(s / 2), max(int(s / 10), 2)),
                float(rng.uniform(0, 180)),
                0,
                360,
                color,
                -1,
            )
        else:  # stripe
            x2, y2 = cx + rng.uniform(-s, s), cy + rng.uniform(-s, s)
            cv2.line(img, (int(cx), int(cy)), (int(x2), int(y2)), color, int(rng.integers(2, 5)))


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _make_image(spec: SyntheticSpec, rng, empty: bool):
    h = int(rng.integers(spec.min_size, spec.max_size + 1))
    w = int(rng.integers(spec.min_size, spec.max_size + 1))
    img = _background(h, w, rng)
    _draw_clutter(img, rng, int(rng.integers(2, 7)))
    objects = []
    if not empty:
        target = int(rng.integers(1, spec.max_objects + 1))
        tries = 0
        while len(objects) < target and tries < 50:
            tries += 1
            # Log-uniform size: as many small as large objects.
            s = float(np.exp(rng.uniform(np.log(10), np.log(min(h, w) * 0.6))))
            bw, bh = s * rng.uniform(0.75, 1.33), s * rng.uniform(0.75, 1.33)
            bw, bh = min(bw, w - 2.0), min(bh, h - 2.0)
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = [x0, y0, x0 + bw, y0 + bh]
            if any(_box_iou(box, o["box"]) > 0.35 for o in objects):
                continue
            cls = int(rng.integers(len(SYNTHETIC_CLASSES)))
            pts = _polygon(SYNTHETIC_CLASSES[cls], x0 + bw / 2, y0 + bh / 2, bw, bh, rng)
            objects.append({"box": box, "cls": cls, "pts": pts, "color": _random_color(rng)})
    for o in objects:
        cv2.fillPoly(
            img,
            [np.round(o["pts"] * 16).astype(np.int32)],
            o["color"],
            lineType=cv2.LINE_AA,
            shift=4,
        )
    # A little clutter on top as well, so distractors also occlude objects.
    _draw_clutter(img, rng, int(rng.integers(0, 3)))
    return img, objects


def generate_synthetic_dataset(name: str, root: Optional[Path] = None) -> Path:
    """
    Generate split ``name`` (see ``SYNTHETIC_SPLITS``) unless it already exists.

    Returns:
        Path: the json file.
    """
    json_file, image_root = synthetic_paths(name, root)
    if json_file.is_file():
        return json_file
    spec = SYNTHETIC_SPLITS[name]
    final_dir = json_file.parent
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    logger.info(f"Generating synthetic dataset {name} ({spec.num_images} images) in {final_dir}")
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final_dir.parent))
    try:
        (tmp_dir / "images").mkdir()
        rng = np.random.default_rng(spec.seed)
        num_empty = int(round(spec.num_images * spec.empty_fraction))
        empty_ids = set(rng.choice(spec.num_images, size=num_empty, replace=False).tolist())
        images: List[dict] = []
        annotations: List[dict] = []
        for i in range(spec.num_images):
            if i and i % _LOG_EVERY == 0:
                logger.info(f"Generating {name}: {i}/{spec.num_images} images")
            img, objects = _make_image(spec, rng, empty=i in empty_ids)
            file_name = f"{i:06d}.png"
            cv2.imwrite(str(tmp_dir / "images" / file_name), img)
            images.append(
                {"id": i + 1, "file_name": file_name, "height": img.shape[0], "width": img.shape[1]}
            )
            for o in objects:
                x0, y0, x1, y1 = o["box"]
                poly = np.clip(o["pts"], [0, 0], [img.shape[1], img.shape[0]])
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": o["cls"] + 1,
                        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                        "area": round(float(cv2.contourArea(poly.astype(np.float32))), 2),
                        "segmentation": [np.round(poly, 2).reshape(-1).tolist()],
                        "iscrowd": 0,
                    }
                )
        coco = {
            "info": {
                "description": f"d2_sampling synthetic dataset {name}",
                "version": _FORMAT_VERSION,
                "seed": spec.seed,
            },
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": i + 1, "name": c, "supercategory": "shape"}
                for i, c in enumerate(SYNTHETIC_CLASSES)
            ],
        }
        with open(tmp_dir / "annotations.json", "w") as f:
            json.dump(coco, f)
        try:
            os.rename(tmp_dir, final_dir)
        except OSError:
            # Another process finished first; its copy is identical.
            if not json_file.is_file():
                raise
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return json_file
