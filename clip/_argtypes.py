"""argparse value types shared by the command lines (``clip.cli``, ``clip.training.cli``): a
malformed or out-of-range value is refused with one line naming what was expected."""
import argparse

__all__ = ["number", "positive_int", "non_negative_int", "positive_float", "non_negative_float", "fraction"]


def number(kind, above=None, at_least=None, below=None):
    """An argparse type converting with ``kind`` (``int`` or ``float``) and checking the bounds."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if above is not None and below is not None and not above < value < below:
            raise argparse.ArgumentTypeError(
                f"expected a number between {above:g} and {below:g} (exclusive), got {value}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"expected a number > {above:g}, got {value}")
        if at_least is not None and not value >= at_least:
            raise argparse.ArgumentTypeError(f"expected a number >= {at_least:g}, got {value}")
        return value
    return parse


positive_int = number(int, at_least=1)
non_negative_int = number(int, at_least=0)
positive_float = number(float, above=0)
non_negative_float = number(float, at_least=0)
fraction = number(float, above=0.0, below=1.0)
