import sys

from circuitcut.cli import main

sys.exit(main())
