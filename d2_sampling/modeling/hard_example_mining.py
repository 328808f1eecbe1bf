"""
Hard-example selection for online hard example mining (OHEM), from Shrivastava, Gupta,
Girshick, "Training Region-based Object Detectors with Online Hard Example Mining", CVPR 2016,
arXiv 1604.03540.

OHEM replaces random RoI sampling: every candidate RoI of an image is scored by its current
loss, and the hardest ones are kept for the backward pass. This module holds only the
selection (given per-RoI losses, which RoIs to keep), a pure torch function; computing the
losses and wiring it into a detector is ``d2_sampling.modeling.roi_heads.OHEMROIHeads``. Both
published recipes are expressible: the paper's (NMS over the RoIs with the loss as score, then
the top ``B/N``, no foreground quota: ``positive_fraction < 0`` with ``boxes``) and
MMDetection's ``OHEMSampler`` (no NMS, 25% foreground quota: ``positive_fraction = 0.25``,
``boxes=None``). The recipes side by side, and where this departs from both (tie rule, output
order, NMS convention), are in docs/ohem.md.
"""

from typing import Optional

import torch
from torchvision.ops import nms

__all__ = ["select_hard_examples"]


def select_hard_examples(
    losses: torch.Tensor,
    num_samples: int,
    *,
    boxes: Optional[torch.Tensor] = None,
    nms_thresh: float = 0.7,
    is_foreground: Optional[torch.Tensor] = None,
    positive_fraction: float = -1.0,
) -> torch.Tensor:
    """
    Select the hardest examples of one image.

    Steps:

    1. If ``boxes`` is given and ``0 < nms_thresh < 1``: greedy NMS over the candidates, in
       order of decreasing loss, dropping every RoI whose IoU with an already kept RoI is
       ``> nms_thresh``. Otherwise every candidate stays.
    2. If ``positive_fraction < 0``: keep the ``num_samples`` highest-loss survivors (all of
       them if fewer remain).
       If ``positive_fraction >= 0``: keep the ``min(int(num_samples * positive_fraction),
       #foreground)`` highest-loss foreground survivors, then fill the remaining
       ``num_samples - #kept foreground`` slots with the highest-loss background survivors
       (as many as exist).

    Args:
        losses (Tensor): float tensor of shape (R,), the loss of each candidate RoI (higher is
            harder). Any float dtype; must not contain NaN.
        num_samples (int): how many RoIs to keep at most (the paper's ``B/N``); ``>= 0``.
        boxes (Tensor, optional): float tensor of shape (R, 4), ``(x1, y1, x2, y2)`` of each
            candidate, for NMS. ``None`` disables NMS.
        nms_thresh (float): IoU threshold of the NMS step (paper: 0.7). NMS runs only when
            ``0 < nms_thresh < 1`` and ``boxes`` is given.
        is_foreground (Tensor, optional): bool tensor of shape (R,), True for foreground RoIs
            (label in ``0..K-1``), False for background (label ``K``). Ignored RoIs (label
            ``-1``) must be removed by the caller. Required when ``positive_fraction >= 0``.
        positive_fraction (float): foreground quota in ``[0, 1]``, or negative for none
            (paper). MMDetection uses 0.25.

    Returns:
        Tensor: int64 tensor of shape (S,), ``S <= num_samples``, indices into ``losses`` of
        the kept RoIs, on the device of ``losses``, ordered by loss (highest first), ties by
        lower index.

    Raises:
        ValueError: ``num_samples < 0``, ``positive_fraction > 1``, a quota without
            ``is_foreground``, or shapes that do not match.
    """
    if losses.dim() != 1:
        raise ValueError(f"losses must have shape (R,), got {tuple(losses.shape)}")
    num_rois = losses.shape[0]
    if int(num_samples) != num_samples or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
    num_samples = int(num_samples)
    if positive_fraction > 1.0:
        raise ValueError(
            f"positive_fraction must be <= 1 (negative: no quota), got {positive_fraction!r}"
        )
    use_quota = positive_fraction >= 0
    if use_quota:
        if is_foreground is None:
            raise ValueError("positive_fraction >= 0 needs is_foreground")
        if is_foreground.shape != (num_rois,):
            raise ValueError(
                f"is_foreground must have shape ({num_rois},), got {tuple(is_foreground.shape)}"
            )
    if boxes is not None and boxes.shape != (num_rois, 4):
        raise ValueError(f"boxes must have shape ({num_rois}, 4), got {tuple(boxes.shape)}")

    # Candidates in selection order: loss descending; a stable sort keeps equal losses in index
    # order, which is the tie rule for everything below.
    order = torch.sort(losses, descending=True, stable=True).indices
    if boxes is not None and 0.0 < nms_thresh < 1.0 and num_rois > 1:
        # torchvision's NMS orders by score with no tie rule; give it strictly decreasing
        # scores (the rank) so its order is ours. Its output comes back in that order.
        rank_score = torch.empty(num_rois, dtype=torch.float32, device=losses.device)
        rank_score[order] = torch.arange(num_rois, 0, -1, dtype=torch.float32, device=losses.device)
        keep = nms(boxes.float(), rank_score, nms_thresh)
        order = keep  # already by decreasing rank = decreasing loss, ties by index

    if not use_quota:
        return order[:num_samples]

    fg = is_foreground[order].bool()
    num_pos = min(int(num_samples * positive_fraction), int(fg.sum()))
    pos = order[fg][:num_pos]
    neg = order[~fg][: num_samples - num_pos]
    # Merge the two loss-ordered lists back into one loss-ordered list: `order` already is
    # that order, so keep the members of `order` that were chosen.
    chosen = torch.zeros(num_rois, dtype=torch.bool, device=losses.device)
    chosen[pos] = True
    chosen[neg] = True
    return order[chosen[order]]
