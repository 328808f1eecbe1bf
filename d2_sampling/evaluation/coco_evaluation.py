"""
COCO evaluation of the tasks a model has, whatever it predicts.

Detectron2's ``COCOEvaluator`` built without ``tasks`` infers them from the predictions: an
evaluation at which a Mask R-CNN predicts no instance reports no ``segm`` metrics at all, so a
``segm/AP`` curve gets holes and a test that looks for the key fails by chance. Here the tasks
are given (from the model's config) and an evaluation without predictions reports 0 for each
metric, which is the AP of an empty detection set, instead of ``nan``.
"""

from typing import Tuple

from detectron2.evaluation import COCOEvaluator as _D2COCOEvaluator

__all__ = ["COCOEvaluator", "evaluation_tasks"]

# The metrics Detectron2's COCOEvaluator reports per task, in its order.
_METRICS = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "segm": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl"),
}


def evaluation_tasks(cfg) -> Tuple[str, ...]:
    """
    The COCO tasks of a yacs config's model: ``bbox``, plus ``segm`` with ``MODEL.MASK_ON`` and
    ``keypoints`` with ``MODEL.KEYPOINT_ON``.
    """
    tasks = ("bbox",)
    if cfg.MODEL.MASK_ON:
        tasks += ("segm",)
    if cfg.MODEL.KEYPOINT_ON:
        tasks += ("keypoints",)
    return tasks


class COCOEvaluator(_D2COCOEvaluator):
    """
    Detectron2's ``COCOEvaluator`` with ``tasks`` required, and metrics of 0 (not ``nan``) for a
    task with no prediction. Every other argument is Detectron2's; ``allow_cached_coco``
    defaults to False (a dataset without json is converted anew in each process).
    """

    def __init__(self, dataset_name, tasks=None, *args, **kwargs):
        if not tasks:
            raise ValueError(
                f"COCOEvaluator({dataset_name!r}): tasks must name what the model predicts, "
                "e.g. ('bbox',) or ('bbox', 'segm'); inferring them from the predictions drops "
                "a task whenever nothing is predicted"
            )
        # A dataset without a COCO json (VOC-format) is converted into output_dir; Detectron2
        # would reuse a file left there by an earlier run, whatever the dataset holds now.
        kwargs.setdefault("allow_cached_coco", False)
        super().__init__(dataset_name, tuple(tasks), *args, **kwargs)

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        if coco_eval is not None:
            return super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        self._logger.warning(f"No {iou_type} predictions from the model: its {iou_type} AP is 0")
        return {metric: 0.0 for metric in _METRICS[iou_type]}
