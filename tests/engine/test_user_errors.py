"""User errors (errors.py), --eval-only weights (checkpoint.py), colour codes (logs.py)."""

import io
import logging

import pytest
import torch
from torch import nn

import d2_sampling  # noqa: F401
from d2_sampling.data import DatasetError
from d2_sampling.engine.checkpoint import load_eval_weights
from d2_sampling.engine.errors import UserError, WeightsError, user_error_message, user_errors
from d2_sampling.engine.launch import _claim
from d2_sampling.engine.logs import no_colour_unless_tty


def test_user_error_message():
    assert user_error_message(UserError("bad value")) == "bad value"
    assert user_error_message(DatasetError("2 images\n  a.jpg: missing")) == (
        "2 images\n  a.jpg: missing"
    )
    # torch's DataLoader re-raises a worker's error with the worker's traceback in the message.
    wrapped = DatasetError(
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\nDatasetError: image a.jpg cannot be read\n'
    )
    assert user_error_message(wrapped) == "DatasetError: image a.jpg cannot be read"
    assert user_error_message(RuntimeError("a bug")) is None
    assert user_error_message(KeyError("a bug outside setup")) is None


def test_user_errors_converts_what_setup_raises():
    with pytest.raises(UserError, match="^Non-existent config key: X$") as e:
        with user_errors():
            raise KeyError("Non-existent config key: X")  # str() would quote it
    assert isinstance(e.value.__cause__, KeyError)  # --debug shows the original too
    for exc in (FileNotFoundError("no such file"), ValueError("bad"), AssertionError("yacs")):
        with pytest.raises(UserError):
            with user_errors():
                raise exc
    with pytest.raises(RuntimeError):  # not a user error: keeps its type and traceback
        with user_errors():
            raise RuntimeError("bug")


def test_claim_first_one_wins(tmp_path):
    path = str(tmp_path / "message")
    assert _claim(path, "first")
    assert not _claim(path, "second")
    assert (tmp_path / "message").read_text() == "first"


class _Net(nn.Module):
    def __init__(self, classes=3, extra=False):
        super().__init__()
        self.backbone = nn.Linear(2, 4)
        self.cls_score = nn.Linear(4, classes + 1)
        if extra:
            self.head = nn.Linear(4, 4)


def _save(model, path):
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def test_eval_weights_that_fit(tmp_path):
    source = _Net()
    path = _save(source, tmp_path / "model_final.pth")
    model = _Net()
    assert load_eval_weights(model, path, str(tmp_path), resume=False, key="MODEL.WEIGHTS") == path
    assert torch.equal(model.cls_score.weight, source.cls_score.weight)


def test_eval_weights_of_another_shape_or_missing(tmp_path, caplog):
    path = _save(_Net(classes=1), tmp_path / "model_final.pth")
    with pytest.raises(WeightsError) as e:
        load_eval_weights(_Net(classes=5), path, str(tmp_path), resume=False, key="MODEL.WEIGHTS")
    msg = str(e.value)
    assert "2 with another shape" in msg
    assert "cls_score.weight: (2, 4) in the checkpoint, (6, 4) in the model" in msg
    assert "cls_score.bias: (2,) in the checkpoint, (6,) in the model" in msg
    assert "--allow-partial-weights" in msg and "backbone" not in msg

    path = _save(_Net(), tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match=r"2 not in the checkpoint \(head.\{weight, bias\}\)"):
        load_eval_weights(_Net(extra=True), path, "", resume=False, key="MODEL.WEIGHTS")
    with caplog.at_level(logging.WARNING, logger="d2_sampling.engine.checkpoint"):
        model = _Net(extra=True)
        load_eval_weights(model, path, "", resume=False, key="MODEL.WEIGHTS", allow_partial=True)
    assert "not in the checkpoint" in caplog.text and "--allow-partial-weights" in caplog.text


def test_eval_without_weights(tmp_path):
    with pytest.raises(WeightsError, match=r"no weights to evaluate \(MODEL.WEIGHTS is empty\)"):
        load_eval_weights(_Net(), "", str(tmp_path), resume=False, key="MODEL.WEIGHTS")
    with pytest.raises(WeightsError, match="Give train.init_checkpoint=path/to/model_final.pth"):
        load_eval_weights(_Net(), "", str(tmp_path), resume=False, key="train.init_checkpoint")
    with pytest.raises(WeightsError, match="missing.pth' does not exist"):
        load_eval_weights(_Net(), str(tmp_path / "missing.pth"), "", resume=False, key="W")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        load_eval_weights(_Net(), "", str(tmp_path), resume=True, key="MODEL.WEIGHTS")
    # --resume: the last checkpoint of the output folder, whatever MODEL.WEIGHTS says.
    path = _save(_Net(), tmp_path / "model_0000009.pth")
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    assert load_eval_weights(_Net(), "", str(tmp_path), resume=True, key="MODEL.WEIGHTS") == path


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_colour_codes_only_on_a_terminal():
    logger = logging.getLogger("d2s_test_colours")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    plain, tty = io.StringIO(), _FakeTTY()
    for stream in (plain, tty):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
    try:
        no_colour_unless_tty(no_colour_unless_tty(logger))  # idempotent
        logger.info("config:\n\x1b[38;5;197mMODEL\x1b[39m:\x1b[00m 1")
    finally:
        logger.handlers.clear()
    assert plain.getvalue() == "INFO config:\nMODEL: 1\n"
    assert "\x1b[38;5;197m" in tty.getvalue()
