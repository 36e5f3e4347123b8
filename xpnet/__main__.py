"""``python -m xpnet``."""

import sys

from xpnet.cli.main import main

sys.exit(main())
