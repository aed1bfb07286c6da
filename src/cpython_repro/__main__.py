import sys

from cpython_repro.cli import main

sys.exit(main())
