# Detectron2's common COCO data config (model_zoo "common/data/coco.py") with d2_sampling's
# pieces: a mapper whose errors name the image file, and COCO evaluation of the tasks the model
# has (evaluated, as AP 0, even when it predicts nothing). The yacs twin: d2_sampling's Trainer.
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from d2_sampling.data import CheckedDatasetMapper
from d2_sampling.evaluation import COCOEvaluator


def coco_dataloader(tasks=("bbox",)):
    """``dataloader`` of Detectron2's COCO config; ``tasks``: ("bbox",) or ("bbox", "segm")."""
    dataloader = model_zoo.get_config("common/data/coco.py").dataloader
    dataloader.train.mapper._target_ = CheckedDatasetMapper
    dataloader.test.mapper._target_ = CheckedDatasetMapper
    dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", tasks=tasks)
    return dataloader
