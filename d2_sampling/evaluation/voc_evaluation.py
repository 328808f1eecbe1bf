"""
Pascal VOC evaluation (the metric of the OHEM paper, arXiv 1604.03540: mAP at IoU 0.5) of any
registered detection dataset.

``VOCEvaluator`` is Detectron2's ``PascalVOCDetectionEvaluator`` (its ``process``, and its
``voc_eval`` for every number) with these departures, and why:

- Ground truth: Detectron2 re-reads the VOC xml files, so boxes the dataset check dropped
  (zero-size ones) or clipped would still be scored, and a dataset without xml (COCO-format)
  could not be evaluated at all. Here the ground truth is the dataset as loaded and checked
  (``DatasetCatalog.get``), the one the model was trained on, written as VOC xml to a
  temporary folder: VOC-format boxes go back to their 1-based pixel indices exactly, other
  boxes are rounded to whole pixels; an annotation's ``difficult`` flag (VOC) or ``iscrowd``
  (COCO) marks it difficult, which VOC neither rewards nor penalises. Detectron2's own VOC
  datasets (``voc_2007_test``, ...: metadata ``dirname`` and no ``d2_sampling_format``) keep
  their xml, for the official numbers.
- A class without ground truth in the split has no AP (VOC's recall is 0/0): it is left out
  of the mean, with a warning, and reported as ``nan``, instead of making the mean ``nan``.
- Per-class AP at IoU 0.5, ``AP50-<class>``, as ``COCOEvaluator`` reports ``AP-<class>``.

The metric is VOC2007's 11-point AP when the dataset's metadata ``year`` is 2007 (Detectron2's
VOC2007 names), else the area under the precision/recall curve (VOC2010 on); ``use_07_metric``
overrides it. Results, under ``bbox`` as Detectron2's: ``AP`` (mean over IoU 0.50:0.95, VOC
style), ``AP50`` (VOC mAP), ``AP75``, ``AP50-<class>``.
"""

import logging
import os
import tempfile
import xml.etree.ElementTree as ET
from collections import OrderedDict, defaultdict
from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.evaluation.pascal_voc_evaluation import parse_rec, voc_eval
from detectron2.structures import BoxMode
from detectron2.utils import comm

__all__ = ["VOCEvaluator", "write_voc_ground_truth"]

_THRESHOLDS = range(50, 100, 5)


def write_voc_ground_truth(dataset_dicts: Sequence[dict], folder: str):
    """
    Write ``dataset_dicts`` as VOC xml files (``<image_id>.xml``, objects named by their
    ``category_id``) and an image-set file into ``folder``, for Detectron2's ``voc_eval``.

    Returns:
        (str, str): the annotation path template (``.../{}.xml``) and the image-set file.
    """
    ids = []
    for record in dataset_dicts:
        image_id = str(record["image_id"])
        if not image_id or any(c.isspace() for c in image_id) or os.sep in image_id:
            raise ValueError(
                f"VOC evaluation needs image ids without spaces or {os.sep!r}: "
                f"{record['file_name']!r} has image_id {image_id!r}"
            )
        ids.append(image_id)
        root = ET.Element("annotation")
        for ann in record.get("annotations", []):
            x0, y0, x1, y1 = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
            obj = ET.SubElement(root, "object")
            difficult = int(bool(ann.get("difficult", ann.get("iscrowd", 0))))
            for tag, value in (
                ("name", ann["category_id"]),
                ("pose", "Unspecified"),
                ("truncated", 0),
                ("difficult", difficult),
            ):
                ET.SubElement(obj, tag).text = str(value)
            box = ET.SubElement(obj, "bndbox")
            # The inverse of VOC loading: coordinates to 1-based pixel indices.
            for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
                ET.SubElement(box, tag).text = str(int(round(value)))
        ET.ElementTree(root).write(os.path.join(folder, f"{image_id}.xml"))
    image_set = os.path.join(folder, "image_set.txt")
    with open(image_set, "w") as f:
        f.write("\n".join(ids) + "\n")
    return os.path.join(folder, "{}.xml"), image_set


class VOCEvaluator(PascalVOCDetectionEvaluator):
    """
    Pascal VOC box AP of a registered dataset, as described in the module docstring. Like
    Detectron2's, it gathers predictions from every worker, so call it from all of them.
    """

    def __init__(
        self,
        dataset_name: str,
        tasks: Sequence[str] = ("bbox",),
        *,
        output_dir=None,
        use_07_metric=None,
    ):
        """
        Args:
            dataset_name (str): a registered dataset with ``thing_classes`` in its metadata.
            tasks (tuple[str]): what the model predicts; VOC scores ``bbox`` only, other tasks
                are named in a warning. Accepted so that the evaluator swaps with
                ``COCOEvaluator`` in a config.
            output_dir: unused, accepted for the same reason.
            use_07_metric (bool): VOC2007's 11-point AP; default: the metadata year is 2007.
        """
        # Not PascalVOCDetectionEvaluator.__init__: it needs VOC's folder layout.
        self._dataset_name = dataset_name
        self._logger = logging.getLogger(__name__)
        self._cpu_device = torch.device("cpu")
        meta = MetadataCatalog.get(dataset_name)
        if meta.get("thing_classes") is None:
            DatasetCatalog.get(dataset_name)  # a COCO json sets its classes when it loads
        self._class_names: List[str] = list(meta.thing_classes)
        if "bbox" not in tasks:
            raise ValueError(f"VOCEvaluator({dataset_name!r}) scores boxes, got tasks {tasks}")
        if set(tasks) - {"bbox"}:
            self._logger.warning(
                f"VOC evaluation scores boxes only; {sorted(set(tasks) - {'bbox'})} of "
                f"{dataset_name!r} are not evaluated"
            )
        if use_07_metric is None:
            use_07_metric = meta.get("year") == 2007
        self._is_2007 = bool(use_07_metric)
        # Detectron2's own VOC datasets: their xml files, for the official numbers.
        self._official = meta.get("d2_sampling_format") is None and meta.get("dirname") is not None
        self._meta = meta

    def _ground_truth(self, folder: str):
        """(annotation template, image-set file, name of each class in the xml)."""
        if self._official:
            return (
                os.path.join(self._meta.dirname, "Annotations", "{}.xml"),
                os.path.join(self._meta.dirname, "ImageSets", "Main", self._meta.split + ".txt"),
                list(self._class_names),
            )
        anno, image_set = write_voc_ground_truth(DatasetCatalog.get(self._dataset_name), folder)
        return anno, image_set, [str(i) for i in range(len(self._class_names))]

    def evaluate(self):
        """
        Returns:
            dict: ``{"bbox": {"AP", "AP50", "AP75", "AP50-<class>" ...}}`` on the main process,
            None on the others.
        """
        all_predictions = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        predictions = defaultdict(list)
        for predictions_per_rank in all_predictions:
            for cls_id, lines in predictions_per_rank.items():
                predictions[cls_id].extend(lines)
        del all_predictions
        self._logger.info(
            f"Evaluating {self._dataset_name} with the Pascal VOC metric "
            f"({'11-point, VOC2007' if self._is_2007 else 'area under the curve, VOC2010+'})"
        )
        with tempfile.TemporaryDirectory(prefix="voc_eval_") as folder:
            gt_dir = os.path.join(folder, "gt")
            os.mkdir(gt_dir)
            anno, image_set, gt_names = self._ground_truth(gt_dir)
            num_gt = self._count_ground_truth(anno, image_set)
            aps: Dict[int, Dict[int, float]] = {t: {} for t in _THRESHOLDS}
            det = os.path.join(folder, "det_{}.txt")
            for cls_id, gt_name in enumerate(gt_names):
                if num_gt.get(gt_name, 0) == 0:
                    continue
                with open(det.format(gt_name), "w") as f:
                    f.write("\n".join(predictions.get(cls_id, [])))
                for t in _THRESHOLDS:
                    _, _, ap = voc_eval(
                        det, anno, image_set, gt_name, ovthresh=t / 100, use_07_metric=self._is_2007
                    )
                    aps[t][cls_id] = ap * 100
            if not self._official:
                parse_rec.cache_clear()  # its entries are the temporary files
        missing = [c for i, c in enumerate(self._class_names) if i not in aps[50]]
        if missing:
            self._logger.warning(
                f"{self._dataset_name}: no (non-difficult) ground truth of {missing}; "
                "their AP is undefined and left out of the mean"
            )
        result = OrderedDict()
        if aps[50]:
            means = {t: float(np.mean(list(v.values()))) for t, v in aps.items()}
            result.update(AP=float(np.mean(list(means.values()))), AP50=means[50], AP75=means[75])
        else:
            result.update(AP=float("nan"), AP50=float("nan"), AP75=float("nan"))
        for i, name in enumerate(self._class_names):
            result[f"AP50-{name}"] = aps[50].get(i, float("nan"))
        return OrderedDict(bbox=result)

    @staticmethod
    def _count_ground_truth(anno: str, image_set: str) -> Dict[str, int]:
        """Non-difficult ground-truth boxes per class name, as ``voc_eval`` counts them."""
        with open(image_set) as f:
            ids = [line.strip() for line in f if line.strip()]
        counts: Dict[str, int] = defaultdict(int)
        for image_id in ids:
            for obj in parse_rec(anno.format(image_id)):
                counts[obj["name"]] += 0 if obj["difficult"] else 1
        return counts
