"""``python -m gtom``: the same as the ``gtom`` command."""

import sys

from gtom._cli import main

sys.exit(main())
