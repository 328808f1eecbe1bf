"""
ATSS detectors (Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free Detection
via Adaptive Training Sample Selection", CVPR 2020, arXiv 1912.02424).

- ``RetinaNetATSS``: Detectron2's RetinaNet (its head, anchors and losses) with the IoU
  matcher swapped for :class:`ATSSMatcher` - the paper's "RetinaNet + ATSS" rows.
- ``ATSS``: the paper's final model: one square anchor of 8 x stride per location, GroupNorm
  towers, a centerness branch on the box tower, a learnable scale per level, focal loss, GIoU
  box loss weighted by the centerness target, inference score ``sqrt(cls * centerness)``.

Both override ``label_anchors`` the way Detectron2's FCOS does and keep RetinaNet's output
contract. Where ``ATSS`` departs from the authors' code or MMDetection's ``ATSSHead``:

- Box deltas use Detectron2's ``Box2BoxTransform`` (weights 10, 10, 5, 5, widths ``x1 - x0``);
  the authors' coder adds 1 to widths (the "TO_REMOVE" legacy), MMDetection does not.
- The positive count and the centerness sum that normalise the losses are all-reduced in every
  iteration, on every worker, whether it has positives or not (the authors' code only
  reduces the centerness sum when the worker has positives, which deadlocks when one worker's
  images have no GT), and a worker without positives returns zero box and centerness losses
  that are still connected to the graph (DDP needs every parameter's gradient).
- The centerness-weighted box loss is divided by the (averaged) centerness sum, as the
  authors do; MMDetection additionally clamps that divisor at 1.
- Detection scores are ``sqrt(cls * centerness)`` after keeping ``cls > test_score_thresh``
  (the authors' post-processing; MMDetection drops the ``sqrt``, which does not change AP).
"""

from typing import Dict, List, Tuple

import torch
import torch.distributed as dist
from fvcore.nn import giou_loss, sigmoid_focal_loss_jit
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.backbone import build_backbone
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..atss_matcher import ATSSMatcher

__all__ = [
    "ATSS",
    "ATSSHead",
    "RetinaNetATSS",
    "atss_loss_normalizers",
    "centerness_targets",
]


def _num_anchors_per_location(anchor_generator) -> int:
    counts = list(anchor_generator.num_cell_anchors)
    if len(set(counts)) != 1:
        raise ValueError(
            "ATSS needs the same number of anchors per location on every level "
            f"(MODEL.ANCHOR_GENERATOR.SIZES / ASPECT_RATIOS), got {counts}"
        )
    return counts[0]


def _check_matcher(anchor_matcher, anchor_generator) -> None:
    if not isinstance(anchor_matcher, ATSSMatcher):
        raise ValueError(f"anchor_matcher must be an ATSSMatcher, got {type(anchor_matcher)}")
    per_location = _num_anchors_per_location(anchor_generator)
    if anchor_matcher.anchors_per_location != per_location:
        raise ValueError(
            f"anchor_matcher.anchors_per_location={anchor_matcher.anchors_per_location} but the "
            f"anchor generator puts {per_location} anchors at each location"
        )


@META_ARCH_REGISTRY.register()
class RetinaNetATSS(RetinaNet):
    """
    RetinaNet whose anchors are labelled by ATSS instead of IoU thresholds: same head, anchors
    (9 per location), focal + smooth-L1 losses and normaliser as :class:`RetinaNet`. ATSS
    labels no anchor "ignore".

    yacs: ``META_ARCHITECTURE: "RetinaNetATSS"`` with ``MODEL.ATSS.TOPK`` / ``CENTER_MARGIN``;
    LazyConfig: RetinaNet's config with ``_target_`` swapped and ``anchor_matcher`` an
    ``L(ATSSMatcher)(topk=9, anchors_per_location=9)``.
    """

    @configurable
    def __init__(self, **kwargs):
        """Same arguments as :class:`RetinaNet`; ``anchor_matcher`` is an :class:`ATSSMatcher`."""
        super().__init__(**kwargs)
        _check_matcher(self.anchor_matcher, self.anchor_generator)

    @classmethod
    def from_config(cls, cfg):
        ret = RetinaNet.from_config(cfg)
        ret["anchor_matcher"] = ATSSMatcher(
            topk=cfg.MODEL.ATSS.TOPK,
            anchors_per_location=_num_anchors_per_location(ret["anchor_generator"]),
            center_margin=cfg.MODEL.ATSS.CENTER_MARGIN,
        )
        return ret

    @torch.no_grad()
    def label_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """
        Same contract as :meth:`RetinaNet.label_anchors`, with ATSS assignment.

        Args:
            anchors (list[Boxes]): one (R_l, 4) per level.
            gt_instances (list[Instances]): N images, with ``gt_boxes`` and ``gt_classes``.

        Returns:
            list[Tensor]: N tensors (R,) int64: class ``0..K-1`` for foreground, ``K`` for
            background (never -1).
            list[Tensor]: N tensors (R, 4): the matched GT box of each anchor (meaningless for
            background).

        Logs ``atss/num_pos_per_gt``, ``atss/gt_without_pos`` (fraction of GT boxes that got no
        positive anchor), ``atss/iou_threshold`` (mean over GTs of ``mean + std``) and
        ``atss/num_candidates`` (per GT) to the event storage.
        """
        num_anchors = sum(len(a) for a in anchors)
        device = anchors[0].tensor.device
        gt_labels, matched_gt_boxes = [], []
        num_gt = num_pos = num_without_pos = 0
        threshold_sum = 0.0
        num_candidates = 0
        for inst in gt_instances:
            candidates = self.anchor_matcher.select_candidates(inst.gt_boxes, anchors)
            matches, match_labels = self.anchor_matcher.assign(candidates)
            fg = match_labels == 1
            if len(inst) > 0:
                boxes_i = inst.gt_boxes.tensor[matches]
                labels_i = inst.gt_classes[matches]
                labels_i[~fg] = self.num_classes
                per_gt = torch.bincount(matches[fg], minlength=len(inst))
                num_without_pos += int((per_gt == 0).sum())
                threshold_sum += float(candidates.thresholds.sum())
                num_candidates = candidates.indices.shape[1]
            else:
                boxes_i = torch.zeros((num_anchors, 4), device=device)
                labels_i = torch.full(
                    (num_anchors,), self.num_classes, dtype=torch.int64, device=device
                )
            num_gt += len(inst)
            num_pos += int(fg.sum())
            gt_labels.append(labels_i)
            matched_gt_boxes.append(boxes_i)

        storage = get_event_storage()
        if num_gt > 0:
            storage.put_scalar("atss/num_pos_per_gt", num_pos / num_gt)
            storage.put_scalar("atss/gt_without_pos", num_without_pos / num_gt)
            storage.put_scalar("atss/iou_threshold", threshold_sum / num_gt)
            storage.put_scalar("atss/num_candidates", num_candidates)
        return gt_labels, matched_gt_boxes


class ATSSHead(RetinaNetHead):
    """
    RetinaNet's two towers (here with GroupNorm), plus a centerness branch on the box tower and
    a learnable scalar per level on the box deltas (as in the authors' code and MMDetection).
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_anchors: int = 1,
        conv_dims: List[int],
        norm="GN",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape (list[ShapeSpec]): one per level (all with the same channels).
            num_classes (int): K.
            num_anchors (int): anchors per location (1 in the paper's ATSS).
            conv_dims (list[int]): channels of each tower conv (``MODEL.ATSS.NUM_CONVS`` of
                them).
            norm (str): normalisation of the tower convs (``MODEL.ATSS.NORM``; paper: "GN").
            prior_prob (float): initial foreground probability of the classifier.
        """
        if len(conv_dims) < 1:
            raise ValueError(f"MODEL.ATSS.NUM_CONVS must be >= 1, got {len(conv_dims)}")
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            num_anchors=num_anchors,
            conv_dims=conv_dims,
            norm=norm,
            prior_prob=prior_prob,
        )
        self.centerness = nn.Conv2d(conv_dims[-1], num_anchors, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.centerness.weight, std=0.01)
        nn.init.constant_(self.centerness.bias, 0)
        self.scales = nn.Parameter(torch.ones(len(input_shape)))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        num_anchors = _num_anchors_per_location(build_anchor_generator(cfg, input_shape))
        if cfg.MODEL.ATSS.NUM_CONVS < 1:
            raise ValueError(f"MODEL.ATSS.NUM_CONVS must be >= 1, got {cfg.MODEL.ATSS.NUM_CONVS}")
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.RETINANET.NUM_CLASSES,
            "num_anchors": num_anchors,
            "conv_dims": [input_shape[0].channels] * cfg.MODEL.ATSS.NUM_CONVS,
            "norm": cfg.MODEL.ATSS.NORM,
            "prior_prob": cfg.MODEL.RETINANET.PRIOR_PROB,
        }

    def forward(self, features: List[Tensor]):
        """
        Args:
            features (list[Tensor]): L maps (N, C, Hi, Wi).

        Returns:
            logits (list[Tensor]): L maps (N, A*K, Hi, Wi).
            bbox_reg (list[Tensor]): L maps (N, A*4, Hi, Wi), deltas times the level's scale.
            centerness (list[Tensor]): L maps (N, A, Hi, Wi), logits.
        """
        if len(features) != self._num_features:
            raise ValueError(f"ATSSHead built for {self._num_features} levels, got {len(features)}")
        logits, bbox_reg, centerness = [], [], []
        for level, feature in enumerate(features):
            logits.append(self.cls_score(self.cls_subnet(feature)))
            box_feature = self.bbox_subnet(feature)
            bbox_reg.append(self.bbox_pred(box_feature) * self.scales[level])
            centerness.append(self.centerness(box_feature))
        return logits, bbox_reg, centerness


def centerness_targets(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """
    FCOS/ATSS centerness of each anchor center inside its matched GT box.

    Args:
        anchors (Tensor): (P, 4) XYXY anchors (positives).
        gt_boxes (Tensor): (P, 4) XYXY GT box of each.

    Returns:
        Tensor: (P,) ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``, in (0, 1] for a
        center strictly inside the box (which ATSS guarantees for positives).
    """
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
    """
    values = torch.stack([num_pos.detach().float(), centerness_sum.detach().float()])
    world_size = comm.get_world_size()
    if world_size > 1:
        dist.all_reduce(values)
    values = (values / world_size).tolist()
    return max(values[0], 1.0), max(values[1], torch.finfo(torch.float32).eps)


@META_ARCH_REGISTRY.register()
class ATSS(RetinaNetATSS):
    """
    The ATSS detector of the paper (its final model, without deformable convs): see the module
    docstring. Outputs the same as :class:`RetinaNet`; losses ``loss_cls``, ``loss_box_reg``
    (GIoU) and ``loss_centerness``.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone,
        head: nn.Module,
        head_in_features: List[str],
        anchor_generator,
        box2box_transform,
        anchor_matcher: ATSSMatcher,
        num_classes: int,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        box_loss_weight: float = 2.0,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        pixel_mean,
        pixel_std,
        vis_period: int = 0,
        input_format: str = "BGR",
    ):
        """
        Args:
            head (ATSSHead): predicts logits, deltas and centerness per level.
            anchor_generator: one square anchor of 8 x stride per location in the paper;
                several per location work too (the authors' code allows it).
            box2box_transform (Box2BoxTransform): delta coder, weights (10, 10, 5, 5) in the
                paper (``MODEL.ATSS.BBOX_REG_WEIGHTS``).
            anchor_matcher (ATSSMatcher): its ``anchors_per_location`` must match the generator.
            box_loss_weight (float): weight of the GIoU loss (``MODEL.ATSS.BOX_LOSS_WEIGHT``;
                paper: 2.0).
            test_score_thresh (float): keep predictions with class probability above this
                before top-k and NMS (``MODEL.RETINANET.SCORE_THRESH_TEST``; paper 0.05).
            test_nms_thresh (float): per-class NMS IoU (``MODEL.RETINANET.NMS_THRESH_TEST``;
                paper 0.6).
            Other arguments are :class:`RetinaNet`'s.
        """
        box_loss_weight = float(box_loss_weight)
        if not box_loss_weight >= 0.0:
            raise ValueError(f"MODEL.ATSS.BOX_LOSS_WEIGHT must be >= 0, got {box_loss_weight!r}")
        super().__init__(
            backbone=backbone,
            head=head,
            head_in_features=head_in_features,
            anchor_generator=anchor_generator,
            box2box_transform=box2box_transform,
            anchor_matcher=anchor_matcher,
            num_classes=num_classes,
            focal_loss_alpha=focal_loss_alpha,
            focal_loss_gamma=focal_loss_gamma,
            box_reg_loss_type="giou",
            test_score_thresh=test_score_thresh,
            test_topk_candidates=test_topk_candidates,
            test_nms_thresh=test_nms_thresh,
            max_detections_per_image=max_detections_per_image,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            vis_period=vis_period,
            input_format=input_format,
        )
        self.box_loss_weight = box_loss_weight

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        backbone_shape = backbone.output_shape()
        feature_shapes = [backbone_shape[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
        anchor_generator = build_anchor_generator(cfg, feature_shapes)
        return {
            "backbone": backbone,
            "head": ATSSHead(cfg, feature_shapes),
            "head_in_features": cfg.MODEL.RETINANET.IN_FEATURES,
            "anchor_generator": anchor_generator,
            "box2box_transform": Box2BoxTransform(weights=cfg.MODEL.ATSS.BBOX_REG_WEIGHTS),
            "anchor_matcher": ATSSMatcher(
                topk=cfg.MODEL.ATSS.TOPK,
                anchors_per_location=_num_anchors_per_location(anchor_generator),
                center_margin=cfg.MODEL.ATSS.CENTER_MARGIN,
            ),
            "num_classes": cfg.MODEL.RETINANET.NUM_CLASSES,
            "focal_loss_alpha": cfg.MODEL.RETINANET.FOCAL_LOSS_ALPHA,
            "focal_loss_gamma": cfg.MODEL.RETINANET.FOCAL_LOSS_GAMMA,
            "box_loss_weight": cfg.MODEL.ATSS.BOX_LOSS_WEIGHT,
            "test_score_thresh": cfg.MODEL.RETINANET.SCORE_THRESH_TEST,
            "test_topk_candidates": cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": cfg.MODEL.RETINANET.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "vis_period": cfg.VIS_PERIOD,
            "input_format": cfg.INPUT.FORMAT,
        }

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_deltas, gt_boxes, pred_centerness)

    def losses(
        self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_centerness
    ) -> Dict[str, Tensor]:
        """
        Args:
            anchors (list[Boxes]): one (R_l, 4) per level.
            pred_logits, pred_anchor_deltas, pred_centerness (list[Tensor]): per level
                (N, R_l, K), (N, R_l, 4), (N, R_l, 1).
            gt_labels, gt_boxes: from :meth:`label_anchors`, N tensors (R,) and (R, 4).

        Returns:
            dict: ``loss_cls`` (focal, over all anchors, / positives), ``loss_box_reg``
            (GIoU weighted by centerness, / centerness sum, x ``box_loss_weight``),
            ``loss_centerness`` (BCE on positives, / positives). Positive counts and
            centerness sums are averaged over workers.
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        gt_boxes = torch.stack(gt_boxes)  # (N, R, 4)
        anchors = Boxes.cat(anchors).tensor  # (R, 4)
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)

        pos_anchors = anchors[None].expand(num_images, -1, -1)[pos_mask]  # (P, 4)
        pos_gt_boxes = gt_boxes[pos_mask]  # (P, 4)
        ctr_targets = centerness_targets(pos_anchors, pos_gt_boxes)  # (P,)
        num_pos = pos_mask.sum()
        num_pos_avg, centerness_avg = atss_loss_normalizers(num_pos, ctr_targets.sum())
        get_event_storage().put_scalar("num_pos_anchors", num_pos.item() / num_images)

        gt_labels_target = F.one_hot(gt_labels, num_classes=self.num_classes + 1)[..., :-1]
        loss_cls = sigmoid_focal_loss_jit(
            cat(pred_logits, dim=1),
            gt_labels_target.to(pred_logits[0].dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )

        # Indexing with an empty mask keeps these losses in the graph (zero gradients), so a
        # worker without positives still takes part in DDP's gradient all-reduce.
        pos_deltas = cat(pred_anchor_deltas, dim=1)[pos_mask]
        pred_boxes = self.box2box_transform.apply_deltas(pos_deltas, pos_anchors)
        loss_giou = giou_loss(pred_boxes, pos_gt_boxes, reduction="none")
        loss_box_reg = (loss_giou * ctr_targets).sum()

        pos_centerness = cat(pred_centerness, dim=1).squeeze(2)[pos_mask]
        loss_centerness = F.binary_cross_entropy_with_logits(
            pos_centerness, ctr_targets, reduction="sum"
        )
        return {
            "loss_cls": loss_cls / num_pos_avg,
            "loss_box_reg": self.box_loss_weight * loss_box_reg / centerness_avg,
            "loss_centerness": loss_centerness / num_pos_avg,
        }

    def forward_inference(self, images, features: List[Tensor], predictions: List[List[Tensor]]):
        pred_logits, pred_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            results.append(
                self.inference_single_image(
                    anchors,
                    [x[img_idx].sigmoid() for x in pred_logits],
                    [x[img_idx].sigmoid() for x in pred_centerness],
                    [x[img_idx] for x in pred_deltas],
                    image_size,
                )
            )
        return results

    def inference_single_image(
        self,
        anchors: List[Boxes],
        box_cls: List[Tensor],
        box_centerness: List[Tensor],
        box_delta: List[Tensor],
        image_size: Tuple[int, int],
    ) -> Instances:
        """
        Per level: keep class probabilities ``> test_score_thresh``, score them
        ``sqrt(p * centerness)``, keep the ``test_topk_candidates`` best, decode; then per-class
        NMS over all levels and the ``max_detections_per_image`` best.

        Args:
            anchors (list[Boxes]): per level (R_l, 4).
            box_cls (list[Tensor]): per level (R_l, K) probabilities.
            box_centerness (list[Tensor]): per level (R_l, 1) probabilities.
            box_delta (list[Tensor]): per level (R_l, 4).
            image_size (tuple): (H, W).
        """
        per_level = []
        for anchors_i, cls_i, ctr_i, delta_i in zip(anchors, box_cls, box_centerness, box_delta):
            keep = cls_i > self.test_score_thresh
            scores = torch.sqrt(cls_i * ctr_i)[keep]
            idxs = keep.nonzero()
            num_topk = min(self.test_topk_candidates, scores.shape[0])
            scores, top = scores.topk(num_topk)
            anchor_idxs, classes = idxs[top].unbind(dim=1)
            boxes = self.box2box_transform.apply_deltas(
                delta_i[anchor_idxs], anchors_i.tensor[anchor_idxs]
            )
            per_level.append(
                Instances(image_size, pred_boxes=Boxes(boxes), scores=scores, pred_classes=classes)
            )
        pred = Instances.cat(per_level)
        keep = batched_nms(
            pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh
        )
        return pred[keep[: self.max_detections_per_image]]
