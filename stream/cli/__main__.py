"""``python -m stream.cli``: the ``fraudstream`` command."""

import sys

from stream.cli import main

sys.exit(main())
