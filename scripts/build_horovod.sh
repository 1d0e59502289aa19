#!/usr/bin/env bash
# Builds Horovod 0.28.1 (its last release) against the TensorFlow installed in the current Python environment, with
# MPI, and installs it there. Used by .ci/run and container/Dockerfile.
#
#   bash scripts/build_horovod.sh            # MPICH + mpi4py + cmake from PyPI (gives `mpiexec`; no system MPI needed)
#   HOROVOD_MPI=system bash scripts/build_horovod.sh   # use the MPI already on PATH (e.g. OpenMPI in a container)
#
# Why a script: Horovod 0.28.1's sdist does not build against TensorFlow 2.21 as released. Its
# horovod/tensorflow/CMakeLists.txt compiles xla_mpi_ops.cc, which includes
# tensorflow/compiler/xla/client/xla_builder.h, a header TensorFlow no longer ships. Dropping that one source (the
# XLA custom-call bridge, which keras-albert does not use) is the whole patch. Under Keras 3, Horovod's own Keras
# helpers do not work (DistributedOptimizer averages nothing, broadcast_variables raises AttributeError 'ref');
# keras-albert uses only horovod.tensorflow's grouped_allreduce and broadcast.
set -euo pipefail

VERSION=${HOROVOD_VERSION:-0.28.1}
PYTHON=$(command -v "${PYTHON:-python}")
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if "$PYTHON" -c "import horovod.tensorflow as hvd; hvd.init()" >/dev/null 2>&1; then
  echo "build_horovod: horovod.tensorflow already imports in $("$PYTHON" -c 'import sys; print(sys.prefix)'); nothing to do"
  exit 0
fi

if [ "${HOROVOD_MPI:-pypi}" = pypi ]; then
  "$PYTHON" -m pip install -q mpich mpi4py cmake
fi
"$PYTHON" -m pip install -q psutil cloudpickle pyyaml packaging

"$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$work" "horovod==$VERSION"
tar -xzf "$work/horovod-$VERSION.tar.gz" -C "$work"
src="$work/horovod-$VERSION"
cmakelists="$src/horovod/tensorflow/CMakeLists.txt"
grep -q "xla_mpi_ops.cc" "$cmakelists" || { echo "build_horovod: $cmakelists no longer names xla_mpi_ops.cc; check the patch" >&2; exit 1; }
sed -i '/xla_mpi_ops\.cc/d' "$cmakelists"

# Horovod's setup.py runs cmake through the Python environment's PATH (the PyPI cmake and MPICH wrappers live there).
export PATH="$(dirname "$PYTHON"):$PATH"
export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
  HOROVOD_WITHOUT_GLOO=1 MAKEFLAGS="-j$(nproc)"
(cd "$src" && "$PYTHON" -m pip install -q --no-build-isolation --no-deps .)
"$PYTHON" -c "import horovod.tensorflow as hvd; hvd.init(); print('build_horovod: horovod', hvd.__version__ if hasattr(hvd, '__version__') else '$VERSION', 'built with MPI:', hvd.mpi_built())"
