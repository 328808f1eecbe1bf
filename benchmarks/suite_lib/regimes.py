"""
The suite's regimes: for each, the configs it trains (every method and its baseline), the data,
the schedule, the text of its report section and how long it is expected to take.

- ``bccd`` (the default of ``make bench``): ImageNet-pretrained EfficientNet-Lite0-FPN
  detectors on BCCD (real microscope images, 3 classes), configs/BCCD/, with its opt-in
  control runs (``BCCD_CONTROLS``: why OHEM is behind).
- ``synthetic-pretrained``: the same detectors on the built-in synthetic dataset,
  configs/Synthetic/*_effnetlite0_FPN*.
- ``synthetic-scratch``: TinyNet-FPN detectors trained from scratch on the synthetic dataset,
  the suite as it was before the pretrained regimes (its committed results are kept in
  docs/benchmarks.json), with its opt-in control runs, the coco_tiny rows and the per-component
  speed scripts.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parents[1]  # benchmarks/
REPO = HERE.parent
SHARED_DATA = REPO.parent / "shared" / "data"
BCCD_DIR = SHARED_DATA / "bccd"
COCO_TINY = SHARED_DATA / "coco_tiny"

METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
BENCHES = ["bench_atss", "bench_ohem", "bench_iou_balanced"]


@dataclass(frozen=True)
class Method:
    """One config of a regime; ``baseline`` is the key of the method it is compared with."""

    key: str
    label: str
    config: str  # under configs/
    baseline: Optional[str]
    family: str  # "rcnn" or "retinanet"

    def as_dict(self):
        return dict(
            key=self.key,
            label=self.label,
            config=self.config,
            baseline=self.baseline,
            family=self.family,
        )

    @property
    def run_name(self):
        """The config's file name without suffix: the result files' folder."""
        return Path(self.config).stem


@dataclass(frozen=True)
class Schedule:
    """A config's own schedule (SOLVER.MAX_ITER, WARMUP_ITERS, STEPS)."""

    iters: int
    warmup: int
    steps: tuple


@dataclass(frozen=True)
class Estimate:
    """What the duration estimate of a regime assumes (measured on the 2-core CPU machine)."""

    s_per_iter: tuple  # (low, high) seconds per training iteration, runs side by side
    eval_s_per_image: float  # inference + COCO evaluation, per test image
    eval_overhead_s: float  # per evaluation: building the loader, COCOeval
    startup_s: float  # per run: imports, model and weights, dataset checks
    note: str


@dataclass(frozen=True)
class Regime:
    name: str  # the --regime value
    title: str  # the report section's heading
    short: str  # a column heading (the "Against the papers" table)
    summary: str  # detectors, one line (overview table)
    data: str  # data, one line (overview table)
    accuracy_title: str
    intro: tuple  # paragraphs opening the section (combined report)
    methods: tuple
    families: dict
    schedule: Schedule
    iters: int  # the suite's default iterations per run
    eval_period: int
    seeds: int
    train_dataset: str
    test_dataset: str
    test_images: int
    quick_train: str
    quick_test: str
    quick_methods: tuple  # the --quick subset
    json_name: str  # the aggregate, next to the report
    image_prefix: str  # images/<prefix><family>_ap.png
    estimate: Estimate
    voc_dir: Optional[Path] = None  # a VOC-format dataset: its ground truth is converted
    controls: tuple = ()
    # Opt-in methods (--extra), beside ``methods`` in the report once run, not in the default
    # run set (nor in its counts and time estimate).
    extra_methods: tuple = ()
    coco_tiny: bool = False
    speed_benches: bool = False
    needs: tuple = field(default_factory=tuple)  # paths that must exist to run it
    # Families whose configs have a schedule of their own (family -> Schedule), trained for
    # that many iterations by default instead of ``iters`` (BCCD's dense detectors: 1200).
    family_schedules: dict = field(default_factory=dict)

    def schedule_of(self, family):
        """The configs' own schedule of ``family``."""
        return self.family_schedules.get(family, self.schedule)

    def iters_of(self, family):
        """The suite's default iterations per run for a config of ``family``."""
        return (
            self.family_schedules[family].iters if family in self.family_schedules else self.iters
        )

    def iters_text(self):
        """The default iterations per run, in words: "600", or per family where they differ."""
        return iters_in_words(
            {f: self.iters_of(f) for f in self.families}, self.families, self.iters
        )

    def method_table(self):
        return [m.as_dict() for m in self.methods]

    @property
    def all_methods(self):
        """The default methods, then the opt-in ones."""
        return self.methods + self.extra_methods

    def method(self, key):
        return next(m for m in self.all_methods if m.key == key)

    def available(self):
        return all(Path(p).exists() for p in self.needs)


def _methods(folder, rcnn_baseline, rcnn, retinanet, atss):
    """
    The seven methods of every regime: configs ``folder/<name>.yaml``, the Faster R-CNN
    variants named ``rcnn + "_ohem"`` etc., the RetinaNet one ``retinanet + "_atss"``.
    """
    r, d = "rcnn", "retinanet"
    return (
        Method(
            "faster_rcnn",
            "Faster R-CNN, random sampling",
            f"{folder}/{rcnn_baseline}.yaml",
            None,
            r,
        ),
        Method("ohem", "OHEM (paper)", f"{folder}/{rcnn}_ohem.yaml", "faster_rcnn", r),
        Method(
            "ohem_mmdet", "OHEM (MMDetection)", f"{folder}/{rcnn}_ohem_mmdet.yaml", "faster_rcnn", r
        ),
        Method(
            "iou_balanced",
            "IoU-balanced sampling",
            f"{folder}/{rcnn}_iou_balanced.yaml",
            "faster_rcnn",
            r,
        ),
        Method("retinanet", "RetinaNet", f"{folder}/{retinanet}.yaml", None, d),
        Method(
            "retinanet_atss",
            "RetinaNet + ATSS assignment",
            f"{folder}/{retinanet}_atss.yaml",
            "retinanet",
            d,
        ),
        Method("atss", "ATSS", f"{folder}/{atss}.yaml", "retinanet", d),
    )


# The pretrained regimes' time per iteration (batch 4, ~320 px), from the BCCD suite's own runs
# on the 2-core machine, 2 runs side by side, 1 thread each: 1.0-1.4 s with nothing else running
# (11 of the 13 runs of 2026-12-02 evening: R-CNN 1.25-1.40, RetinaNet / ATSS 1.0-1.1; the other
# two 1.9 and 2.7), 1.7-2.0 with other work on the machine, 2.3-4.6 with more (the runs of that
# morning); evaluation ~0.1 s
# per image for inference alone (measured on bccd_val), taken as 0.2 for a trained model.
PRETRAINED_ESTIMATE = Estimate(
    s_per_iter=(1.2, 2.0),
    eval_s_per_image=0.2,
    eval_overhead_s=5.0,
    startup_s=45.0,
    note="1.2-2.0 s per training iteration (batch 4, ~320 px, 2 runs side by side: measured "
    "1.0-1.4 on a machine doing nothing else, 1.7-2.0 with other work on it), ~0.2 s per test "
    "image in each evaluation, ~45 s of start-up per run",
)

EFFNETLITE0_NAMES = (
    "faster_rcnn_effnetlite0_FPN",
    "faster_rcnn_effnetlite0_FPN",
    "retinanet_effnetlite0_FPN",
    "atss_effnetlite0_FPN",
)

# configs/Base-BCCD-RCNN.yaml's solver and the BCCD OHEM (paper) config's RoI batch, for the
# BCCD controls (tests check them against the configs).
BCCD_RCNN_LR = 0.01  # SOLVER.BASE_LR
BCCD_RCNN_GAMMA = 0.1  # SOLVER.GAMMA (Detectron2's default), applied at each of SOLVER.STEPS
BCCD_SCHEDULE = Schedule(600, 100, (480, 560))
# BCCD's dense detectors' (configs/Base-BCCD-RetinaNet.yaml) and every pretrained synthetic
# detector's (Base-Synthetic-{RCNN,RetinaNet}-EffLite0.yaml): the same shape, twice as long. At
# 600 iterations RetinaNet had not always learnt BCCD's rare WBC class (docs/bccd.md), and on the
# synthetic dataset RetinaNet's AP still rose 4-12 points per evaluation, Faster R-CNN's 3-9.
LONG_SCHEDULE = Schedule(1200, 100, (960, 1120))
# The LR of the baseline's last iterations (after both decays): 0.01 x 0.1^2 = 1e-4.
BCCD_RCNN_FINAL_LR = round(BCCD_RCNN_LR * BCCD_RCNN_GAMMA ** len(BCCD_SCHEDULE.steps), 12)
# configs/BCCD/faster_rcnn_effnetlite0_FPN_ohem.yaml trains on MODEL.OHEM.BATCH_SIZE_PER_IMAGE
# (its default, the paper's B/N = 128 / 2) hard RoIs per image, not the baseline's 128.
OHEM_ROIS_PER_IMAGE = 64
FINETUNE_ITERS = 200

# The BCCD controls: why OHEM (paper) is behind the baseline on BCCD. The keys of CONTROLS
# below (key, label, config, opts, compare, question), where "compare" may also be a tuple of
# keys (methods or other controls of the regime), the first being the comparison that answers
# the question; and two optional ones:
# - "weights_from": a method key; the control starts from the final weights of that method's
#   run of the same seed (work_dir/<its config>/seed<k>/model_final.pth, kept by
#   --keep-checkpoints), resolved per seed by suite.py;
# - "own_schedule": True when "opts" set the whole schedule (SOLVER.MAX_ITER, BASE_LR, STEPS,
#   WARMUP_ITERS): the suite's schedule (its --iters rescaling) is not applied; --quick still
#   cuts it to its few iterations;
# - "family": the method family of its config where that family has a schedule of its own
#   (``Regime.family_schedules``): the control trains on it, as that family's methods do.
_FINETUNE_OPTS = [
    # Constant LR at the baseline's last LR: no warm-up, no decay.
    "SOLVER.BASE_LR",
    BCCD_RCNN_FINAL_LR,
    "SOLVER.MAX_ITER",
    FINETUNE_ITERS,
    "SOLVER.WARMUP_ITERS",
    0,
    "SOLVER.STEPS",
    "()",
]
# The control of the ATSS detector's head, in each regime that has one: Detectron2's RetinaNet
# with GroupNorm in its towers (its head has no normalisation), the regime's config and schedule.
_RETINANET_GN = dict(
    key="retinanet_gn",
    label="RetinaNet, GroupNorm in the head",
    opts=["MODEL.RETINANET.NORM", "GN"],
)
BCCD_CONTROLS = (
    dict(
        key="faster_rcnn_2x",
        label="Faster R-CNN, random sampling, 1200 iterations",
        config="BCCD/faster_rcnn_effnetlite0_FPN.yaml",
        opts=[
            "SOLVER.MAX_ITER",
            2 * BCCD_SCHEDULE.iters,
            "SOLVER.WARMUP_ITERS",
            BCCD_SCHEDULE.warmup,
            "SOLVER.STEPS",
            "(" + ",".join(str(2 * s) for s in BCCD_SCHEDULE.steps) + ",)",
        ],
        own_schedule=True,
        compare="faster_rcnn",
        question="Has the R-CNN baseline converged in its 600 iterations? The same config "
        "trained twice as long (the schedule's shape kept: warm-up 100, decays at 960 and "
        "1120, as the dense detectors'), against the 600-iteration run of the same seed.",
    ),
    dict(
        key="faster_rcnn_64",
        label=f"Faster R-CNN, random sampling, {OHEM_ROIS_PER_IMAGE} RoIs / image",
        config="BCCD/faster_rcnn_effnetlite0_FPN.yaml",
        opts=["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", OHEM_ROIS_PER_IMAGE],
        compare=("ohem", "faster_rcnn"),
        question=f"Is OHEM (paper) behind because it trains on fewer RoIs "
        f"({OHEM_ROIS_PER_IMAGE} per image, not the baseline's 128)? Random sampling at OHEM's "
        "RoI batch, the paper's own comparison; against the baseline: what the smaller batch "
        "costs by itself.",
    ),
    dict(
        key="faster_rcnn_half_lr",
        label=f"Faster R-CNN, random sampling, LR {BCCD_RCNN_LR / 2:g}",
        config="BCCD/faster_rcnn_effnetlite0_FPN.yaml",
        opts=["SOLVER.BASE_LR", BCCD_RCNN_LR / 2],
        compare="faster_rcnn",
        question=f"The reference of OHEM at half the LR: the baseline at LR {BCCD_RCNN_LR / 2:g} "
        f"(the BCCD R-CNN configs' {BCCD_RCNN_LR:g} halved), same schedule otherwise.",
    ),
    dict(
        key="ohem_half_lr",
        label=f"OHEM (paper), LR {BCCD_RCNN_LR / 2:g}",
        config="BCCD/faster_rcnn_effnetlite0_FPN_ohem.yaml",
        opts=["SOLVER.BASE_LR", BCCD_RCNN_LR / 2],
        compare=("faster_rcnn_half_lr", "ohem"),
        question=f"Is it the learning rate? At LR {BCCD_RCNN_LR:g} OHEM (paper) diverged at seed 0 "
        "(iteration ~119; its loss_box_reg ~2.2-2.9 against ~0.5 for the baseline: ranking by "
        "cls + box loss selects the foreground RoIs with large regression error). Against the "
        f"baseline at the same LR, and against itself at {BCCD_RCNN_LR:g}.",
    ),
    dict(
        _RETINANET_GN,
        config="BCCD/retinanet_effnetlite0_FPN.yaml",
        family="retinanet",
        compare=("retinanet", "atss"),
        question="How much of the ATSS detector's lead is its GroupNorm head rather than its "
        "assignment (and centerness, GIoU, one anchor per location)? Detectron2's RetinaNet "
        "with GroupNorm in its towers, everything else unchanged (1200 iterations, as the "
        "dense configs), against RetinaNet and against the ATSS detector.",
    ),
    dict(
        key="faster_rcnn_finetune",
        label=f"Faster R-CNN, random sampling, fine-tuned {FINETUNE_ITERS} iterations",
        config="BCCD/faster_rcnn_effnetlite0_FPN.yaml",
        opts=list(_FINETUNE_OPTS),
        weights_from="faster_rcnn",
        own_schedule=True,
        compare="faster_rcnn",
        question=f"The reference of OHEM fine-tuning: the baseline's final weights of the same "
        f"seed trained {FINETUNE_ITERS} more iterations with random sampling, at the constant "
        f"LR {BCCD_RCNN_FINAL_LR:g} of its schedule's end; against the weights it started from.",
    ),
    dict(
        key="ohem_finetune",
        label=f"OHEM (paper), fine-tuning the baseline {FINETUNE_ITERS} iterations",
        config="BCCD/faster_rcnn_effnetlite0_FPN_ohem.yaml",
        opts=list(_FINETUNE_OPTS),
        weights_from="faster_rcnn",
        own_schedule=True,
        compare=("faster_rcnn_finetune", "faster_rcnn"),
        question="Does OHEM help a converged detector, the easy examples learnt (and past the "
        "early iterations where it diverged)? OHEM (paper) from the baseline's final weights "
        f"of the same seed, {FINETUNE_ITERS} iterations at LR {BCCD_RCNN_FINAL_LR:g}; against "
        "the baseline fine-tuned the same way, and against its starting point.",
    ),
)

# BCCD's opt-in methods (--extra): the issue-12 models against their baselines (FCOS + ATSS vs
# Detectron2's FCOS; the whole Libra R-CNN and its sampler + BFP step vs the Faster R-CNN
# baseline of the default set; Cascade R-CNN with each sampler vs Cascade R-CNN).
BCCD_EXTRA_METHODS = (
    Method("fcos", "FCOS", "BCCD/fcos_effnetlite0_FPN.yaml", None, "retinanet"),
    Method(
        "fcos_atss",
        "FCOS + ATSS assignment",
        "BCCD/fcos_atss_effnetlite0_FPN.yaml",
        "fcos",
        "retinanet",
    ),
    Method(
        "libra_sampler_bfp",
        "Libra R-CNN: sampler + BFP",
        "BCCD/libra_faster_rcnn_effnetlite0_FPN_sampler_bfp.yaml",
        "faster_rcnn",
        "rcnn",
    ),
    Method(
        "libra",
        "Libra R-CNN (sampler + BFP + balanced L1)",
        "BCCD/libra_faster_rcnn_effnetlite0_FPN.yaml",
        "faster_rcnn",
        "rcnn",
    ),
    Method(
        "cascade",
        "Cascade R-CNN, random sampling",
        "BCCD/cascade_rcnn_effnetlite0_FPN.yaml",
        None,
        "rcnn",
    ),
    Method(
        "cascade_iou_balanced",
        "Cascade R-CNN + IoU-balanced sampling",
        "BCCD/cascade_rcnn_effnetlite0_FPN_iou_balanced.yaml",
        "cascade",
        "rcnn",
    ),
    Method(
        "cascade_ohem",
        "Cascade R-CNN + OHEM (paper)",
        "BCCD/cascade_rcnn_effnetlite0_FPN_ohem.yaml",
        "cascade",
        "rcnn",
    ),
)


def _pretrained_regime(**fields):
    """A regime of the ImageNet-pretrained EfficientNet-Lite0-FPN detectors: their families,
    3 seeds, an evaluation every 100 iterations, the --quick pair and the time estimate are
    those of every such regime; ``fields`` give the rest. Each trains its schedule's own
    length by default (no rescaling)."""
    return Regime(
        iters=fields["schedule"].iters,
        families={
            "rcnn": "Faster R-CNN (EfficientNet-Lite0-FPN, pretrained)",
            "retinanet": "RetinaNet / ATSS (EfficientNet-Lite0-FPN, pretrained)",
        },
        eval_period=100,
        seeds=3,
        quick_methods=("faster_rcnn", "atss"),
        estimate=PRETRAINED_ESTIMATE,
        **fields,
    )


BCCD = _pretrained_regime(
    name="bccd",
    title="BCCD, ImageNet-pretrained EfficientNet-Lite0-FPN",
    short="BCCD, pretrained",
    summary="EfficientNet-Lite0-FPN, ImageNet-pretrained (configs/BCCD/)",
    data="BCCD: 205 train / 87 val microscope images, 3 classes",
    accuracy_title="Accuracy on BCCD",
    intro=(
        "Real images and a pretrained backbone: BCCD (blood-smear microscope images, Pascal VOC "
        "layout, classes RBC / WBC / Platelets, strongly imbalanced, crowded), trained on "
        "`bccd_train` and evaluated with COCO AP on `bccd_val`, by ImageNet-pretrained "
        "EfficientNet-Lite0-FPN detectors (configs/BCCD/, [efficientnet_lite.md]"
        "(efficientnet_lite.md)), each config's own schedule.",
    ),
    methods=_methods("BCCD", *EFFNETLITE0_NAMES),
    schedule=BCCD_SCHEDULE,
    family_schedules={"retinanet": LONG_SCHEDULE},
    train_dataset="bccd_train",
    test_dataset="bccd_val",
    test_images=87,
    # --quick: a split of the first 16 train / 8 val images (the suite writes its list into a
    # folder that links to BCCD's images and annotations).
    quick_train="bccd_quick_train",
    quick_test="bccd_quick_val",
    json_name="benchmarks_bccd.json",
    image_prefix="benchmarks_bccd_",
    voc_dir=BCCD_DIR,
    controls=BCCD_CONTROLS,
    extra_methods=BCCD_EXTRA_METHODS,
    needs=(BCCD_DIR / "ImageSets" / "Main" / "train.txt", BCCD_DIR / "Annotations"),
)

SYNTHETIC_PRETRAINED = _pretrained_regime(
    name="synthetic-pretrained",
    title="Synthetic dataset, ImageNet-pretrained EfficientNet-Lite0-FPN",
    short="synthetic, pretrained",
    summary="EfficientNet-Lite0-FPN, ImageNet-pretrained (configs/Synthetic/*_effnetlite0_FPN*)",
    data="synthetic: 1000 train / 200 val images, 5 classes",
    accuracy_title="Accuracy on the synthetic dataset",
    intro=(
        "The BCCD regime's detectors (same backbone, pretrained) on the built-in synthetic "
        "dataset (`synthetic_train` / `synthetic_val`, 5 classes, the synthetic configs' image "
        "sizes) on a schedule twice as long, 1200 iterations for every detector (at 600 the "
        "pretrained Faster R-CNN's AP still rose 3-9 points per evaluation, RetinaNet's 4-12, "
        "`configs/Base-Synthetic-{RCNN,RetinaNet}-EffLite0.yaml`): separates what the "
        "pretrained backbone changes from what the data changes, against the from-scratch "
        "regime below.",
    ),
    methods=_methods("Synthetic", *EFFNETLITE0_NAMES),
    schedule=LONG_SCHEDULE,
    train_dataset="synthetic_train",
    test_dataset="synthetic_val",
    test_images=200,
    quick_train="synthetic_mini_train",
    quick_test="synthetic_mini_val",
    json_name="benchmarks_synthetic_pretrained.json",
    image_prefix="benchmarks_synthetic_pretrained_",
)

# Controls (opt-in, --controls): runs that answer "why" when a method does not beat its
# baseline. Not methods: each changes one setting of a suite config and is compared with the
# suite run named by "compare" at the same seed(s). The synthetic-scratch ones (their results
# are in the committed docs/benchmarks.json); the BCCD ones are above.
CONTROLS = (
    dict(
        key="faster_rcnn_64",
        label="Faster R-CNN, random sampling, 64 RoIs / image",
        config="Synthetic/faster_rcnn_tiny_FPN_demo.yaml",
        opts=["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64],
        compare="ohem",
        question="Is OHEM (paper) behind because it trains on 64 RoIs per image, not 128? The "
        "paper's own comparison: random sampling and OHEM both at B/N = 64.",
    ),
    dict(
        _RETINANET_GN,
        config="Synthetic/retinanet_tiny_FPN.yaml",
        compare="retinanet",
        question="How much of the ATSS detector's lead is its GroupNorm head rather than its "
        "assignment? Detectron2's RetinaNet head has no normalisation.",
    ),
)

# The from-scratch budget: 21 synthetic runs (7 configs x 3 seeds) had to finish, with their
# evaluations, the coco_tiny rows and the speed scripts, within 2 hours on 2 CPU cores. Measured
# with 2 runs at a time, 1 thread each: ~1.2 s / iteration for the Faster R-CNN configs, ~0.8 s
# for RetinaNet / ATSS, ~15-20 s per evaluation of synthetic_val. 600 iterations would take
# ~3 h; 400 iterations (schedule rescaled: warm-up 67, decays at 320 and 373) with evaluations
# every 100 fit in ~1 h 45 min.
SUITE_ITERS, SUITE_JOBS = 400, 2

SYNTHETIC_SCRATCH = Regime(
    name="synthetic-scratch",
    title="Synthetic dataset, TinyNet-FPN from scratch",
    short="synthetic, from scratch",
    summary="TinyNet-FPN, from scratch (configs/Synthetic/*_tiny_FPN*)",
    data="synthetic: 1000 train / 200 val images, 5 classes",
    accuracy_title="Accuracy on the synthetic dataset",
    intro=(
        "The suite's first regime: TinyNet-FPN detectors trained from random weights, 400 "
        "iterations (the configs' 600-iteration schedule rescaled to fit 2 hours), with the "
        "opt-in control runs, one coco_tiny row per method and the per-component speed "
        "scripts.",
    ),
    methods=_methods(
        "Synthetic",
        "faster_rcnn_tiny_FPN_demo",
        "faster_rcnn_tiny_FPN",
        "retinanet_tiny_FPN",
        "atss_tiny_FPN",
    ),
    families={"rcnn": "Faster R-CNN (TinyNet-FPN)", "retinanet": "RetinaNet / ATSS (TinyNet-FPN)"},
    schedule=Schedule(600, 100, (480, 560)),
    iters=SUITE_ITERS,
    eval_period=100,
    seeds=3,
    train_dataset="synthetic_train",
    test_dataset="synthetic_val",
    test_images=200,
    quick_train="synthetic_mini_train",
    quick_test="synthetic_mini_val",
    quick_methods=(
        "faster_rcnn",
        "ohem",
        "ohem_mmdet",
        "iou_balanced",
        "retinanet",
        "retinanet_atss",
        "atss",
    ),
    json_name="benchmarks.json",
    image_prefix="benchmarks_",
    estimate=Estimate(
        s_per_iter=(0.8, 1.2),
        eval_s_per_image=0.08,
        eval_overhead_s=3.0,
        startup_s=20.0,
        note="0.8-1.2 s per training iteration (RetinaNet / Faster R-CNN, measured), "
        "15-20 s per evaluation of the 200 test images",
    ),
    controls=CONTROLS,
    coco_tiny=True,
    speed_benches=True,
)

# Report order: BCCD first (the default), the from-scratch regime last.
REGIMES = {r.name: r for r in (BCCD, SYNTHETIC_PRETRAINED, SYNTHETIC_SCRATCH)}
DEFAULT_REGIME = "bccd"


def iters_in_words(iters_by_family, titles, default):
    """
    Iterations per run in words: "600" when every family trains the same number (``default``
    when there is no family), else "600 (Faster R-CNN) or 1200 (RetinaNet / ATSS)", families
    with the same number together, each named by ``titles`` (family -> title) or its key.
    """
    per = {}
    for fam, n in iters_by_family.items():
        per.setdefault(n, []).append(titles.get(fam, fam))
    if len(per) <= 1:
        return f"{next(iter(per), default)}"
    return " or ".join(f"{n} ({', '.join(t)})" for n, t in per.items())


def schedule_opts(schedule, iters, quick):
    """Overrides for an ``iters``-iteration schedule of the same shape as the configs'."""
    if quick:
        return ["SOLVER.MAX_ITER", iters, "SOLVER.WARMUP_ITERS", 0, "SOLVER.STEPS", "()"]
    if iters == schedule.iters:
        return []  # the configs' own schedule, untouched
    scale = iters / schedule.iters
    steps = tuple(max(1, round(s * scale)) for s in schedule.steps)
    return [
        "SOLVER.MAX_ITER",
        iters,
        "SOLVER.WARMUP_ITERS",
        max(0, round(schedule.warmup * scale)),
        "SOLVER.STEPS",
        "(" + ",".join(map(str, steps)) + ",)",
    ]


def num_evaluations(iters, eval_period):
    """Periodic evaluations of a run (the one at the last iteration is the final one)."""
    if not eval_period:
        return 1
    return max(1, math.ceil(iters / eval_period))


def estimate_s(regime, iters=None, seeds=None, jobs=SUITE_JOBS, families=None):
    """
    Expected wall time of a regime's training runs, (low, high) seconds: every run's training
    iterations, evaluations and start-up (``regime.estimate``), summed and divided by the runs
    at a time.

    Args:
        iters (int): iterations of every run; default: each config's family's
            (``regime.iters_of``).
        seeds (int): runs per config; default: the regime's.
        families (list[str]): the family of each config; default: the regime's methods'.
    """
    families = [m.family for m in regime.methods] if families is None else families
    seeds = regime.seeds if seeds is None else seeds
    est = regime.estimate
    per_eval = regime.test_images * est.eval_s_per_image + est.eval_overhead_s
    out = [0.0 for _ in est.s_per_iter]
    for fam in families:
        n = regime.iters_of(fam) if iters is None else iters
        fixed = num_evaluations(n, regime.eval_period) * per_eval + est.startup_s
        for i, s in enumerate(est.s_per_iter):
            out[i] += seeds * (n * s + fixed) / jobs
    return tuple(out)
