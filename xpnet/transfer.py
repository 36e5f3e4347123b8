"""Transfer learning: copy parameters and buffers from one model into another by name, with a report.

Typical use, pre-trained features for a new task::

    model = DeepConvNet(output_size=5)
    report = transfer_weights(model, "runs/pretrained.npz")   # or a Model, or a state dict
    print(report)
    model.freeze("conv*")                                      # see Model.freeze
"""

import json
import os
import textwrap
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from xpnet import backends
from xpnet.models.base import Model
from xpnet.models.selection import name_matches, select_names


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did, name by name.

    Attributes:
        copied: names copied from the source into the model.
        shape_mismatch: ``(name, source shape, model shape)`` of names in both whose shapes differ (skipped).
        missing: names in the model (and selected) that the source lacks; they keep the model's values.
        unused: names in the source (and selected) that the model lacks.
        excluded: names in the model left out by ``include``/``exclude``; they keep the model's values.
    """

    copied: list = field(default_factory=list)
    shape_mismatch: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unused: list = field(default_factory=list)
    excluded: list = field(default_factory=list)

    def summary(self):
        """One line: how many arrays were copied and skipped."""
        total = len(self.copied) + len(self.shape_mismatch) + len(self.missing) + len(self.excluded)
        return (f"copied {len(self.copied)} of the model's {total} arrays; skipped {len(self.shape_mismatch)} "
                f"shape mismatch, {len(self.missing)} missing, {len(self.excluded)} excluded; "
                f"{len(self.unused)} unused in the source")

    def __str__(self):
        mismatches = [f"{n}: source {s} vs model {m}" for n, s, m in self.shape_mismatch]
        rows = [("copied", self.copied, ", "), ("shape mismatch", mismatches, "; "),
                ("missing", self.missing, ", "), ("unused", self.unused, ", "), ("excluded", self.excluded, ", ")]
        lines = [self.summary()]
        for label, items, sep in rows:
            head = f"  {label:<15}{len(items):>4}  "
            text = sep.join(items) if items else "-"
            lines.append(textwrap.fill(text, width=110, initial_indent=head, subsequent_indent=" " * len(head),
                                       break_on_hyphens=False))
        return "\n".join(lines)


def transfer_weights(model, source, include=None, exclude=None):
    """Copy parameters and buffers from ``source`` into ``model`` wherever names and shapes agree.

    Args:
        model: the xpnet Model to fill (in place).
        source: a Model, a path to a model file saved with :meth:`Model.save` (or a training
            checkpoint), or a state dict ``name -> array`` (NumPy or CuPy).
        include: pattern or list of fnmatch-style patterns; only names matching one are transferred.
            A pattern matches the full name (``"conv1.W"``, ``"*.b"``) or the layer name (``"conv*"``).
        exclude: pattern(s) of names never transferred (applied after ``include``).

    Returns:
        A :class:`TransferReport`. Entries whose shapes differ are skipped and listed, not an error.
        Values are copied (never aliased), cast to the model's dtype (BatchNorm statistics keep
        theirs) and moved to the model's device.

    Raises:
        TypeError: ``source`` is none of the accepted kinds.
        ValueError: a pattern matches no name in the model or the source, or nothing at all was copied.
        FileFormatError: ``source`` is a path to a missing or damaged file.
    """
    state = _source_state(source)
    include, exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
    kinds = OrderedDict([*((k, "params") for k in model.params), *((k, "buffers") for k in model.buffers)])
    current = {**model.params, **model.buffers}
    select_names(list(kinds) + [k for k in state if k not in kinds], include + exclude, "transfer_weights",
                 "name in the model or the source")  # raises for a pattern that matches nothing

    def selected(name):
        return (not include or name_matches(name, include)) and not name_matches(name, exclude)

    report, updates = TransferReport(), []
    for name, kind in kinds.items():
        target = current[name]
        if not selected(name):
            report.excluded.append(name)
        elif name not in state:
            report.missing.append(name)
        elif tuple(state[name].shape) != tuple(target.shape):
            report.shape_mismatch.append((name, tuple(state[name].shape), tuple(target.shape)))
        else:
            updates.append((name, kind, np.array(state[name], dtype=target.dtype)))  # np.array: always a copy
            report.copied.append(name)
    report.unused = [k for k in state if k not in kinds and selected(k)]
    if not updates:
        raise ValueError(f"transfer_weights: nothing was copied into {type(model).__name__}: no selected name "
                         f"is in both models with the same shape\n{report}")
    be = model.backend
    for name, kind, value in updates:
        model.net.set_array(name, be.asarray(value), kind)
    return report


def _patterns(value, name):
    """None, one pattern or an iterable of patterns -> a tuple of str."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise TypeError(f"transfer_weights: {name} must be a pattern or a list of patterns, "
                        f"got {type(value).__name__}") from None
    bad = [p for p in out if not isinstance(p, str)]
    if bad:
        raise TypeError(f"transfer_weights: {name} patterns must be strings, got {bad[0]!r}")
    return out


def _source_state(source):
    """The source as an ordered ``name -> NumPy array`` mapping."""
    if isinstance(source, Model):
        return source.state_dict()
    if isinstance(source, (str, os.PathLike)):
        return _file_state(source)
    if isinstance(source, Mapping):
        out = OrderedDict()
        for k, v in source.items():
            out[str(k)] = backends.of(v).asnumpy(v) if hasattr(v, "shape") else np.asarray(v)
        return out
    raise TypeError(f"transfer_weights: source must be a Model, a path to a saved model or a state dict, "
                    f"got {type(source).__name__}")


def _file_state(path):
    """Arrays of a saved model file, or the model part of a training checkpoint."""
    from xpnet import serialization
    from xpnet.training import checkpoint

    if _file_format(path) == checkpoint.FORMAT:
        return checkpoint.load_checkpoint(path)[0]
    return serialization.read_npz(path, serialization.FORMAT)[0]  # raises a FileFormatError naming the path


def _file_format(path):
    """The ``format`` in an xpnet file's metadata, or None when it cannot be read (read_npz reports why)."""
    from xpnet.serialization import META_KEY

    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            return json.loads(str(z[META_KEY])).get("format")
    except Exception:  # any unreadable file: the full reader raises the precise error
        return None
