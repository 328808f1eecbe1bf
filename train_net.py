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

Under ``torchrun`` the workers are torchrun's (env:// initialisation); see scripts/.
"""
import logging
import sys

import d2_sampling  # noqa: F401  (registers models and datasets in every worker)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from d2_sampling.engine import launch
from d2_sampling.engine.checkpoint import AtomicCheckpointer, resumable_checkpoint
from d2_sampling.engine.lazy import do_test as lazy_test
from d2_sampling.engine.lazy import do_train as lazy_train
from d2_sampling.engine.setup import (
    is_lazy_config,
    load_lazy_config,
    load_yacs_config,
    register_cli_datasets,
)
from d2_sampling.engine.trainer import Trainer

logger = logging.getLogger("d2_sampling")


def main_yacs(args):
    cfg = load_yacs_config(args.config_file, args.opts)
    if args.resume:
        resumable_checkpoint(cfg.OUTPUT_DIR)  # fail now, not after building everything
    default_setup(cfg, args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        path = checkpointer.resumable_checkpoint() if args.resume else cfg.MODEL.WEIGHTS
        checkpointer.resume_or_load(path, resume=False)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def main_lazy(args):
    cfg = load_lazy_config(args.config_file, args.opts)
    if args.resume:
        resumable_checkpoint(cfg.train.output_dir)
    default_setup(cfg, args)
    if args.eval_only:
        from detectron2.config import instantiate

        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        checkpointer = AtomicCheckpointer(model, save_dir=cfg.train.output_dir)
        path = checkpointer.resumable_checkpoint() if args.resume else cfg.train.init_checkpoint
        DetectionCheckpointer(model).load(path)
        return lazy_test(cfg, model)
    return lazy_train(cfg, resume=args.resume)


def main(args):
    register_cli_datasets(args.coco_dataset or [])
    if is_lazy_config(args.config_file):
        return main_lazy(args)
    return main_yacs(args)


def build_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--coco-dataset",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable)",
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
