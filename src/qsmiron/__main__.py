import sys

from qsmiron.cli import main

sys.exit(main())
