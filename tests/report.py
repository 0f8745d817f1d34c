"""Numbers the tests measure, printed in pytest's terminal summary (see conftest.py)."""

#: (section title, line) pairs, in the order the tests ran
lines = []


def record(section, line):
    lines.append((section, line))
