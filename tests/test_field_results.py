"""scripts/field_results.py's training cost, on a real git repository of three commits: a run that trained a
checkpoint in one invocation (an older costs file, no train_time_s), an experiment that re-sampled the same
checkpoint after a resume that trained nothing, and a run of another checkpoint."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import field_results  # noqa: E402


def commit(repo: Path, checkpoint_md5: str, train: dict, epochs: int = 5) -> str:
    lock = {"schema": "2.0", "stages": {"train": {"cmd": "x", "outs": [
        {"path": "models/train_state", "md5": "a.dir"}, {"path": "models/checkpoint.pt", "md5": checkpoint_md5}]}}}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"epochs": epochs}}))
    (repo / "costs").mkdir(exist_ok=True)
    (repo / "costs" / "train.json").write_text(json.dumps(train))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", checkpoint_md5], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def test_training_cost_is_the_whole_runs_and_only_from_a_revision_of_the_same_checkpoint(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    old = {"wall_time_s": 971.6, "img_per_s": 309.8, "epochs_timed": 5, "epoch_img_per_s": [310.0] * 5}
    trained = commit(tmp_path, "c" * 32, old)
    resampled = commit(tmp_path, "c" * 32, {**old, "wall_time_s": 0.0004, "epochs_timed": 0, "img_per_s": None,
                                            "epoch_img_per_s": []})
    other = commit(tmp_path, "d" * 32, {**old, "train_time_s": 1200.0, "invocations": 2})

    assert field_results.train_costs(trained, trained)["train_s"] == 971.6  # one invocation trained every epoch
    assert field_results.train_costs(resampled, resampled)["train_s"] is None  # the file cannot say
    assert field_results.train_costs(resampled, trained) == {
        "train_s": 971.6, "train_last_invocation_s": 971.6, "train_img_per_s": 309.8,
        "train_epoch_img_per_s": [310.0] * 5, "train_costs_commit": trained}
    assert field_results.train_costs(other, other)["train_s"] == 1200.0  # a newer file: the run's own total
    with pytest.raises(SystemExit, match=f"error: --train-costs {other[:7]}: its dvc.lock records another "
                                         f"models/checkpoint.pt than {resampled[:7]}'s"):
        field_results.train_costs(resampled, other)
