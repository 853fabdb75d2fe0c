"""`animator keys` and `animator aus` through click's runner, and the installed console script."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from animator import __version__, aus
from animator.cli import cli

REPO = Path(__file__).resolve().parents[1]
SMILE = REPO / "examples" / "smile.json"
SURPRISE = REPO / "examples" / "surprise_blink.json"
HEADER = ["frame", "time", *aus.AU_NAMES]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def write(tmp_path: Path, data: object, name: str = "k.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_keys_prints_one_row_per_frame() -> None:
    result = run("keys", SMILE, "--fps", 30, "--duration", 2.4)
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert table[0] == HEADER
    assert len(table) == 1 + 72  # 2.4 s at 30 fps: frames 0..71
    assert [int(r[0]) for r in table[1:]] == list(range(72))
    assert float(table[31][1]) == pytest.approx(30 / 30, abs=1e-6)
    values = np.array([[float(v) for v in r[2:]] for r in table[1:]])
    au12 = values[:, aus.au_index("AU12")]
    assert au12[0] == 0.0 and au12[30] == pytest.approx(aus.PRESETS["happy"]["AU12"], abs=1e-4)
    assert au12.argmax() in range(30, 46)  # grows by 1 s, holds to 1.5 s, then fades
    assert au12[-1] < 0.05


def test_keys_defaults_fps_from_the_file_and_duration_to_the_last_key() -> None:
    result = run("keys", SURPRISE)
    table = rows(result.output)
    assert result.exit_code == 0
    assert float(table[-1][1]) == pytest.approx(2.3)  # last key at 2.3 s, fps 30 from the file
    blink = np.array([float(r[2 + aus.au_index("AU45")]) for r in table[1:]])
    assert blink.max() == 5.0 and blink[0] == 0.0 and blink[-1] == 0.0


def test_keys_writes_csv_and_plot_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out, plot = tmp_path / "smile.csv", tmp_path / "smile.png"
    result = run("keys", SMILE, "--fps", 25, "--duration", 2, "--csv", out, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert result.output == ""  # the table went to the file
    table = rows(out.read_text())
    assert table[0] == HEADER and len(table) == 51
    assert plot.read_bytes().startswith(PNG_MAGIC) and plot.stat().st_size > 10_000

    again = CliRunner().invoke(cli, ["keys", str(SMILE), "--fps", "25", "--csv", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output and "--overwrite" in again.output
    assert rows(out.read_text()) == table  # untouched
    forced = run("keys", SMILE, "--fps", 10, "--duration", 1, "--csv", out, "--overwrite")
    assert forced.exit_code == 0 and len(rows(out.read_text())) == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smile.csv", "smile.png"]  # no temp files


def test_keys_plots_relative_offsets(tmp_path: Path) -> None:
    path = write(tmp_path, {"mode": "relative", "keys": [
        {"time": 0, "aus": {"AU12": 0}}, {"time": 0.5, "aus": {"AU12": -2}}]})
    result = run("keys", path, "--fps", 10, "--plot", tmp_path / "rel.svg")
    assert result.exit_code == 0
    assert float(rows(result.output)[-1][2 + aus.au_index("AU12")]) == -2.0
    assert "offset" in (tmp_path / "rel.svg").read_text()


@pytest.mark.parametrize("args, message", [
    (["--fps", "30"], "keys[1].aus.AU12: 9 is outside the AU intensity range 0-5"),
    ([], "has no \"fps\": pass --fps"),
    (["--fps", "0"], "--fps: 0 is not a positive frame rate"),
    (["--fps", "30", "--duration", "-1"], "--duration: -1"),
    (["--fps", "30", "--plot", "curves.txt"], "can't draw a plot as 'txt'"),
    (["--fps", "10", "--duration", "1e12"], "a table holds at most 1000000"),  # was a MemoryError
])
def test_keys_errors_exit_1_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    bad = {"keys": [{"time": 0, "aus": {"AU12": 1}}, {"time": 1, "aus": {"AU12": 9}}]}
    good = {"keys": [{"time": 0, "aus": {"AU12": 1}}]}
    path = write(tmp_path, bad if "AU12: 9" in message else good)
    args = [str(tmp_path / a) if a.endswith(".txt") else a for a in args]
    result = CliRunner().invoke(cli, ["keys", str(path), *args])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "frame,time" not in result.output  # checked before any work or output


def test_keys_refuses_one_file_for_csv_and_plot(tmp_path: Path) -> None:
    same = tmp_path / "both.png"
    result = CliRunner().invoke(cli, ["keys", str(SMILE), "--fps", "30", "--csv", str(same),
                                      "--plot", str(same)])
    assert result.exit_code == 1 and "--csv and --plot name the same file" in result.output
    assert list(tmp_path.iterdir()) == []  # the CSV was not written before the plot failed


def test_keys_far_last_key_is_an_error_not_a_huge_table(tmp_path: Path) -> None:
    path = write(tmp_path, {"keys": [{"time": 1e9, "aus": {"AU12": 1}}]})
    result = CliRunner().invoke(cli, ["keys", str(path), "--fps", "30"])
    assert result.exit_code == 1 and "up to the last key (1e+09 s)" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_keys_missing_file() -> None:
    result = CliRunner().invoke(cli, ["keys", "no/such.json", "--fps", "30"])
    assert result.exit_code == 1 and "no/such.json: no such file" in result.output


def test_aus_lists_the_table_and_presets() -> None:
    result = run("aus")
    assert result.exit_code == 0
    for name in aus.AU_NAMES:
        assert f"{name}  {aus.FACS_NAMES[name]}" in result.output
    assert "happy" in result.output and "0-5" in result.output
    data = json.loads(run("aus", "--json").output)
    assert [row["au"] for row in data["aus"]] == list(aus.AU_NAMES)
    assert data["scale"] == [0.0, 5.0] and data["presets"]["blink"] == {"AU45": 5.0}


def test_aus_resolves_a_target_and_reports_bad_ones() -> None:
    out = json.loads(run("aus", "--target", "happy*0.5,AU25=2").output)
    assert out["AU12"] == pytest.approx(1.75) and out["AU25"] == 2.0 and out["AU04"] == 0.0
    bad = CliRunner().invoke(cli, ["aus", "--target", "AU13=1"])
    assert bad.exit_code == 1 and "unknown AU 'AU13'" in bad.output


def test_installed_console_script(tmp_path: Path) -> None:
    exe = shutil.which("animator")
    if exe is None:
        pytest.skip("the animator console script is not installed (pip install -e .)")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and __version__ in version.stdout
    out = tmp_path / "smile.csv"
    keys = subprocess.run([exe, "keys", str(SMILE), "--fps", "30", "--duration", "2.4", "--csv", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert keys.returncode == 0, keys.stderr
    assert len(rows(out.read_text())) == 73
    bad = subprocess.run([exe, "keys", str(tmp_path / "none.json"), "--fps", "30"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "no such file" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    usage = subprocess.run([exe, "keys"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2
    assert usage.stderr.strip().splitlines() == [
        "Error: Missing argument 'KEYFRAMES'. (see 'animator keys --help')"]
    bare = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and "Commands:" in bare.stdout
