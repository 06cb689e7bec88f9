"""``python -m fedcredit.cli``: the ``fedcredit`` command without the installed entry point."""
import sys

from . import main

sys.exit(main())
