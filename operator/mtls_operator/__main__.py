import sys

from mtls_operator.cli import main

sys.exit(main())
