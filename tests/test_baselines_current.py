"""The committed baselines vouch for the kernel as it is: a change to the kernel's source
comes with baselines recorded on it (README, "Changing the kernel")."""

from pathlib import Path

from pytest_conv3d_perf.baseline import parse
from pytest_conv3d_perf.cli import configured_kernel
from pytest_conv3d_perf.environment import source_hash
from pytest_conv3d_perf.target import Target

ROOT = Path(__file__).resolve().parents[1]


def stale_entries(files: list[Path], kernel_hash: str) -> list[str]:
    stale = []
    for path in files:
        for name, entry in sorted(parse(path, path.read_text()).items()):
            if entry.kernel_hash != kernel_hash:
                commit = str(entry.environment.get("commit", ""))[:10] or "?"
                stale.append(f"{path.name}: {name} (recorded at {commit} on {entry.kernel_hash})")
    return stale


def test_every_baseline_entry_was_recorded_on_todays_kernel_source():
    kernel = Target.parse(configured_kernel(ROOT), "conv3d_kernel").load(ROOT)
    today = source_hash(kernel)
    stale = stale_entries(sorted((ROOT / "baselines").glob("*.json")), today)
    assert not stale, (
        f"the kernel's source ({today}) changed after these baseline entries were recorded; "
        "re-record them on a GPU of that model with `conv3d-perf update-baselines` in the "
        "same change:\n  " + "\n  ".join(stale)
    )


def test_a_changed_kernel_is_reported_entry_by_entry(tmp_path):
    text = (ROOT / "notes" / "data" / "retired" / "nvidia-h100-80gb-hbm3.json").read_text()
    (tmp_path / "gpu.json").write_text(text)
    stale = stale_entries([tmp_path / "gpu.json"], "sha256:something-else")
    assert len(stale) == len(parse(tmp_path / "gpu.json", text)) > 0
    assert stale[0].startswith("gpu.json: ")
