"""``python -m msmae`` (used by ``torchrun -m msmae ...``)."""
import sys

from msmae.cli import main

sys.exit(main())
