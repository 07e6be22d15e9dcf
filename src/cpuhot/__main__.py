import sys

from .early import main

sys.exit(main())
