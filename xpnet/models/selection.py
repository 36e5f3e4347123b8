"""Picking parameters by name pattern, and accuracy over batches: shared by Model, transfer and Ensemble."""

from fnmatch import fnmatchcase

from xpnet.errors import ShapeError


def name_matches(name, patterns):
    """True when ``name`` or one of its layer prefixes matches a pattern (fnmatch, case-sensitive).

    Args:
        name: a parameter or buffer name such as ``"conv1.W"`` (or ``"block1.body.conv.W"`` in nested
            blocks, whose prefixes ``"block1"`` and ``"block1.body"`` are tried too).
        patterns: one pattern (``"conv*"``, ``"fc2"``, ``"*.b"``) or an iterable of them.
    """
    if isinstance(patterns, str):
        patterns = (patterns,)
    parts = name.split(".")
    candidates = [name, *(".".join(parts[:i]) for i in range(1, len(parts)))]
    return any(fnmatchcase(c, p) for p in patterns for c in candidates)


def select_names(names, patterns, owner, what="name", listing="layers"):
    """The names matching any of ``patterns`` (see :func:`name_matches`).

    Raises:
        ValueError: a pattern matches none of ``names``; the message starts with ``owner`` and lists the
            layers (the first part of each name).
    """
    names, selected = list(names), set()
    for pattern in patterns:
        hits = {n for n in names if name_matches(n, pattern)}
        if not hits:
            layers = ", ".join(dict.fromkeys(n.split(".", 1)[0] for n in names))
            raise ValueError(f"{owner}: pattern {pattern!r} matches no {what}; {listing}: {layers}")
        selected |= hits
    return selected


def batched_accuracy(predict, be, x, t, batch_size):
    """Fraction of ``x`` whose ``predict(batch).argmax(axis=1)`` is ``t`` (indices or one-hot).

    The count stays on the device of ``be`` until the end (one host read). Used by Model and Ensemble.
    """
    if len(x) != len(t):
        raise ShapeError(f"accuracy: {len(x)} inputs but {len(t)} labels")
    if int(batch_size) < 1:
        raise ValueError(f"accuracy: batch_size must be >= 1, got {batch_size!r}")
    if len(x) == 0:
        raise ShapeError("accuracy: empty input")
    correct = 0
    for i in range(0, len(x), batch_size):
        y = predict(x[i : i + batch_size]).argmax(axis=1)
        tt = t[i : i + batch_size]
        tt = tt.argmax(axis=1) if tt.ndim != 1 else tt
        correct = correct + (y == be.asarray(tt)).sum()
    return float(be.xp.asarray(correct)) / len(x)
