"""Shared test utilities: paths, and running train_net.py in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# Real COCO 2017 slice, laid beside the checkout (never copied into it).
COCO_TINY = REPO.parent / "shared" / "data" / "coco_tiny"
# BCCD (Pascal VOC layout), beside the checkout too; configs/BCCD/ register it from there.
BCCD = REPO.parent / "shared" / "data" / "bccd"


def coco_tiny_available() -> bool:
    return (COCO_TINY / "annotations" / "instances_val2017.json").is_file()


def bccd_available() -> bool:
    return (BCCD / "ImageSets" / "Main" / "train.txt").is_file() and (BCCD / "Annotations").is_dir()


def run_script(script, *args, timeout=900, check=True, env=None):
    """
    Run ``python <script> *args`` (a path relative to the repository root) from the root, one
    torch thread, unbuffered.

    Returns:
        subprocess.CompletedProcess with ``stdout`` (stderr merged in). With ``check``, a
        non-zero exit raises ``AssertionError`` showing the end of the output.
    """
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env.setdefault("OMP_NUM_THREADS", "1")
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(map(str, args))} exited {proc.returncode}:\n" + proc.stdout[-6000:]
        )
    return proc


def seeded(args):
    """
    ``args`` of ``train_net.py`` with a fixed seed (``SEED 0`` for a yacs config,
    ``train.seed=0`` for a LazyConfig) unless they set one: the seed fixes the initial weights
    and the data order, so a test's training run is the same every time.
    """
    args = [str(a) for a in args]
    if "--config-file" not in args:
        return args
    config = args[args.index("--config-file") + 1]
    if config.endswith(".py"):
        return args if any(a.startswith("train.seed=") for a in args) else args + ["train.seed=0"]
    return args if "SEED" in args else args + ["SEED", "0"]


def run_train_net(*args, timeout=900, check=True, env=None):
    """Run ``python train_net.py *args``, seeded (see ``seeded``, ``run_script``)."""
    return run_script("train_net.py", *seeded(args), timeout=timeout, check=check, env=env)


def assert_workers_agree(output_dir, world_size=2):
    """``--check-weight-sync`` wrote one digest per worker, all equal (weights in sync)."""
    digest = json.loads((Path(output_dir) / "weights_digest.json").read_text())
    assert digest["world_size"] == world_size, digest
    assert len(digest["digests"]) == world_size and len(set(digest["digests"])) == 1, digest


def read_metrics(output_dir):
    """The lines of ``OUTPUT_DIR/metrics.json`` (Detectron2's JSONWriter), as dicts."""
    with open(Path(output_dir) / "metrics.json") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_empty_images_dataset(folder):
    """
    A COCO json with only the images of ``synthetic_mini_train`` that hold no object.

    Returns:
        (json_file, image_root): for ``--coco-dataset NAME JSON IMAGE_ROOT``.
    """
    from d2_sampling.data import generate_synthetic_dataset, synthetic_paths

    generate_synthetic_dataset("synthetic_mini_train")
    json_file, image_root = synthetic_paths("synthetic_mini_train")
    data = json.loads(Path(json_file).read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    data["images"] = [im for im in data["images"] if im["id"] not in annotated]
    data["annotations"] = []
    assert len(data["images"]) >= 1
    empty_json = Path(folder) / "empty.json"
    empty_json.write_text(json.dumps(data))
    return empty_json, image_root


def gt_instances(boxes, classes, size=(64, 96)):
    """An ``Instances`` of GT boxes (XYXY rows) and classes for an image of ``size`` (h, w)."""
    import torch
    from detectron2.structures import Boxes, Instances

    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def sampled_opts(sampler, heads="StandardROIHeads"):
    """yacs overrides: ``heads`` trained with ``sampler`` through ``SampledROIHeads``."""
    return (
        "MODEL.ROI_HEADS.NAME",
        "SampledROIHeads",
        "MODEL.ROI_SAMPLER.NAME",
        sampler,
        "MODEL.ROI_SAMPLER.HEADS",
        heads,
    )
