"""``python -m nasscale`` (and ``torchrun -m nasscale``): the command line."""
import sys

from nasscale.cli import main

if __name__ == "__main__":
    sys.exit(main())
