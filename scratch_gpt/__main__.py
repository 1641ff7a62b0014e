"""``python -m scratch_gpt`` runs the ``scratch-gpt`` command line."""

import sys

from scratch_gpt.cli import main

sys.exit(main())
