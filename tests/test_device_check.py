"""benchmarks/device_check.sh, the one-call CUDA check, kept from rotting between GPU sessions: its helpers on
the real repository files (tiny_repro.sh, dvc.yaml, params.yaml, constraints.txt), its installer on real
wheels with real pip, and (slow) its whole dry run on the CPU, whose JSON is read back."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from diffpipe.core.params import load_params

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dc = load("device_check")
dw = load("device_wheels")


def test_tiny_overrides_are_tiny_repro_sh_and_give_valid_params(tmp_path):
    overrides = dc.tiny_overrides(ROOT / "scripts" / "tiny_repro.sh")
    assert "prepare.train_limit=256" in overrides and "train.epochs=2" in overrides
    assert "model.unet.down_ch=[16,32,64]" in overrides and "~sweep.points.ddim10_eta1" in overrides
    params = dc.apply_overrides(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)
    assert params["prepare"]["train_limit"] == 256 and params["model"]["unet"]["down_ch"] == [16, 32, 64]
    assert "ddim10_eta1" not in params["sweep"]["points"] and "ddim25_eta1" in params["sweep"]["points"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    loaded = load_params(path)  # the project's own loader checks every key
    assert loaded.train.epochs == 2 and loaded.sample.num_images == 12


def test_the_inception_stages_are_found_in_dvc_yaml():
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    needing, others = dc.stages_needing(dvc_yaml, dc.INCEPTION_WEIGHTS)
    assert {"inception_weights", "reference_features", "evaluate", "sweep"} <= set(needing)
    assert {"fetch_mnist", "prepare", "train", "sample"} <= set(others)
    assert sorted(needing + others) == sorted(dvc_yaml["stages"])
    # through another stage's output: b needs a's output, a needs the file
    toy = {"vars": [{"w": "w.pth"}], "stages": {
        "a": {"deps": ["${w}"], "outs": [{"feat/x.npy": {"cache": False}}]},
        "b": {"deps": ["feat"], "metrics": ["m.json"]}, "c": {"deps": ["data"], "outs": ["c.bin"]}}}
    assert dc.stages_needing(toy, "w.pth") == (["a", "b"], ["c"])


def test_degradations_say_what_goes_and_why():
    everything = {"dvc": True, "dvclive": True, "torch_fidelity": True}
    assert dc.degradations(everything, {"mnist": ["m.whl"], "inception": ["f.whl"]}) == {}
    no_fid = dc.degradations(everything, {"mnist": ["m.whl"], "inception": []})
    assert set(no_fid) == {"inception_stages"} and "81 MB" in no_fid["inception_stages"]
    bare = dc.degradations({"dvc": False, "dvclive": True, "torch_fidelity": False}, {"mnist": ["m.whl"]})
    assert set(bare) == {"pipeline", "inception"} and "dvc" in bare["pipeline"]
    assert "MNIST" in dc.degradations(everything, {"mnist": [], "inception": []})["pipeline"]


def test_installer_checks_requirements_with_real_wheels_and_pip(tmp_path):
    numpy_version = __import__("numpy").__version__
    wheels = tmp_path / "wheels"
    dc.make_wheel(wheels, "devcheck_a", "1.0", ["numpy", "numpy>=999", "devcheck-missing>=1",
                                                "devcheck-win-only; sys_platform == 'win32'",
                                                "devcheck-extra; extra == 'x'"], "A = 1\n")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    *map(str, wheels.glob("*.whl"))], check=True, capture_output=True,
                   env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--check-requirements",
                           str(site)], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=str(site)))
    unmet = json.loads(proc.stdout.split("UNMET ", 1)[1])
    assert {(u["name"], u["found"]) for u in unmet} == {("numpy", numpy_version), ("devcheck-missing", None)}
    assert subprocess.run([sys.executable, "-c", "import devcheck_a; assert devcheck_a.A == 1"],
                          env=dict(os.environ, PYTHONPATH=str(site))).returncode == 0


def test_out_folder_limits(tmp_path):
    assert dc.out_problems(tmp_path) == []
    for i in range(8):
        (tmp_path / f"f{i}.json").write_text("{}")
    assert dc.out_problems(tmp_path) == []
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("x")
    (tmp_path / "a" / "bad name.txt").write_text("x")
    problems = " ".join(dc.out_problems(tmp_path))
    assert "10 files" in problems and "deeper than 2" in problems and "bad name" in problems


def test_junit_and_stage_times():
    xml = ('<testsuites><testsuite><testcase classname="tests.test_gpu" name="test_a" time="1.5"/>'
           '<testcase classname="tests.test_gpu" name="test_b" time="0"><skipped message="needs a CUDA device"/>'
           '</testcase><testcase classname="t" name="c" time="2"><failure message="boom">tb</failure></testcase>'
           '</testsuite></testsuites>')
    assert [(t["test"], t["outcome"]) for t in dc.junit_outcomes(xml)] == [
        ("tests.test_gpu::test_a", "passed"), ("tests.test_gpu::test_b", "skipped"), ("t::c", "failed")]
    lines = [(0.0, "Running stage 'a':"), (1.0, "x"), (3.5, "Running stage 'b':"), (4.0, "done")]
    assert dc.stage_times(lines, 10.0) == {"a": 3.5, "b": 6.5}


def test_copy_tree_without_git_leaves_out_caches_wheels_and_outputs(tmp_path):
    src = tmp_path / "src"
    for f in ("dvc.yaml", "src/pkg/a.py", "data/README.md", "data/mnist_train.csv", "data/prepared/train.npy",
              "models/checkpoint.pt", ".whl/x.whl", ".git/HEAD", "src/pkg/__pycache__/a.pyc", "samples/grid.png",
              "samples/samples.npy", ".dvc/config", ".dvc/cache/ab/cd"):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text("x")
    dc.copy_tree(src, tmp_path / "dest")
    copied = sorted(p.relative_to(tmp_path / "dest").as_posix() for p in (tmp_path / "dest").rglob("*") if p.is_file())
    assert copied == [".dvc/config", "data/README.md", "dvc.yaml", "samples/grid.png", "src/pkg/a.py"]


def test_wheel_builder_reads_the_pins_and_names():
    pins = dw.pins(ROOT / "constraints.txt")
    assert {"dvc", "dvclive", "torch-fidelity"} <= set(pins)
    assert dw.wheel_name(Path("flufl.lock-9.2.0-py3-none-any.whl")) == ("flufl-lock", "9.2.0")
    assert dw.requirement_name("fsspec[tqdm]>=2024.2.0") == ("fsspec", ">=2024.2.0")
    assert dw.requirement_name("click (>=7)") == ("click", ">=7")
    assert dw.requirement_name('typing_extensions>=4.6.0; python_version < "3.12"') == ("typing-extensions", ">=4.6.0")
    assert all(n == dw.normalise(n) for n in dw.GPU_PACKAGES) and "numpy" in dw.GPU_PACKAGES
    assert dw.NEVER.match("torch") and dw.NEVER.match("nvidia-cudnn-cu13") and not dw.NEVER.match("torch-fidelity")


@pytest.mark.slow
def test_dry_run_does_every_step_on_the_cpu(tmp_path):
    """The whole script on the CPU (tiny sizes): every step recorded, the tiny pipeline's metrics finite."""
    results_md = (ROOT / "benchmarks" / "RESULTS.md").read_bytes()
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.time()
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=900)
    seconds = time.time() - start
    result = json.loads((out / "device_check.json").read_text())
    steps = result["steps"]
    assert proc.returncode == 0, (proc.stdout[-3000:], {k: {x: v.get(x) for x in ("status", "error", "tail")}
                                                        for k, v in steps.items()})
    print(f"dry run: {seconds:.1f} s")

    assert result["meta"]["dry_run"] is True and result["status"] in ("ok", "degraded")
    assert list(steps) == ["environment", "install", "gpu_tests", "pipeline", "bench"]
    assert all(s["status"] in ("ok", "degraded") and s["seconds"] >= 0 for s in steps.values()), steps
    # files: at most 8, flat, and nothing the device tool would leave behind
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert {p.name for p in files} == {"device_check.json", "device_check.md", "device_check.log", "bench.md"}
    assert result["out_problems"] == []

    env_info = result["meta"]["environment"]
    assert env_info["torch"] and env_info["cuda_available"] is False
    probe = steps["install"]["probe_install"]  # the installer on self-built wheels: check, fallback, check
    assert probe["fallback_installed"] == ["devcheck_dep-2.0-py3-none-any.whl"] and probe["unmet"] == []
    assert [u["name"] for u in probe["unmet_before_fallback"]] == ["devcheck-dep"]
    assert all("version" in steps["install"]["imports"][m] for m in ("dvc", "dvclive", "torch_fidelity"))

    tests = steps["gpu_tests"]["tests"]
    assert "tests/test_gpu.py" in steps["gpu_tests"]["files"] and len(tests) >= 8
    assert all(t["outcome"] == "skipped" for t in tests)  # no CUDA here: recorded as skipped
    assert any("test_philox_words_are_the_cpus_bit_for_bit" in t["test"] for t in tests)

    pipe = steps["pipeline"]
    needing, _ = dc.stages_needing(yaml.safe_load((ROOT / "dvc.yaml").read_text()), dc.INCEPTION_WEIGHTS)
    assert pipe["rc"] == 0 and pipe["left_out"] == needing
    assert {"inception_weights", "reference_features", "evaluate", "sweep"} <= set(needing)
    assert {"fetch_mnist", "prepare", "train", "sample"} <= set(pipe["stage_seconds"])
    assert set(pipe["devices_used"].values()) == {"cpu"}
    tiny = dict(o.split("=", 1) for o in pipe["overrides"] if "=" in o)  # tiny_repro.sh's -S settings
    n_steps = math.ceil(int(tiny["prepare.train_limit"]) / int(tiny["train.batch_size"])) * int(tiny["train.epochs"])
    train = pipe["metrics"]["dvclive/train/metrics.json"]
    assert train["step"] == n_steps and all(math.isfinite(v) and v > 0 for v in train["train"].values())
    assert 0 <= pipe["metrics"]["metrics/classifier.json"]["accuracy"] <= 1
    assert pipe["nonfinite_metrics"] == []

    runs = steps["bench"]["runs"]
    tiny_bench = runs["eager-fp32"]
    assert tiny_bench["status"] == "ok" and tiny_bench["results"]["meta"]["tiny"] is True
    net = tiny_bench["results"]["networks"]["A-default"]
    for key in ("train", "sample ddim50", "sample ddpm1000"):
        assert net[key]["fast"]["img_per_s"] > 0 and net[key]["baseline"]["img_per_s"] > 0, key
    inception = tiny_bench["results"]["inception"]
    # the converted weights where a pipeline run here made them (a fresh clone has none: random weights)
    made = (ROOT / "models" / "inception" / "pt_inception_fid.pth").is_file()
    assert inception["img_per_s"] > 0 and ("converted" if made else "random") in inception["weights"]
    assert {r["status"] for label, r in runs.items() if label != "eager-fp32"} == {"skipped"}
    assert set(result["targets"]) == {"train_reduced", "ddim50_10k", "ddpm1000_10k", "inception", "pipeline"}
    assert result["targets"]["pipeline"]["measured"] > 0
    md = (out / "device_check.md").read_text()
    assert "| pipeline | degraded |" in md and "## Targets" in md and "A-default" in (out / "bench.md").read_text()
    assert (ROOT / "benchmarks" / "RESULTS.md").read_bytes() == results_md  # --no-append: the tree is untouched
