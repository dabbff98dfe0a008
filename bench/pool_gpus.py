"""One batch through `nsa worker --gpus N`: is every GPU's actor used? (issue 5, multi-GPU)

Starts the worker (embedded Redis, local Ray, one actor per GPU), waits until it is ready,
runs `nsa batch` over JOBS copies of a question about the sample repo, and samples
`nvidia-smi` every 0.2 s meanwhile: which GPUs hold a worker process and how busy each was.
Writes JSON (exact command, per-GPU samples, batch results) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE_REPO = Path(__file__).resolve().parents[1] / "examples" / "todo-service"
READY_TIMEOUT_S = 120
SAMPLE_EVERY_S = 0.2


def _smi(query: str, kind: str) -> list[list[str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-{kind}={query}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line]


def _sample(stop: threading.Event, samples: list[dict[str, object]]) -> None:
    while not stop.is_set():
        samples.append(
            {
                "t": time.time(),
                "gpus": _smi("index,uuid,utilization.gpu,memory.used", "gpu"),
                "apps": _smi("pid,gpu_uuid,used_memory", "compute-apps"),
            }
        )
        time.sleep(SAMPLE_EVERY_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pool-gpus"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    jobs = args.workdir / "jobs.jsonl"
    jobs.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "source": str(SAMPLE_REPO), "question": f"auth {i}?"}) + "\n"
            for i in range(args.jobs)
        )
    )
    nsa = [sys.executable, "-m", "nsa_assist.cli"]
    worker_log = args.workdir / "worker.log"
    worker = subprocess.Popen(
        [*nsa, "worker", "--model", args.model, "--gpus", str(args.gpus)],
        stdout=worker_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + READY_TIMEOUT_S
    while "ready" not in worker_log.read_text() and time.time() < deadline:
        time.sleep(1)
    samples: list[dict[str, object]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(stop, samples))
    sampler.start()
    results = args.workdir / "results.jsonl"
    started = time.time()
    batch_args = ["--out", str(results), "--model", args.model]
    batch_args += ["--max-new-tokens", str(args.max_new_tokens)]
    batch = subprocess.run(
        [*nsa, "batch", str(jobs), *batch_args],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.time() - started
    stop.set()
    sampler.join()
    worker.send_signal(2)
    worker.wait(timeout=60)
    text = results.read_text() if results.exists() else ""
    lines = [json.loads(line) for line in text.splitlines()]
    busy: dict[str, int] = {}
    for sample in samples:
        for index, _, util, _ in sample["gpus"]:  # type: ignore[union-attr]
            busy[index] = max(busy.get(index, 0), int(util))
    report = {
        "command": " ".join(sys.argv),
        "batch_rc": batch.returncode,
        "batch_stderr_tail": batch.stderr[-2000:],
        "batch_seconds": round(seconds, 2),
        "results": len(lines),
        "done": sum(1 for line in lines if line.get("status") == "done"),
        "max_utilization_by_gpu": busy,
        "gpu_uuids_with_worker_processes": sorted(
            {app[1] for sample in samples for app in sample["apps"]}  # type: ignore[union-attr]
        ),
        "worker_log_tail": worker_log.read_text()[-2000:],
        "samples": len(samples),
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if "tail" not in k}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
