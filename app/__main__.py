"""`python -m app ...`: see app/entrypoints/cli/."""

import sys

from app.entrypoints.cli import main

if __name__ == "__main__":
    sys.exit(main())
