"""Learning-rate schedules: callables ``step -> factor`` multiplying the optimizer's base lr.

``step`` counts the updates already taken (0 for the first).
"""

import math


class Constant:
    """factor 1 always."""

    def __call__(self, step):
        return 1.0

    def to_dict(self):
        return {"name": "constant"}


class StepDecay:
    """factor gamma ** (step // step_size)."""

    def __init__(self, step_size, gamma=0.1):
        if int(step_size) < 1:
            raise ValueError(f"StepDecay: step_size must be >= 1, got {step_size!r}")
        if not 0 < gamma <= 1:
            raise ValueError(f"StepDecay: gamma must be in (0, 1], got {gamma!r}")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def __call__(self, step):
        return self.gamma ** (step // self.step_size)

    def to_dict(self):
        return {"name": "step", "step_size": self.step_size, "gamma": self.gamma}


class Cosine:
    """Cosine decay from 1 to ``min_factor`` over ``total_steps``, then flat."""

    def __init__(self, total_steps, min_factor=0.0):
        if int(total_steps) < 1:
            raise ValueError(f"Cosine: total_steps must be >= 1, got {total_steps!r}")
        if not 0 <= min_factor <= 1:
            raise ValueError(f"Cosine: min_factor must be in [0, 1], got {min_factor!r}")
        self.total_steps, self.min_factor = int(total_steps), float(min_factor)

    def __call__(self, step):
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    def to_dict(self):
        return {"name": "cosine", "total_steps": self.total_steps, "min_factor": self.min_factor}


class Warmup:
    """Linear warm-up over ``warmup_steps`` ((step+1)/warmup_steps), then ``after`` (shifted) or 1."""

    def __init__(self, warmup_steps, after=None):
        if int(warmup_steps) < 1:
            raise ValueError(f"Warmup: warmup_steps must be >= 1, got {warmup_steps!r}")
        self.warmup_steps, self.after = int(warmup_steps), after

    def __call__(self, step):
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.after(step - self.warmup_steps) if self.after is not None else 1.0

    def to_dict(self):
        return {"name": "warmup", "warmup_steps": self.warmup_steps,
                "after": self.after.to_dict() if self.after is not None else None}
