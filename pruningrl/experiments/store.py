"""A sweep's folder: one JSON record per job, written atomically, and the jobs' checkpoints.

    OUT/records/<job id>.json        config, status, result, phase times, provenance
    OUT/agents/<job id>.safetensors  the pruned agent (a few tens of KB)

A record is replaced whole (write to a temporary file, then rename), so a sweep killed at any
moment leaves every record either as it was or complete. ``status`` is "done" or "failed"
(then ``error`` holds the one-line reason); ``result["attacks"]`` maps attack labels to their
per-episode returns; ``provenance`` lists the runs that produced the record, each with the code
version, host, executor and wall time.
"""

from __future__ import annotations

import json
from pathlib import Path

from pruningrl.agent import _atomic_write

#: record fields that differ between two honest runs of the same job (times, hosts)
VOLATILE = ("phases", "provenance")


class RecordStore:
    """The records and checkpoints under one output folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.records_dir = self.out / "records"
        self.agents_dir = self.out / "agents"

    def record_path(self, job_id: str) -> Path:
        return self.records_dir / f"{job_id}.json"

    def checkpoint_path(self, job_id: str) -> Path:
        return self.agents_dir / f"{job_id}.safetensors"

    def read(self, job_id: str) -> dict | None:
        path = self.record_path(job_id)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not a readable record ({error}); delete it to re-run "
                             "that job") from None

    def write(self, record: dict, checkpoint: bytes | None = None) -> None:
        """Write the checkpoint (if any), then the record that refers to it."""
        if checkpoint is not None:
            target = self.checkpoint_path(record["id"])
            _atomic_write(target, lambda tmp: Path(tmp).write_bytes(checkpoint))
        text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"
        _atomic_write(self.record_path(record["id"]), lambda tmp: Path(tmp).write_text(text))

    def checkpoint(self, job_id: str) -> bytes | None:
        path = self.checkpoint_path(job_id)
        return path.read_bytes() if path.is_file() else None

    def records(self) -> list[dict]:
        """Every record in the folder, in id order."""
        if not self.records_dir.is_dir():
            return []
        return [r for r in (self.read(p.stem) for p in sorted(self.records_dir.glob("*.json")))
                if r is not None]


def stable_part(record: dict) -> dict:
    """A record without its volatile fields: equal for two runs of the same job."""
    return {k: v for k, v in record.items() if k not in VOLATILE}
