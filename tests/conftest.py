import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _not_in_the_ci_job_summary(monkeypatch):
    # Inside a GitHub Actions job the plugin appends to $GITHUB_STEP_SUMMARY and prints
    # annotations; the plugin's own tests must not write into the job's summary.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
