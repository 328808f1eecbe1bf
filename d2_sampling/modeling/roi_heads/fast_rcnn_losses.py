"""
Per-ROI (unreduced) losses of Detectron2's ``FastRCNNOutputLayers``: the classification and
box-regression loss of every ROI, with the predictor's own loss terms and weights, instead of
their mean. ``OHEMROIHeads`` ranks ROIs by them (Shrivastava et al., arXiv 1604.03540; see
docs/ohem.md, "The per-RoI loss"); benchmarks and tools plot them.
"""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import cat, ciou_loss, diou_loss, nonzero_tuple
from detectron2.structures import Instances
from fvcore.nn import giou_loss, smooth_l1_loss

from ..balanced_l1_loss import balanced_l1_loss

__all__ = ["fast_rcnn_per_roi_losses"]


def fast_rcnn_per_roi_losses(
    box_predictor, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    The unreduced losses of a ``FastRCNNOutputLayers``: one value per RoI instead of the mean.

    Summed over the RoIs and divided by their number, ``cls + box`` gives back what
    ``box_predictor.losses(predictions, proposals)`` returns as ``loss_cls + loss_box_reg``
    (weights included), except with a federated sigmoid loss (``use_fed_loss``): there the
    classification term here is the sigmoid CE over all classes, because the federated class
    subset is drawn at random per step and would make a ranking by these losses noisy.

    Args:
        box_predictor (FastRCNNOutputLayers): the predictor whose losses to reproduce; its
            ``num_classes``, ``box2box_transform``, ``smooth_l1_beta``, ``box_reg_loss_type``,
            ``loss_weight`` and ``use_sigmoid_ce`` are read, and for ``"balanced_l1"`` (a
            :class:`BalancedL1FastRCNNOutputLayers`) its ``balanced_l1`` hyperparameters.
        predictions (tuple[Tensor, Tensor]): its outputs: scores (R, K+1) and box deltas
            (R, 4) or (R, 4K).
        proposals (list[Instances]): the RoIs, in the order of ``predictions``, with fields
            ``proposal_boxes``, ``gt_classes`` (int64, ``0..K-1`` foreground, ``K`` background,
            no ``-1``) and, in images with ground truth, ``gt_boxes``.

    Returns:
        Tensor: (R,) float, weighted classification loss of each RoI.
        Tensor: (R,) float, weighted box regression loss of each RoI (0 for background).
    """
    scores, deltas = predictions
    num_classes = box_predictor.num_classes
    gt_classes = cat([p.gt_classes for p in proposals], dim=0)
    if getattr(box_predictor, "use_sigmoid_ce", False):
        target = F.one_hot(gt_classes, num_classes + 1)[:, :num_classes].to(scores.dtype)
        loss_cls = F.binary_cross_entropy_with_logits(
            scores[:, :num_classes], target, reduction="none"
        ).sum(dim=1)
    else:
        loss_cls = F.cross_entropy(scores, gt_classes, reduction="none")

    loss_box = torch.zeros_like(loss_cls)
    fg_inds = nonzero_tuple((gt_classes >= 0) & (gt_classes < num_classes))[0]
    if fg_inds.numel() > 0:
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)[fg_inds]
        gt_boxes = cat(
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals],
            dim=0,
        )[fg_inds]
        box_dim = proposal_boxes.shape[1]
        if deltas.shape[1] == box_dim:  # class-agnostic regression
            fg_deltas = deltas[fg_inds]
        else:
            fg_deltas = deltas.view(-1, num_classes, box_dim)[fg_inds, gt_classes[fg_inds]]
        transform = box_predictor.box2box_transform
        kind = box_predictor.box_reg_loss_type
        if kind == "smooth_l1":
            target = transform.get_deltas(proposal_boxes, gt_boxes)
            per_fg = smooth_l1_loss(
                fg_deltas, target, beta=box_predictor.smooth_l1_beta, reduction="none"
            ).sum(dim=1)
        elif kind == "balanced_l1":
            target = transform.get_deltas(proposal_boxes, gt_boxes)
            per_fg = balanced_l1_loss(
                fg_deltas, target, reduction="none", **box_predictor.balanced_l1
            ).sum(dim=1)
        else:
            iou_losses = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}
            if kind not in iou_losses:
                raise ValueError(f"Invalid box regression loss type {kind!r}")
            pred_boxes = transform.apply_deltas(fg_deltas, proposal_boxes)
            per_fg = iou_losses[kind](pred_boxes, gt_boxes, reduction="none")
        loss_box[fg_inds] = per_fg.to(loss_box.dtype)

    weights = box_predictor.loss_weight
    return loss_cls * weights.get("loss_cls", 1.0), loss_box * weights.get("loss_box_reg", 1.0)
