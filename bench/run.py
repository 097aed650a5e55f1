"""`make bench`: the broker's speed, size and cost, each next to its baseline or limit, in one run.

    .venv/bin/python -m bench.run            # default sizes, ~8 minutes on 2 cores
    .venv/bin/python -m bench.run --smoke    # tiny sizes, < 1 minute: proves the benchmark still runs

Prints the tables on stdout (progress on stderr) and writes JSON to bench/results/bench.json
(bench-smoke.json for --smoke). Figures are medians from this one run on this machine: read the ratios,
not the absolute times. Exits non-zero only if a section crashed, never for a missed target.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cold_start, cost, sizes
from bench.common import FUNCTIONS, LAMBDA_MB_PER_VCPU, RESULTS, ROOT, lambda_rate, log, verdict

COLD_TARGET, WARM_TARGET, BASELINE_TARGET, FLAT_TARGET = 1.25, 1.2, 0.9, 1.10
SIZE_LIMIT_MB, MEMORY_LIMIT_MB, HEADROOM = 5.0, 128, 0.75
LAMBDA_SIZES = (128, 256, 512, 1024, 2048)
CPU_HEADROOM = 1.25  # the refresher's MemorySize must reach the write cap with this much more CPU per refresh

FULL = {
    "cold_runs": 10,
    "deployed_runs": 10,
    "warm_requests": 200,
    "warm_warmup": 20,
    "invoke_runs": 3,
    "sizes": [1000, 10000],
    "latency": 0.1,
    "build": "if-stale",
}
SMOKE = {
    "cold_runs": 3,
    "deployed_runs": 1,
    "warm_requests": 20,
    "warm_warmup": 5,
    "invoke_runs": 1,
    "sizes": [20, 50],
    "latency": 0.01,
    "build": "if-missing",
}
CONCURRENCY, WRITE_RATE = 16, 40.0
ROUTES = {
    "authorize": "GET /authorize",
    "callback": "GET /callback",
    "refresh_one": "one refresh: Refresher().refresh_one(force=True)",
    "refresh_connection": "POST /connections/{name}/refresh",
}


def _python_module(module: str, *args: str, timeout: float) -> None:
    """Run a section in its own interpreter: the handlers log to stdout, which must not mix with the tables."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} exited {out.returncode}:\n{out.stderr[-3000:]}")


def run_sections(cfg: dict, skip: set[str], tmp: Path) -> tuple[dict, dict]:
    results, errors = {}, {}

    def section(name: str, action) -> None:
        if name in skip:
            return
        started = time.monotonic()
        log(f"{name}: start")
        try:
            results[name] = action()
        except Exception:
            errors[name] = traceback.format_exc()
            log(f"{name}: FAILED\n{errors[name]}")
        log(f"{name}: {time.monotonic() - started:.0f} s")

    section("size", lambda: sizes.measure(build=cfg["build"]))

    def cold():
        measured = cold_start.measure(cfg["cold_runs"], deployed_runs=cfg["deployed_runs"])
        for fn in FUNCTIONS:
            measured[fn.folder]["profile"] = cold_start.import_profile(fn)
        return measured

    section("cold_start", cold)

    def warm():
        path = tmp / "warm.json"
        _python_module(
            "bench.warm",
            "--requests",
            str(cfg["warm_requests"]),
            "--warmup",
            str(cfg["warm_warmup"]),
            "--json",
            str(path),
            timeout=600,
        )
        return json.loads(path.read_text())

    section("warm", warm)

    def invoke():
        path = tmp / "invoke.json"
        _python_module("bench.invoke", "--runs", str(cfg["invoke_runs"]), "--json", str(path), timeout=600)
        return json.loads(path.read_text())

    section("first_invocation", invoke)

    def throughput():
        path = tmp / "throughput.json"
        args = ["--sizes", *map(str, cfg["sizes"]), "--latency", str(cfg["latency"])]
        args += ["--concurrency", str(CONCURRENCY), "--write-rate", str(WRITE_RATE), "--json", str(path)]
        out = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "refresh_throughput.py"), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if not path.exists():
            raise RuntimeError(f"refresh_throughput.py exited {out.returncode}:\n{out.stderr[-3000:]}")
        measured = json.loads(path.read_text())
        if out.returncode != 0:  # it ran, but not every connection was refreshed: reported, not a crash
            log(f"throughput: refresh_throughput.py exited {out.returncode} (failures in the run)")
        return {"latency": cfg["latency"], "concurrency": CONCURRENCY, "write_rate": WRITE_RATE, "runs": measured}

    section("throughput", throughput)

    def cost_model():
        return build_cost(results)

    section("cost", cost_model)
    return results, errors


# --- derived figures -----------------------------------------------------------------------------------


def template_memory_mb() -> int | None:
    from devstack.template import load_template

    return load_template()["Globals"]["Function"].get("MemorySize")


def refresher_config() -> tuple[int, float]:
    """The refresher's MemorySize, and the seconds of a run it starts work in (Timeout minus its margin)."""
    from devstack.template import function_definitions
    from webex_broker.core.settings import RefreshPolicy

    refresher = function_definitions()["RefresherFunction"]
    return int(refresher["MemorySize"]), float(refresher["Timeout"]) - RefreshPolicy().time_margin_seconds


def lambda_throughput(tp: dict) -> dict:
    """What the refresher sustains on Lambda at each size: the measured CPU per refresh (the largest
    run's) against MemorySize / 1769 of a vCPU, capped by the write cap and by concurrency / latency."""
    largest = tp["runs"][-1]
    cpu_ms = largest["broker"]["cpu_ms_per_refresh"]
    write_cap, latency_bound = largest["write_cap_per_second"], largest["latency_bound_per_second"]
    memory, run_seconds = refresher_config()

    def at(mb: int, cpu: float) -> float:
        return min(write_cap, latency_bound, lambda_rate(cpu, mb))

    sizes = sorted({*LAMBDA_SIZES[1:], memory})
    fits = [mb for mb in sizes if at(mb, cpu_ms * CPU_HEADROOM) >= write_cap]
    return {
        "cpu_ms_per_refresh": cpu_ms,
        "write_cap": write_cap,
        "latency_bound": latency_bound,
        "run_seconds": run_seconds,
        "template_mb": memory,
        "recommended_mb": fits[0] if fits else None,
        "sizes": {mb: {"cpu_allows": lambda_rate(cpu_ms, mb), "predicted": at(mb, cpu_ms)} for mb in sizes},
    }


def recommended_memory(peak_mb: float) -> int:
    return next((size for size in LAMBDA_SIZES if peak_mb <= size * HEADROOM), LAMBDA_SIZES[-1])


def _add(*counts: dict) -> dict:
    total: dict = {}
    for c in counts:
        for op, n in c.items():
            total[op] = total.get(op, 0) + n
    return dict(sorted(total.items()))


def build_cost(results: dict) -> dict:
    throughput, invoke, warm = results.get("throughput"), results.get("first_invocation"), results.get("warm")
    if not (throughput and invoke and warm):
        raise RuntimeError("cost model needs the throughput, warm and first-invocation sections")
    largest = throughput["runs"][-1]["broker"]
    refreshed = max(largest["refreshed"], 1)
    per_refresh = {op: n / refreshed for op, n in largest["aws_calls"].items()}
    login_calls = _add(invoke["authorize"]["aws_calls"], invoke["callback"]["aws_calls"])
    # A scheduled run's own calls: the refresher's first invocation (one due connection) minus one refresh.
    one_refresh = warm["refresh_one"]["aws_calls_broker"]
    run_calls = {op: n - one_refresh.get(op, 0) for op, n in invoke["refresher"]["aws_calls"].items()}
    run_calls = {op: n for op, n in run_calls.items() if n > 0}
    peak = max(invoke[fn.folder]["peak_rss_mb"] for fn in FUNCTIONS)
    on_lambda = lambda_throughput(throughput)
    return cost.model(
        per_refresh_calls=per_refresh,
        refresh_ms=1000 / on_lambda["sizes"][on_lambda["template_mb"]]["predicted"],
        login_calls=login_calls,
        login_ms=invoke["authorize"]["first_invocation_ms"] + invoke["callback"]["first_invocation_ms"],
        login_webex_calls=sum(warm["callback"]["webex_calls_broker"].values()),
        run_calls=run_calls,
        run_ms=invoke["refresher"]["first_invocation_ms"],
        memory_mb=recommended_memory(peak),
        refresher_memory_mb=on_lambda["template_mb"],
        custom_metrics=len(invoke.get("_metric_names", [])),  # published every run: billed every month
        alarms=template_alarms(),
    )


def template_alarms() -> int:
    """The stack's CloudWatch alarms, conditional ones included (the most a stack has)."""
    from devstack.template import load_template

    return sum(1 for r in load_template()["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm")


# --- the report --------------------------------------------------------------------------------------


def _calls(counts: dict) -> str:
    if not counts:
        return "-"
    return ", ".join(op if round(n, 4) == 1 else f"{op} x{round(n, 4):g}" for op, n in counts.items())


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ms(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(out, header: list[str], rows: list[list[str]], *, left: int = 1, last_left: bool = False) -> None:
    """Columns sized to fit; the first `left` columns (and the last, if last_left) left-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    n = len(widths)

    def line(cells):
        return "   " + "  ".join(
            str(c).ljust(w) if i < left or (last_left and i == n - 1) else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out(line(header).rstrip())
    for row in rows:
        out(line(row).rstrip())


class Report:
    def __init__(self):
        self.lines: list[str] = []
        self.misses: list[str] = []
        self.extra_misses: list[str] = []

    def out(self, text: str = "") -> None:
        self.lines.append(text)

    def judge(self, label: str, ok: bool | None, *, extra: bool = False) -> str:
        if ok is False:
            (self.extra_misses if extra else self.misses).append(label)
        return verdict(ok)


def report(cfg: dict, results: dict, errors: dict, elapsed: float, mode: str) -> tuple[str, list[str]]:
    r = Report()
    out = r.out
    out(
        f"Webex Token Broker benchmark ({mode}) - {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python "
        f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, {elapsed:.0f} s"
    )
    out("Medians from this one run on this machine: compare the ratios, not the absolute times.")
    out(
        f"Command: make {'bench-smoke' if mode == 'smoke' else 'bench'} (.venv/bin/python -m bench.run"
        + (" --smoke)" if mode == "smoke" else ")")
    )
    _cold(r, results.get("cold_start"))
    _first_invocation(r, results.get("first_invocation"))
    _warm(r, results.get("warm"))
    _throughput(r, results.get("throughput"), results.get("first_invocation"), results.get("warm"))
    _size(r, results.get("size"))
    _memory(r, results.get("first_invocation"))
    _cost(r, results.get("cost"), results.get("first_invocation"))
    out()
    out(f"Targets missed ({len(r.misses)}): " + ("; ".join(r.misses) if r.misses else "none"))
    if r.extra_misses:
        out(f"Extra cold-start figures over 1.25x ({len(r.extra_misses)}): " + "; ".join(r.extra_misses))
    if errors:
        out(f"Sections that crashed: {', '.join(errors)} (tracebacks on stderr and in the JSON)")
    return "\n".join(r.lines), r.misses


def _cold(r: Report, cold: dict | None) -> None:
    if not cold:
        return
    out, judge = r.out, r.judge
    out()
    out(
        f"1. Cold start - a fresh python3.13 process imports the handler "
        f"(median of {cold['authorize']['runs']} processes)"
    )
    out("   baseline: a fresh process that imports boto3 and creates the boto3 clients the function needs")
    rows = []
    for fn in FUNCTIONS:
        c = cold[fn.folder]
        ok = c["ratio"] <= COLD_TARGET
        rows.append(
            [
                fn.folder,
                ",".join(c["clients"]),
                _ms(c["import_ms"]),
                _ms(c["baseline_ms"]),
                _ratio(c["ratio"]),
                f"<={COLD_TARGET}x",
                judge(f"cold start {fn.folder}", ok),
            ]
        )
    table(out, ["function", "clients", "handler ms", "baseline ms", "ratio", "target", "result"], rows, left=2)
    out("   extra, same baseline and target: (a) import, then create the same clients (the first request does")
    out("   anyway); (b) as deployed: .aws-sam/build function + SharedLayer, with only the bytecode the build")
    out("   ships (shared/Makefile precompiles the layer; Lambda cannot write any to /opt)")
    rows = []
    for fn in FUNCTIONS:
        c = cold[fn.folder]
        dep = c["deployed_no_pyc_ms"]
        dep_ratio = dep / c["baseline_ms"] if dep else None
        rows.append(
            [
                fn.folder,
                _ms(c["import_with_clients_ms"]),
                _ratio(c["ratio_with_clients"]),
                judge(f"(a) {fn.folder}", c["ratio_with_clients"] <= COLD_TARGET, extra=True),
                _ms(dep) if dep else "not built",
                _ratio(dep_ratio),
                judge(f"(b) {fn.folder}", None if dep_ratio is None else dep_ratio <= COLD_TARGET, extra=True),
            ]
        )
    table(out, ["function", "(a) import+clients ms", "ratio", "result", "(b) deployed ms", "ratio", "result"], rows)
    out("   where the time goes (python -X importtime, self ms of what the handler imports beyond boto3's own):")
    for fn in FUNCTIONS:
        prof = cold[fn.folder].get("profile")
        if prof:
            beyond = ", ".join(f"{name} {ms:.1f}" for name, ms in prof["beyond_boto3_ms"].items())
            out(f"   {fn.folder:<19} +{prof['handler_total_ms'] - prof['boto3_total_ms']:.1f} ms: {beyond}")
    out("   (awscrt and pyOpenSSL are blocked in every child, baselines too: the Lambda runtime has neither;")
    out("   boto3 keeps its .pyc everywhere, as the runtime's does)")


def _first_invocation(r: Report, invoke: dict | None) -> None:
    if not invoke:
        return
    out = r.out
    out()
    out("   extra: first invocation = import + first request in a fresh process, against moto's server and the")
    out(f"   simulator (median of {invoke['authorize']['runs']}); baseline: bench/baseline.py doing the same request")
    rows = []
    for fn in FUNCTIONS:
        v = invoke[fn.folder]
        same = "" if v["aws_calls"] == v["baseline_aws_calls"] else " (baseline differs!)"
        rows.append(
            [
                fn.folder,
                _ms(v["import_ms"]),
                _ms(v["first_call_ms"]),
                _ms(v["first_invocation_ms"]),
                _ms(v["baseline_first_invocation_ms"]),
                _ratio(v["ratio"]),
                _calls(v["aws_calls"]) + same,
            ]
        )
    table(
        out,
        ["function", "import ms", "1st call ms", "total ms", "baseline ms", "ratio", "AWS calls (both sides)"],
        rows,
        last_left=True,
    )


def _warm(r: Report, warm: dict | None) -> None:
    if not warm:
        return
    out, judge = r.out, r.judge
    out()
    out("2. Warm overhead - per request: the real handlers in-process, moto in-process, the Webex simulator with")
    out(f"   no latency (median of {warm['authorize']['requests']} requests, alternating with the baseline:")
    out("   bench/baseline.py, the same AWS and Webex calls with plain boto3 + requests and no broker code)")
    rows = []
    for key, label in ROUTES.items():
        w = warm[key]
        rows.append(
            [
                label,
                _ms(w["broker_ms"], 2),
                _ms(w["baseline_ms"], 2),
                f"{w['broker_ms'] - w['baseline_ms']:+.2f}",
                _ratio(w["ratio"]),
                f"<={WARM_TARGET}x",
                judge(f"warm {key}", w["ratio"] <= WARM_TARGET),
            ]
        )
    table(out, ["request", "broker ms", "baseline ms", "+ms", "ratio", "target", "result"], rows)
    out("   calls per request, counted on both sides:")
    for key in ROUTES:
        w = warm[key]
        same = (
            "same on both sides"
            if w["same_calls"]
            else (
                f"DIFFERENT, baseline: AWS {_calls(w['aws_calls_baseline'])}; Webex {_calls(w['webex_calls_baseline'])}"
            )
        )
        out(f"   {key:<19} AWS {_calls(w['aws_calls_broker'])}; Webex {_calls(w['webex_calls_broker'])} ({same})")


def _throughput(r: Report, tp: dict | None, invoke: dict | None, warm: dict | None) -> None:
    if not tp:
        return
    out, judge = r.out, r.judge
    runs = tp["runs"]
    out()
    out("3. Refresh throughput - the real Refresher, and in the same run on the same connections the baseline:")
    out(
        "   bench/baseline.py's refresh_many, the same 4 AWS calls and 1 Webex call per connection with no broker "
        f"code; both {tp['concurrency']} at a time,"
    )
    out(
        f"   writes paced to {tp['write_rate']:g}/s, baseline first. moto and the Webex simulator (answering in "
        f"{tp['latency'] * 1000:.0f} ms, a new token every refresh) run"
    )
    out("   in their own processes and keep connections open, as AWS and Webex do (bench/refresh_throughput.py)")
    rows = []
    for run in runs:
        broker, base = run["broker"], run["baseline"]
        complete = run["refreshed"] == run["connections"] and not run["failures"]
        ok = run["ratio_to_baseline"] >= BASELINE_TARGET and complete
        rows.append(
            [
                str(run["connections"]),
                _ms(broker["per_second"]),
                _ms(base["per_second"]),
                f"{run['ratio_to_baseline']:.2f}",
                f">={BASELINE_TARGET}",
                judge(f"throughput at {run['connections']}", ok),
                _ms(broker["ms_per_connection"], 2),
                _ms(broker["cpu_ms_per_refresh"], 2),
                _ms(base["cpu_ms_per_refresh"], 2),
                _bound(run),
            ]
        )
    header = ["connections", "broker/s", "baseline/s", "ratio", "target", "result", "ms/conn", "CPU ms", "base CPU ms"]
    table(out, [*header, "bound by"], rows, left=0, last_left=True)
    out(
        "   CPU ms: this process's CPU per refresh (moto and the simulator are elsewhere); bound by: the write cap "
        "or Webex latency x"
    )
    out(
        "   concurrency when a side came within 10 % of it, else the emulator when moto used >= 80 % of a core; "
        "a run passes only if every"
    )
    out("   connection was refreshed with no failed attempt")
    for run in runs:
        if run["failures"]:
            out(f"   {run['connections']} run: failed attempts by kind: {run['broker']['failures']}")
    if len(runs) > 1:
        growth = {
            side: runs[-1][side]["ms_per_connection"] / runs[0][side]["ms_per_connection"]
            for side in ("broker", "baseline")
        }
        flat = growth["broker"] / growth["baseline"]
        out(
            f"   time per connection, {runs[-1]['connections']} vs {runs[0]['connections']} connections: broker "
            f"{growth['broker']:.2f}x, baseline {growth['baseline']:.2f}x (the emulator slows as it fills);"
        )
        out(
            f"   broker relative to the baseline: {flat:.2f}x (target <= {FLAT_TARGET}x: flat)  "
            f"{judge('throughput flat', flat <= FLAT_TARGET)}"
        )
    for run in runs:
        moto = {
            side: run[side]["moto_core_share"] * run[side]["seconds"] / max(run[side]["refreshed"], 1) * 1000
            for side in ("broker", "baseline")
        }
        out(
            f"   moto's own CPU per refresh, {run['connections']} run: broker {moto['broker']:.1f} ms, baseline "
            f"{moto['baseline']:.1f} ms"
        )
    largest = runs[-1]["broker"]
    per_refresh = {op: n / max(largest["refreshed"], 1) for op, n in largest["aws_calls"].items()}
    out(f"   AWS calls per refresh ({runs[-1]['connections']} run): {_calls(per_refresh)}")
    if invoke:
        login = _add(invoke["authorize"]["aws_calls"], invoke["callback"]["aws_calls"])
        out(f"   AWS calls per login (cold /authorize + cold /callback): {_calls(login)} = {sum(login.values()):g}")
    if warm:
        first = warm["first_login_calls"]
        new = _add(first["broker_authorize"], first["broker_callback"])
        out(f"   first login of a new connection (one container): {_calls(new)} = {sum(new.values()):g}")
    _on_lambda(r, tp, runs[-1])


def _bound(run: dict) -> str:
    """The broker's limit, and the baseline's where it is of another kind."""
    broker, base = run["bound_broker"], run["bound_baseline"]
    same = broker.partition(" (")[0] == base.partition(" (")[0]
    return broker if same else f"{broker}; baseline: {base}"


def _on_lambda(r: Report, tp: dict, largest: dict) -> None:
    """The refresher's throughput on Lambda, where its CPU, not moto, is the limit to watch."""
    out, judge = r.out, r.judge
    lam = lambda_throughput(tp)
    broker, base = largest["broker"], largest["baseline"]
    out()
    out(
        f"   On Lambda - CPU per refresh ({largest['connections']} run): broker {broker['cpu_ms_per_refresh']:.2f} ms "
        f"(median per refresh, in its own thread: {broker['thread_cpu_ms_median']:.2f} ms),"
    )
    out(
        f"   baseline {base['cpu_ms_per_refresh']:.2f} ms = {largest['cpu_ratio_to_baseline']:.2f}x; on this machine's "
        "cores (Lambda's arm64 ones differ: a prediction, not a measurement)."
    )
    out(
        f"   A function gets MemorySize / {LAMBDA_MB_PER_VCPU} of a vCPU, so the refresher sustains min(write cap "
        f"{lam['write_cap']:g}/s, concurrency / latency {lam['latency_bound']:g}/s,"
    )
    out(
        f"   (MemorySize / {LAMBDA_MB_PER_VCPU}) / CPU per refresh); a run starts work for {lam['run_seconds']:.0f} s "
        "(Timeout minus its 60 s margin)"
    )
    prices, refreshes = cost.PRICES, cost.ASSUMPTIONS["refreshes_per_month"]
    rows = []
    for mb, v in lam["sizes"].items():
        lambda_usd = 1000 * refreshes * (1 / v["predicted"]) * (mb / 1024) * prices["lambda_gb_s_arm64"]
        rows.append(
            [
                f"{mb}{' (template)' if mb == lam['template_mb'] else ''}",
                f"{v['cpu_allows']:.1f}",
                f"{v['predicted']:.1f}",
                f"{v['predicted'] * lam['run_seconds']:,.0f}",
                f"{lambda_usd:.4f}",
            ]
        )
    table(
        out, ["MemorySize MB", "CPU allows/s", "predicted/s", "connections per run", "Lambda $/month per 1,000"], rows
    )
    recommended = lam["recommended_mb"]
    ok = recommended is not None and lam["template_mb"] >= recommended
    out(
        f"   smallest MemorySize reaching the write cap with {CPU_HEADROOM}x the CPU per refresh: {recommended} MB; "
        f"template.yaml's RefresherFunction: {lam['template_mb']} MB  {judge('refresher MemorySize', ok)}"
    )


def _size(r: Report, size: dict | None) -> None:
    if not size:
        return
    out, judge = r.out, r.judge
    out()
    built = "ran now" if size["built_now"] else "not run (existing build)"
    out(f"4. Size - .aws-sam/build zipped in memory (ZIP_DEFLATED); sam build {built}; build {size['build_state']}")
    rows = []
    for name, value in size["artifacts"].items():
        mb = None if value is None else value / 1e6
        rows.append(
            [
                name,
                "missing" if mb is None else f"{value / 1e3:.1f}",
                f"{SIZE_LIMIT_MB * 1000:g}",
                _ratio(None if mb is None else mb / SIZE_LIMIT_MB),
                judge(f"size {name}", None if mb is None else mb < SIZE_LIMIT_MB),
            ]
        )
    table(out, ["artifact", "zipped kB", "limit kB", "ratio", "result"], rows)
    if size["layer_packages"]:
        top = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in list(size["layer_packages"].items())[:7])
        out(f"   SharedLayer by package, MB zipped: {top}")
        out("   (Powertools is bundled in SharedLayer, not taken from the AWS-managed layer, so it counts)")


def _memory(r: Report, invoke: dict | None) -> None:
    if not invoke:
        return
    out, judge = r.out, r.judge
    out()
    out("   Memory - peak RSS (VmHWM) of one invocation in a fresh process (moto server and simulator outside it);")
    out(f"   baseline: bench/baseline.py doing the same; fits {MEMORY_LIMIT_MB} MB = peak <= {HEADROOM:.0%} of it")
    rows = []
    for fn in FUNCTIONS:
        v = invoke[fn.folder]
        ok = v["peak_rss_mb"] <= MEMORY_LIMIT_MB * HEADROOM
        rows.append(
            [
                fn.folder,
                _ms(v["peak_rss_mb"]),
                _ms(v["baseline_peak_rss_mb"]),
                _ratio(v["rss_ratio"]),
                f"<={MEMORY_LIMIT_MB * HEADROOM:.0f}",
                judge(f"memory {fn.folder}", ok),
            ]
        )
    table(out, ["function", "peak MB", "baseline MB", "ratio", "target MB", "result"], rows)
    peak = max(invoke[fn.folder]["peak_rss_mb"] for fn in FUNCTIONS)
    out(
        f"   recommended MemorySize: {recommended_memory(peak)} MB (the smallest whose {HEADROOM:.0%} holds the largest"
        f" peak, {peak:.1f} MB); template.yaml has {template_memory_mb()} MB"
    )
    out("   (Lambda's CPU share grows with memory: 128 MB is ~1/14 of a vCPU, so cold starts run slower there)")


def _cost(r: Report, model: dict | None, invoke: dict | None) -> None:
    if not model:
        return
    out = r.out
    p, a, inputs = model["prices"], model["assumptions"], model["inputs"]
    out()
    out("5. Cost model - USD per month, from this run's calls and durations")
    rows = [
        [service, f"{row['per_connection']:.6f}", f"{row['fixed']:.6f}", f"{row['per_1000']:.4f}"]
        for service, row in model["rows"].items()
    ]
    t = model["total"]
    rows.append(["total", f"{t['per_connection']:.6f}", f"{t['fixed']:.6f}", f"{t['per_1000']:.4f}"])
    table(out, ["service", "per connection", "fixed per stack", "1,000 connections"], rows)
    out(f"   = ${model['per_connection_at_1000']:.4f} per connection per month at 1,000 connections")
    out(
        f"   prices: Secrets Manager ${p['secret_month']:.2f}/secret-month, ${p['secrets_api_per_10k']:.2f}/10,000 "
        f"calls; Lambda arm64 ${p['lambda_gb_s_arm64']:.10f}/GB-s,"
    )
    out(
        f"   ${p['lambda_per_million']:.2f}/1M requests; DynamoDB on-demand ${p['ddb_write_per_million']:.2f}/1M WRU, "
        f"${p['ddb_read_per_million']:.2f}/1M RRU; API Gateway HTTP API ${p['api_per_million']:.2f}/1M;"
    )
    out(
        f"   EventBridge Scheduler {p['scheduler_free'] / 1e6:.0f}M invocations free, then "
        f"${p['scheduler_per_million']:.2f}/1M; EventBridge PutEvents ${p['put_events_per_million']:.2f}/1M; "
        f"KMS ${p['kms_key_month']:.2f}/key-month, ${p['kms_per_10k']:.2f}/10,000 requests; no free tiers"
    )
    out(
        f"   each ReplicaRegions region adds ${p['secret_month']:.2f} per connection-month (a replica of its token "
        f"secret); this run assumes {a['replica_regions']}"
    )
    out(
        f"   assumptions: {a['secrets_per_connection']} secrets per connection, {a['stack_secrets']} client secret per "
        f"stack; 1 login per connection per quarter; {a['refreshes_per_month']:.2f} refreshes per"
    )
    out(
        f"   connection per month (weekly); {a['runs_per_month']} scheduled runs per month (one every "
        f"{round(43800 / a['runs_per_month'])} min, each a cold start: INIT is billed); Lambda at"
    )
    out(
        f"   {inputs['memory_mb']} MB (recommended above), the refresher at {inputs['refresher_memory_mb']} MB; 1 RRU "
        f"per read and 1 WRU per write (items < 1 KB), +{a['gsi_wru_per_reschedule']} WRU for ScheduleIndex per "
        "reschedule;"
    )
    out(
        f"   durations: refresh {inputs['refresh_ms']:.1f} ms (1 / the predicted rate on Lambda above), login "
        f"{inputs['login_ms']:.0f} ms (cold /authorize + cold /callback)"
    )
    out(
        f"   + {a['webex_ms_per_call']} ms for each of {inputs['login_webex_calls']} Webex calls, scheduled run "
        f"{inputs['run_ms']:.0f} ms (cold refresher); calls per run: {_calls(inputs['run_calls'])}"
    )
    years = model["keys_by_year"]
    out(
        f"   CloudWatch: {inputs['custom_metrics']} custom metrics published every run "
        f"(${p['metric_month']:.2f} each), {inputs['alarms']} alarms at most (${p['alarm_month']:.2f} each)"
    )
    out(
        f"   KMS: {a['stack_keys']} keys with yearly rotation: ${years[1]:.2f} a month in year 1 (above), "
        f"${years[2]:.2f} in year 2, ${years[3]:.2f} from year 3 (each of a key's first two rotations adds "
        f"${p['kms_rotation_month']:.2f})"
    )
    out("   not modelled: logs $0.50/GB ingested; reads of the token secret by workloads are billed to them, except")
    out(
        f"   the KMS Decrypt each read makes under the token key (${p['kms_per_10k']:.2f}/10,000, "
        "billed to the broker)."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, < 1 minute; fails only on a crash")
    parser.add_argument(
        "--json", type=Path, help="where to write the results (default bench/results/bench[-smoke].json)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="connection counts for the throughput run")
    parser.add_argument("--build", choices=("always", "if-stale", "if-missing"), help="when to run sam build")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=("size", "cold_start", "warm", "first_invocation", "throughput", "cost"),
        help="leave sections out (for working on one)",
    )
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "full"
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.sizes:
        cfg["sizes"] = args.sizes
    if args.build:
        cfg["build"] = args.build
    os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        results, errors = run_sections(cfg, set(args.skip), Path(tmp))
    elapsed = time.monotonic() - started
    try:
        text, misses = report(cfg, results, errors, elapsed, mode)
    except Exception:
        errors["report"] = traceback.format_exc()
        log(errors["report"])
        text, misses = "(report failed)", []
    print(text)
    path = args.json or RESULTS / ("bench-smoke.json" if args.smoke else "bench.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "mode": mode,
                "config": cfg,
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "elapsed_seconds": round(elapsed, 1),
                "targets": {
                    "cold_start_ratio": COLD_TARGET,
                    "warm_ratio": WARM_TARGET,
                    "throughput_ratio_to_baseline": BASELINE_TARGET,
                    "refresher_cpu_headroom": CPU_HEADROOM,
                    "throughput_flat_ratio": FLAT_TARGET,
                    "zip_mb": SIZE_LIMIT_MB,
                    "memory_mb": MEMORY_LIMIT_MB,
                },
                "missed": misses,
                "results": results,
                "errors": errors,
                "report": text,
            },
            indent=2,
            default=str,
        )
    )
    log(f"results written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
