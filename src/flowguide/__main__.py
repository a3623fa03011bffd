import sys

from flowguide.cli import main

sys.exit(main())
