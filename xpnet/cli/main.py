"""``xpnet`` / ``python -m xpnet``: train, eval, info. User errors end in one line on stderr."""

import argparse
import sys

from xpnet.errors import XpnetError

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def build_parser():
    from xpnet.cli import commands

    p = argparse.ArgumentParser(prog="xpnet", description="Deep learning from scratch on NumPy or CuPy.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    commands.add_train(sub)
    commands.add_eval(sub)
    commands.add_info(sub)
    return p


def main(argv=None):
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (XpnetError, ValueError, TypeError, OSError, KeyError) as e:
        if args.debug:
            raise
        print(f"xpnet: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(e):
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
