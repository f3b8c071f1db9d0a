"""`python -m minibnn ...` runs the command line (see minibnn/cli.py)."""

import sys

from .cli import main

sys.exit(main())
