"""The README's example script runs and prints probabilities."""
import os
import re
import subprocess
import sys

import numpy as np

from tiny_checkpoint import write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_runs_on_a_local_checkpoint(tmp_path):
    ckpt = str(tmp_path / "tiny.ckpt")
    write_tiny_checkpoint(ckpt, kind="resnet")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--model", ckpt,
                             "--device", "CPU", "--mode", "0"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"Label probs: \[\[([^\]]+)\]\]", result.stdout)
    assert match, result.stdout
    probs = np.array([float(v) for v in match.group(1).split()])
    assert probs.shape == (3,) and abs(probs.sum() - 1) < 1e-5 and (probs > 0).all()
    assert "features: (1, 32) (3, 32)" in result.stdout
