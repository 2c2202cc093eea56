"""``python -m keras_trainkit_cli`` runs the ``trainkit`` console script."""

import sys

from keras_trainkit_cli import main

sys.exit(main())
