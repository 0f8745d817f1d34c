import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reference  # noqa: E402


def pytest_configure(config):
    # the parity tests need OpenAI's code; its absence is an error, never a skip
    reference.reference_dir()
