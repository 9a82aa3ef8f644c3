import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py, cli.py, videos.py, official.py

# one thread per pytest-xdist worker (the suite runs in 2 workers: pyproject's addopts), two alone
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """The demo dataset, tiny: 12 classes in the SSv2 format (2 train / 1 val clip per class, 2
    test clips) and the Kinetics format (2 / 1 per class), 64x80 frames. Shared by the
    command-line tests."""
    from videoattn.data.synthetic import write_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(
        root,
        train_per_class=2,
        val_per_class=1,
        test_clips=2,
        kinetics_train_per_class=2,
        kinetics_val_per_class=1,
        size=(64, 80),
        formats=("ssv2", "kinetics"),
        workers=1,
    )
    return root
