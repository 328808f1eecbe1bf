#!/usr/bin/env python
"""
d2_sampling's training / evaluation entry point.

The config system is chosen by the file's suffix:

    # yacs: KEY VALUE overrides
    python train_net.py --config-file configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml \\
        SOLVER.MAX_ITER 100 OUTPUT_DIR output/x
    # LazyConfig: key=value overrides
    python train_net.py --config-file configs/Synthetic/faster_rcnn_tiny_FPN_demo.py \\
        train.max_iter=100 train.output_dir=output/x

    --eval-only            evaluate MODEL.WEIGHTS / train.init_checkpoint (or, with --resume,
                           the last checkpoint of the output folder)
    --resume               continue from the output folder's last checkpoint
    --num-gpus N           N workers on this machine (gloo on CPU when there is no CUDA)
    --num-machines M --machine-rank R --dist-url tcp://HOST:PORT    multi-machine
    --coco-dataset NAME JSON IMAGE_ROOT    register a COCO-format dataset (repeatable)
    --voc-dataset NAME DIR SPLIT           register a Pascal VOC-format dataset (repeatable)
    --check-weight-sync    after training, check that every worker holds the same weights

Under ``torchrun`` the workers are torchrun's (env:// initialisation); see scripts/.
"""

import sys

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, instantiate
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import d2_sampling  # noqa: F401  (registers models and datasets in every worker)
from d2_sampling.engine import Trainer, WeightSyncCheck, launch, setup
from d2_sampling.engine.lazy import do_test, do_train
from d2_sampling.engine.setup import is_lazy_config, output_dir


def main(args):
    cfg = setup(args)
    extra_hooks = [WeightSyncCheck(output_dir(cfg))] if args.check_weight_sync else []
    if isinstance(cfg, CfgNode):
        if args.eval_only:
            model = Trainer.build_model(cfg)
            DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
                cfg.MODEL.WEIGHTS, resume=args.resume
            )
            res = Trainer.test(cfg, model)
            if comm.is_main_process():
                verify_results(cfg, res)
            return res
        trainer = Trainer(cfg)
        trainer.register_hooks(extra_hooks)
        trainer.resume_or_load(resume=args.resume)
        return trainer.train()

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        DetectionCheckpointer(model, save_dir=cfg.train.output_dir).resume_or_load(
            cfg.train.init_checkpoint, resume=args.resume
        )
        return do_test(cfg, model)
    return do_train(cfg, resume=args.resume, extra_hooks=extra_hooks)


def build_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--coco-dataset",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable)",
    )
    parser.add_argument(
        "--voc-dataset",
        nargs=3,
        action="append",
        metavar=("NAME", "DIR", "SPLIT"),
        help="register split SPLIT (DIR/ImageSets/Main/SPLIT.txt) of the Pascal VOC-format "
        "folder DIR under NAME (repeatable); classes from DIR/classes.txt, else the sorted names "
        "in DIR/Annotations (docs/datasets.md)",
    )
    parser.add_argument(
        "--check-weight-sync",
        action="store_true",
        help="after training, every worker hashes its weights into OUTPUT_DIR/"
        "weights_digest.json; a mismatch between workers is an error",
    )
    return parser


def cli(argv=None):
    args = build_parser().parse_args(argv)
    if not args.config_file:
        raise SystemExit("train_net.py: --config-file is required")
    is_lazy_config(args.config_file)  # fail on a bad suffix before spawning workers
    argv = sys.argv[1:] if argv is None else argv
    if args.num_machines == 1 and not any(a.startswith("--dist-url") for a in argv):
        # One machine: a free port, so concurrent jobs on one host never collide.
        args.dist_url = "auto"
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    sys.exit(cli())
