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


_PAGE = os.sysconf("SC_PAGE_SIZE")
_RELEASE_ABOVE = 64 * 2 ** 20  # bytes of growth since the last release
_last_rss = [0]


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


@pytest.fixture(autouse=True)
def _release_compiled_graphs():
    """MindSpore keeps every graph compiled by ``mindspore.jit`` (and the weights it captured)
    until ``mindspore.ms_memory_recycle()``; the tests load many models, so release them after a
    test that made the process grow by 64 MB or more above its lowest size since the last release.
    (A full ``gc.collect()`` takes 0.1-0.4 s with PyTorch and MindSpore loaded; after each of ~950
    tests that was 5 minutes of CI.)"""
    yield
    now = _rss()
    if now - _last_rss[0] >= _RELEASE_ABOVE:
        gc.collect()
        mindspore.ms_memory_recycle()
        _last_rss[0] = _rss()
    else:
        _last_rss[0] = min(_last_rss[0], now)


def pytest_terminal_summary(terminalreporter):
    """Print what the parity tests measured (mean relative / absolute differences)."""
    if not report.lines:
        return
    terminalreporter.section("measured differences from OpenAI's PyTorch reference")
    for section, line in report.lines:
        terminalreporter.write_line(f"{section}: {line}")
