"""`kill -9` of `dvc repro` at random instants of every stage of a tiny pipeline, and what is
left: no orphan `ml4d` process, no MLflow run left RUNNING once the next `dvc repro` ran, and
that `dvc repro` converging to the outputs of an uninterrupted run.

    python tools/kill_sweep.py [--kills 3] [--seed 0] [--out bench/kill_sweep.json]

It builds the tests' small rd pipeline (data, manifold, OLS and TR closures, evaluation,
promotion; tests/clones.py) in a temporary folder, runs it once uninterrupted (the reference
outputs and each stage's duration), then for every stage and each of ``--kills`` instants drawn
uniformly within 90 % of the stage's duration after its `ml4d` started: `dvc repro -f -s STAGE`,
SIGKILL to `dvc` alone (its
children are left to fend for themselves, as after a crash or an OOM kill), a check for
surviving `ml4d` processes of the workspace, and a plain `dvc repro` after it. Writes one JSON
record per kill and the totals; exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.clones import make_clone, registry  # noqa: E402  (the tests' tiny pipeline)

OUTPUT_STAGES = (
    "generate@rd",
    "fit_manifold@rd",
    "train@rd-ols",
    "train@rd-tr-projector",
    "evaluate@rd-ols",
    "evaluate@rd-tr-projector",
)


def ml4d_processes(repo: Path) -> list[int]:
    """Pids of live `ml4d` processes whose working directory is ``repo``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(b"ml4d" in part for part in cmdline[:2]) and cwd == str(repo):
            found.append(int(entry.name))
    return found


def stage_outputs(repo: Path) -> dict[str, list[str]]:
    """The md5 of every output of the stages that write data and metrics. (Exported models are
    compared by what they are, in the metrics that describe them: their bytes hold the time of
    saving, and DVC removes a stage's outputs before it runs it, so a killed `dvc repro -f`
    leaves them to be written again.)"""
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {
        stage: sorted(
            f"{o['path']}:{o.get('md5')}"
            for o in lock[stage]["outs"]
            if not o["path"].startswith("models/")
        )
        for stage in OUTPUT_STAGES
    }


def running_runs(repo: Path) -> list[str]:
    client = registry(repo)
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r.info.run_name for r in client.search_runs(ids) if r.info.status == "RUNNING"]


def timed_repro(repo: Path, env: dict[str, str]) -> dict[str, float]:
    """An uninterrupted `dvc repro -f`: each stage's duration, from its 'Running stage' line."""
    proc = subprocess.Popen(
        ["dvc", "repro", "-f"],
        cwd=repo,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    starts: list[tuple[str, float]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.match(r"Running stage '([^']+)'", line)
        if match:
            starts.append((match.group(1), time.monotonic()))
    if proc.wait() != 0:
        raise SystemExit("the uninterrupted `dvc repro -f` failed")
    ends = [t for _, t in starts[1:]] + [time.monotonic()]
    return {name: end - start for (name, start), end in zip(starts, ends, strict=True)}


def kill_once(repo: Path, env: dict[str, str], stage: str, delay: float) -> dict:
    """`dvc repro -f -s stage`, SIGKILL to dvc ``delay`` s after the stage's `ml4d` started,
    then the checks."""
    dvc = subprocess.Popen(
        ["dvc", "repro", "-f", "-s", stage],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not ml4d_processes(repo) and dvc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    running = len(ml4d_processes(repo))
    finished_first = dvc.poll() is not None
    if not finished_first:
        os.kill(dvc.pid, signal.SIGKILL)
    dvc.wait()
    deadline = time.monotonic() + 15
    while ml4d_processes(repo) and time.monotonic() < deadline:
        time.sleep(0.25)
    orphans = ml4d_processes(repo)
    for pid in orphans:  # (so that the sweep can go on)
        os.kill(pid, signal.SIGKILL)
    rerun = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    return {
        "stage": stage,
        "kill_after_s": round(delay, 2),
        "stage_finished_before_the_kill": finished_first,
        "ml4d_running_when_dvc_was_killed": running,
        "orphans_after_15_s": len(orphans),
        "rerun_ok": rerun.returncode == 0,
        "running_runs_after_rerun": running_runs(repo),
        "outputs": stage_outputs(repo) if rerun.returncode == 0 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=3, help="kills per stage (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random instants (default 0)")
    parser.add_argument("--out", default="bench/kill_sweep.json", help="the record (JSON)")
    args = parser.parse_args()
    draw = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="ml4d-kill-sweep-") as tmp:
        repo, env = make_clone(Path(tmp), with_linear=False)
        subprocess.run(["dvc", "repro"], cwd=repo, env=env, check=True, capture_output=True)
        durations = timed_repro(repo, env)  # (the second run: compilation caches warm)
        reference = stage_outputs(repo)
        records = []
        for stage, seconds in durations.items():
            for _ in range(args.kills):
                record = kill_once(repo, env, stage, draw.uniform(0.0, 0.9 * seconds))
                record["converged"] = record.pop("outputs") == reference
                records.append(record)
                print(json.dumps(record), flush=True)
    failed = [
        r
        for r in records
        if r["orphans_after_15_s"]
        or not r["rerun_ok"]
        or r["running_runs_after_rerun"]
        or not r["converged"]
    ]
    summary = {
        "stages": {k: round(v, 1) for k, v in durations.items()},
        "kills": len(records),
        "killed_while_ml4d_ran": sum(r["ml4d_running_when_dvc_was_killed"] > 0 for r in records),
        "failed": len(failed),
        "records": records,
    }
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(records)} kills, {len(failed)} failed; wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
