#!/bin/sh
# /usr/bin/mtasts: run mtasts with @PYTHON@ and only the libraries vendored in
# /opt/mtasts (-I: no PYTHON* variables, no user site; -S: no site-packages).
@LIBRARY_PATH@exec @PYTHON@ -I -S /opt/mtasts/bin/mtasts "$@"
