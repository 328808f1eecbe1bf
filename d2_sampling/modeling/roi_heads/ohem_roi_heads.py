"""
``OHEMROIHeads``: Detectron2's ``StandardROIHeads`` trained with online hard example mining.

Shrivastava, Gupta, Girshick, "Training Region-based Object Detectors with Online Hard Example
Mining", CVPR 2016, arXiv 1604.03540.

Training step, per batch (inference is ``StandardROIHeads``' unchanged):

1. Label every proposal of every image (ground-truth boxes appended, as Detectron2 does) with
   the usual matcher: class ``0..K-1``, background ``K``, ignore ``-1``. Ignored RoIs leave
   the pool. Optionally keep only the ``max_pool_size`` highest-objectness RoIs.
2. Read-only pass: the box pooler, box head and box predictor run once over the pools of all
   images together, under ``no_grad``, and every RoI gets its loss (below).
3. Per image, ``select_hard_examples`` picks the RoIs to train on.
4. The normal ``StandardROIHeads`` box / mask / keypoint forward and losses run on the selected
   RoIs only, so gradients reach the heads (and, through RoIAlign, the backbone) only through
   them. The mask head trains on the selected foreground RoIs.

Per-RoI loss used for ranking, for RoI ``i`` with label ``u_i``:
``loss_i = w_cls * CE(p_i, u_i) + [u_i in 0..K-1] * w_box * L_box(t_i, v_i)`` (``"cls+box"``,
the paper's full RoI loss) or its first term only (``"cls"``, MMDetection). ``CE`` and
``L_box`` are exactly the box predictor's own terms (softmax or sigmoid CE; smooth-L1 with its
beta summed over the 4 coordinates, or GIoU/DIoU/CIoU), and ``w_cls`` / ``w_box`` its
``loss_weight``. Normalisation: the training losses are Detectron2's, i.e. ``loss_cls`` is the
mean CE over the S selected RoIs of the batch and ``loss_box_reg`` is the *sum* of box losses
of the selected foreground RoIs divided by S (all selected RoIs, not the foreground ones), as
in Fast R-CNN and MMDetection. Hence ``loss_cls + loss_box_reg == mean(loss_i over selected)``
for ``"cls+box"``, computed with the weights of the read-only pass.

Departures from the paper / MMDetection, and why:

- The pool is the RPN's post-NMS proposals (+ ground truth), not Selective Search RoIs.
- The read-only pass is batched over the images of the step (MMDetection runs one per image
  and one each for positives and negatives); the result is the same, it is just faster.
- Buffers of the box head (e.g. BatchNorm running statistics) are restored after the
  read-only pass, so it really is read-only and the statistics are updated once per step, by
  the training pass, exactly as without OHEM.
- With a federated sigmoid loss (``use_fed_loss``), ranking uses the sigmoid CE over all
  classes: the federated class subset is random per step and would make ranking noisy.
"""

import logging
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.nn import giou_loss, smooth_l1_loss

from detectron2.config import configurable
from detectron2.layers import cat, ciou_loss, diou_loss, nonzero_tuple
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from ..hard_example_mining import select_hard_examples

__all__ = ["OHEMROIHeads", "fast_rcnn_per_roi_losses", "OHEM_LOSSES"]

logger = logging.getLogger(__name__)

#: Names accepted by ``ohem_loss`` / ``MODEL.OHEM.LOSS``.
OHEM_LOSSES = ("cls+box", "cls")


def fast_rcnn_per_roi_losses(
    box_predictor, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    The unreduced losses of a ``FastRCNNOutputLayers``: one value per RoI instead of the mean.

    Summed over the RoIs and divided by their number, ``cls + box`` gives back what
    ``box_predictor.losses(predictions, proposals)`` returns as ``loss_cls + loss_box_reg``
    (weights included; federated loss excepted, see the module docstring).

    Args:
        box_predictor (FastRCNNOutputLayers): the predictor whose losses to reproduce; its
            ``num_classes``, ``box2box_transform``, ``smooth_l1_beta``, ``box_reg_loss_type``,
            ``loss_weight`` and ``use_sigmoid_ce`` are read.
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
        else:
            iou_losses = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}
            if kind not in iou_losses:
                raise ValueError(f"Invalid box regression loss type {kind!r}")
            pred_boxes = transform.apply_deltas(fg_deltas, proposal_boxes)
            per_fg = iou_losses[kind](pred_boxes, gt_boxes, reduction="none")
        loss_box[fg_inds] = per_fg.to(loss_box.dtype)

    weights = box_predictor.loss_weight
    return loss_cls * weights.get("loss_cls", 1.0), loss_box * weights.get("loss_box_reg", 1.0)


@contextmanager
def _restore_buffers(*modules: torch.nn.Module):
    """Undo any buffer update (BatchNorm running stats, counters) made inside the block."""
    saved = [(b, b.detach().clone()) for m in modules for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


@ROI_HEADS_REGISTRY.register()
class OHEMROIHeads(StandardROIHeads):
    """
    ``StandardROIHeads`` whose training RoIs are chosen by online hard example mining instead
    of random sampling. See the module docstring for the algorithm and loss normalisation.

    ``batch_size_per_image`` and ``positive_fraction`` of the base class (yacs
    ``MODEL.ROI_HEADS.*``) are accepted but not used; the ``ohem_*`` arguments replace them.
    """

    @configurable
    def __init__(
        self,
        *,
        ohem_batch_size_per_image: int = 64,
        ohem_loss: str = "cls+box",
        ohem_nms_thresh: float = 0.7,
        ohem_positive_fraction: float = -1.0,
        ohem_max_pool_size: int = -1,
        **kwargs,
    ):
        """
        Args:
            ohem_batch_size_per_image (int): hard RoIs kept per image, the paper's ``B/N``
                (``MODEL.OHEM.BATCH_SIZE_PER_IMAGE``); > 0.
            ohem_loss (str): ranking loss, ``"cls+box"`` (paper) or ``"cls"`` (MMDetection)
                (``MODEL.OHEM.LOSS``).
            ohem_nms_thresh (float): IoU threshold of the NMS among RoIs, loss as score
                (paper: 0.7); ``<= 0`` or ``>= 1`` disables it (``MODEL.OHEM.NMS_THRESH``).
            ohem_positive_fraction (float): foreground quota in ``[0, 1]``, or negative for
                none (paper); MMDetection: 0.25 (``MODEL.OHEM.POSITIVE_FRACTION``).
            ohem_max_pool_size (int): cap on the RoIs scored per image, highest objectness
                first; -1 for no cap, else ``>= ohem_batch_size_per_image``
                (``MODEL.OHEM.MAX_POOL_SIZE``).
            kwargs: the arguments of ``StandardROIHeads``.

        Raises:
            ValueError: a value out of range; the message names the yacs key.
        """
        super().__init__(**kwargs)

        def bad(key, value, want):
            return ValueError(
                f"MODEL.OHEM.{key} (ohem_{key.lower()}) must be {want}, got {value!r}"
            )

        if (
            isinstance(ohem_batch_size_per_image, bool)
            or not isinstance(ohem_batch_size_per_image, (int, np.integer))
            or ohem_batch_size_per_image <= 0
        ):
            raise bad("BATCH_SIZE_PER_IMAGE", ohem_batch_size_per_image, "a positive integer")
        if ohem_loss not in OHEM_LOSSES:
            raise bad("LOSS", ohem_loss, f"one of {list(OHEM_LOSSES)}")
        ohem_nms_thresh = float(ohem_nms_thresh)
        if not np.isfinite(ohem_nms_thresh):
            raise bad("NMS_THRESH", ohem_nms_thresh, "a finite number (<= 0 or >= 1: no NMS)")
        ohem_positive_fraction = float(ohem_positive_fraction)
        if not np.isfinite(ohem_positive_fraction) or ohem_positive_fraction > 1.0:
            raise bad("POSITIVE_FRACTION", ohem_positive_fraction, "<= 1 (negative: no quota)")
        if (
            isinstance(ohem_max_pool_size, bool)
            or not isinstance(ohem_max_pool_size, (int, np.integer))
            or not (ohem_max_pool_size == -1 or ohem_max_pool_size >= ohem_batch_size_per_image)
        ):
            raise bad(
                "MAX_POOL_SIZE",
                ohem_max_pool_size,
                f"-1 (no cap) or an integer >= MODEL.OHEM.BATCH_SIZE_PER_IMAGE "
                f"({ohem_batch_size_per_image})",
            )
        self.ohem_batch_size_per_image = int(ohem_batch_size_per_image)
        self.ohem_loss = ohem_loss
        self.ohem_nms_thresh = ohem_nms_thresh
        self.ohem_positive_fraction = ohem_positive_fraction
        self.ohem_max_pool_size = int(ohem_max_pool_size)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(
            ohem_batch_size_per_image=cfg.MODEL.OHEM.BATCH_SIZE_PER_IMAGE,
            ohem_loss=cfg.MODEL.OHEM.LOSS,
            ohem_nms_thresh=cfg.MODEL.OHEM.NMS_THRESH,
            ohem_positive_fraction=cfg.MODEL.OHEM.POSITIVE_FRACTION,
            ohem_max_pool_size=cfg.MODEL.OHEM.MAX_POOL_SIZE,
        )
        return ret

    def forward(
        self,
        images,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ):
        """
        See :meth:`StandardROIHeads.forward`. In training, returns the selected (hard) RoIs
        of each image, with their ``gt_*`` fields, and the losses computed on them only.
        """
        if not self.training:
            return super().forward(images, features, proposals, targets)
        del images
        assert targets, "'targets' argument is required during training"
        proposals = self.label_and_mine_proposals(features, proposals, targets)
        del targets
        losses = self._forward_box(features, proposals)
        losses.update(self._forward_mask(features, proposals))
        losses.update(self._forward_keypoint(features, proposals))
        return proposals, losses

    # ----------------------------------------------------------------------------------------
    # Steps of the training forward; public so that tools and benchmarks can time and inspect
    # them one at a time.

    @torch.no_grad()
    def label_pool(
        self, proposals: List[Instances], targets: List[Instances]
    ) -> Tuple[List[Instances], List[torch.Tensor]]:
        """
        Build each image's candidate pool: proposals (+ ground truth), capped, labelled, with
        ignored RoIs removed.

        Args:
            proposals (list[Instances]): N images' proposals, fields ``proposal_boxes`` and
                ``objectness_logits``.
            targets (list[Instances]): N images' ground truth, ``gt_boxes``, ``gt_classes`` and
                optionally ``gt_masks`` etc.

        Returns:
            list[Instances]: per image, the pool (P_i RoIs): ``proposal_boxes``,
                ``objectness_logits``, ``gt_classes`` (int64 ``0..K-1`` or ``K``) and, when the
                image has ground truth, ``gt_boxes`` of the matched GT box.
            list[Tensor]: per image, int64 (P_i,), the matched GT index of each RoI (only
                meaningful for images with ground truth), to fetch the other ``gt_*`` fields
                for the RoIs finally selected.
        """
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        pools, matched = [], []
        for props, gts in zip(proposals, targets):
            if self.ohem_max_pool_size > 0 and len(props) > self.ohem_max_pool_size:
                if props.has("objectness_logits"):
                    top = torch.sort(props.objectness_logits, descending=True, stable=True)
                    props = props[top.indices[: self.ohem_max_pool_size]]
                else:
                    props = props[: self.ohem_max_pool_size]
            match_quality = pairwise_iou(gts.gt_boxes, props.proposal_boxes)
            matched_idxs, matched_labels = self.proposal_matcher(match_quality)
            if len(gts) > 0:
                gt_classes = gts.gt_classes[matched_idxs]
                gt_classes[matched_labels == 0] = self.num_classes
                keep = nonzero_tuple(matched_labels != -1)[0]
            else:
                gt_classes = torch.full_like(matched_idxs, self.num_classes)
                keep = torch.arange(len(props), device=matched_idxs.device)
            pool = props[keep]
            pool.gt_classes = gt_classes[keep]
            if len(gts) > 0:
                pool.gt_boxes = gts.gt_boxes[matched_idxs[keep]]
            pools.append(pool)
            matched.append(matched_idxs[keep])
        return pools, matched

    @torch.no_grad()
    def score_pool(
        self, features: Dict[str, torch.Tensor], pools: List[Instances]
    ) -> List[torch.Tensor]:
        """
        The read-only pass: each pooled RoI's ranking loss under the current weights.

        Args:
            features (dict[str, Tensor]): the backbone features, as in ``forward``.
            pools (list[Instances]): from :meth:`label_pool`.

        Returns:
            list[Tensor]: per image, float (P_i,), ``loss_i`` of each RoI of the pool: the
            classification loss plus, for ``"cls+box"``, the box loss (see module docstring).
        """
        if sum(len(p) for p in pools) == 0:
            return [p.gt_classes.new_zeros(0, dtype=torch.float32) for p in pools]
        with _restore_buffers(self.box_head, self.box_predictor):
            box_features = self.box_pooler(
                [features[f] for f in self.box_in_features], [p.proposal_boxes for p in pools]
            )
            predictions = self.box_predictor(self.box_head(box_features))
        loss_cls, loss_box = fast_rcnn_per_roi_losses(self.box_predictor, predictions, pools)
        loss = loss_cls + loss_box if self.ohem_loss == "cls+box" else loss_cls
        return list(loss.float().split([len(p) for p in pools]))

    def select(self, pools: List[Instances], pool_losses: List[torch.Tensor]) -> List[torch.Tensor]:
        """
        Per image, ``select_hard_examples`` with this head's settings.

        Returns:
            list[Tensor]: per image, int64 indices into the pool, hardest first.
        """
        selected = []
        for pool, loss in zip(pools, pool_losses):
            fg = (pool.gt_classes >= 0) & (pool.gt_classes < self.num_classes)
            selected.append(
                select_hard_examples(
                    loss,
                    self.ohem_batch_size_per_image,
                    boxes=pool.proposal_boxes.tensor,
                    nms_thresh=self.ohem_nms_thresh,
                    is_foreground=fg,
                    positive_fraction=self.ohem_positive_fraction,
                )
            )
        return selected

    def label_and_mine_proposals(
        self,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: List[Instances],
    ) -> List[Instances]:
        """
        OHEM's replacement for :meth:`ROIHeads.label_and_sample_proposals`: the same output
        (per image, the training RoIs with ``proposal_boxes``, ``gt_classes``, ``gt_boxes``
        and every other ``gt_*`` field of the targets), but the RoIs are the hardest ones.
        Logs ``roi_head/ohem_*`` scalars to the current ``EventStorage``.
        """
        pools, matched = self.label_pool(proposals, targets)
        pool_losses = self.score_pool(features, pools)
        selected = self.select(pools, pool_losses)

        out = []
        for pool, match, idx, gts in zip(pools, matched, selected, targets):
            rois = pool[idx]
            if len(gts) > 0:
                # Other gt_* fields (masks, keypoints) only for the selected RoIs: indexing
                # polygon masks for the whole pool would cost a Python loop over ~1000 RoIs.
                sel_targets = match[idx]
                for name, value in gts.get_fields().items():
                    if name.startswith("gt_") and not rois.has(name):
                        rois.set(name, value[sel_targets])
            out.append(rois)
        self._log_mining(pools, pool_losses, selected, out)
        return out

    def _log_mining(self, pools, pool_losses, selected, rois):
        storage = get_event_storage()
        bg = self.num_classes
        num_fg = [int(((r.gt_classes != bg) & (r.gt_classes >= 0)).sum()) for r in rois]
        num_bg = [int((r.gt_classes == bg).sum()) for r in rois]
        pool_fg = [int((p.gt_classes != bg).sum()) for p in pools]
        # Detectron2's own names first, so runs with and without OHEM plot on one chart.
        storage.put_scalar("roi_head/num_fg_samples", np.mean(num_fg))
        storage.put_scalar("roi_head/num_bg_samples", np.mean(num_bg))
        storage.put_scalar("roi_head/ohem_pool_size", np.mean([len(p) for p in pools]))
        storage.put_scalar("roi_head/ohem_pool_fg", np.mean(pool_fg))
        storage.put_scalar("roi_head/ohem_num_fg", np.mean(num_fg))
        storage.put_scalar("roi_head/ohem_num_bg", np.mean(num_bg))
        # Fewer than B when NMS or a small pool leaves fewer candidates.
        storage.put_scalar("roi_head/ohem_num_selected", np.mean([len(i) for i in selected]))
        all_loss = torch.cat(pool_losses)
        sel_loss = torch.cat([loss[i] for loss, i in zip(pool_losses, selected)])
        if all_loss.numel():
            storage.put_scalar("roi_head/ohem_loss_pool", float(all_loss.mean()))
        if sel_loss.numel():
            storage.put_scalar("roi_head/ohem_loss_selected", float(sel_loss.mean()))
