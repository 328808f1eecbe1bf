"""
Loss helpers of the ATSS detector (Zhang et al., "Bridging the Gap Between Anchor-based and
Anchor-free Detection via Adaptive Training Sample Selection", CVPR 2020, arXiv 1912.02424):
the centerness target of a positive anchor, which both supervises the centerness branch and
weights the GIoU box loss, and the two loss normalisers (positive count, centerness sum),
averaged over workers with one ``all_reduce`` that every worker makes in every iteration.
Pure functions, no module, no config. How they compare with the authors' code and
MMDetection: docs/atss.md.
"""

from typing import Tuple

import torch
import torch.distributed as dist
from detectron2.utils import comm
from torch import Tensor

__all__ = ["atss_loss_normalizers", "centerness_targets"]


def centerness_targets(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """
    FCOS/ATSS centerness of each anchor center inside its matched GT box.

    Args:
        anchors (Tensor): (P, 4) XYXY anchors (positives).
        gt_boxes (Tensor): (P, 4) XYXY GT box of each.

    Returns:
        Tensor: (P,) ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``, in (0, 1] for a
        center strictly inside the box (which ATSS guarantees for positives).

    Raises:
        ValueError: ``anchors`` and ``gt_boxes`` are not both (P, 4).
    """
    if anchors.dim() != 2 or anchors.shape[1] != 4 or anchors.shape != gt_boxes.shape:
        raise ValueError(
            "centerness_targets: anchors and gt_boxes must both be (P, 4), got "
            f"{tuple(anchors.shape)} and {tuple(gt_boxes.shape)}"
        )
    cx = (anchors[:, 0] + anchors[:, 2]) / 2
    cy = (anchors[:, 1] + anchors[:, 3]) / 2
    left, right = cx - gt_boxes[:, 0], gt_boxes[:, 2] - cx
    top, bottom = cy - gt_boxes[:, 1], gt_boxes[:, 3] - cy
    lr = torch.minimum(left, right) / torch.maximum(left, right)
    tb = torch.minimum(top, bottom) / torch.maximum(top, bottom)
    return torch.sqrt((lr * tb).clamp(min=0))


def atss_loss_normalizers(num_pos: Tensor, centerness_sum: Tensor) -> Tuple[float, float]:
    """
    The loss normalisers of ATSS, averaged over workers.

    Both values are summed over all workers in one ``all_reduce`` that every worker calls
    every iteration (a worker that skipped it because its images had no GT would deadlock the
    others), then divided by the world size.

    Args:
        num_pos (Tensor): scalar, positive anchors in this worker's batch.
        centerness_sum (Tensor): scalar, sum of this worker's positives' centerness targets.

    Returns:
        num_pos_avg (float): ``max(sum_workers(num_pos) / world_size, 1)``, the divisor of the
            classification and centerness losses.
        centerness_avg (float): ``sum_workers(centerness_sum) / world_size``, at least a tiny
            epsilon, the divisor of the centerness-weighted box loss.

    Raises:
        ValueError: an argument is not a single value.
    """
    if num_pos.numel() != 1 or centerness_sum.numel() != 1:
        raise ValueError(
            "atss_loss_normalizers: num_pos and centerness_sum must be scalar tensors, got "
            f"shapes {tuple(num_pos.shape)} and {tuple(centerness_sum.shape)}"
        )
    values = torch.stack([num_pos.detach().float(), centerness_sum.detach().float()]).reshape(2)
    world_size = comm.get_world_size()
    if world_size > 1:
        dist.all_reduce(values)
    values = (values / world_size).tolist()
    return max(values[0], 1.0), max(values[1], torch.finfo(torch.float32).eps)
