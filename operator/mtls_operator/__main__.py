import sys

from mtls_operator.cli.main import main

sys.exit(main())
