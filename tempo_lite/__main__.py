"""`python -m tempo_lite` is the `tempo-lite` command."""

import sys

from tempo_lite.cli import main

sys.exit(main())
