"""
The training-ROI sampler as a choice, not a subclass: any ``StandardROIHeads`` subclass
(Detectron2's own, ``CascadeROIHeads``, a user's) trained with random sampling (Detectron2's),
IoU-balanced sampling (Libra R-CNN) or online hard example mining.

- ``ROI_SAMPLER_REGISTRY``: the samplers, small frozen settings objects (``RandomSampling``,
  ``IoUBalancedSampling``, ``OHEMSampling``), each built from the yacs keys of its method by
  ``from_config``.
- :func:`with_roi_sampler`: give built heads a sampler. The heads become an instance of a
  subclass of their own class with the sampler's mixin first in the bases
  (``IoUBalancedSamplingMixin`` / ``OHEMSamplingMixin``: the code of ``IoUBalancedROIHeads`` /
  ``OHEMROIHeads``), so their weights, state-dict keys, forward and inference stay theirs.
- ``SampledROIHeads``: the yacs entry (``MODEL.ROI_HEADS.NAME: "SampledROIHeads"``), which builds
  ``MODEL.ROI_SAMPLER.HEADS`` and gives it ``MODEL.ROI_SAMPLER.NAME``.
- :func:`sampled_roi_heads`: the LazyConfig entry, ``model.roi_heads`` keeping every argument of
  its heads where it was: ``_target_=sampled_roi_heads``, ``heads="CascadeROIHeads"`` (the class
  that was the target), ``sampler=L(OHEMSampling)()`` (configs/common/samplers.py does it).

Where Cascade R-CNN samples and what its later stages see: docs/samplers.md.
"""

import dataclasses
import sys
from typing import ClassVar, Dict, Tuple, Type, Union

from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.utils.registry import Registry, locate

from .balanced_l1_fast_rcnn import with_balanced_l1_predictors
from .iou_balanced_roi_heads import IoUBalancedSamplingMixin, iou_balanced_sampling_args
from .ohem_roi_heads import OHEMSamplingMixin, ohem_sampling_args

__all__ = [
    "ROI_SAMPLER_REGISTRY",
    "RandomSampling",
    "IoUBalancedSampling",
    "OHEMSampling",
    "SampledROIHeads",
    "build_roi_sampler",
    "check_roi_sampler_config",
    "sampled_roi_heads",
    "with_roi_sampler",
]

ROI_SAMPLER_REGISTRY = Registry("ROI_SAMPLER")
ROI_SAMPLER_REGISTRY.__doc__ = """
Samplers of the ROI heads' training RoIs (``MODEL.ROI_SAMPLER.NAME``): frozen dataclasses with
``from_config(cfg)``, a ``mixin`` (None: the heads' own sampling) and, as fields, the arguments
of the mixin's setup method.
"""

_SAMPLER_MIXINS = (IoUBalancedSamplingMixin, OHEMSamplingMixin)


@ROI_SAMPLER_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class RandomSampling:
    """Detectron2's own sampling (``subsample_labels``): the heads are left as they are."""

    mixin: ClassVar = None
    setup: ClassVar = None

    @classmethod
    def from_config(cls, cfg):
        return cls()


@ROI_SAMPLER_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class IoUBalancedSampling:
    """
    Libra R-CNN's IoU-balanced negatives and instance-balanced positives
    (``MODEL.IOU_BALANCED.*``); the batch and positive fraction stay the heads'
    (``MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE`` / ``POSITIVE_FRACTION``). The fields are the
    arguments of :meth:`IoUBalancedSamplingMixin.setup_iou_balanced_sampling`.
    """

    num_bins: int = 3
    floor_thr: float = -1.0
    floor_fraction: float = 0.0
    instance_balanced_positives: bool = True

    mixin: ClassVar = IoUBalancedSamplingMixin
    setup: ClassVar = "setup_iou_balanced_sampling"

    @classmethod
    def from_config(cls, cfg):
        return cls(**iou_balanced_sampling_args(cfg))


@ROI_SAMPLER_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class OHEMSampling:
    """
    Online hard example mining (``MODEL.OHEM.*``; paper defaults). The fields are the
    arguments of :meth:`OHEMSamplingMixin.setup_ohem_sampling`.
    """

    ohem_batch_size_per_image: int = 64
    ohem_loss: str = "cls+box"
    ohem_nms_thresh: float = 0.7
    ohem_positive_fraction: float = -1.0
    ohem_max_pool_size: int = -1

    mixin: ClassVar = OHEMSamplingMixin
    setup: ClassVar = "setup_ohem_sampling"

    @classmethod
    def from_config(cls, cfg):
        return cls(**ohem_sampling_args(cfg))


def build_roi_sampler(cfg):
    """The sampler named by ``MODEL.ROI_SAMPLER.NAME``, with its method's yacs settings."""
    name = cfg.MODEL.ROI_SAMPLER.NAME
    if name not in ROI_SAMPLER_REGISTRY:
        raise ValueError(
            f"MODEL.ROI_SAMPLER.NAME must be one of {sorted(n for n, _ in ROI_SAMPLER_REGISTRY)}, "
            f"got {name!r}"
        )
    return ROI_SAMPLER_REGISTRY.get(name).from_config(cfg)


def check_roi_sampler_config(cfg) -> None:
    """
    Raise ``ValueError`` when ``MODEL.ROI_SAMPLER`` would be ignored (a sampler or heads set
    while ``MODEL.ROI_HEADS.NAME`` is not ``"SampledROIHeads"``) or names nothing registered:
    at config time, before anything is built.
    """
    name, heads = cfg.MODEL.ROI_SAMPLER.NAME, cfg.MODEL.ROI_SAMPLER.HEADS
    if cfg.MODEL.ROI_HEADS.NAME != "SampledROIHeads":
        if (name, heads) != ("RandomSampling", "StandardROIHeads"):
            raise ValueError(
                f"MODEL.ROI_SAMPLER (NAME {name!r}, HEADS {heads!r}) is only read with "
                f'MODEL.ROI_HEADS.NAME: "SampledROIHeads", got {cfg.MODEL.ROI_HEADS.NAME!r}: '
                f'set MODEL.ROI_HEADS.NAME "SampledROIHeads" and MODEL.ROI_SAMPLER.HEADS '
                f"{cfg.MODEL.ROI_HEADS.NAME!r}"
            )
        return
    build_roi_sampler(cfg)  # names the bad NAME or setting
    _yacs_heads_class(heads)


def _yacs_heads_class(name: str) -> Type:
    if name == "SampledROIHeads" or name not in ROI_HEADS_REGISTRY:
        known = sorted(n for n, _ in ROI_HEADS_REGISTRY if n != "SampledROIHeads")
        raise ValueError(f"MODEL.ROI_SAMPLER.HEADS must be one of {known}, got {name!r}")
    return ROI_HEADS_REGISTRY.get(name)


# (heads class, mixin) -> the subclass with the mixin first; also a global of this module under
# its own name, so that pickle (and multiprocessing) find it.
_SAMPLED_CLASSES: Dict[Tuple[Type, Type], Type] = {}


def _sampled_class(heads_cls: Type, mixin: Type) -> Type:
    key = (heads_cls, mixin)
    if key not in _SAMPLED_CLASSES:
        base = f"{heads_cls.__name__}With{mixin.__name__[: -len('Mixin')]}"
        name, i = base, 1
        module = sys.modules[__name__]
        while hasattr(module, name):  # another class of the same name elsewhere
            i += 1
            name = f"{base}{i}"
        cls = type(
            name,
            (mixin, heads_cls),
            {
                "__module__": __name__,
                "__qualname__": name,
                "__doc__": f"``{heads_cls.__module__}.{heads_cls.__qualname__}`` trained with "
                f"``{mixin.__name__}`` (made by ``with_roi_sampler``).",
            },
        )
        setattr(module, name, cls)
        _SAMPLED_CLASSES[key] = cls
    return _SAMPLED_CLASSES[key]


def with_roi_sampler(heads: StandardROIHeads, sampler) -> StandardROIHeads:
    """
    Train ``heads`` with ``sampler``; returns ``heads`` itself (modified in place), or unchanged
    for ``RandomSampling``. Usable as a LazyConfig target:
    ``L(with_roi_sampler)(heads=L(CascadeROIHeads)(...), sampler=L(OHEMSampling)())``.

    Args:
        heads (StandardROIHeads): built heads, of any ``StandardROIHeads`` subclass that does not
            sample with one of this package's samplers already.
        sampler: a ``RandomSampling``, ``IoUBalancedSampling`` or ``OHEMSampling`` (or another
            ``ROI_SAMPLER_REGISTRY`` entry).

    Raises:
        TypeError: ``heads`` is not a ``StandardROIHeads``, or ``sampler`` not a sampler.
        ValueError: ``heads`` already samples with a mixin of this package
            (``IoUBalancedROIHeads``, ``OHEMROIHeads``, or heads given a sampler before), or a
            bad sampler setting (the message names its yacs key).
    """
    if not isinstance(heads, StandardROIHeads):
        raise TypeError(
            f"with_roi_sampler: the ROI heads must be a StandardROIHeads (or subclass), got "
            f"{type(heads).__name__}"
        )
    if not (dataclasses.is_dataclass(sampler) and hasattr(type(sampler), "mixin")):
        raise TypeError(
            "with_roi_sampler: sampler must be a RandomSampling, IoUBalancedSampling or "
            f"OHEMSampling, got {sampler!r}"
        )
    if sampler.mixin is None:
        return heads
    if isinstance(heads, _SAMPLER_MIXINS):
        raise ValueError(
            f"with_roi_sampler: {type(heads).__name__} already chooses its training RoIs with a "
            f"d2_sampling sampler; give {type(sampler).__name__} to heads that sample randomly "
            "(e.g. MODEL.ROI_SAMPLER.HEADS: StandardROIHeads, not IoUBalancedROIHeads / "
            "OHEMROIHeads)"
        )
    original = type(heads)
    heads.__class__ = _sampled_class(original, sampler.mixin)
    try:
        getattr(heads, sampler.setup)(**dataclasses.asdict(sampler))
    except Exception:
        heads.__class__ = original  # a bad setting leaves the heads as they were
        raise
    return heads


@ROI_HEADS_REGISTRY.register()
def SampledROIHeads(cfg, input_shape):
    """
    ``MODEL.ROI_HEADS.NAME: "SampledROIHeads"``: the ROI heads ``MODEL.ROI_SAMPLER.HEADS``
    (any registered ``StandardROIHeads`` subclass, built from ``cfg`` as usual) trained with
    the sampler ``MODEL.ROI_SAMPLER.NAME``. See :func:`with_roi_sampler`. With
    ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE: "balanced_l1"`` the box predictor(s), every stage's
    in a cascade, are :class:`BalancedL1FastRCNNOutputLayers`.
    """
    heads_cls = _yacs_heads_class(cfg.MODEL.ROI_SAMPLER.HEADS)
    sampler = build_roi_sampler(cfg)
    if cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE == "balanced_l1":
        # From its from_config arguments, with the balanced L1 predictor(s) swapped in.
        args = with_balanced_l1_predictors(cfg, heads_cls.from_config(cfg, input_shape))
        heads = heads_cls(**args)
    else:
        heads = heads_cls(cfg, input_shape)
    return with_roi_sampler(heads, sampler)


def _heads_class(heads: Union[str, Type]) -> Type:
    if isinstance(heads, type):
        return heads
    if isinstance(heads, str) and heads != "SampledROIHeads" and heads in ROI_HEADS_REGISTRY:
        return ROI_HEADS_REGISTRY.get(heads)
    try:
        cls = locate(heads) if isinstance(heads, str) and "." in heads else None
    except Exception:
        cls = None
    if not isinstance(cls, type):
        known = sorted(n for n, _ in ROI_HEADS_REGISTRY if n != "SampledROIHeads")
        raise ValueError(
            f"sampled_roi_heads: heads must be a StandardROIHeads subclass, one of {known} or a "
            f"dotted path to one, got {heads!r}"
        )
    return cls


def sampled_roi_heads(*, heads: Union[str, Type], sampler, **kwargs) -> StandardROIHeads:
    """
    ``heads(**kwargs)`` trained with ``sampler`` (:func:`with_roi_sampler`): the LazyConfig
    form of ``SampledROIHeads``, where ``model.roi_heads`` keeps its heads' arguments in place.

    Args:
        heads (str or type): the ROI heads class, a name in ``ROI_HEADS_REGISTRY``
            (``"StandardROIHeads"``, ``"CascadeROIHeads"``), a dotted path, or the class.
        sampler: ``RandomSampling()``, ``IoUBalancedSampling(...)`` or ``OHEMSampling(...)``.
        kwargs: the arguments of ``heads``.
    """
    return with_roi_sampler(_heads_class(heads)(**kwargs), sampler)
