#!/usr/bin/env bash
# Stops what tests/slurm/start.sh started, by the process ids in its pid files.
set -uo pipefail
D=${FLOWGUIDE_SLURM_DIR:-/tmp/flowguide-slurm}
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    pidfile=$D/$name.pid
    if [ "$name" = munged ]; then
        [ -e "$D/munged.started" ] || continue
        pidfile=/run/munge/munged.pid
        rm -f "$D/munged.started"
    fi
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
done
rm -f "$D/env"
for f in slurm.conf gres.conf slurmdbd.conf; do  # only the links start.sh made
    [ "$(readlink "/etc/slurm/$f")" = "$D/$f" ] && rm -f "/etc/slurm/$f"
done
