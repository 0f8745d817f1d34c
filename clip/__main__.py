"""``python -m clip ...``: the command line of :mod:`clip.cli`."""
import sys

from .cli import main

__all__ = []

if __name__ == "__main__":
    sys.exit(main())
