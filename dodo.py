"""doit entry point: `doit manifest=manifests/kvm.yml` builds; `doit list --status` shows the plan.

Variables: manifest=PATH (default manifests/kvm.yml), cache=DIR (default cache),
refresh=1 (fetch the archive's state now instead of within its refresh policy),
publish=0 (build the image only; no upload or registration).
"""

from doit import get_var

from vzstages.build import load_build, report_and_exit
from vzstages.errors import VzError

try:
    _build = load_build(
        get_var("manifest", "manifests/kvm.yml"),
        get_var("cache", "cache"),
        refresh=get_var("refresh", "") not in ("", "0"),
        publish=get_var("publish", "1") not in ("", "0", "no"),
    )
except VzError as _error:
    report_and_exit(_error)

DOIT_CONFIG = _build.doit_config


def task_stages():
    """The build's stages; each task's basename is its stage name (volume, os, packages ...)."""
    yield from _build.tasks()
