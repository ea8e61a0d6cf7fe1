"""`python -m tamenet ...`: the command line, as the `tamenet` script runs it."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
