"""
ROI labelling shared by the ROI heads of this package: the two halves of Detectron2's
``StandardROIHeads.label_and_sample_proposals`` around its sampler, so that a head that
replaces only the sampler (``IoUBalancedROIHeads``) or the whole choice of training ROIs
(``OHEMROIHeads``) labels and fills in ground truth exactly as Detectron2 does.

- :func:`label_proposals`: match one image's proposals to its GT boxes with the head's
  ``proposal_matcher`` (``pairwise_iou`` as the match quality) and turn the matches into
  Detectron2's ROI labels, keeping the matched GT and the IoU with it.
- :func:`select_training_rois`: the chosen proposals, with ``gt_classes`` and the other
  ``gt_*`` fields of their matched GT (:func:`add_gt_fields`).

Appending the GT boxes to the proposals stays with the caller
(``add_ground_truth_to_proposals``, as in Detectron2), because OHEM cuts its pool between the
two steps.
"""

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
from detectron2.structures import Instances, pairwise_iou

__all__ = ["ProposalLabels", "label_proposals", "select_training_rois", "add_gt_fields"]


@dataclass
class ProposalLabels:
    """
    How one image's proposals were labelled.

    Attributes:
        gt_classes (Tensor): (R,) int64 ROI labels: the matched GT's class ``0..K-1``,
            background ``K`` (matcher label 0, or an image without GT), ignore ``-1``
            (matcher label -1).
        matched_idxs (Tensor): (R,) int64, the GT each proposal is matched to, in ``[0, M)``
            (0 everywhere when the image has no GT; meaningful for foreground only).
        ious (Tensor): (R,) float, each proposal's IoU with its matched GT, i.e. its highest
            IoU with any GT (0 when the image has no GT).
    """

    gt_classes: torch.Tensor
    matched_idxs: torch.Tensor
    ious: torch.Tensor


def label_proposals(
    proposals: Instances,
    targets: Instances,
    proposal_matcher: Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
) -> ProposalLabels:
    """
    Label one image's proposals as ``StandardROIHeads`` does before sampling.

    Args:
        proposals (Instances): R proposals, field ``proposal_boxes``.
        targets (Instances): M ground-truth instances, fields ``gt_boxes`` and ``gt_classes``
            (M may be 0).
        proposal_matcher (Matcher): the head's matcher; called on the (M, R) IoU matrix, it
            returns the matched GT (R,) and the match label (R,) in {-1, 0, 1}.
        num_classes (int): K, the number of foreground classes (background label ``K``).

    Returns:
        ProposalLabels
    """
    match_quality_matrix = pairwise_iou(targets.gt_boxes, proposals.proposal_boxes)
    matched_idxs, matched_labels = proposal_matcher(match_quality_matrix)
    if len(targets) > 0:
        # The matcher's matches are the argmax over GTs: this is each proposal's max IoU.
        ious = match_quality_matrix.gather(0, matched_idxs[None]).squeeze(0)
        gt_classes = targets.gt_classes[matched_idxs]
        gt_classes[matched_labels == 0] = num_classes
        gt_classes[matched_labels == -1] = -1
    else:
        ious = torch.zeros(len(proposals), device=matched_idxs.device)
        gt_classes = torch.full_like(matched_idxs, num_classes)
    return ProposalLabels(gt_classes=gt_classes, matched_idxs=matched_idxs, ious=ious)


def add_gt_fields(
    rois: Instances,
    targets: Instances,
    matched_idxs: torch.Tensor,
    names: Optional[Sequence[str]] = None,
) -> Instances:
    """
    Give ``rois`` every ``gt_*`` field of ``targets`` that it does not have yet (or only those
    in ``names``), each ROI taking the value of its matched GT. An image without GT gets none:
    as in Detectron2, there is no meaningful dummy value (``gt_classes`` says background).

    Args:
        rois (Instances): S ROIs; modified in place.
        targets (Instances): M ground-truth instances.
        matched_idxs (Tensor): (S,) int64 in ``[0, M)``, the GT of each ROI.
        names (Sequence[str], optional): restrict to these fields (e.g. ``("gt_boxes",)``).

    Returns:
        Instances: ``rois``.
    """
    if len(targets) == 0:
        return rois
    for name, value in targets.get_fields().items():
        if name.startswith("gt_") and not rois.has(name) and (names is None or name in names):
            rois.set(name, value[matched_idxs])
    return rois


def select_training_rois(
    proposals: Instances,
    labels: ProposalLabels,
    idx: torch.Tensor,
    targets: Instances,
    gt_fields: Optional[Sequence[str]] = None,
) -> Instances:
    """
    The proposals ``idx`` of one image as training ROIs: ``proposals[idx]`` with
    ``gt_classes`` and the ``gt_*`` fields of their matched GT (:func:`add_gt_fields`).

    Args:
        proposals (Instances): R proposals.
        labels (ProposalLabels): from :func:`label_proposals` on ``proposals``.
        idx (Tensor): (S,) int64 indices into the R proposals.
        targets (Instances): the image's ground truth.
        gt_fields (Sequence[str], optional): copy only these ``gt_*`` fields (default: all).

    Returns:
        Instances: S ROIs, with the fields of ``proposals``, ``gt_classes`` (int64 ``0..K-1``,
        ``K`` or ``-1``) and, when the image has GT, the other ``gt_*`` fields.
    """
    rois = proposals[idx]
    rois.gt_classes = labels.gt_classes[idx]
    return add_gt_fields(rois, targets, labels.matched_idxs[idx], gt_fields)
