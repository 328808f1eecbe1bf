#!/usr/bin/env python
"""
Do both tested stacks compute the same thing? One model per method, the same fixed weights, the
same batch: each stack writes the training losses and what the sampler or matcher chose, and
``compare`` checks them against each other.

    # in the classic stack: builds each model from seed 0, saves its weights into DIR
    .venv/bin/python tools/compare_stacks.py dump --weights-dir DIR --out classic.json
    # in the modern stack: loads those weights
    .venv-modern/bin/python tools/compare_stacks.py dump --weights-dir DIR --out modern.json
    python tools/compare_stacks.py compare classic.json modern.json

What is recorded, per config of ``configs/quick_schedules/`` (one per method and baseline):
the loss terms; for ROI heads, the index of every RoI the head trained on in the list it chose
from (the RPN's proposals, then the ground truth Detectron2 appends) and its label, the RPN's
proposals being those of the first stack on both; for dense detectors, the index and label of
every foreground anchor. Losses must agree within
``--rtol`` (float arithmetic differs between torch versions), indices and labels exactly.
"""

import argparse
import json
import os
import sys

import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from d2_sampling.engine import load_yacs_config

CONFIGS = [
    "faster_rcnn_tiny_FPN_instant_test",
    "faster_rcnn_tiny_FPN_ohem_instant_test",
    "faster_rcnn_tiny_FPN_iou_balanced_instant_test",
    "mask_rcnn_tiny_FPN_ohem_instant_test",
    "retinanet_tiny_FPN_instant_test",
    "retinanet_tiny_FPN_atss_instant_test",
    "atss_tiny_FPN_instant_test",
]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_IMAGES = 2


def fixed_batch(cfg):
    """The first images of the training split, resized deterministically (no flip)."""
    dicts = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])
    dicts = [d for d in dicts if d["annotations"]][:NUM_IMAGES]
    args = DatasetMapper.from_config(cfg, is_train=True)
    args["augmentations"] = [T.ResizeShortestEdge(288, max_size=448)]
    mapper = DatasetMapper(**args)
    return [mapper(d) for d in dicts]


def _row_indices(rows: torch.Tensor, table: torch.Tensor) -> list:
    """The index in ``table`` (T, 4) of each row of ``rows`` (S, 4), rows being copies."""
    eq = (rows[:, None, :] == table[None, :, :]).all(dim=2)
    if not bool(eq.any(dim=1).all()):
        raise RuntimeError("a sampled RoI is not one of the candidates")
    return eq.int().argmax(dim=1).tolist()


def record_choices(model, choices: list, proposals_file: str):
    """
    Wrap the model's sampling step so that each call appends what it chose to ``choices``.

    ROI heads see the same candidates on both stacks: the RPN's proposals of the first stack
    are saved to ``proposals_file`` and replace the RPN's output on the second (with random
    weights many objectness scores nearly tie, and torch versions may order such ties apart).
    """
    roi_heads = getattr(model, "roi_heads", None)
    if roi_heads is not None:
        forward = roi_heads.forward

        def roi_forward(images, features, proposals, targets=None):
            if os.path.isfile(proposals_file):
                saved = torch.load(proposals_file, map_location="cpu", weights_only=True)
                proposals = [
                    Instances(p.image_size, proposal_boxes=Boxes(boxes), objectness_logits=logits)
                    for p, (boxes, logits) in zip(proposals, saved)
                ]
            else:
                saved = [(p.proposal_boxes.tensor, p.objectness_logits) for p in proposals]
                torch.save(saved, proposals_file)
            rois, losses = forward(images, features, proposals, targets)
            for p, t, r in zip(proposals, targets, rois):
                table = torch.cat([p.proposal_boxes.tensor, t.gt_boxes.tensor])
                choices.append(
                    {
                        "index": _row_indices(r.proposal_boxes.tensor, table),
                        "label": r.gt_classes.tolist(),
                    }
                )
            return rois, losses

        roi_heads.forward = roi_forward
        return
    label_anchors = model.label_anchors

    def dense_label_anchors(anchors, gt_instances, *grid):
        gt_labels, boxes = label_anchors(anchors, gt_instances, *grid)
        for labels in gt_labels:
            fg = ((labels >= 0) & (labels != model.num_classes)).nonzero().flatten()
            choices.append({"index": fg.tolist(), "label": labels[fg].tolist()})
        return gt_labels, boxes

    model.label_anchors = dense_label_anchors


def dump(args):
    import d2_sampling  # noqa: F401  (registers models and datasets)

    os.makedirs(args.weights_dir, exist_ok=True)
    results = {"torch": torch.__version__, "configs": {}}
    for name in CONFIGS:
        path = os.path.join(REPO, "configs", "quick_schedules", name + ".yaml")
        cfg = load_yacs_config(path, ["MODEL.DEVICE", "cpu", "SEED", "0"])
        torch.manual_seed(0)
        model = build_model(cfg)
        weights = os.path.join(args.weights_dir, name + ".pth")
        if os.path.isfile(weights):
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        else:
            torch.save(model.state_dict(), weights)
        model.train()
        choices = []
        record_choices(model, choices, os.path.join(args.weights_dir, name + ".proposals.pth"))
        torch.manual_seed(1)  # the samplers' random draws
        with EventStorage():
            losses = model(fixed_batch(cfg))
        results["configs"][name] = {
            "losses": {k: float(v.detach()) for k, v in sorted(losses.items())},
            "choices": choices,
        }
        print(f"{name}: " + ", ".join(f"{k} {float(v):.6f}" for k, v in sorted(losses.items())))
    with open(args.out, "w") as f:
        json.dump(results, f)


def compare(args):
    with open(args.a) as f:
        a = json.load(f)
    with open(args.b) as f:
        b = json.load(f)
    print(f"torch {a['torch']} vs torch {b['torch']}, losses within rtol {args.rtol}")
    bad = 0
    for name in CONFIGS:
        ra, rb = a["configs"][name], b["configs"][name]
        worst = 0.0
        for key, va in ra["losses"].items():
            vb = rb["losses"][key]
            rel = abs(va - vb) / max(abs(va), 1e-12)
            worst = max(worst, rel)
            if rel > args.rtol:
                bad += 1
                print(f"  {name} {key}: {va!r} vs {vb!r} (relative difference {rel:.2e})")
        same = ra["choices"] == rb["choices"]
        bad += not same
        n = sum(len(c["index"]) for c in ra["choices"])
        print(
            f"{name:50s} losses: max relative difference {worst:.1e}; "
            f"{n} chosen RoIs / anchors: {'identical' if same else 'DIFFERENT'}"
        )
    if bad:
        sys.exit(f"{bad} difference(s) between the stacks")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dump", help="write this stack's losses and choices")
    p.add_argument("--weights-dir", required=True, help="shared weights (created if missing)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=dump)
    p = sub.add_parser("compare", help="compare two dumps")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance of the losses")
    p.set_defaults(func=compare)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
