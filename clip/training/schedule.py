"""Learning-rate schedules: plain functions of the optimisation step.

``step`` counts optimiser updates from 0 (the first update uses ``lr(0)``). During the
``warmup_steps`` first updates the rate grows linearly, ``base_lr * (step + 1) / warmup_steps``,
so that it reaches ``base_lr`` at the last warm-up step.

:func:`make_schedule` fixes the arguments and returns a one-argument function ``lr(step)`` that
:func:`describe_schedule` can turn back into a JSON-able description (stored in checkpoints).
"""
import functools
import math

__all__ = ["cosine_lr", "constant_lr", "make_schedule", "describe_schedule", "SCHEDULES"]


def _warmup(step: int, base_lr: float, warmup_steps: int) -> float:
    return base_lr * (step + 1) / warmup_steps


def cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0) -> float:
    """Linear warm-up, then a half cosine from ``base_lr`` at ``warmup_steps`` to ``final_lr`` at
    ``total_steps`` (and ``final_lr`` after that)."""
    if step < warmup_steps:
        return _warmup(step, base_lr, warmup_steps)
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 0 or step >= total_steps:
        return final_lr
    progress = (step - warmup_steps) / decay_steps  # in [0, 1)
    return final_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base_lr - final_lr)


def constant_lr(step: int, base_lr: float, warmup_steps: int = 0) -> float:
    """Linear warm-up, then ``base_lr``."""
    if step < warmup_steps:
        return _warmup(step, base_lr, warmup_steps)
    return base_lr


#: The schedules :func:`make_schedule` knows, by name.
SCHEDULES = {"cosine": cosine_lr, "constant": constant_lr}


def make_schedule(name: str = "cosine", **kwargs):
    """The schedule ``name`` with its arguments fixed: a function ``lr(step) -> float``.

    >>> lr = make_schedule("cosine", base_lr=5e-4, warmup_steps=2000, total_steps=100000)
    >>> lr(0), lr(1999), lr(100000)
    (2.5e-07, 0.0005, 0.0)
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {sorted(SCHEDULES)}")
    schedule = functools.partial(SCHEDULES[name], **kwargs)
    schedule(0)  # fails now, not at the first training step, if an argument is missing
    return schedule


def describe_schedule(schedule):
    """``{"name": ..., **arguments}`` for a schedule from :func:`make_schedule`; ``None`` for no
    schedule; ``{"name": None, "repr": ...}`` for any other callable (not reproducible from the
    description)."""
    if schedule is None:
        return None
    if isinstance(schedule, functools.partial) and not schedule.args:
        for name, function in SCHEDULES.items():
            if schedule.func is function:
                return {"name": name, **schedule.keywords}
    return {"name": None, "repr": repr(schedule)}
