import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reference  # noqa: E402
import report  # noqa: E402


def pytest_configure(config):
    # the parity tests need OpenAI's code; its absence is an error, never a skip
    reference.reference_dir()


import gc  # noqa: E402

import mindspore  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _release_compiled_graphs():
    """MindSpore keeps every graph compiled by ``mindspore.jit`` (and the weights it captured)
    until ``mindspore.ms_memory_recycle()``; the tests load many models, so release them."""
    yield
    gc.collect()
    mindspore.ms_memory_recycle()


def pytest_terminal_summary(terminalreporter):
    """Print what the parity tests measured (mean relative / absolute differences)."""
    if not report.lines:
        return
    terminalreporter.section("measured differences from OpenAI's PyTorch reference")
    for section, line in report.lines:
        terminalreporter.write_line(f"{section}: {line}")
