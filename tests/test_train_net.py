"""train_net.py end to end: both config systems, overrides, eval, 2 workers, resume, errors."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import d2_sampling  # noqa: F401
from d2_sampling.data import generate_synthetic_dataset, synthetic_paths
from d2_sampling.engine import atomic_write
from d2_sampling.engine.setup import is_lazy_config, load_lazy_config, load_yacs_config

from helpers import (
    COCO_TINY,
    CONFIGS,
    REPO,
    assert_workers_agree,
    coco_tiny_available,
    read_metrics,
    run_train_net,
    seeded,
)

QUICK_YAML = CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.yaml"
QUICK_PY = CONFIGS / "quick_schedules" / "retinanet_tiny_FPN_instant_test.py"


def _eval_results(stdout):
    """The AP row printed by print_csv_format (``copypaste: a,b,c...``), as floats."""
    rows = [line.split("copypaste: ")[1] for line in stdout.splitlines() if "copypaste: " in line]
    return [float(x) for x in rows[-1].split(",")]


@pytest.mark.slow
def test_yacs_train_and_eval_with_override(tmp_path):
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "SOLVER.MAX_ITER",
        3,
        "SOLVER.BASE_LR",
        0.0123,
        "OUTPUT_DIR",
        tmp_path,
    )
    metrics = [m for m in read_metrics(tmp_path) if "lr" in m]
    assert metrics[-1]["iteration"] == 2  # MAX_ITER 3 took effect (the yaml says 4)
    assert metrics[-1]["lr"] == pytest.approx(0.0123)
    assert (tmp_path / "model_final.pth").is_file()
    assert len(_eval_results(proc.stdout)) == 6  # AP, AP50, AP75, APs, APm, APl
    assert (tmp_path / "inference" / "synthetic_mini_val" / "coco_instances_results.json").is_file()
    assert list(tmp_path.glob("events.out.tfevents.*")), "TensorBoard events"
    assert "eta:" in proc.stdout


@pytest.mark.slow
def test_lazy_train_and_eval_with_override(tmp_path):
    proc = run_train_net(
        "--config-file",
        QUICK_PY,
        "train.max_iter=3",
        "optimizer.lr=0.0077",
        f"train.output_dir={tmp_path}",
    )
    metrics = [m for m in read_metrics(tmp_path) if "lr" in m]
    assert metrics[-1]["iteration"] == 2
    assert metrics[-1]["lr"] == pytest.approx(0.0077)
    assert (tmp_path / "model_final.pth").is_file()
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in proc.stdout


@pytest.mark.slow
def test_eval_only(tmp_path):
    run_train_net(
        "--config-file",
        QUICK_YAML,
        "SOLVER.MAX_ITER",
        2,
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        tmp_path / "a",
    )
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "--eval-only",
        "MODEL.WEIGHTS",
        tmp_path / "a" / "model_final.pth",
        "OUTPUT_DIR",
        tmp_path / "b",
    )
    assert len(_eval_results(proc.stdout)) == 6
    assert not list((tmp_path / "b").glob("*.pth"))


@pytest.mark.slow
def test_two_process_cpu_training(tmp_path):
    """2 gloo workers with real DDP: identical final weights, every val image evaluated once."""
    run_train_net(
        "--config-file", QUICK_YAML, "--num-gpus", 2, "--check-weight-sync", "OUTPUT_DIR", tmp_path
    )
    assert_workers_agree(tmp_path)
    preds = torch.load(tmp_path / "inference" / "synthetic_mini_val" / "instances_predictions.pth")
    ids = [p["image_id"] for p in preds]
    json_file, _ = synthetic_paths("synthetic_mini_val")
    expected = sorted(i["id"] for i in json.loads(Path(json_file).read_text())["images"])
    assert sorted(ids) == expected  # each image exactly once
    log = (tmp_path / "log.txt").read_text()
    assert "World size: 2" in log


@pytest.mark.slow
def test_torchrun_launch(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
            str(REPO / "train_net.py"),
            "--check-weight-sync",
            *seeded(
                ["--config-file", QUICK_PY, "train.max_iter=2", f"train.output_dir={tmp_path}"]
            ),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    digest = json.loads((tmp_path / "weights_digest.json").read_text())
    assert digest["world_size"] == 2 and len(set(digest["digests"])) == 1


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    """Kill -9 mid-training, then --resume continues from the last complete checkpoint."""
    args = [
        "--config-file",
        QUICK_YAML,
        "SOLVER.MAX_ITER",
        400,
        "SOLVER.CHECKPOINT_PERIOD",
        3,
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        tmp_path,
        "SEED",
        0,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train_net.py"), *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "last_checkpoint"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if last.is_file() and last.read_text() >= "model_0000008.pth":
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint written in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    name = last.read_text()
    ckpt = torch.load(tmp_path / name, map_location="cpu")  # complete, loadable
    killed_at = ckpt["iteration"]
    assert killed_at >= 8
    for p in tmp_path.glob("model_*.pth"):  # never a half-written checkpoint under its name
        torch.load(p, map_location="cpu")

    run_train_net("--resume", *args[:3], killed_at + 4, *args[4:])
    its = [m["iteration"] for m in read_metrics(tmp_path) if "total_loss" in m]
    assert its[-1] == killed_at + 3
    log = (tmp_path / "log.txt").read_text()
    assert f"Starting training from iteration {killed_at + 1}" in log
    assert (tmp_path / "model_final.pth").is_file()


def test_atomic_write_never_leaves_half_a_file(tmp_path):
    target = tmp_path / "model.pth"
    target.write_bytes(b"old complete checkpoint")

    def crash(f):
        f.write(b"half of a new one")
        raise KeyboardInterrupt  # as if the job were stopped mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(target), crash)
    assert target.read_bytes() == b"old complete checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]
    atomic_write(str(target), lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"


@pytest.mark.slow
@pytest.mark.parametrize("config", [QUICK_YAML, QUICK_PY], ids=["yacs", "lazy"])
def test_resume_with_nothing_to_resume(tmp_path, config):
    out = ["OUTPUT_DIR", tmp_path] if config.suffix == ".yaml" else [f"train.output_dir={tmp_path}"]
    proc = run_train_net("--config-file", config, "--resume", *out, check=False)
    assert proc.returncode != 0
    assert "nothing to resume" in proc.stdout and str(tmp_path) in proc.stdout


def test_unknown_config_keys():
    with pytest.raises(KeyError, match="MODEL.NO_SUCH_KEY"):
        load_yacs_config(str(QUICK_YAML), ["MODEL.NO_SUCH_KEY", "1"])
    with pytest.raises(KeyError, match="train.no_such_key"):
        load_lazy_config(str(QUICK_PY), ["train.no_such_key=1"])
    cfg = load_lazy_config(str(QUICK_PY), ["+train.new_key=1"])  # explicit addition is allowed
    assert cfg.train.new_key == 1
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_yacs_config("configs/missing.yaml", [])
    with pytest.raises(ValueError, match="config.txt"):
        is_lazy_config("config.txt")


@pytest.mark.slow
def test_cli_errors_name_the_bad_thing(tmp_path):
    proc = run_train_net("--config-file", QUICK_YAML, "MODEL.NO_SUCH_KEY", 1, check=False)
    assert proc.returncode != 0 and "Non-existent config key: MODEL.NO_SUCH_KEY" in proc.stdout
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "--coco-dataset",
        "mine",
        tmp_path / "missing.json",
        tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "missing.json" in proc.stdout
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "DATASETS.TRAIN",
        "('not_registered',)",
        "OUTPUT_DIR",
        tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "not_registered" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not coco_tiny_available(), reason="coco_tiny not present")
def test_train_on_coco_tiny_from_command_line(tmp_path):
    """Any COCO-format dataset, registered from the command line: real images, 80 classes."""
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "--coco-dataset",
        "tiny_train",
        COCO_TINY / "annotations" / "instances_train2017.json",
        COCO_TINY / "train2017",
        "--coco-dataset",
        "tiny_val",
        COCO_TINY / "annotations" / "instances_val2017.json",
        COCO_TINY / "val2017",
        "DATASETS.TRAIN",
        "('tiny_train',)",
        "DATASETS.TEST",
        "('tiny_val',)",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        80,
        "SOLVER.MAX_ITER",
        2,
        "OUTPUT_DIR",
        tmp_path,
    )
    assert "Loaded 80 images in COCO format" in proc.stdout
    assert len(_eval_results(proc.stdout)) == 6


@pytest.mark.slow
def test_coco_format_from_yacs_config_key(tmp_path):
    """DATASETS.COCO_FORMAT registers a COCO json + image folder from the config alone."""
    json_file, image_root = synthetic_paths("synthetic_mini_val")
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "DATASETS.COCO_FORMAT",
        f"[['my_val', '{json_file}', '{image_root}']]",
        "DATASETS.TEST",
        "('my_val',)",
        "SOLVER.MAX_ITER",
        1,
        "OUTPUT_DIR",
        tmp_path,
    )
    assert (tmp_path / "inference" / "my_val" / "coco_instances_results.json").is_file()
    assert len(_eval_results(proc.stdout)) == 6


# ---------------------------------------------------------------------------------------------
# Pascal VOC-format datasets (BCCD), both evaluators, and the dataset checks before training
# ---------------------------------------------------------------------------------------------
BCCD = REPO.parent / "shared" / "data" / "bccd"
BCCD_ARGS = [
    "--voc-dataset",
    "bccd_train",
    BCCD,
    "train",
    "--voc-dataset",
    "bccd_val",
    BCCD,
    "val",
]
QUICK_RCNN_PY = CONFIGS / "quick_schedules" / "faster_rcnn_tiny_FPN_instant_test.py"


def _bccd_available():
    return (BCCD / "ImageSets" / "Main" / "train.txt").is_file()


def _final_eval(output_dir):
    return [m for m in read_metrics(output_dir) if "bbox/AP50" in m][-1]


@pytest.mark.slow
@pytest.mark.skipif(not _bccd_available(), reason="BCCD not present")
def test_voc_dataset_yacs_coco_then_voc_evaluator(tmp_path):
    """--voc-dataset from the command line: train with COCO AP, then evaluate with VOC AP."""
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        *BCCD_ARGS,
        "DATASETS.TRAIN",
        "('bccd_train',)",
        "DATASETS.TEST",
        "('bccd_val',)",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        3,
        "SOLVER.MAX_ITER",
        2,
        "OUTPUT_DIR",
        tmp_path / "coco",
    )
    assert "Dataset 'bccd_train': dropped 1 of 2805 boxes" in proc.stdout  # the zero-size RBC
    coco = _final_eval(tmp_path / "coco")
    assert {"bbox/AP", "bbox/APs", "bbox/AP-RBC", "bbox/AP-WBC", "bbox/AP-Platelets"} <= set(coco)
    assert (tmp_path / "coco" / "inference" / "bccd_val" / "bccd_val_coco_format.json").is_file()

    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "--eval-only",
        *BCCD_ARGS,
        "DATASETS.TEST",
        "('bccd_val',)",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        3,
        "MODEL.WEIGHTS",
        tmp_path / "coco" / "model_final.pth",
        "TEST.EVALUATOR",
        "voc",
        "OUTPUT_DIR",
        tmp_path / "voc",
    )
    assert "with the Pascal VOC metric" in proc.stdout
    assert "copypaste: AP,AP50,AP75\n" in proc.stdout.replace("\r", "")
    assert len(_eval_results(proc.stdout)) == 3


@pytest.mark.slow
@pytest.mark.skipif(not _bccd_available(), reason="BCCD not present")
def test_voc_dataset_yacs_config_key_and_voc_evaluator(tmp_path):
    """DATASETS.VOC_FORMAT (an override here) and TEST.EVALUATOR voc in a training run."""
    run_train_net(
        "--config-file",
        QUICK_YAML,
        "DATASETS.VOC_FORMAT",
        f"[['bccd_train', '{BCCD}', 'train'], ['bccd_test', '{BCCD}', 'test']]",
        "DATASETS.TRAIN",
        "('bccd_train',)",
        "DATASETS.TEST",
        "('bccd_test',)",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        3,
        "SOLVER.MAX_ITER",
        2,
        "TEST.EVALUATOR",
        "voc",
        "OUTPUT_DIR",
        tmp_path,
    )
    voc = _final_eval(tmp_path)
    assert {"bbox/AP", "bbox/AP75", "bbox/AP50-RBC", "bbox/AP50-WBC", "bbox/AP50-Platelets"} <= set(
        voc
    )
    assert "bbox/APs" not in voc  # not the COCO evaluator


@pytest.mark.slow
@pytest.mark.skipif(not _bccd_available(), reason="BCCD not present")
def test_voc_dataset_lazy_config_and_voc_evaluator(tmp_path):
    run_train_net(
        "--config-file",
        QUICK_RCNN_PY,
        *BCCD_ARGS,
        "dataloader.train.dataset.names=bccd_train",
        "dataloader.test.dataset.names=bccd_val",
        "model.roi_heads.num_classes=3",
        "dataloader.evaluator._target_=d2_sampling.evaluation.VOCEvaluator",
        "train.max_iter=2",
        f"train.output_dir={tmp_path}",
    )
    voc = _final_eval(tmp_path)
    assert {"bbox/AP", "bbox/AP50-RBC", "bbox/AP50-WBC", "bbox/AP50-Platelets"} <= set(voc)
    assert "bbox/APs" not in voc


@pytest.mark.slow
def test_broken_image_stops_train_net_before_training(tmp_path):
    """The dataset check runs in setup: a truncated image is named before any training."""
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2):
        cv2.imwrite(str(images / f"{i}.jpg"), np.full((32, 48, 3), 100 * i, np.uint8))
    data = (images / "2.jpg").read_bytes()
    (images / "2.jpg").write_bytes(data[: len(data) // 2])
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 48, "height": 32} for i in (1, 2)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], "area": 81}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "--coco-dataset",
        "broken_images",
        tmp_path / "ann.json",
        images,
        "DATASETS.TRAIN",
        "('broken_images',)",
        "OUTPUT_DIR",
        tmp_path / "out",
        check=False,
    )
    assert proc.returncode != 0
    assert "2.jpg: cannot be decoded" in proc.stdout and "'broken_images'" in proc.stdout
    assert "Starting training" not in proc.stdout
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "--coco-dataset",
        "broken_images",
        tmp_path / "ann.json",
        images,
        "DATASETS.TRAIN",
        "('broken_imagse',)",
        "OUTPUT_DIR",
        tmp_path / "out",
        check=False,
    )
    assert proc.returncode != 0 and "Registered COCO/VOC-format datasets: ['broken_images']" in (
        proc.stdout
    )


# ---------------------------------------------------------------------------------------------
# Your own data, safely: the class count, --eval-only weights, errors for people, plain logs
# ---------------------------------------------------------------------------------------------
QUICK_ATSS_YAML = CONFIGS / "quick_schedules" / "atss_tiny_FPN_instant_test.yaml"
USER_ERROR = "train_net.py: error: "


def _one_class_args(folder):
    """``--coco-dataset one_class ...``: synthetic_mini_train's images, every box one class."""
    json_file, image_root = synthetic_paths("synthetic_mini_train")
    generate_synthetic_dataset("synthetic_mini_train")
    data = json.loads(Path(json_file).read_text())
    data["categories"] = [{"id": 1, "name": "shape"}]
    for ann in data["annotations"]:
        ann["category_id"] = 1
    one = Path(folder) / "one_class.json"
    one.write_text(json.dumps(data))
    return ["--coco-dataset", "one_class", one, image_root, "DATASETS.TRAIN", "('one_class',)"]


def _user_error(proc):
    """The message of the one user error ``proc`` printed, after checking how it ended."""
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout, proc.stdout[-3000:]
    assert proc.stdout.count(USER_ERROR) == 1, proc.stdout[-3000:]
    assert "Starting training" not in proc.stdout
    return proc.stdout.split(USER_ERROR, 1)[1]


@pytest.mark.slow
def test_class_count_that_does_not_fit_the_data(tmp_path):
    """The config's 5 classes on a 1-class dataset: an error before training, naming the fix."""
    one = _one_class_args(tmp_path)
    out = ["OUTPUT_DIR", tmp_path / "out"]
    proc = run_train_net(
        "--config-file", QUICK_YAML, *one, "DATASETS.TEST", "()", *out, check=False
    )
    msg = _user_error(proc)
    assert "MODEL.ROI_HEADS.NUM_CLASSES is 5, but training dataset 'one_class' has 1 class" in msg
    assert "Set MODEL.ROI_HEADS.NUM_CLASSES 1" in msg
    # ATSS reads MODEL.RETINANET.NUM_CLASSES: the error names it, not the key that was set.
    proc = run_train_net(
        "--config-file",
        QUICK_ATSS_YAML,
        *one,
        "DATASETS.TEST",
        "()",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        1,
        *out,
        check=False,
    )
    msg = _user_error(proc)
    assert "MODEL.RETINANET.NUM_CLASSES is 5" in msg and "Set MODEL.RETINANET.NUM_CLASSES 1" in msg
    assert "ATSS reads MODEL.RETINANET.NUM_CLASSES" in msg
    # Right count, but evaluated on a dataset with other classes.
    proc = run_train_net(
        "--config-file", QUICK_YAML, *one, "MODEL.ROI_HEADS.NUM_CLASSES", 1, *out, check=False
    )
    msg = _user_error(proc)
    assert "Test dataset 'synthetic_mini_val' and training dataset 'one_class'" in msg
    assert not (tmp_path / "out" / "model_final.pth").exists()


@pytest.mark.slow
def test_class_count_from_data_then_eval_only_refuses_other_weights(tmp_path):
    """
    NUM_CLASSES -1 trains a 1-class model (with logs free of colour codes); evaluating it as a
    5-class one is an error, unless partial weights are allowed.
    """
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        *_one_class_args(tmp_path),
        "DATASETS.TEST",
        "()",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        -1,
        "SOLVER.MAX_ITER",
        2,
        "OUTPUT_DIR",
        tmp_path / "a",
    )
    assert "NUM_CLASSES: 1\n" in (tmp_path / "a" / "config.yaml").read_text()
    # The highlighted config dump reaches neither log.txt nor a console that is not a tty.
    log = (tmp_path / "a" / "log.txt").read_text()
    assert "Running with full config" in log and "\x1b[" not in log
    assert "Running with full config" in proc.stdout and "\x1b[" not in proc.stdout
    weights = tmp_path / "a" / "model_final.pth"
    args = ["--config-file", QUICK_YAML, "--eval-only"]
    proc = run_train_net(*args, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", tmp_path / "b", check=False)
    msg = _user_error(proc)
    assert "do not fit the model" in msg and "--allow-partial-weights" in msg
    assert "roi_heads.box_predictor.cls_score.weight: (2, 256) in the checkpoint, (6, 256)" in msg
    assert "copypaste" not in proc.stdout  # nothing evaluated
    proc = run_train_net(
        *args, "--allow-partial-weights", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", tmp_path / "b"
    )
    assert len(_eval_results(proc.stdout)) == 6
    assert "Evaluating anyway (--allow-partial-weights)" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("config", [QUICK_YAML, QUICK_PY], ids=["yacs", "lazy"])
def test_eval_only_without_weights(tmp_path, config):
    out = ["OUTPUT_DIR", tmp_path] if config.suffix == ".yaml" else [f"train.output_dir={tmp_path}"]
    proc = run_train_net("--config-file", config, "--eval-only", *out, check=False)
    msg = _user_error(proc)
    key = "MODEL.WEIGHTS" if config.suffix == ".yaml" else "train.init_checkpoint"
    assert f"no weights to evaluate ({key} is empty)" in msg


@pytest.mark.slow
def test_user_error_in_two_workers_is_printed_once(tmp_path):
    """Both workers hit the class-count error (found after the datasets load, in the workers)."""
    proc = run_train_net(
        "--config-file",
        QUICK_YAML,
        "--num-gpus",
        2,
        *_one_class_args(tmp_path),
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        tmp_path / "out",
        check=False,
    )
    assert "MODEL.ROI_HEADS.NUM_CLASSES is 5" in _user_error(proc)
    assert "Terminating process" not in proc.stdout
    # Found by the launching process before it starts workers.
    proc = run_train_net(
        "--config-file", QUICK_YAML, "--num-gpus", 2, "MODEL.NO_SUCH_KEY", 1, check=False
    )
    assert "Non-existent config key: MODEL.NO_SUCH_KEY" in _user_error(proc)


@pytest.mark.slow
def test_user_error_under_torchrun_is_printed_once(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
            str(REPO / "train_net.py"),
            "--config-file",
            str(QUICK_YAML),
            "MODEL.NO_SUCH_KEY",
            "1",
        ],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    # torchrun reports the failed workers its own way (with its own traceback) after ours.
    assert proc.stdout.count(USER_ERROR + "Non-existent config key: MODEL.NO_SUCH_KEY") == 1


@pytest.mark.slow
def test_debug_shows_the_traceback():
    proc = run_train_net(
        "--config-file", QUICK_YAML, "--debug", "MODEL.NO_SUCH_KEY", 1, check=False
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stdout and "UserError: Non-existent config key" in proc.stdout
    env = {"D2_SAMPLING_DEBUG": "1"}
    proc = run_train_net("--config-file", QUICK_YAML, "MODEL.NO_SUCH_KEY", 1, check=False, env=env)
    assert "Traceback" in proc.stdout and USER_ERROR not in proc.stdout
