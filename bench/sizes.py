"""Deployment size: what `sam build` puts in .aws-sam/build, zipped in memory (ZIP_DEFLATED) the way
`sam deploy` uploads it: each function's folder and the shared layer, the layer also per package."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from bench.common import FUNCTIONS, ROOT, log

BUILD = ROOT / ".aws-sam" / "build"
SOURCES = (ROOT / "template.yaml", ROOT / "functions", ROOT / "shared")


def _newest_source() -> float:
    newest = 0.0
    for source in SOURCES:
        files = [source] if source.is_file() else (p for p in source.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" not in path.parts and path.suffix != ".pyc":
                newest = max(newest, path.stat().st_mtime)
    return newest


def build_state() -> str:
    """'missing', 'stale' (a function missing or a source newer than the build) or 'fresh'."""
    built = BUILD / "template.yaml"
    if not built.exists():
        return "missing"
    if any(not (BUILD / fn.logical_id).is_dir() for fn in FUNCTIONS) or not (BUILD / "SharedLayer").is_dir():
        return "stale"
    return "stale" if _newest_source() > built.stat().st_mtime else "fresh"


def sam_build() -> None:
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}"
    env.setdefault("SAM_CLI_TELEMETRY", "0")
    sam = ROOT / ".venv" / "bin" / "sam"
    log("running sam build")
    out = subprocess.run([str(sam), "build"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{(out.stdout + out.stderr)[-3000:]}")


def zipped_bytes(folder: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    return buffer.tell()


def measure(*, build: str) -> dict:
    """build: 'always', 'if-stale' or 'if-missing'."""
    state = build_state()
    built_now = False
    if build == "always" or (build == "if-stale" and state != "fresh") or state == "missing":
        sam_build()
        built_now, state = True, build_state()
    results: dict = {"build_state": state, "built_now": built_now, "artifacts": {}}
    for fn in FUNCTIONS:
        folder = BUILD / fn.logical_id
        results["artifacts"][fn.logical_id] = zipped_bytes(folder) if folder.is_dir() else None
    layer = BUILD / "SharedLayer"
    results["artifacts"]["SharedLayer"] = zipped_bytes(layer) if layer.is_dir() else None
    # The layer per top-level package (dist-info folded into its package), to show what weighs what.
    packages: dict[str, int] = {}
    site = layer / "python"
    if site.is_dir():
        for entry in site.iterdir():
            if entry.name.endswith((".dist-info", ".data")) or entry.name == "__pycache__":
                continue
            size = zipped_bytes(entry) if entry.is_dir() else _zipped_file(entry)
            packages[entry.name.removesuffix(".py")] = size
    results["layer_packages"] = dict(sorted(packages.items(), key=lambda kv: -kv[1]))
    return results


def _zipped_file(path: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, path.name)
    return buffer.tell()
