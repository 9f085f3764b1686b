"""Upload a directory of files to a storage location as a step workflow: collect → upload → verify.

The storage here is a local directory (``destination``); a real backend would replace
the copy in ``UploadFiles`` with its client's put. On failure, ``upload``'s rollback
deletes exactly the files this run wrote (and the folders it created): files that were
already in the destination stay. Paths are made absolute on the driver, so the steps
also run on a (local) Ray worker.

    synapse-steps run examples/upload/action.py:DirectoryUploadAction --param destination=/tmp/up
    synapse-steps run ... --param destination=/tmp/up --param fail_after=2       # fail after 2 files
    synapse-steps run ... --param destination=/tmp/up --param fail_after=verify  # fail the verify step
    python examples/upload/action.py --destination /tmp/up --config examples/upload/ray.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from synapse_steps import BaseStep, BaseUploadAction, StepRegistry, StepResult, UploadContext

SAMPLE = Path(__file__).resolve().parent / "sample"


class UploadParams(BaseModel):
    source: str = Field(str(SAMPLE), description="Directory whose files are uploaded (recursively).")
    destination: str = Field(description="Storage location: a directory, created if missing.")
    fail_after: int | Literal["verify"] | None = Field(
        None, description="Force a failure to see the rollback: after N uploaded files, or 'verify'."
    )
    delay_s: float = Field(0.0, ge=0, le=10, description="Pause after each file, to watch the progress bar.")

    @field_validator("source", "destination")
    @classmethod
    def _absolute(cls, value: str) -> str:
        """Resolved here, on the driver: a Ray worker may start in another directory."""
        return str(Path(value).expanduser().resolve())

    @field_validator("source")
    @classmethod
    def _is_directory(cls, value: str) -> str:
        if not Path(value).is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @field_validator("fail_after")
    @classmethod
    def _not_negative(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be >= 0 (a number of files) or 'verify'")
        return value


@dataclass
class DirectoryUploadContext(UploadContext):
    """``files`` are paths relative to ``source``; ``uploaded_files`` are the absolute paths this run wrote."""

    checksums: dict[str, str] = field(default_factory=dict)
    created_dirs: list[str] = field(default_factory=list)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CollectFiles(BaseStep[DirectoryUploadContext]):
    name = "collect"
    progress_weight = 0.1

    def execute(self, ctx: DirectoryUploadContext) -> StepResult:
        source = Path(ctx.params["source"])
        paths = sorted(p for p in source.rglob("*") if p.is_file())
        if not paths:
            return StepResult(success=False, error=f"no files in {source}")
        total_bytes = 0
        for i, path in enumerate(paths, 1):
            rel = path.relative_to(source).as_posix()
            ctx.files.append(rel)
            ctx.checksums[rel] = sha256(path)
            total_bytes += path.stat().st_size
            ctx.set_progress(i, len(paths))
        ctx.set_metrics({"files": len(paths), "bytes": total_bytes})
        return StepResult(data={"files": len(paths), "bytes": total_bytes})


class UploadFiles(BaseStep[DirectoryUploadContext]):
    """Copy each file, created exclusively (never overwriting) and recorded in the context
    before its bytes are written, so a rollback after a stop or a crash deletes it too."""

    name = "upload"
    progress_weight = 0.8

    def execute(self, ctx: DirectoryUploadContext) -> StepResult:
        source, destination = Path(ctx.params["source"]), Path(ctx.params["destination"])
        fail_after = ctx.params["fail_after"]
        present = 0
        for i, rel in enumerate(ctx.files, 1):
            if fail_after == len(ctx.uploaded_files):
                raise RuntimeError(f"forced failure after {fail_after} uploaded file(s) (fail_after={fail_after})")
            target = destination / rel
            self._make_parents(target.parent, ctx)
            if self._create(target, ctx) or str(target) in ctx.uploaded_files:
                # ours: new, or made by this step before its driver died (a resumed run restores
                # what it committed), and maybe written only in part: (re)write it
                target.write_bytes((source / rel).read_bytes())
                ctx.log("uploaded", {"file": rel, "bytes": target.stat().st_size})
            elif sha256(target) != ctx.checksums[rel]:
                raise FileExistsError(f"{target} already exists with other content; not overwriting it")
            else:
                present += 1  # already uploaded (e.g. by an earlier run): not ours to delete
            ctx.set_progress(i, len(ctx.files))
            time.sleep(ctx.params["delay_s"])
        if fail_after == len(ctx.uploaded_files):
            raise RuntimeError(f"forced failure after {fail_after} uploaded file(s) (fail_after={fail_after})")
        ctx.set_metrics({"uploaded": len(ctx.uploaded_files), "already_present": present})
        return StepResult(data={"uploaded": len(ctx.uploaded_files), "already_present": present})

    @staticmethod
    def _create(target: Path, ctx: DirectoryUploadContext) -> bool:
        """Create ``target`` exclusively and record it as ours at once; False if it already existed.

        Never overwrite: a file another writer made (even between a check and a write)
        is not ours, and the rollback must never delete it.
        """
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        ctx.uploaded_files.append(str(target))
        ctx.commit()  # on Ray: the run's context actor has it before the bytes are written
        return True

    @staticmethod
    def _make_parents(folder: Path, ctx: DirectoryUploadContext) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            new.mkdir()
            ctx.created_dirs.append(str(new))

    def rollback(self, ctx: DirectoryUploadContext, result: StepResult) -> None:
        """Delete what this run uploaded, newest first, then the folders it created if empty."""
        deleted = 0
        while ctx.uploaded_files:
            Path(ctx.uploaded_files.pop()).unlink(missing_ok=True)
            deleted += 1
        while ctx.created_dirs:
            folder = Path(ctx.created_dirs.pop())
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        ctx.log_message(f"rollback: deleted {deleted} uploaded file(s)", level="warning")


class VerifyUploads(BaseStep[DirectoryUploadContext]):
    name = "verify"
    progress_weight = 0.1

    def execute(self, ctx: DirectoryUploadContext) -> StepResult:
        if ctx.params["fail_after"] == "verify":
            return StepResult(success=False, error="forced failure in verify (fail_after=verify)")
        destination = Path(ctx.params["destination"])
        for i, rel in enumerate(ctx.files, 1):
            if sha256(destination / rel) != ctx.checksums[rel]:
                return StepResult(success=False, error=f"checksum mismatch for {destination / rel}")
            ctx.set_progress(i, len(ctx.files))
        return StepResult(data={"verified": len(ctx.files)})


class DirectoryUploadAction(BaseUploadAction[UploadParams]):
    context_class = DirectoryUploadContext

    def setup_steps(self, registry: StepRegistry[DirectoryUploadContext]) -> None:
        registry.register(CollectFiles())
        registry.register(UploadFiles())
        registry.register(VerifyUploads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--destination", required=True, help="directory to upload into")
    parser.add_argument("--source", default=str(SAMPLE))
    parser.add_argument("--config", help="executor config file; default: SYNAPSE_STEPS_* env vars only")
    args = parser.parse_args(argv)
    action = DirectoryUploadAction({"source": args.source, "destination": args.destination}, config=args.config)
    summary = action.run()
    ctx = action.context
    assert ctx is not None
    print(summary)
    print(f"executor={action.config.executor} uploaded={len(ctx.uploaded_files)} files to {args.destination}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
