#!/usr/bin/env bash
# Build the mtasts RPM for Enterprise Linux on this Debian machine (needs: rpm, rpmlint,
# objdump, python3 with pip; the target's real Python for byte-compiling, if present).
#
#   packaging/rpm/build.sh [el7|el8|el9] [--download-only | --offline]
#
# Step 1 downloads the locked wheels for the target Python into dist/wheels-TARGET (the
# only network use); --offline skips it and builds from what is there. The package lands
# in dist/rpm/x86_64/. The build fails on any gate: a wheel not for the target CPython
# (or abi3), a shared object needing glibc > 2.17, an unexpanded macro in a scriptlet,
# a payload other than xz, an rpmlint error not justified in mtasts.rpmlintrc.
set -euo pipefail

TARGET=${1:-el7}
MODE=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
HOSTPY=${HOSTPY:-python3}

case $TARGET in
    el7)  # CentOS 7: Software Collections' rh-python38; its libpython lives under the SCL root.
        PYVER=3.8; LOCK=lock-el7.txt
        PYTHON=/opt/rh/rh-python38/root/usr/bin/python3.8
        PYTHON_REQUIRES=rh-python38-python
        LIBRARY_PATH=/opt/rh/rh-python38/root/usr/lib64
        BUILD_PY=${BUILD_PY:-/root/.pyenv/versions/3.8.18/bin/python3.8} ;;
    el8|el9)  # EL8: the python39 module; EL9: the base python3 (3.9). Same files, other dist tag.
        PYVER=3.9; LOCK=lock-el9.txt
        PYTHON=/usr/bin/python3.9
        PYTHON_REQUIRES=/usr/bin/python3.9
        LIBRARY_PATH=
        BUILD_PY=${BUILD_PY:-$(ls -d /root/.pyenv/versions/3.9.*/bin/python3.9 2>/dev/null | tail -1)} ;;
    *) echo "usage: $0 [el7|el8|el9] [--download-only|--offline]" >&2; exit 2 ;;
esac
ABI=cp${PYVER/./}
PLATFORM=(--platform manylinux2014_x86_64 --python-version "$PYVER" --implementation cp --abi "$ABI"
          --only-binary=:all:)
WHEELS=${MTASTS_WHEELS:-$ROOT/dist/wheels-$TARGET}
OUT=${MTASTS_RPM_OUT:-$ROOT/dist/rpm}
VERSION=$(PYTHONPATH="$ROOT/src" "$HOSTPY" -c 'import mtasts; print(mtasts.__version__)')

if [ "$MODE" != "--offline" ]; then
    echo "== download: the $LOCK wheels for $ABI manylinux2014_x86_64"
    mkdir -p "$WHEELS"
    "$HOSTPY" -m pip download -q --disable-pip-version-check --no-deps "${PLATFORM[@]}" \
        -r "$HERE/$LOCK" -d "$WHEELS"
    [ "$MODE" = "--download-only" ] && exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root

echo "== gate: every vendored wheel is for $ABI (or abi3, or pure Python)"
"$HOSTPY" "$HERE/gates.py" wheels "$ABI" "$WHEELS"/*.whl
# Exactly the locked set, nothing left over from an older lock.
expected=$(grep -cE '^[A-Za-z0-9_.-]+==' "$HERE/$LOCK")
found=$(ls "$WHEELS"/*.whl | wc -l)
[ "$expected" = "$found" ] || { echo "gate: $found wheels in $WHEELS, $LOCK pins $expected" >&2; exit 1; }

echo "== stage: mtasts $VERSION and its vendored libraries under /opt/mtasts"
"$HOSTPY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --no-index --no-compile \
    --ignore-requires-python "${PLATFORM[@]}" \
    --target "$STAGE/opt/mtasts/lib" "$WHEELS"/*.whl
# mtasts itself is pure Python: its source tree is the package (no build backend needed offline).
cp -a "$ROOT/src/mtasts" "$STAGE/opt/mtasts/lib/"
find "$STAGE/opt/mtasts/lib/mtasts" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$STAGE/opt/mtasts/lib/bin"  # console scripts with this machine's shebang
# Library files are imported, never run: one mode for all (some wheels ship stray exec bits);
# shared objects keep theirs, so rpm reads their glibc needs into Requires.
find "$STAGE/opt/mtasts/lib" -type f ! -name '*.so' -exec chmod 0644 {} +
find "$STAGE/opt/mtasts/lib" -type f -name '*.so' -exec chmod 0755 {} +
if [ -x "$BUILD_PY" ]; then
    # Byte-code for the target Python, so the daemon (no write access there) need not compile.
    "$BUILD_PY" -m compileall -q -j 0 --invalidation-mode checked-hash -d /opt/mtasts/lib "$STAGE/opt/mtasts/lib"
else
    echo "warning: no Python $PYVER here (BUILD_PY): shipping without byte-code" >&2
fi
install -D -m 0644 "$HERE/launcher.py" "$STAGE/opt/mtasts/bin/mtasts"
if [ -n "$LIBRARY_PATH" ]; then
    ldpath="LD_LIBRARY_PATH=$LIBRARY_PATH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\\nexport LD_LIBRARY_PATH\\n"
else
    ldpath=""
fi
mkdir -p "$STAGE/usr/bin"
sed -e "s|@PYTHON@|$PYTHON|g" -e "s|@LIBRARY_PATH@|$ldpath|" "$HERE/mtasts.sh" > "$STAGE/usr/bin/mtasts"
chmod 0755 "$STAGE/usr/bin/mtasts"
for unit in mtasts.service mtasts.socket mtasts-publish.socket mtasts-publish.service \
            mtasts-reports-digest.service mtasts-reports-digest.timer; do
    install -D -m 0644 "$ROOT/systemd/$unit" "$STAGE/usr/lib/systemd/system/$unit"
done
for file in mtasts-alerts.yml grafana-dashboard.json; do  # Prometheus rules, Grafana dashboard
    install -D -m 0644 "$ROOT/packaging/monitoring/$file" "$STAGE/usr/share/mtasts/monitoring/$file"
done
install -d -m 0750 "$STAGE/etc/mtasts" "$STAGE/var/lib/mtasts"
# One config for every target: the daemon fits its answers to the local Postfix (postconf).
install -m 0640 "$HERE/mtasts.toml" "$STAGE/etc/mtasts/mtasts.toml"
chmod 0640 "$STAGE/etc/mtasts/mtasts.toml"

echo "== gate: no shared object needs glibc > 2.17"
find "$STAGE/opt/mtasts" -type f \( -name '*.so' -o -name '*.so.*' \) -print0 | xargs -0 -r "$HOSTPY" "$HERE/gates.py" glibc

echo "== rpmbuild"
rpmbuild -bb --quiet --target x86_64 --define "el_macros $HERE/macros.el" \
    --define "dist .$TARGET" --define "rhel ${TARGET#el}" \
    --define "_topdir $WORK/rpmbuild" --define "_builddir $ROOT" --define "_rpmdir $OUT" \
    --define "version $VERSION" --define "stage $STAGE" --define "python $PYTHON" \
    --define "python_requires $PYTHON_REQUIRES" \
    "$HERE/mtasts.spec"
PKG=$OUT/x86_64/mtasts-$VERSION-1.$TARGET.x86_64.rpm

echo "== gate: scriptlets, payload, requires"
rpm -qp --scripts "$PKG" | "$HOSTPY" "$HERE/gates.py" scriptlets
[ "$(rpm -qp --qf '%{PAYLOADCOMPRESSOR}' "$PKG")" = xz ] || { echo "gate: payload is not xz" >&2; exit 1; }
if rpm -qp --requires "$PKG" | grep -E 'GLIBC_2\.(1[89]|[2-9][0-9])'; then
    echo "gate: a requirement above glibc 2.17" >&2; exit 1
fi

echo "== gate: rpmlint"
rpmlint -r "$HERE/mtasts.rpmlintrc" "$PKG"

echo "built $PKG"
