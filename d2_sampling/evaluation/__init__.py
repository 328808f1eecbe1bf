from .build import EVALUATORS, build_evaluator, check_evaluator_name
from .coco_evaluation import COCOEvaluator, evaluation_tasks
from .voc_evaluation import VOCEvaluator, write_voc_ground_truth

__all__ = [
    "EVALUATORS",
    "COCOEvaluator",
    "VOCEvaluator",
    "build_evaluator",
    "check_evaluator_name",
    "evaluation_tasks",
    "write_voc_ground_truth",
]
