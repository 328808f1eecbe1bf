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
                           the last checkpoint of the output folder); weights that leave part
                           of the model unloaded are an error, unless --allow-partial-weights
    --resume               continue from the output folder's last checkpoint
    --num-gpus N           N workers on this machine (gloo on CPU when there is no CUDA)
    --num-machines M --machine-rank R --dist-url tcp://HOST:PORT    multi-machine
    --coco-dataset NAME JSON IMAGE_ROOT    register a COCO-format dataset (repeatable)
    --voc-dataset NAME DIR SPLIT           register a Pascal VOC-format dataset (repeatable)
    --check-weight-sync    after training, check that every worker holds the same weights
    --debug                show the traceback of a user error (also D2_SAMPLING_DEBUG=1)

Under ``torchrun`` the workers are torchrun's (env:// initialisation); see scripts/.

A user error (a bad config key or value, a missing file, bad data, a class count that does not
fit the data, weights that do not fit the model) is printed as one message,
``train_net.py: error: <message>``, once whichever worker hit it, and the exit status is 2.
"""

import os
import sys

from detectron2.config import CfgNode, instantiate
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import d2_sampling  # noqa: F401  (registers models and datasets in every worker)
from d2_sampling.engine import Trainer, WeightSyncCheck, launch, launched_by_torchrun, setup
from d2_sampling.engine.checkpoint import load_eval_weights
from d2_sampling.engine.errors import (
    DEBUG_ENV,
    EXIT_USER_ERROR,
    debug_enabled,
    user_error_message,
    user_errors,
)
from d2_sampling.engine.launch import report_user_error
from d2_sampling.engine.lazy import do_test, do_train
from d2_sampling.engine.setup import (
    add_dataset_arguments,
    check_before_launch,
    is_lazy_config,
    output_dir,
)


def main(args):
    cfg = setup(args)
    extra_hooks = [WeightSyncCheck(output_dir(cfg))] if args.check_weight_sync else []
    if isinstance(cfg, CfgNode):
        if args.eval_only:
            model = Trainer.build_model(cfg)
            load_eval_weights(
                model,
                cfg.MODEL.WEIGHTS,
                cfg.OUTPUT_DIR,
                resume=args.resume,
                key="MODEL.WEIGHTS",
                allow_partial=args.allow_partial_weights,
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
        load_eval_weights(
            model,
            cfg.train.init_checkpoint,
            cfg.train.output_dir,
            resume=args.resume,
            key="train.init_checkpoint",
            allow_partial=args.allow_partial_weights,
        )
        return do_test(cfg, model)
    return do_train(cfg, resume=args.resume, extra_hooks=extra_hooks)


def build_parser():
    parser = default_argument_parser()
    add_dataset_arguments(parser, coco=True, voc=True)
    parser.add_argument(
        "--check-weight-sync",
        action="store_true",
        help="after training, every worker hashes its weights into OUTPUT_DIR/"
        "weights_digest.json; a mismatch between workers is an error",
    )
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="--eval-only: evaluate even if the weights leave parameters of the model unloaded "
        "or of another shape (a warning lists them; without it, an error)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a user error instead of one message (also {DEBUG_ENV}=1)",
    )
    return parser


def cli(argv=None) -> int:
    """Parse ``argv``, launch the workers; the exit status (a user error: its message, status 2)."""
    args = build_parser().parse_args(argv)
    if not args.config_file:
        raise SystemExit("train_net.py: --config-file is required")
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # inherited by the workers
    argv = sys.argv[1:] if argv is None else argv
    if args.num_machines == 1 and not any(a.startswith("--dist-url") for a in argv):
        # One machine: a free port, so concurrent jobs on one host never collide.
        args.dist_url = "auto"
    try:
        with user_errors():
            is_lazy_config(args.config_file)  # fail on a bad suffix before spawning workers
        if args.num_gpus * args.num_machines > 1 and not launched_by_torchrun():
            check_before_launch(args)
        print("Command Line Args:", args)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except Exception as e:
        message = None if debug_enabled() else user_error_message(e)
        if message is None:
            raise
        report_user_error(message)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(cli())
