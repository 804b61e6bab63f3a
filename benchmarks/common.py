"""Shared helpers of the benchmarks: machine description, reference rates, peak memory, workers, output.

Timings on shared cores drift with other jobs' load, so every benchmark records the load average and
measures its reference rates (an fp32 matrix product, a scattered-row copy) in the same process, right
before and after the code it times.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from acsa.storage import files as acsa_files

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def cross_attention_module(implementation: str = "current"):
    """The module defining AsymmetricCrossAttention: `current` (acsa.model.cross_attention) or the path of a
    file defining it, e.g. an older version: `git show 26dfcfe:acsa/cross_attention.py > /tmp/before.py`."""
    if implementation == "current":
        return importlib.import_module("acsa.model.cross_attention")
    path = Path(implementation)
    if not path.is_file():
        raise SystemExit(f"--implementation: {implementation!r} is neither 'current' nor a file")
    spec = importlib.util.spec_from_file_location(f"cross_attention_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


IMPLEMENTATION_HELP = "of the cross-attention: current (acsa/) or a file defining AsymmetricCrossAttention"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
# ATen's vector kernels, oneDNN's and MKL's all stop at AVX2 with these (the `--isa avx2` of the benchmarks;
# MKL runs torch's float matrix products here: on this AMD CPU it already picks AVX2 code, at an Intel one
# with AVX-512 the variable matters)
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
_ISA_PROBE = (
    "import torch; torch.set_num_threads(1); "
    "x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last); "
    "c = torch.nn.Conv2d(8, 8, 3).to(memory_format=torch.channels_last); c(x); "
    "print('aten', torch.backends.cpu.get_cpu_capability())"
)


def cpu_flags() -> list[str]:
    """The vector instruction sets of this CPU among VECTOR_FLAGS (/proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    flags = lines[0].split(":", 1)[1].split() if lines else []
    return [flag for flag in VECTOR_FLAGS if flag in flags]


def kernels_in_use(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Which vector kernels a process with `env` runs: ATen's CPU capability, and the instruction sets
    oneDNN's verbose log names for a convolution (e.g. brg_conv_fwd:avx2 vs :avx512_core)."""
    run_env = {**os.environ, **(env or {}), "ONEDNN_VERBOSE": "1", "DNNL_VERBOSE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _ISA_PROBE], capture_output=True, text=True, env=run_env, check=False
    ).stdout
    aten = next((line.split()[1] for line in out.splitlines() if line.startswith("aten ")), "unknown")
    onednn = sorted(set(re.findall(r":(avx512[a-z0-9_]*|avx2[a-z0-9_]*|avx[a-z0-9_]*|sse41)", out)))
    return {"aten_capability": aten, "onednn_isa": onednn}


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, threads, torch, GPU if any, load average now."""
    info = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "env": {
            k: os.environ[k]
            for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", *AVX2_ENV)
            if k in os.environ
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def matmul_rate(
    size: int = 2048,
    repeats: int = 3,
    device: str = "cpu",
    threads: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """FLOP/s of the best of `repeats` fp32 [size, size] @ [size, size] products (a warm-up first), with
    `threads` torch threads (None: as set), timed by `clock` (time.thread_time with one thread: per second
    of CPU time this thread got, which other jobs on the core do not lower)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        best = float("inf")
        for _ in range(repeats + 1):
            sync(device)
            start = clock()
            a @ b
            sync(device)
            best = min(best, clock() - start)
    finally:
        torch.set_num_threads(before)
    return 2.0 * size**3 / best


def core_rate(size: int = 2048, repeats: int = 5, clock: Callable[[], float] = time.perf_counter) -> float:
    """fp32 matmul FLOP/s of one core (one thread, best of `repeats`): the arithmetic limit of n cores is
    n times this. One thread is not slowed by a busy partner core, so the best run is a stable figure."""
    return matmul_rate(size, repeats, threads=1, clock=clock)


def gather_rate(
    rows: int = 21_518, dim: int = 768, picks: int = 896, repeats: int = 20, trials: int = 5, workers: int = 1
) -> float:
    """Bytes/s of copying `picks` random rows of a [rows, dim] fp32 table into a reused buffer (the
    re-rank's per-caption copy of its candidates' image tokens: 128 x 7 rows of d floats), by `workers`
    threads at once, each copying with one torch thread (as the re-rank does); best of `trials`."""
    table = torch.randn(rows, dim)
    generator = torch.Generator().manual_seed(0)
    index = [torch.randint(0, rows, (picks,), generator=generator) for _ in range(repeats)]

    def copy(_: int) -> None:
        torch.set_num_threads(1)  # this thread only
        out = torch.empty(picks, dim)
        for i in index:
            torch.index_select(table, 0, i, out=out)

    best = float("inf")
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(copy, range(workers)))  # warm-up
        for _ in range(trials):
            start = time.perf_counter()
            list(pool.map(copy, range(workers)))
            best = min(best, time.perf_counter() - start)
    return workers * repeats * picks * dim * 4 / best


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads (user + system)."""
    return time.process_time()


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that timings cover it."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory(interval: float = 0.005) -> Iterator[dict[str, float]]:
    """Peak resident memory above the level at entry, in MB: the larger of a sampling thread's maximum
    and the process peak (getrusage ru_maxrss), which catches spikes between samples when this block sets
    a new high for the process. Keys: baseline_mb, peak_mb (delta), filled in on exit."""
    result: dict[str, float] = {}
    baseline = rss_bytes()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        top = max(peak[0], rss_bytes(), maxrss if maxrss > maxrss_before else 0)
        result["baseline_mb"] = baseline / 2**20
        result["peak_mb"] = (top - baseline) / 2**20


def timed(fn: Callable[[], Any], device: str | torch.device = "cpu") -> tuple[Any, float]:
    """(fn(), seconds), synchronising the device around the call."""
    sync(device)
    start = time.perf_counter()
    value = fn()
    sync(device)
    return value, time.perf_counter() - start


def worker_env(env: dict[str, str] | None = None, root: Path = REPO) -> dict[str, str]:
    """This environment plus `env`, with `root` (a checkout of the repository) first on PYTHONPATH."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def run_worker(
    module: str,
    args: Sequence[str],
    in_process: bool = False,
    env: dict[str, str] | None = None,
    retries: int = 2,
    root: Path = REPO,
) -> dict[str, Any]:
    """Run `python -m module --worker-result FILE args...` in a fresh process (so that its peak memory is
    its own), with `env` added to the environment, and return the JSON it wrote to FILE; `in_process` calls
    the module's main here instead (for tests: memory figures are then not the worker's own). A worker
    killed by a signal (on shared machines, other people's jobs have been seen to do that) is rerun.
    `root`: the checkout whose code runs (another revision's export, e.g.)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        if in_process:
            importlib.import_module(module).main(["--worker-result", str(result), *args])
            return json.loads(result.read_text())
        cmd = [sys.executable, "-m", module, "--worker-result", str(result), *args]
        env = worker_env(env, root)
        for attempt in range(retries + 1):
            done = subprocess.run(cmd, cwd=root, env=env)
            if done.returncode >= 0 or attempt == retries:  # an exit code, or out of retries
                break
            log.warning("%s died of signal %d: rerunning it", module, -done.returncode)
        done.check_returncode()
        return json.loads(result.read_text())


def run_workers_together(
    module: str,
    arg_lists: Sequence[Sequence[str]],
    env: dict[str, str] | None = None,
    root: Path = REPO,
    barrier: bool = False,
) -> list[dict[str, Any]]:
    """Run one worker per argument list (as `run_worker`), all at once, and return their results in order.

    With `barrier`, each worker also gets `--barrier DIR`: it calls `wait_at_barrier(DIR)` when set up, and
    all of them go on together once every one has arrived (so that their timed parts overlap)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder, procs = Path(tmp), []
        for i, args in enumerate(arg_lists):
            extra = [f"--barrier={folder}"] if barrier else []
            cmd = [sys.executable, "-m", module, "--worker-result", str(folder / f"{i}.json"), *args, *extra]
            procs.append(subprocess.Popen(cmd, cwd=root, env=worker_env(env, root)))
        while barrier and len(list(folder.glob("ready-*"))) < len(procs):
            if any(p.poll() is not None for p in procs):  # one died: release the others
                break
            time.sleep(0.05)
        (folder / "go").touch()
        for p in procs:
            if p.wait():
                for other in procs:
                    other.kill()
                raise subprocess.CalledProcessError(p.returncode, p.args)
        return [json.loads((folder / f"{i}.json").read_text()) for i in range(len(procs))]


def wait_at_barrier(folder: str | Path) -> None:
    """A worker of `run_workers_together(..., barrier=True)`: arrive, then wait until all have arrived."""
    Path(folder, f"ready-{os.getpid()}").touch()
    while not Path(folder, "go").exists():
        time.sleep(0.01)


def add_worker_options(p) -> None:
    """The options of a benchmark whose modes run as workers (run_worker)."""
    p.add_argument("--in-process", action="store_true", help="run the workers in this process (tests)")
    p.add_argument("--worker-result", help=argparse.SUPPRESS)
    p.add_argument("--barrier", help=argparse.SUPPRESS)


def benchmark_main(args, worker: Callable, run: Callable, columns: Sequence[str] | None = None) -> dict:
    """A worker writes its result and returns; the parent runs everything, prints the table, writes JSON."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.worker_result:
        write_json(args.worker_result, worker(args))
        return {}
    summary = run(args)
    print(format_table(summary["rows"], list(columns or summary["rows"][0])))
    print(f"machine: {summary['machine_at_start']}; load at end {summary['machine_at_end']['load_average']}")
    print(f"written {write_json(args.out, summary)}")
    return summary


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """acsa.storage.files.write_json (atomic: no half-written result), returning the path for the "written"
    line."""
    acsa_files.write_json(Path(path), payload, indent=1)
    return Path(path)


def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-markdown table of `columns` from `rows` (floats shown with 3 significant digits)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
