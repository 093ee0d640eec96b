"""Test-session settings shared by the unit tests and the notebook checks (nbval).

- matplotlib stays headless: ``MPLBACKEND=Agg`` for this process and the processes it starts
  (``python -m helpers run`` gives its kernels the inline backend explicitly).
- figures that the notebooks save while nbval runs them go to a temporary folder
  (``HELPERS_FIGURES_DIR``), never over the committed ``figures/``.
- the sweep results that notebooks 05 and 06 read and write go to a temporary copy of the
  project's ``results/`` (``HELPERS_RESULTS_DIR``, trained models left out), so tests never change
  the committed results; notebook 05 then reuses the committed sweep instead of training it again.
- nbval compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` (``--nbval-lax``) but not
  their stderr streams: warnings and logs differ between machines and library versions.

This file is loaded at start-up because ``tests`` is in ``testpaths``; the stderr rule is
registered as a plugin so that it also applies to the notebooks in ``notebooks/``, which are
outside this folder.
"""

import os
import shutil
import tempfile

import pytest

os.environ["MPLBACKEND"] = "Agg"
_FIGURES_TMP = None
if not os.environ.get("HELPERS_FIGURES_DIR"):
    _FIGURES_TMP = tempfile.mkdtemp(prefix="helpers-test-figures-")
    os.environ["HELPERS_FIGURES_DIR"] = _FIGURES_TMP
_RESULTS_TMP = None
if not os.environ.get("HELPERS_RESULTS_DIR"):
    _RESULTS_TMP = tempfile.mkdtemp(prefix="helpers-test-results-")
    _committed = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results"
    )
    if os.path.isdir(_committed):
        shutil.copytree(
            _committed, _RESULTS_TMP, dirs_exist_ok=True, ignore=shutil.ignore_patterns("models")
        )
    os.environ["HELPERS_RESULTS_DIR"] = _RESULTS_TMP

#: Output fields nbval skips in comparisons, on top of its own list ('stderr' is the stream name).
NBVAL_SKIP_COMPARE = ("stderr",)


class _NbvalIgnoreStderr:
    """Add :data:`NBVAL_SKIP_COMPARE` to every notebook collected by nbval."""

    @pytest.hookimpl
    def pytest_collectstart(self, collector):
        if (
            getattr(collector, "path", None) is not None
            and collector.path.suffix == ".ipynb"
            and hasattr(collector, "skip_compare")
        ):
            collector.skip_compare = tuple(collector.skip_compare) + NBVAL_SKIP_COMPARE


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("nbval-ignore-stderr"):
        config.pluginmanager.register(_NbvalIgnoreStderr(), "nbval-ignore-stderr")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The notebooks' checks (nbval re-executes every notebook, models trained included) are in
    the slow tier; test functions are marked in their modules."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


def pytest_unconfigure(config):
    for folder in (_FIGURES_TMP, _RESULTS_TMP):
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
