import sys

from neoevents.cli import main

sys.exit(main())
