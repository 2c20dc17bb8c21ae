# mtasts launcher, installed as /opt/mtasts/bin/mtasts and started by /usr/bin/mtasts.
# It puts only the vendored libraries (/opt/mtasts/lib, found relative to this file)
# on sys.path: the interpreter runs with -I -S, so no site-packages or PYTHON* variables
# of the host can mix other versions in.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "lib"))

from mtasts.cli import main  # noqa: E402

sys.exit(main())
