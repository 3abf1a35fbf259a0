"""``python -m app`` runs the ``tandem`` command."""

import sys

from app.cli import main

sys.exit(main())
