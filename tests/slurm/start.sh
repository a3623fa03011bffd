#!/usr/bin/env bash
# A single-node SLURM 22.05 cluster on loopback for tests/test_slurm.py (and CI): munged (as the
# munge user), MariaDB + slurmdbd (accounting, so sacct works), slurmctld and `slurmd -N localhost`
# with two fake GPUs (gres on two plain files: SLURM sets CUDA_VISIBLE_DEVICES per job, no CUDA needed).
# Runs as root; state, logs and configs live in $FLOWGUIDE_SLURM_DIR (default /tmp/flowguide-slurm)
# and /etc/slurm/{slurm,gres,slurmdbd}.conf are links to them: jobs need the config at its default
# place (the executor's job step drops SLURM_CONF before its inner srun). A real slurm.conf already
# in /etc/slurm is never replaced. Idempotent: a cluster already up is left as it is.
# Debian/Ubuntu packages: slurm-wlm slurmdbd mariadb-server munge (tests/slurm/install.sh).
# Stop with tests/slurm/stop.sh.
set -euo pipefail
D=${FLOWGUIDE_SLURM_DIR:-/tmp/flowguide-slurm}
CPUS=${FLOWGUIDE_SLURM_CPUS:-8}        # advertised CPUs (config_overrides: may exceed the real ones)
MEM_MB=${FLOWGUIDE_SLURM_MEM_MB:-8000}
GPUS=2
ETC=/etc/slurm

fail() { echo "slurm-start: $*" >&2; exit 1; }
wait_for() {  # wait_for <seconds> <what> <command...>: bounded poll
    local limit=$1 what=$2; shift 2
    for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    fail "$what not up after ${limit}s (logs in $D/log, $D/mysql-run)"
}
[ "$(id -u)" = 0 ] || fail "must run as root (daemons and munge key)"
for cmd in munged slurmctld slurmd slurmdbd mariadbd mariadb-install-db sbatch sacct; do
    command -v "$cmd" >/dev/null || fail "$cmd not found: apt-get install slurm-wlm slurmdbd mariadb-server munge"
done
if [ -e "$ETC/slurm.conf" ] && [ "$(readlink -f "$ETC/slurm.conf")" != "$D/slurm.conf" ]; then
    fail "$ETC/slurm.conf exists and is not this test cluster's: refusing to replace it"
fi
if [ -f "$D/env" ] && sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    echo "slurm-start: already up ($D)"; exit 0
fi
mkdir -p "$D"/{log,state,spool,mysql,mysql-run}
chown mysql:mysql "$D/mysql" "$D/mysql-run"

# --- munge ---
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create --keyfile /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- munged --force  # its pid file: /run/munge/munged.pid
    touch "$D/munged.started"  # stop.sh stops munged only when this script started it
    wait_for 20 munged sh -c "munge -n | unmunge"
fi

# --- MariaDB (own data folder, TCP on 127.0.0.1) and slurmdbd ---
if [ ! -d "$D/mysql/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$D/mysql" --auth-root-authentication-method=normal \
        >"$D/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed (see $D/log)"
fi
if ! mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u root -e "select 1" >/dev/null 2>&1; then
    # mariadbd stays in the foreground: detach it from this script's output (a caller reading it
    # would otherwise wait for the daemon to end).
    setsid mariadbd --user=mysql --datadir="$D/mysql" --bind-address=127.0.0.1 --port=3306 \
        --socket="$D/mysql-run/mysqld.sock" --pid-file="$D/mysql-run/mariadbd.pid" \
        --log-error="$D/mysql-run/mariadb.log" </dev/null >/dev/null 2>&1 &
    echo $! >"$D/mariadbd.pid"
    wait_for 60 mariadb mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u root -e "select 1"
fi
mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

cat >"$D/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
LogFile=$D/log/slurmdbd.log
PidFile=$D/slurmdbd.pid
CONF
chmod 600 "$D/slurmdbd.conf"

# MinJobAge: squeue keeps finished jobs this long, so the profile's `slurm-status-command: squeue`
# sees every end state (the plugin needs MinJobAge >= 3 x its init seconds). KillWait: a cancelled
# job's processes get SIGTERM, then SIGKILL after this many seconds.
cat >"$D/slurm.conf" <<CONF
ClusterName=flowguide
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SchedulerParameters=sched_interval=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
# Two fake GPUs: character devices every Linux has (nothing opens them; slurmd needs a device
# file per GPU to hand out CUDA_VISIBLE_DEVICES=0 or 1).
cat >"$D/gres.conf" <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=/dev/null
NodeName=localhost Name=gpu File=/dev/zero
CONF
mkdir -p "$ETC"
for f in slurm.conf gres.conf slurmdbd.conf; do ln -sfn "$D/$f" "$ETC/$f"; done
echo "$D" >"$D/env"

if ! pgrep -F "$D/slurmdbd.pid" >/dev/null 2>&1; then slurmdbd; fi
wait_for 60 slurmdbd sacctmgr -i show cluster
sacctmgr -i add cluster flowguide >/dev/null 2>&1 || true
if ! pgrep -F "$D/slurmctld.pid" >/dev/null 2>&1; then slurmctld; fi
wait_for 60 slurmctld scontrol ping
if ! pgrep -F "$D/slurmd.pid" >/dev/null 2>&1; then slurmd -N localhost; fi
wait_for 60 "slurmd (node idle)" sh -c "sinfo -h -o %T | grep -qx idle"
echo "slurm-start: up ($D)"
sinfo
