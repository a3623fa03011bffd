#!/usr/bin/env bash
# Installs the packages tests/slurm/start.sh needs (Debian/Ubuntu, as root); never starts services.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd mariadb-server munge
