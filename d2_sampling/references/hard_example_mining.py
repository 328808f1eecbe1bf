"""
Plain-loop reference of :func:`d2_sampling.modeling.select_hard_examples` (OHEM's selection,
Shrivastava et al., arXiv 1604.03540), written straight from its definition with Python lists:
greedy NMS in order of decreasing loss (ties: lower index first), then the top ``num_samples``
or the foreground quota. Slow and obviously correct; the tests compare the fast selection with
it on random inputs. Semantics: docs/ohem.md.
"""

from typing import List, Optional, Sequence

__all__ = ["box_iou", "select_hard_examples_reference"]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes; 0 when the union is empty (two zero-area boxes)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def select_hard_examples_reference(
    losses: Sequence[float],
    num_samples: int,
    boxes: Optional[Sequence[Sequence[float]]] = None,
    nms_thresh: float = 0.7,
    is_fg: Optional[Sequence[bool]] = None,
    pos_frac: float = -1.0,
) -> List[int]:
    """
    Args:
        losses (list[float]): (R,) loss of each RoI.
        num_samples (int): RoIs to keep at most.
        boxes (list[list[float]], optional): (R, 4) boxes for NMS; None: no NMS.
        nms_thresh (float): NMS runs when ``0 < nms_thresh < 1`` and ``boxes`` is given.
        is_fg (list[bool], optional): (R,) foreground flags, needed when ``pos_frac >= 0``.
        pos_frac (float): foreground quota, or negative for none.

    Returns:
        list[int]: the kept indices, by decreasing loss, ties by lower index.
    """
    losses = [float(x) for x in losses]
    order = sorted(range(len(losses)), key=lambda i: (-losses[i], i))
    if boxes is not None and 0 < nms_thresh < 1:
        boxes = [[float(v) for v in b] for b in boxes]
        kept = []
        for i in order:
            if all(box_iou(boxes[i], boxes[j]) <= nms_thresh for j in kept):
                kept.append(i)
        order = kept
    if pos_frac < 0:
        return order[:num_samples]
    fg = [i for i in order if is_fg[i]]
    bg = [i for i in order if not is_fg[i]]
    num_pos = min(int(num_samples * pos_frac), len(fg))
    chosen = set(fg[:num_pos]) | set(bg[: num_samples - num_pos])
    return [i for i in order if i in chosen]
