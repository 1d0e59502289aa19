import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# A test meant to run must not skip quietly because something is missing: with KERAS_ALBERT_NO_SKIPS=1 (set by
# .ci/run) a skipped test fails with its reason. Tests deselected by a marker (`large`) are not skips.
NO_SKIPS = os.environ.get("KERAS_ALBERT_NO_SKIPS") == "1"

if NO_SKIPS:
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        report = outcome.get_result()
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = f"skipped under KERAS_ALBERT_NO_SKIPS=1 (a missing dependency?): {reason}"
