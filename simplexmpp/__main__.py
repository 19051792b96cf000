"""``python -m simplexmpp``: the command line (see :mod:`simplexmpp.cli`)."""

import sys

from .cli import main

sys.exit(main())
