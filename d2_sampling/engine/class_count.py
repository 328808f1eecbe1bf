"""
The model's class count against the classes of its data (docs/datasets.md, "The class count").

A class count that does not fit the data trains to the end without complaint and is scored AP
nan or 0, so ``setup()`` checks it before anything is built, once the datasets are ready:

1. The datasets agree: every training dataset has the same ``thing_classes`` (names, in order),
   and every test dataset the training datasets' ones.
2. The class count the model reads equals the number of those classes (those of the first
   training dataset that has class names, else of the first test dataset). The key the model
   reads: yacs ``MODEL.ROI_HEADS.NUM_CLASSES`` for ``GeneralizedRCNN`` and its subclasses,
   ``MODEL.RETINANET.NUM_CLASSES`` for ``RetinaNet`` and its subclasses (this project's
   ``ATSS`` and ``RetinaNetATSS``); LazyConfig ``model.roi_heads.num_classes`` (and
   ``model.roi_heads.box_predictor.num_classes``, ``model.roi_heads.mask_head.num_classes``
   when the config has them; 1 also fits a class-agnostic mask head) for ``GeneralizedRCNN``,
   ``model.num_classes`` (and ``model.head.num_classes``) for dense detectors. ``-1`` means
   "the number of classes of the data": the key is set to it (in every worker).
3. yacs: the class-count key of the other family (``MODEL.ROI_HEADS.NUM_CLASSES`` for ATSS),
   set by the config file, its ``_BASE_`` chain or the command line to another value than the
   key the model reads, is an error naming the key the model reads.

Any disagreement is a ``ClassCountError`` naming the numbers, the datasets and the key to set.
Datasets without ``thing_classes`` metadata (a dataset registered in Python without it) are
not checked (a debug log says so), nor are meta-architectures without a class-count key known
here (``ProposalNetwork``, ``SemanticSegmentor``, a custom one).
"""

import logging
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.utils.registry import locate
from omegaconf import DictConfig, OmegaConf

from .errors import ClassCountError

__all__ = ["FROM_DATA", "check_class_counts", "dataset_classes"]

logger = logging.getLogger(__name__)

# The class count that means "the number of classes of the data".
FROM_DATA = -1
_ROI_KEY, _DENSE_KEY = "MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.RETINANET.NUM_CLASSES"


def dataset_classes(name: str, *, load: bool = False) -> Optional[List[str]]:
    """
    ``thing_classes`` of dataset ``name`` from ``MetadataCatalog``, ``None`` when it has none.
    COCO-format datasets get them only as they load (``load_coco_json`` sets them): ``load``
    loads the dataset (``DatasetCatalog.get``) when they are not there yet.
    """
    meta = MetadataCatalog.get(name)
    classes = meta.get("thing_classes")
    if classes is None and load:
        DatasetCatalog.get(name)
        classes = meta.get("thing_classes")
    return None if classes is None else list(classes)


@dataclass
class _Key:
    name: str  # as written in its config system: MODEL.ROI_HEADS.NUM_CLASSES, model.num_classes
    value: int
    lazy: bool
    agnostic_ok: bool = False  # 1 fits too (a class-agnostic mask head)
    follows: bool = False  # a LazyConfig interpolation: it follows the key it names

    def assignment(self, n: int) -> str:
        return f"{self.name}={n}" if self.lazy else f"{self.name} {n}"


def _yacs_get(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _yacs_set(cfg: CfgNode, key: str, value) -> None:
    frozen = cfg.is_frozen()
    cfg.defrost()
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value
    if frozen:
        cfg.freeze()


def _meta_arch(cfg) -> Tuple[str, Optional[type]]:
    """(name, class) of the model's meta-architecture; the class is ``None`` if not found."""
    if isinstance(cfg, CfgNode):
        name = cfg.MODEL.META_ARCHITECTURE
        return name, META_ARCH_REGISTRY.get(name)  # KeyError listing nothing: name is wrong
    target = cfg.model.get("_target_") if isinstance(cfg.get("model"), DictConfig) else None
    if isinstance(target, str):
        try:
            target = locate(target)
        except Exception:  # the model's instantiation will say what is wrong with it
            return target, None
    if not isinstance(target, type):
        return str(target), None
    return target.__name__, target


def _yacs_keys(arch: Optional[type]) -> Tuple[Optional[str], Optional[str]]:
    """(the key the model reads, the other family's key)."""
    if arch is not None and issubclass(arch, GeneralizedRCNN):
        return _ROI_KEY, _DENSE_KEY
    if arch is not None and issubclass(arch, RetinaNet):
        return _DENSE_KEY, _ROI_KEY
    return None, None


def _lazy_keys(cfg, arch: Optional[type]) -> List[_Key]:
    if arch is not None and issubclass(arch, GeneralizedRCNN):
        candidates = [
            ("model.roi_heads.num_classes", False),
            ("model.roi_heads.box_predictor.num_classes", False),
            ("model.roi_heads.mask_head.num_classes", True),
        ]
    elif arch is not None and issubclass(arch, DenseDetector):
        candidates = [("model.num_classes", False), ("model.head.num_classes", False)]
    else:
        return []
    keys = []
    for name, agnostic_ok in candidates:
        parent_key, _, leaf = name.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None)
        if not isinstance(parent, DictConfig) or leaf not in parent:
            continue
        value = OmegaConf.select(cfg, name, default=None)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        follows = OmegaConf.is_interpolation(parent, leaf)
        keys.append(_Key(name, value, True, agnostic_ok, follows))
    return keys


def _classes_text(classes: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(c) for c in classes[:limit])
    more = f", ... ({len(classes)} in all)" if len(classes) > limit else ""
    return f"[{shown}{more}]"


def _count_text(n: int) -> str:
    return f"{n} class" if n == 1 else f"{n} classes"


def _reference_classes(
    train_datasets: Sequence[str], test_datasets: Sequence[str], *, load: bool, check: bool
) -> Optional[Tuple[str, List[str]]]:
    """
    (name, classes) of the first training dataset with class names, else of the first test
    dataset (``load``: loading datasets until one has them); with ``check``, every other
    dataset with class names must have the same ones.
    """
    names = list(dict.fromkeys([*train_datasets, *test_datasets]))
    training = set(train_datasets)

    def role(name):
        return "training" if name in training else "test"

    reference = None
    for name in names:
        classes = dataset_classes(name, load=load and reference is None)
        if classes is None:
            logger.debug(f"Dataset {name!r} has no thing_classes metadata: classes not checked")
            continue
        if reference is None:
            reference = (name, classes)
            if not check:
                break
            continue
        ref_name, ref_classes = reference
        if classes == ref_classes:
            continue
        how = (
            "the same names in another order"
            if sorted(classes) == sorted(ref_classes)
            else f"{_count_text(len(classes))} against {len(ref_classes)}"
        )
        raise ClassCountError(
            f"{role(name).capitalize()} dataset {name!r} and {role(ref_name)} dataset "
            f"{ref_name!r} have different classes ({how}): {name!r} has "
            f"{_classes_text(classes)}, {ref_name!r} has {_classes_text(ref_classes)}. A model "
            "learns and is scored on one list of classes, by position: give every dataset of "
            "the run the same categories, in the same order."
        )
    return reference


def check_class_counts(
    cfg,
    train_datasets: Sequence[str],
    test_datasets: Sequence[str],
    *,
    set_by: Callable[[str], Optional[str]] = lambda key: None,
    check: bool = True,
):
    """
    Check the class count of ``cfg``'s model against the classes of its datasets and fill a
    ``-1``, as the module describes. Call once the datasets are registered and ready.

    Args:
        cfg: a yacs ``CfgNode`` or a LazyConfig.
        train_datasets, test_datasets: the datasets of the run (``--eval-only``: no training
            datasets).
        set_by: for a yacs key, where it is set (a file, "the command line"), ``None`` if
            nowhere (Detectron2's default).
        check: ``False``: only fill a ``-1`` (loading the dataset it comes from if need be),
            for the workers that did not load every dataset; ``setup`` leaves the checks to
            the first worker of each machine, which did, so that every run reports the same
            error.

    Returns:
        ``cfg``, with every ``-1`` class count replaced by the number of classes of the data.

    Raises:
        ClassCountError: as the module describes.
    """
    arch_name, arch = _meta_arch(cfg)
    keys, other = _keys(cfg, arch)
    for key in keys:
        if check and key.value != FROM_DATA and key.value < 1:
            raise ClassCountError(
                f"{key.name} is {key.value}: a class count is a positive number, or "
                f"{FROM_DATA} for the number of classes of the training data"
            )
    fill = [key for key in keys if key.value == FROM_DATA and not key.follows]
    if not check and not fill:
        return cfg
    reference = _reference_classes(train_datasets, test_datasets, load=bool(fill), check=check)
    role = "training" if reference is not None and reference[0] in train_datasets else "test"
    if fill:
        if reference is None:
            raise ClassCountError(
                f"{fill[0].name} is {FROM_DATA} (the number of classes of the data), but no "
                f"dataset of the run has class names (thing_classes metadata): "
                f"{list(train_datasets) or list(test_datasets)}. Set it to the number of classes."
            )
        _fill(cfg, fill, role, *reference)
        keys, _ = _keys(cfg, arch)  # and the keys that follow them
    if not check:
        return cfg
    if not keys:
        logger.debug(f"Meta-architecture {arch_name}: no class-count key known here, not checked")
    elif reference is None:
        logger.debug("No dataset of the run has thing_classes metadata: class count not checked")
    else:
        _check_counts(cfg, arch_name, keys, other, role, *reference, set_by=set_by)
    if other is not None:
        _check_unread_key(cfg, arch_name, keys[0], other, set_by)
    return cfg


def _keys(cfg, arch: Optional[type]) -> Tuple[List[_Key], Optional[str]]:
    """(the class-count keys the model reads, for yacs the other family's key)."""
    if not isinstance(cfg, CfgNode):
        return _lazy_keys(cfg, arch), None
    read, other = _yacs_keys(arch)
    return ([_Key(read, _yacs_get(cfg, read), False)] if read else []), other


def _fill(cfg, fill: List[_Key], role: str, ref_name: str, classes: List[str]) -> None:
    n = len(classes)
    for key in fill:
        if key.lazy:
            OmegaConf.update(cfg, key.name, n, merge=False)
        else:
            _yacs_set(cfg, key.name, n)
        logger.info(
            f"{key.name} {FROM_DATA} -> {n}: the number of classes of {role} dataset "
            f"{ref_name!r} {_classes_text(classes)}"
        )


def _check_counts(cfg, arch_name, keys, other, role, ref_name, classes, *, set_by) -> None:
    n = len(classes)
    for key in keys:
        if key.value == n or (key.agnostic_ok and key.value == 1):
            continue
        note = ""
        if other is not None and (set_by(other) or _yacs_get(cfg, other) == n):
            note = f" ({arch_name} reads {key.name}; {other} is not used by it.)"
        raise ClassCountError(
            f"{key.name} is {key.value}, but {role} dataset {ref_name!r} has {_count_text(n)} "
            f"{_classes_text(classes)}: the model would learn and be scored on the wrong "
            f"classes. Set {key.assignment(n)} (or {key.assignment(FROM_DATA)} to take the "
            f"count from the data).{note}"
        )


def _check_unread_key(cfg, arch_name: str, read: _Key, other: str, set_by) -> None:
    where = set_by(other)
    value = _yacs_get(cfg, other)
    if where is None or value == read.value:
        return
    raise ClassCountError(
        f"{other} is {value} ({where} sets it), but {arch_name} does not read it: it reads "
        f"{read.name}, which is {read.value}. Set {read.assignment(value)} instead."
    )
