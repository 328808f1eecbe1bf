from .coco_evaluation import COCOEvaluator, evaluation_tasks

__all__ = ["COCOEvaluator", "evaluation_tasks"]
