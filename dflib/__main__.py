"""``python -m dflib``: the same command line as ``dflib``."""

import sys

from .cli import main

sys.exit(main())
