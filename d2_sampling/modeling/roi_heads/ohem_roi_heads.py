"""
``OHEMROIHeads``: Detectron2's ``StandardROIHeads`` trained with online hard example mining
(Shrivastava, Gupta, Girshick, "Training Region-based Object Detectors with Online Hard Example
Mining", CVPR 2016, arXiv 1604.03540). The mining is :class:`OHEMSamplingMixin`, so that other
heads (Cascade R-CNN, a user's ``StandardROIHeads`` subclass) get it through
``with_roi_sampler`` (docs/samplers.md).

In training, every proposal of an image (ground truth appended, labelled by the usual matcher,
ignored ones removed) is scored by its current loss in a read-only pass of the box head, and
only the hardest ones, chosen by :func:`~d2_sampling.modeling.select_hard_examples`, go through
``StandardROIHeads``' box, mask and keypoint forward and losses; inference is unchanged. The
step by step, the per-ROI ranking loss and its normalisation, and where this departs from the
paper and from MMDetection's ``OHEMSampler`` are in docs/ohem.md.
"""

import logging
from contextlib import contextmanager
from typing import Dict, List, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.layers import nonzero_tuple
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from ..hard_example_mining import select_hard_examples
from .balanced_l1_fast_rcnn import with_balanced_l1_predictors
from .fast_rcnn_losses import fast_rcnn_per_roi_losses
from .labeling import add_gt_fields, label_proposals, select_training_rois

__all__ = ["OHEMROIHeads", "OHEMSamplingMixin", "OHEM_LOSSES", "ohem_sampling_args"]

logger = logging.getLogger(__name__)

#: Names accepted by ``ohem_loss`` / ``MODEL.OHEM.LOSS``.
OHEM_LOSSES = ("cls+box", "cls")


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


class OHEMSamplingMixin:
    """
    Online hard example mining as the training-RoI choice of any ``StandardROIHeads`` subclass:
    put it before that class in the bases (``OHEMROIHeads``), or give it to built heads with
    :func:`~d2_sampling.modeling.with_roi_sampler` (``OHEMSampling``; Cascade R-CNN included,
    where the RoIs are scored and chosen with the first stage's box head, docs/samplers.md).
    It replaces ``label_and_sample_proposals``; the host class's forward, heads, losses and
    inference are unchanged. :meth:`setup_ohem_sampling` must be called once, after the host
    class's ``__init__``.

    ``batch_size_per_image`` and ``positive_fraction`` of the host (yacs ``MODEL.ROI_HEADS.*``)
    are not used; the ``ohem_*`` settings replace them.
    """

    def setup_ohem_sampling(
        self,
        *,
        ohem_batch_size_per_image: int = 64,
        ohem_loss: str = "cls+box",
        ohem_nms_thresh: float = 0.7,
        ohem_positive_fraction: float = -1.0,
        ohem_max_pool_size: int = -1,
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

        Raises:
            ValueError: a value out of range; the message names the yacs key.
        """

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
        self._ohem_features = None

    def forward(self, images, features, proposals, targets=None):
        """
        The host class's forward. In training, its ``label_and_sample_proposals`` call is
        answered by :meth:`label_and_mine_proposals` on these ``features``: it returns the
        selected (hard) RoIs of each image, with their ``gt_*`` fields, and the losses are
        computed on them only.
        """
        if not self.training:
            return super().forward(images, features, proposals, targets)
        assert targets, "'targets' argument is required during training"
        self._ohem_features = features  # read by label_and_sample_proposals, this call only
        try:
            return super().forward(images, features, proposals, targets)
        finally:
            self._ohem_features = None

    def label_and_sample_proposals(
        self, proposals: List[Instances], targets: List[Instances]
    ) -> List[Instances]:
        """The hard RoIs (:meth:`label_and_mine_proposals`), on the features of the
        ``forward`` being run."""
        if self._ohem_features is None:
            raise RuntimeError(
                f"{type(self).__name__}: OHEM scores RoIs on the backbone features; call the "
                "heads' forward (training mode), or label_and_mine_proposals(features, ...)"
            )
        return self.label_and_mine_proposals(self._ohem_features, proposals, targets)

    def _scoring_heads(self):
        """The box head and predictor that score the pool: the only ones, or the first
        stage's in a cascade (``ModuleList`` of per-stage heads)."""
        if isinstance(self.box_head, torch.nn.ModuleList):
            return self.box_head[0], self.box_predictor[0]
        return self.box_head, self.box_predictor

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
            labels = label_proposals(props, gts, self.proposal_matcher, self.num_classes)
            keep = nonzero_tuple(labels.gt_classes != -1)[0]
            # Only gt_boxes for the whole pool (the read-only pass needs them); the other gt_*
            # fields are added to the selected RoIs only, see label_and_mine_proposals.
            pools.append(select_training_rois(props, labels, keep, gts, gt_fields=("gt_boxes",)))
            matched.append(labels.matched_idxs[keep])
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
            classification loss plus, for ``"cls+box"``, the box loss (see docs/ohem.md).
        """
        if sum(len(p) for p in pools) == 0:
            return [p.gt_classes.new_zeros(0, dtype=torch.float32) for p in pools]
        box_head, box_predictor = self._scoring_heads()
        with _restore_buffers(box_head, box_predictor):
            box_features = self.box_pooler(
                [features[f] for f in self.box_in_features], [p.proposal_boxes for p in pools]
            )
            predictions = box_predictor(box_head(box_features))
        loss_cls, loss_box = fast_rcnn_per_roi_losses(box_predictor, predictions, pools)
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

        # Other gt_* fields (masks, keypoints) only for the selected RoIs: indexing polygon
        # masks for the whole pool would cost a Python loop over ~1000 RoIs.
        out = [
            add_gt_fields(pool[idx], gts, match[idx])
            for pool, match, idx, gts in zip(pools, matched, selected, targets)
        ]
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


@ROI_HEADS_REGISTRY.register()
class OHEMROIHeads(OHEMSamplingMixin, StandardROIHeads):
    """
    ``StandardROIHeads`` whose training RoIs are chosen by online hard example mining instead
    of random sampling (``ROI_HEADS.NAME: "OHEMROIHeads"``, or ``_target_`` in a LazyConfig).
    The algorithm and the loss normalisation: docs/ohem.md.

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
            ohem_*: see :meth:`OHEMSamplingMixin.setup_ohem_sampling`.
            kwargs: the arguments of ``StandardROIHeads``.

        Raises:
            ValueError: a value out of range; the message names the yacs key.
        """
        super().__init__(**kwargs)
        self.setup_ohem_sampling(
            ohem_batch_size_per_image=ohem_batch_size_per_image,
            ohem_loss=ohem_loss,
            ohem_nms_thresh=ohem_nms_thresh,
            ohem_positive_fraction=ohem_positive_fraction,
            ohem_max_pool_size=ohem_max_pool_size,
        )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(ohem_sampling_args(cfg))
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        """StandardROIHeads' box head; with ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE:
        "balanced_l1"`` its predictor is :class:`BalancedL1FastRCNNOutputLayers`, whose loss
        the ranking then uses too (:func:`fast_rcnn_per_roi_losses`)."""
        return with_balanced_l1_predictors(cfg, super()._init_box_head(cfg, input_shape))


def ohem_sampling_args(cfg):
    """``MODEL.OHEM.*`` as the arguments of :meth:`OHEMSamplingMixin.setup_ohem_sampling`."""
    return dict(
        ohem_batch_size_per_image=cfg.MODEL.OHEM.BATCH_SIZE_PER_IMAGE,
        ohem_loss=cfg.MODEL.OHEM.LOSS,
        ohem_nms_thresh=cfg.MODEL.OHEM.NMS_THRESH,
        ohem_positive_fraction=cfg.MODEL.OHEM.POSITIVE_FRACTION,
        ohem_max_pool_size=cfg.MODEL.OHEM.MAX_POOL_SIZE,
    )
