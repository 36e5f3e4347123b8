"""Entry point: ``python -m benchmarks SUITE [options]`` (see :mod:`benchmarks.cli`), or
``python -m benchmarks device-check --out DIR`` (see :mod:`benchmarks.device_check`)."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["device-check"]:  # before the suites' imports (matplotlib): it must start anywhere
        from benchmarks.device_check import main as device_check

        sys.exit(device_check(sys.argv[2:]))
    from benchmarks.cli import main

    sys.exit(main())
