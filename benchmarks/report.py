"""Plain-text tables for the terminal and the JSON results file."""

import json
import math
import os

import numpy as np


def fmt(value, digits=2):
    """A number for a table cell: fixed digits, thousands separators for big ones, '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{digits}f}"


def pct(share):
    """A fraction as a percentage cell ('-' for None)."""
    return "-" if share is None else f"{100 * share:.1f}%"


def table(headers, rows, title=None):
    """Render rows (lists of cells) under headers; text columns left-aligned, numbers right-aligned.

    Returns:
        str: the table, with an optional title line and a rule under the headers.
    """
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(_looks_numeric(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()

    out = [title] if title else []
    out += [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _looks_numeric(cell):
    text = cell.replace(",", "").rstrip("%x").strip()
    if text in ("-", ""):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def not_measured(unavailable):
    """One line per backend left out of a suite: ``"<name>: not measured (<why>)"``."""
    return [f"{name}: not measured ({why})" for name, why in (unavailable or {}).items()]


def shape_text(shape):
    """(N, C, H, W) as 'NxCxHxW'."""
    return "x".join(str(int(s)) for s in shape) if shape else "scalar"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, document):
    """Write ``document`` as indented JSON (NumPy scalars converted), creating the folder; returns path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(_jsonable(document), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path
