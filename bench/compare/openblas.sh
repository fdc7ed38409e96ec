# Sourced by run.sh and train_run.sh: Debian's OpenBLAS (OpenMP build) for the PyTorch processes.
#
# Debian's torch calls whatever libblas.so.3 the system alternative gives, by default the reference
# BLAS (~1 GFLOP/s: a ViT-B/16 batch of 8 takes minutes).  fetch_openblas DIR downloads
# libopenblas0-openmp from Debian's archive with `apt-get download` (the OpenMP build shares
# torch's OpenMP threads), unpacks it under DIR and sets:
#   OPENBLAS_LIB    the folder holding its libblas.so.3 (for LD_LIBRARY_PATH), empty on failure
#   OPENBLAS_LABEL  "OpenBLAS <version>", or empty
# Nothing is installed on the system.  Returns non-zero (and prints apt's output) on failure.
fetch_openblas() {
  local dir="$1"
  OPENBLAS_LIB=""
  OPENBLAS_LABEL=""
  mkdir -p "$dir"
  if (cd "$dir" && apt-get download libopenblas0-openmp) >"$dir/download.log" 2>&1 \
     && dpkg -x "$dir"/libopenblas0-openmp_*.deb "$dir/root"; then
    OPENBLAS_LIB="$(dirname "$(find "$dir/root" -name libblas.so.3 | head -n 1)")"
    OPENBLAS_LABEL="OpenBLAS $(basename "$dir"/libopenblas0-openmp_*.deb | sed 's/^libopenblas0-openmp_\([^+_-]*\).*/\1/')"
    return 0
  fi
  cat "$dir/download.log" >&2
  return 1
}
