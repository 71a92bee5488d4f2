"""``python -m simxray``: the same command line as ``simxray``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
