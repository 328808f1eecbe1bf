import os
from pathlib import Path

# Generated synthetic datasets are shared by every test (and by the test workers of
# train_net.py subprocesses), in one cache folder.
os.environ.setdefault(
    "D2_SAMPLING_DATASETS", str(Path("~/.cache/d2_sampling/datasets").expanduser())
)
