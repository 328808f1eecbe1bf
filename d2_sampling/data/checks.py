"""
Checks every dataset goes through before training, whatever its format (COCO json, Pascal VOC
xml, the synthetic splits): the same rules, the same messages.

- Images: every file listed exists and decodes (with PIL, as Detectron2's ``read_image``), and
  its size (after the EXIF rotation ``read_image`` applies) is the one the annotations give.
  Decoding runs in a thread pool (Pillow releases the GIL while it decodes) with a progress
  log, and its results are cached: a file already checked, with the same absolute path, size
  and modification time, is not decoded again, so a second run only ``stat``s the files.
  The cache lives in ``checks/`` under ``$D2_SAMPLING_DATASETS`` (default
  ``~/.cache/d2_sampling/datasets``), one json per image folder. Failures are never cached.
- Boxes: a box of zero or negative size (or with a non-finite coordinate), or wholly outside
  its image, is dropped; a box partly outside is clipped to the image. Both are counted per
  dataset and reported in ONE warning that names a few of them. This is the convention
  Detectron2's training mapper follows too (``transform_instance_annotations`` clips,
  ``filter_empty_instances`` drops), done here once, before training, so that it is visible and
  so that the ground truth of evaluation (the COCO json converted from these dicts, or the VOC
  evaluator's) is the one the model was trained on.

A file that cannot be read or has the wrong size is an error (``DatasetError``) naming every
such file (the first few, and how many there are): training would stop on it anyway, hours
later.
"""

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.structures import BoxMode
from PIL import Image

from .synthetic import dataset_root

__all__ = [
    "AnnotationReport",
    "DatasetError",
    "ImageCheckResult",
    "check_annotations",
    "check_cache_dir",
    "check_dataset_dicts",
    "check_images",
    "decode_image_size",
]

logger = logging.getLogger(__name__)

_CACHE_VERSION = 1
# How many offending files / boxes a message names; the rest are counted.
_EXAMPLES = 5
_EXIF_ORIENTATION = 0x0112
# Warnings already given in this process: a dataset is checked when it is prepared and again
# when the data loader loads it; its warning is worth reading once.
_WARNED = set()


class DatasetError(ValueError):
    """A dataset that cannot be used as it is: the message names the file(s) at fault."""


def check_cache_dir() -> Path:
    """Folder of the image-check cache: ``$D2_SAMPLING_DATASETS/checks``."""
    return dataset_root() / "checks"


# ---------------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------------
@dataclass
class AnnotationReport:
    """
    What ``check_annotations`` changed. Each list holds ``(file_name, index, bbox)``: the image
    file, the annotation's index in its image's ``annotations`` and its box as given.
    """

    dataset_name: str
    num_boxes: int = 0
    degenerate: List[tuple] = field(default_factory=list)
    outside: List[tuple] = field(default_factory=list)
    clipped: List[tuple] = field(default_factory=list)

    @property
    def dropped(self) -> List[tuple]:
        return self.degenerate + self.outside

    def message(self) -> Optional[str]:
        """The warning, or None when nothing was changed."""
        if not (self.dropped or self.clipped):
            return None
        parts = []
        if self.dropped:
            parts.append(
                f"dropped {len(self.dropped)} of {self.num_boxes} boxes "
                f"({len(self.degenerate)} of zero or negative size, {len(self.outside)} wholly "
                f"outside their image), e.g. {_examples(self.dropped)}"
            )
        if self.clipped:
            parts.append(
                f"clipped {len(self.clipped)} boxes partly outside their image to it, "
                f"e.g. {_examples(self.clipped)}"
            )
        return f"Dataset {self.dataset_name!r}: " + "; ".join(parts)


def _examples(items) -> str:
    shown = ", ".join(
        f"{os.path.basename(str(f))} annotation #{i} {list(map(_short, b))}"
        for f, i, b in items[:_EXAMPLES]
    )
    more = len(items) - _EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


def _short(x) -> float:
    return round(float(x), 2)


def check_annotations(dataset_dicts: List[dict], dataset_name: str) -> AnnotationReport:
    """
    Drop the boxes of zero or negative size and those wholly outside their image, clip those
    partly outside, in place (a clipped annotation is replaced by a copy), and warn once per
    dataset with the counts (see the module docstring).

    Only axis-aligned absolute boxes (``BoxMode.XYXY_ABS``, ``XYWH_ABS``) are checked; an image
    without ``height``/``width`` gets the size checks only. Segmentations and keypoints are
    left as they are.

    Args:
        dataset_dicts (list[dict]): Detectron2's standard dataset dicts.
        dataset_name (str): named in the warning.

    Returns:
        AnnotationReport: the changed boxes.
    """
    report = AnnotationReport(dataset_name)
    modes = (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    for record in dataset_dicts:
        anns = record.get("annotations")
        if not anns:
            continue
        width, height = record.get("width"), record.get("height")
        kept = []
        for i, ann in enumerate(anns):
            bbox, mode = ann.get("bbox"), ann.get("bbox_mode")
            if bbox is None or mode not in modes or len(bbox) != 4:
                kept.append(ann)
                continue
            report.num_boxes += 1
            x0, y0, x1, y1 = BoxMode.convert(list(map(float, bbox)), mode, BoxMode.XYXY_ABS)
            where = (record["file_name"], i, bbox)
            if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 <= x0 or y1 <= y0:
                report.degenerate.append(where)
                continue
            if width is None or height is None:
                kept.append(ann)
                continue
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                report.outside.append(where)
                continue
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                report.clipped.append(where)
                box = [max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))]
                ann = {**ann, "bbox": BoxMode.convert(box, BoxMode.XYXY_ABS, mode)}
            kept.append(ann)
        record["annotations"] = kept
    message = report.message()
    if message is not None and (dataset_name, message) not in _WARNED:
        _WARNED.add((dataset_name, message))
        logger.warning(message)
    return report


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
@dataclass
class ImageCheckResult:
    """``check_images``'s count: files listed, files decoded now, files found in the cache."""

    num_images: int
    num_decoded: int
    num_cached: int


def decode_image_size(path: str) -> Tuple[int, int]:
    """
    Decode the whole image (a truncated or corrupt file raises, as it would in training) and
    return its ``(height, width)`` after the EXIF rotation Detectron2's ``read_image`` applies.
    """
    with Image.open(path) as image:
        image.load()
        width, height = image.size
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in (5, 6, 7, 8):  # transposed or rotated by 90 degrees
        width, height = height, width
    return height, width


def _cache_file(cache_dir: Path, folder: str) -> Path:
    return cache_dir / (hashlib.sha1(folder.encode()).hexdigest()[:20] + ".json")


def _read_cache(path: Path, folder: str) -> Dict[str, list]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if data.get("version") != _CACHE_VERSION or data.get("folder") != folder:
        return {}
    return data.get("files", {})


def _write_cache(path: Path, folder: str, new: Dict[str, list]) -> None:
    # Merge with what another process may have written meanwhile, then replace atomically: a
    # lost update only means decoding a file again later, never a wrong entry.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files = {**_read_cache(path, folder), **new}
        fd, tmp = tempfile.mkstemp(prefix=".tmp.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": _CACHE_VERSION, "folder": folder, "files": files}, f)
        os.replace(tmp, path)
    except OSError as e:
        logger.warning(f"Cannot write the image-check cache {path}: {e}; checking without it")


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def check_images(
    dataset_dicts: Sequence[dict],
    dataset_name: str,
    *,
    cache_dir: Optional[os.PathLike] = None,
    num_workers: Optional[int] = None,
    log_period: float = 10.0,
) -> ImageCheckResult:
    """
    Check that every ``file_name`` of ``dataset_dicts`` exists, decodes, and has the
    ``height`` x ``width`` its record gives (when it gives one).

    Args:
        dataset_dicts: Detectron2's standard dataset dicts.
        dataset_name (str): named in the messages.
        cache_dir: folder of the cache; default ``check_cache_dir()``.
        num_workers (int): decoding threads; default ``ThreadPoolExecutor``'s.
        log_period (float): seconds between two progress messages.

    Returns:
        ImageCheckResult: how many files were decoded and how many came from the cache.

    Raises:
        DatasetError: some files are missing, do not decode or have another size; the message
            names them (the first few) and counts them.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else check_cache_dir()
    expected: Dict[str, Tuple] = {}  # absolute path -> (height, width) from the annotations
    for record in dataset_dicts:
        path = os.path.abspath(os.fspath(record["file_name"]))
        expected.setdefault(path, (record.get("height"), record.get("width")))

    failures: List[Tuple[str, str]] = []
    sizes: Dict[str, Tuple[int, int]] = {}
    stats: Dict[str, Tuple[int, int]] = {}
    caches: Dict[str, Dict[str, list]] = {}
    to_decode = []
    for path in expected:
        try:
            st = os.stat(path)
        except OSError as e:
            failures.append((path, "not found" if isinstance(e, FileNotFoundError) else str(e)))
            continue
        stats[path] = (st.st_size, st.st_mtime_ns)
        folder, base = os.path.split(path)
        if folder not in caches:
            caches[folder] = _read_cache(_cache_file(cache_dir, folder), folder)
        entry = caches[folder].get(base)
        if entry is not None and tuple(entry[:2]) == stats[path]:
            sizes[path] = (entry[2], entry[3])
        else:
            to_decode.append(path)

    num_cached = len(sizes)
    if to_decode:
        logger.info(
            f"Checking the images of dataset {dataset_name!r}: decoding {len(to_decode)} "
            f"({num_cached} checked before)"
        )
        start = last_log = time.perf_counter()
        new_entries: Dict[str, Dict[str, list]] = {}
        with ThreadPoolExecutor(num_workers) as pool:
            futures = [(path, pool.submit(decode_image_size, path)) for path in to_decode]
            for done, (path, future) in enumerate(futures, 1):
                try:
                    sizes[path] = future.result()
                except Exception as e:  # whatever PIL raises for a bad file
                    failures.append((path, f"cannot be decoded ({_describe(e)})"))
                else:
                    folder, base = os.path.split(path)
                    new_entries.setdefault(folder, {})[base] = [*stats[path], *sizes[path]]
                now = time.perf_counter()
                if now - last_log >= log_period and done < len(futures):
                    last_log = now
                    logger.info(
                        f"Checking the images of {dataset_name!r}: {done}/{len(futures)} "
                        f"({done / (now - start):.0f}/s)"
                    )
        for folder, entries in new_entries.items():
            _write_cache(_cache_file(cache_dir, folder), folder, entries)
        logger.info(
            f"Checked {len(to_decode)} images of {dataset_name!r} in "
            f"{time.perf_counter() - start:.1f} s"
        )

    for path, size in sizes.items():
        height, width = expected[path]
        if height is not None and width is not None and (int(height), int(width)) != size:
            failures.append(
                (
                    path,
                    f"is {size[1]}x{size[0]} (width x height) but its annotation says "
                    f"{width}x{height}",
                )
            )
    if failures:
        failures.sort()
        listed = "\n".join(f"  {path}: {why}" for path, why in failures[:_EXAMPLES])
        more = len(failures) - _EXAMPLES
        raise DatasetError(
            f"{len(failures)} of the {len(expected)} images of dataset {dataset_name!r} "
            f"cannot be used:\n{listed}" + (f"\n  ... and {more} more" if more > 0 else "")
        )
    return ImageCheckResult(len(expected), len(to_decode), num_cached)


def check_dataset_dicts(dataset_dicts: List[dict], dataset_name: str, **image_kwargs) -> List[dict]:
    """
    ``check_annotations`` then ``check_images`` (``image_kwargs`` go to it).

    Returns:
        list[dict]: ``dataset_dicts``, with the boxes dropped or clipped.
    """
    check_annotations(dataset_dicts, dataset_name)
    check_images(dataset_dicts, dataset_name, **image_kwargs)
    return dataset_dicts
