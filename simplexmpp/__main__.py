"""`python -m simplexmpp`: the command line (see `simplexmpp.cli`)."""

import sys

from .cli import main

sys.exit(main())
