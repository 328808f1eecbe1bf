"""The evaluator a yacs config asks for: ``TEST.EVALUATOR`` = ``"coco"`` or ``"voc"``."""

from detectron2.evaluation import DatasetEvaluator

from .coco_evaluation import COCOEvaluator, evaluation_tasks
from .voc_evaluation import VOCEvaluator

__all__ = ["EVALUATORS", "build_evaluator", "check_evaluator_name"]

# TEST.EVALUATOR -> what it computes.
EVALUATORS = {
    "coco": "COCO AP (d2_sampling.evaluation.COCOEvaluator, the model's tasks)",
    "voc": "Pascal VOC AP (d2_sampling.evaluation.VOCEvaluator, boxes)",
}


def check_evaluator_name(name: str) -> str:
    """``name`` if it is a key of ``EVALUATORS``; else ``ValueError`` naming the key."""
    if name not in EVALUATORS:
        raise ValueError(f"TEST.EVALUATOR must be one of {sorted(EVALUATORS)}, got {name!r}")
    return name


def build_evaluator(cfg, dataset_name: str, output_dir: str) -> DatasetEvaluator:
    """
    The evaluator of ``cfg.TEST.EVALUATOR`` for ``dataset_name``, evaluating the tasks of the
    config's model (``evaluation_tasks``) and writing into ``output_dir``.
    """
    tasks = evaluation_tasks(cfg)
    if check_evaluator_name(cfg.TEST.EVALUATOR) == "voc":
        return VOCEvaluator(dataset_name, tasks, output_dir=output_dir)
    return COCOEvaluator(dataset_name, tasks, output_dir=output_dir)
