"""``python -m crossent`` is the ``crossent`` command."""

import sys

from crossent.cli import main

sys.exit(main())
