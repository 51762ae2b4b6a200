"""scripts/launch.py, the stages' launcher: 1 process runs the script in place (its argv, `__main__`, its own
folder first on sys.path, its exit status); a bad process count is one line. The torchrun side (N > 1) runs
in tests/test_e2e.py's 2-process experiments."""
import os
import subprocess
import sys

from helpers import ROOT

LAUNCH = ROOT / "scripts" / "launch.py"


def test_one_process_runs_the_script_itself(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("import os, sys\n"
                      "print(__name__, sys.argv[1:], sys.path[0], os.environ.get('WORLD_SIZE'), os.getppid())\n"
                      "sys.exit(3)\n")
    proc = subprocess.run([sys.executable, str(LAUNCH), "1", str(script), "--a", "b c"], capture_output=True,
                          text=True)
    assert proc.returncode == 3, proc.stderr
    name, rest = proc.stdout.split(" ", 1)
    assert name == "__main__" and rest.startswith(f"['--a', 'b c'] {tmp_path} None ")
    assert int(rest.split()[-1]) == os.getpid()  # no launcher process in between: the test started it


def test_bad_process_count_is_one_line(tmp_path):
    for count in ("0", "two", "-1"):
        proc = subprocess.run([sys.executable, str(LAUNCH), count, "stages/train.py"], capture_output=True, text=True)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            f"error: usage: python scripts/launch.py PROCESSES SCRIPT [ARGS...] with PROCESSES a whole number >= 1, "
            f"got ['{count}']"]
