"""Cold start: a fresh Python process imports a handler, timed in-process, next to a baseline process
that imports boto3 and creates the clients the function needs.

Three kinds of child process, run interleaved so drift on a shared machine hits all alike:
- handler:  functions/<name>/ and shared/ first on sys.path (the source tree, .pyc cached), then
            `import <name>`; after that, the same boto3 clients through webex_broker.adapters.aws.client
            (an extra figure: the first invocation creates them anyway);
- baseline: `import boto3` and boto3.client(...) for each client the function needs;
- deployed: the handler from .aws-sam/build (function folder + SharedLayer/python, as Lambda mounts
            them at /var/task and /opt/python), with only the bytecode the build ships: Lambda's /opt is
            read-only, so whatever is not precompiled (shared/Makefile does the layer) compiles each time.
"""

import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict

from bench.common import BLOCK_CRT, FUNCTIONS, PEAK_RSS_KB, ROOT, SHARED, Function, child_env, log, median

BUILD = ROOT / ".aws-sam" / "build"

_HANDLER = (
    BLOCK_CRT
    + """import time
sys.path[:0] = {paths!r}
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
from webex_broker.adapters import aws
for service in {clients!r}:
    aws.client(service)
t2 = time.perf_counter()
import json
print(json.dumps({{"import_ms": (t1 - t0) * 1000, "with_clients_ms": (t2 - t0) * 1000,
                  "maxrss_kb": """
    + PEAK_RSS_KB
    + """,
                  "file": {module}.__file__, "layer": aws.__file__}}))
"""
)

_BASELINE = (
    BLOCK_CRT
    + """import time
t0 = time.perf_counter()
import boto3
for service in {clients!r}:
    boto3.client(service)
t1 = time.perf_counter()
import json
print(json.dumps({{"import_ms": (t1 - t0) * 1000, "maxrss_kb": """
    + PEAK_RSS_KB
    + """}}))
"""
)


def _run(code: str, *, write_bytecode: bool = True) -> dict:
    env = child_env()
    if not write_bytecode:
        # Lambda cannot write bytecode: only what the build shipped is used, while boto3 (the runtime's,
        # here the venv's) keeps its own.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"cold-start child failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def handler_code(fn: Function, paths: list[str]) -> str:
    return _HANDLER.format(paths=paths, module=fn.module, clients=list(fn.clients))


def baseline_code(fn: Function) -> str:
    return _BASELINE.format(clients=list(fn.clients))


def deployed_paths(fn: Function) -> list[str] | None:
    code, layer = BUILD / fn.logical_id, BUILD / "SharedLayer" / "python"
    if not (code / f"{fn.module}.py").exists() or not (layer / "webex_broker").is_dir():
        return None
    return [str(code), str(layer)]


def measure(runs: int, *, deployed_runs: int) -> dict:
    """Medians over `runs` processes of each kind, per function (deployed: `deployed_runs`)."""
    samples: dict[str, dict[str, list]] = {fn.folder: defaultdict(list) for fn in FUNCTIONS}
    source = {fn.folder: handler_code(fn, [str(fn.code_dir), str(SHARED)]) for fn in FUNCTIONS}
    base = {fn.folder: baseline_code(fn) for fn in FUNCTIONS}
    deployed = {fn.folder: deployed_paths(fn) for fn in FUNCTIONS}
    # One unmeasured round first: .pyc files for the source tree, and the OS file cache, warm.
    for fn in FUNCTIONS:
        _run(source[fn.folder])
        _run(base[fn.folder])
    for i in range(runs):
        for fn in FUNCTIONS:
            s = samples[fn.folder]
            handler = _run(source[fn.folder])
            s["import_ms"].append(handler["import_ms"])
            s["with_clients_ms"].append(handler["with_clients_ms"])
            s["handler_rss_kb"].append(handler["maxrss_kb"])
            s["file"] = handler["file"]
            baseline = _run(base[fn.folder])
            s["baseline_ms"].append(baseline["import_ms"])
            s["baseline_rss_kb"].append(baseline["maxrss_kb"])
            if deployed[fn.folder] and i < deployed_runs:
                d = _run(handler_code(fn, deployed[fn.folder]), write_bytecode=False)
                if not d["layer"].startswith(str(BUILD)):
                    raise RuntimeError(f"deployed child imported webex_broker from {d['layer']}")
                s["deployed_ms"].append(d["import_ms"])
        log(f"cold start: round {i + 1}/{runs}")
    results = {}
    for fn in FUNCTIONS:
        s = samples[fn.folder]
        results[fn.folder] = {
            "function": fn.logical_id,
            "clients": list(fn.clients),
            "runs": runs,
            "import_ms": median(s["import_ms"]),
            "import_with_clients_ms": median(s["with_clients_ms"]),
            "baseline_ms": median(s["baseline_ms"]),
            "ratio": median(s["import_ms"]) / median(s["baseline_ms"]),
            "ratio_with_clients": median(s["with_clients_ms"]) / median(s["baseline_ms"]),
            "deployed_no_pyc_ms": median(s["deployed_ms"]) if s["deployed_ms"] else None,
            "deployed_runs": len(s["deployed_ms"]),
            "handler_import_rss_mb": median(s["handler_rss_kb"]) / 1024,
            "baseline_rss_mb": median(s["baseline_rss_kb"]) / 1024,
            "samples_ms": {k: [round(v, 2) for v in s[k]] for k in ("import_ms", "baseline_ms", "deployed_ms")},
        }
    return results


_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def _self_times(code: str) -> dict[str, int]:
    """`python -X importtime`: self time in microseconds, summed per top-level package."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=child_env(),
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
    )
    per_package: dict[str, int] = defaultdict(int)
    for line in out.stderr.splitlines():
        if m := _LINE.match(line):
            per_package[m[4].split(".")[0]] += int(m[1])
    return per_package


def import_profile(fn: Function, *, top: int = 6) -> dict:
    """What the handler imports beyond the baseline's boto3, per package (self time, -X importtime;
    the profiler's own overhead inflates every figure alike), so a miss names what to make lazy."""
    setup = BLOCK_CRT + f"sys.path[:0] = {[str(fn.code_dir), str(SHARED)]!r}\n"
    handler = _self_times(setup + f"import {fn.module}\n")
    baseline = _self_times(BLOCK_CRT + "import boto3\n")
    extra = {name: us - baseline.get(name, 0) for name, us in handler.items()}
    extra = {name: us for name, us in extra.items() if us > 0}
    return {
        "handler_total_ms": round(sum(handler.values()) / 1000, 1),
        "boto3_total_ms": round(sum(baseline.values()) / 1000, 1),
        "beyond_boto3_ms": {n: round(us / 1000, 1) for n, us in sorted(extra.items(), key=lambda kv: -kv[1])[:top]},
        "by_package_ms": {n: round(us / 1000, 1) for n, us in sorted(handler.items(), key=lambda kv: -kv[1])[:top]},
    }


def main() -> int:  # pragma: no cover - for running this section alone
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    results = measure(args.runs, deployed_runs=args.runs)
    for fn in FUNCTIONS:
        results[fn.folder]["profile"] = import_profile(fn)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":  # python -m bench.cold_start
    sys.exit(main())
