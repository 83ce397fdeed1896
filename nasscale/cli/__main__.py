"""``python -m nasscale.cli``."""
import sys

from nasscale.cli import main

sys.exit(main())
