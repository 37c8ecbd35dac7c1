"""Each pooling mode trains on the built-in dataset to at least 0.80 mAP (the README's table).

Minutes per mode on a 2-core CPU, so marked slow: ./make.sh test -m slow
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pool", "align", "crop", "deform"])
def test_pooling_mode_reaches_080_map(mode, tmp_path):
    common = ["--dataset", "shapes", "--net", "tiny", "--data_dir", str(ROOT / "data")]
    train = subprocess.run(
        [
            sys.executable,
            "trainval_net.py",
            *common,
            "--bs",
            "4",
            "--nw",
            "1",
            "--o",
            "adam",
            "--lr",
            "0.001",
            "--epochs",
            "4",
            "--lr_decay_step",
            "3",
            "--save_dir",
            str(tmp_path),
            "--set",
            "POOLING_MODE",
            mode,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    test = subprocess.run(
        [sys.executable, "test_net.py", *common, "--load_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stderr[-2000:]
    mean_ap = float(re.search(r"^Mean AP = ([0-9.]+)$", test.stdout, re.M).group(1))
    print(f"{mode}: Mean AP = {mean_ap:.4f}")
    assert mean_ap >= 0.80
