"""
``IoUBalancedRPN``: Detectron2's ``RPN`` whose training anchors are drawn by Libra R-CNN's
IoU-balanced negative sampling and instance-balanced positive sampling (Pang et al., "Libra
R-CNN: Towards Balanced Learning for Object Detection", CVPR 2019, arXiv 1904.02701, Sec. 3.1),
``MODEL.PROPOSAL_GENERATOR.NAME: "IoUBalancedRPN"``. The algorithm is
:class:`~d2_sampling.modeling.IoUBalancedSampler`; this module only matches the anchors as
Detectron2 does, carries each anchor's IoU and matched GT into the sampler, and logs what the
sampler reports it drew. Head, anchors, losses (and their ``batch_size_per_image * N``
normaliser), proposals and inference are ``RPN``'s, unchanged.

Semantics, per image:

- Matching is ``RPN.label_and_sample_anchors``' own: ``pairwise_iou`` + ``self.anchor_matcher``
  (``MODEL.RPN.IOU_THRESHOLDS`` / ``IOU_LABELS``, low-quality matches allowed), then anchors
  beyond ``MODEL.RPN.BOUNDARY_THRESH`` (when >= 0) ignored. The matched GT boxes are the same.
- Negatives are the anchors the matcher labels 0 and that stay so: highest IoU with any GT below
  ``MODEL.RPN.IOU_THRESHOLDS[0]`` (0.3 by default), not made positive as some GT's best anchor,
  not discarded by the boundary. Ignored anchors are never drawn.
- The sampler splits the negatives into ``NUM_BINS`` equal-width bins over ``[max(FLOOR_THR, 0),
  h]``, ``h`` the highest IoU among *this image's negatives* (see ``iou_bin_index``), so the
  bins partition the range the negatives actually cover, inside ``[0, IOU_THRESHOLDS[0])``;
  they are not fixed bins over ``[0, IOU_THRESHOLDS[0])``. An image without GT has every IoU
  0, hence ``h = 0`` and every negative in bin 0: a uniform draw, as Detectron2's.
- Positives: with ``INSTANCE_BALANCED_POSITIVES``, water-filled over the GTs (a large object,
  which matches many anchors, does not crowd out the small ones). This only matters when there
  are more positive anchors than ``int(BATCH_SIZE_PER_IMAGE * POSITIVE_FRACTION)``; otherwise
  all of them are taken, as in Detectron2.
- The output is ``_subsample_labels``' format: a label vector with the sampled positives 1, the
  sampled negatives 0 and every other anchor -1.

Where this departs from Libra R-CNN and MMDetection:

- Libra R-CNN's released config (MMDetection's ``libra_faster_rcnn``) samples the RPN with
  ``RandomSampler`` (256 anchors, ``pos_fraction=0.5``, ``neg_pos_ub=5``,
  ``allowed_border=-1``) and the ROI head with the IoU-balanced one; the first author confirmed
  in mmdetection issue #2069 that the released config balances only the second stage, and that
  the same samplers can be put into the RPN's config. This class is that option; no config of
  the paper's settings enables it. ``neg_pos_ub`` has no counterpart here (nor in Detectron2).
- MMDetection's ``IoUBalancedNegSampler``, if configured for the RPN, spreads its bins over
  ``[floor_thr, m]``, ``m`` the highest IoU of all anchors, positives included: with K = 3 and
  a 0.3 negative threshold its top bin holds no negative once ``m >= 0.45``, and every negative
  is in its first bin (a uniform draw) once ``m >= 0.9``. Here the bins span the negatives' own
  range (above), so every bin can be filled.
"""

from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.memory import retry_if_cuda_oom

from ..iou_balanced_logging import IoUBalancedSettings, log_sample_stats, sample_stats

__all__ = ["IoUBalancedRPN"]

# How a bad value is named: its yacs key, and the argument for LazyConfig users.
_CONFIG_NAMES = {
    "num_bins": "MODEL.RPN.IOU_BALANCED.NUM_BINS (num_bins)",
    "floor_thr": "MODEL.RPN.IOU_BALANCED.FLOOR_THR (floor_thr)",
    "floor_fraction": "MODEL.RPN.IOU_BALANCED.FLOOR_FRACTION (floor_fraction)",
    "positive_fraction": "MODEL.RPN.POSITIVE_FRACTION (positive_fraction)",
}


@PROPOSAL_GENERATOR_REGISTRY.register()
class IoUBalancedRPN(IoUBalancedSettings, RPN):
    """
    ``RPN`` with Libra R-CNN's sampler for its training anchors
    (``MODEL.PROPOSAL_GENERATOR.NAME: "IoUBalancedRPN"``, or ``_target_`` in a LazyConfig).

    In training, each image's ``batch_size_per_image`` anchors are drawn by the RPN's
    :class:`~d2_sampling.modeling.IoUBalancedSampler` (``self.sampler``, built once): negatives
    spread over ``num_bins`` equal-width IoU bins, positives spread over the GT instances.
    Everything else is ``RPN``'s.

    Logged to ``EventStorage`` at every training step (means over the images of the batch):

    - ``rpn/iou_balanced_neg_bin{k}``: sampled negative anchors in IoU bin ``k``, as the
      sampler reports them (the bins it used for that image), ``rpn/iou_balanced_neg_floor``
      with a floor set;
    - ``rpn/iou_balanced_neg_mean_iou``: mean IoU of the sampled negatives (all images);
    - ``rpn/iou_balanced_num_gt_sampled``: GTs with at least one sampled positive anchor, and
      ``rpn/iou_balanced_num_gt``: GTs per image, for reference;
    - Detectron2's ``rpn/num_pos_anchors`` and ``rpn/num_neg_anchors`` (from ``RPN.losses``).
    """

    @configurable
    def __init__(
        self,
        *,
        num_bins: int = 3,
        floor_thr: float = -1.0,
        floor_fraction: float = 0.0,
        instance_balanced_positives: bool = True,
        **kwargs,
    ):
        """
        Args:
            num_bins (int): K, the number of equal-width IoU bins of the negative anchors
                (>= 1; paper: 3).
            floor_thr (float): negatives below this IoU form a floor set sampled apart
                (< 1; negative: no floor set).
            floor_fraction (float): share of the negative quota drawn from the floor set,
                in [0, 1].
            instance_balanced_positives (bool): spread the positive anchors evenly over GT
                instances (False: uniform positives, as Detectron2).
            kwargs: arguments of ``RPN``.

        Raises:
            ValueError: a bad value, naming its config key.
        """
        super().__init__(**kwargs)
        self.setup_sampler(
            num_bins, floor_thr, floor_fraction, instance_balanced_positives, _CONFIG_NAMES
        )

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret.update(
            num_bins=cfg.MODEL.RPN.IOU_BALANCED.NUM_BINS,
            floor_thr=cfg.MODEL.RPN.IOU_BALANCED.FLOOR_THR,
            floor_fraction=cfg.MODEL.RPN.IOU_BALANCED.FLOOR_FRACTION,
            instance_balanced_positives=cfg.MODEL.RPN.IOU_BALANCED.INSTANCE_BALANCED_POSITIVES,
        )
        return ret

    @torch.jit.unused
    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """
        Same contract as ``RPN.label_and_sample_anchors``, with the same matching and matched
        boxes; only the subsampling differs (IoU-balanced instead of uniform).

        Args:
            anchors (list[Boxes]): anchors for each feature map.
            gt_instances (list[Instances]): N images' annotations, with ``gt_boxes`` (possibly
                zero instances) and ``image_size``.

        Returns:
            list[Tensor]: N vectors of length R = sum(Hi * Wi * A), the matcher's dtype, values
            in {-1, 0, 1}: -1 ignore (including every anchor not sampled), 0 sampled negative,
            1 sampled positive.
            list[Tensor]: N (R, 4) tensors, each anchor's matched GT box (undefined for anchors
            not labelled 1; zeros for an image without GT).
        """
        anchors = Boxes.cat(anchors)

        gt_boxes = [x.gt_boxes for x in gt_instances]
        image_sizes = [x.image_size for x in gt_instances]
        del gt_instances

        gt_labels, matched_gt_boxes, stats = [], [], []
        for image_size_i, gt_boxes_i in zip(image_sizes, gt_boxes):
            num_gt = len(gt_boxes_i)
            match_quality_matrix = retry_if_cuda_oom(pairwise_iou)(gt_boxes_i, anchors)
            matched_idxs, gt_labels_i = retry_if_cuda_oom(self.anchor_matcher)(match_quality_matrix)
            # Matching is memory-expensive and may result in CPU tensors. But the result is small
            device = gt_boxes_i.device
            gt_labels_i = gt_labels_i.to(device=device)
            matched_idxs = matched_idxs.to(device=device)
            # Each anchor's highest IoU with any GT: what the negatives are binned by.
            if num_gt > 0:
                ious = match_quality_matrix.max(dim=0).values.to(device=device)
            else:
                ious = torch.zeros(len(anchors), dtype=anchors.tensor.dtype, device=device)
            del match_quality_matrix

            if self.anchor_boundary_thresh >= 0:
                # Discard anchors that go out of the boundaries of the image, as RPN does
                # (legacy, off by default): ignored, so neither sampled nor binned.
                anchors_inside_image = anchors.inside_box(image_size_i, self.anchor_boundary_thresh)
                gt_labels_i[~anchors_inside_image] = -1

            # Detectron2's labels go to the sampler as they are: background 0, ignore -1, and
            # the foreground 1 is "any other value" (as RPN._subsample_labels calls
            # subsample_labels with bg_label 0), which is a one-class (fg = class 0, bg = 1)
            # labelling without the copy.
            pos_idx, neg_idx, bins = self.sampler(
                gt_labels_i,
                ious,
                self.batch_size_per_image,
                self.positive_fraction,
                0,
                gt_indices=matched_idxs if self.instance_balanced_positives and num_gt else None,
                return_bins=True,
            )
            stats.append(sample_stats(ious, matched_idxs, pos_idx, neg_idx, bins, num_gt))
            # _subsample_labels' output: the sample's labels, every other anchor ignored.
            gt_labels_i.fill_(-1)
            gt_labels_i.scatter_(0, pos_idx, 1)
            gt_labels_i.scatter_(0, neg_idx, 0)

            if num_gt == 0:
                # These values won't be used anyway since the anchor is labeled as background
                matched_gt_boxes_i = torch.zeros_like(anchors.tensor)
            else:
                matched_gt_boxes_i = gt_boxes_i[matched_idxs].tensor

            gt_labels.append(gt_labels_i)  # N,AHW
            matched_gt_boxes.append(matched_gt_boxes_i)
        log_sample_stats(stats, "rpn/", self.num_bins, self.floor_thr >= 0)
        return gt_labels, matched_gt_boxes
