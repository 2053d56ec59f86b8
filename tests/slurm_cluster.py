"""A one-node SLURM cluster on this machine for the tests: munged, slurmctld and slurmd (Debian's
``munge``, ``slurmctld`` and ``slurmd`` packages; .ci/run installs them) run in the foreground
from a slurm.conf generated in a temporary folder, with their own MUNGE key and socket and free
ports, so that nothing of the machine's own SLURM or MUNGE is used or changed. Clients find the
cluster through ``SLURM_CONF`` (``SlurmCluster.env``)."""
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "sinfo", "squeue", "scontrol", "scancel")
NODE, PARTITION = "localhost", "debug"

SLURM_CONF = """\
ClusterName=alexnetlit
FirstJobId={first_job_id}
SlurmctldHost={node}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it starts again (default 120 s)
AuthInfo=socket={folder}/munge/munge.socket,cred_expire=5
# a requeued job starts as soon as that wait is over, not at the next minute's scheduling
SchedulerParameters=sched_interval=1
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
PlugStackConfig={folder}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
ReturnToService=2
KillWait=10
# ended jobs stay in scontrol show job for an hour
MinJobAge=3600
# the node's CPUs as configured, even where the machine has fewer
SlurmdParameters=config_overrides
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p, path=SBIN) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """One node, ``localhost``, with at least 2 CPUs (the machine's count; SLURM takes the
    configured count over the hardware's), in partition ``debug``; jobs run as the user
    running the tests. ``start`` returns once ``sinfo`` shows the node idle."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.conf = self.folder / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PATH=SBIN)
        self.daemons: dict[str, subprocess.Popen] = {}

    def start(self, timeout: float = 120) -> None:
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "munge").mkdir(mode=0o755)  # munged's socket: searchable by everyone
        (self.folder / "plugstack.conf").write_text("")
        self.conf.write_text(SLURM_CONF.format(
            folder=self.folder, node=NODE, partition=PARTITION, user=pwd.getpwuid(os.geteuid()).pw_name,
            ctld_port=free_port(), slurmd_port=free_port(), cpus=max(2, os.cpu_count() or 1),
            first_job_id=random.randrange(1000, 100000)))  # Lightning's DDP port comes from the job id
        munge = self.folder / "munge"
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._daemon("munged", "-F", "--force", f"--socket={munge}/munge.socket", f"--key-file={key}",
                     f"--pid-file={munge}/munged.pid", f"--log-file={self.folder}/munged.log",
                     f"--seed-file={munge}/munged.seed")
        self._wait(lambda: (munge / "munge.socket").exists(), 30, "munged's socket")
        self._daemon("slurmctld", "-D", "-f", str(self.conf))
        self._daemon("slurmd", "-D", "-N", NODE, "-f", str(self.conf))
        self._wait(lambda: self.client("sinfo", "-h", "-N", "-o", "%T", check=False).strip() == "idle",
                   timeout, f"node {NODE} idle in sinfo")

    def _daemon(self, name: str, *args: str) -> None:
        out = open(self.folder / f"{name}.out", "w")
        self.daemons[name] = subprocess.Popen([shutil.which(name, path=SBIN), *args], env=self.env,
                                              stdout=out, stderr=subprocess.STDOUT)

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            exited = {n: p.returncode for n, p in self.daemons.items() if p.poll() is not None}
            if exited or time.monotonic() > deadline:
                self.stop()
                why = f"exited with status {exited}" if exited else f"none after {timeout:.0f} s"
                raise RuntimeError(f"SLURM test cluster in {self.folder}: waiting for {what}, {why}\n{self.logs()}")
            time.sleep(0.5)

    def logs(self, lines: int = 30) -> str:
        """The end of each daemon's log and output."""
        parts = []
        for path in sorted(self.folder.glob("*.log")) + sorted(self.folder.glob("*.out")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def client(self, *command: str, check: bool = True) -> str:
        """A SLURM client command's output (sinfo, sbatch, scontrol, ...) against this cluster."""
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def sbatch(self, script: Path, *options: str) -> str:
        """``sbatch [options] script``; returns the job id."""
        return self.client("sbatch", "--parsable", *options, str(script)).strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields (JobState, Restarts, ExitCode, ...)."""
        line = self.client("scontrol", "show", "job", "-o", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", line))

    def wait(self, job_id: str, timeout: float, until=("COMPLETED",)) -> dict[str, str]:
        """Wait for the job to reach one of the states ``until`` or to end; its fields then."""
        deadline, ended = time.monotonic() + timeout, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                      "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
        while (info := self.job(job_id))["JobState"] not in (*until, *ended):
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {info['JobState']} after {timeout:.0f} s: {info}")
            time.sleep(0.5)
        return info

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (slurmd, slurmctld, munged)."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            self.client("scancel", "--full", f"--partition={PARTITION}", check=False)
            self._wait_for_no_jobs(30)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.daemons.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _wait_for_no_jobs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.client("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
            time.sleep(0.5)
