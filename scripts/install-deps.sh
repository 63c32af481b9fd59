#!/usr/bin/env bash
# Installs the Debian packages the project builds against (only those that are missing).
set -euo pipefail
packages=(libopenblas-dev libdnnl-dev libhdf5-dev libpng-dev libturbojpeg0-dev zlib1g-dev pkg-config
          dataset-fashion-mnist hdf5-tools libopenmpi-dev openmpi-bin iproute2)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "System packages: all present."
    exit 0
fi
echo "Installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
