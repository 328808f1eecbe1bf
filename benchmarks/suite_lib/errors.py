"""
COCO error analysis of a run's final detections: what the top N detections are (found, duplicate,
wrong class, poorly localised, background), N = the number of ground-truth boxes.
"""

import json
from pathlib import Path

ERROR_TYPES = ["tp", "duplicate", "wrong_class", "localization", "background"]


def error_profile(detections_file, gt_file):
    """
    What the final detections are, at a fixed operating point: the top N detections of the
    test set by score, N = the number of ground-truth boxes, each put in one class, in score
    order (greedy, as COCO's matching):

    - ``tp``: IoU >= 0.5 with a not yet matched GT box of its class;
    - ``duplicate``: IoU >= 0.5 with a GT box of its class already matched;
    - ``wrong_class``: IoU >= 0.5 only with GT boxes of other classes;
    - ``localization``: best IoU with any GT box in [0.1, 0.5);
    - ``background``: IoU < 0.1 with every GT box.

    A rank-based cut, not a score threshold, so that methods whose scores are calibrated
    differently (OHEM trains on hard RoIs only) are compared at the same number of detections.

    Returns:
        dict: the fraction of the N detections of each type, ``recall`` (= tp fraction, the
        share of GT boxes found) and ``n``; None when a file is missing.
    """
    import numpy as np

    if not (Path(detections_file).is_file() and Path(gt_file).is_file()):
        return None
    gt = json.loads(Path(gt_file).read_text())
    boxes, classes = {}, {}
    for a in gt["annotations"]:
        if a.get("iscrowd", 0):
            continue
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
        classes.setdefault(a["image_id"], []).append(a["category_id"])
    boxes = {k: np.asarray(v, dtype=np.float64) for k, v in boxes.items()}
    classes = {k: np.asarray(v) for k, v in classes.items()}
    matched = {k: np.zeros(len(v), dtype=bool) for k, v in boxes.items()}
    n = sum(len(v) for v in boxes.values())
    dets = sorted(json.loads(Path(detections_file).read_text()), key=lambda d: -d["score"])[:n]
    counts = dict.fromkeys(ERROR_TYPES, 0)
    for d in dets:
        g = boxes.get(d["image_id"])
        if g is None or len(g) == 0:
            counts["background"] += 1
            continue
        x, y, w, h = d["bbox"]
        iw = np.clip(np.minimum(x + w, g[:, 2]) - np.maximum(x, g[:, 0]), 0, None)
        ih = np.clip(np.minimum(y + h, g[:, 3]) - np.maximum(y, g[:, 1]), 0, None)
        inter = iw * ih
        iou = inter / (w * h + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter)
        same = classes[d["image_id"]] == d["category_id"]
        free = same & ~matched[d["image_id"]] & (iou >= 0.5)
        if free.any():
            j = int(np.argmax(np.where(free, iou, -1.0)))
            matched[d["image_id"]][j] = True
            counts["tp"] += 1
        elif (same & (iou >= 0.5)).any():
            counts["duplicate"] += 1
        elif (iou >= 0.5).any():
            counts["wrong_class"] += 1
        elif (iou >= 0.1).any():
            counts["localization"] += 1
        else:
            counts["background"] += 1
    out = {k: v / n for k, v in counts.items()} if n else dict.fromkeys(ERROR_TYPES, None)
    out.update(recall=out["tp"], n=n)
    return out
