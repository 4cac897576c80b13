"""`python -m app`: the same as the `folio` command."""

import sys

from app.cli import main

sys.exit(main())
