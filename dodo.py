"""doit entry point: `doit manifest=manifests/kvm.yml` builds; `doit list --status` shows the plan.

Variables:
  manifest=PATH     default manifests/kvm.yml; a bare name such as ec2.yml is also looked up in
                    manifests/; several as a,b or a matrix file (`manifests: [a.yml, b.yml]`)
  cache=DIR         default cache
  refresh=true      fetch the archive's state now instead of within its refresh policy
  publish=false     build the image only; no upload or registration
  remote=s3://BUCKET/PREFIX, remote_mode=read|write|readwrite|off, remote_endpoint=URL
                    the shared remote cache (default: VZSTAGES_REMOTE, VZSTAGES_REMOTE_MODE ...)
Booleans take true/false, yes/no, on/off or 1/0. `doit -n 2` builds independent stages at once.
"""

from doit import get_var

from vzstages.build import load_build, parse_bool, report_and_exit
from vzstages.cache.remote_config import remote_config
from vzstages.errors import VzError

try:
    _build = load_build(
        get_var("manifest", "manifests/kvm.yml"),
        get_var("cache", "cache"),
        refresh=parse_bool("refresh", get_var("refresh", "")),
        publish=parse_bool("publish", get_var("publish", "true")),
        remote=remote_config(get_var("remote"), get_var("remote_mode"), get_var("remote_endpoint")),
    )
except VzError as _error:
    report_and_exit(_error)
except KeyboardInterrupt:
    raise SystemExit(130) from None

DOIT_CONFIG = _build.doit_config


def task_stages():
    """The build's stages: `os`, `packages` ...; with several manifests, `IMAGE:STAGE`."""
    yield from _build.tasks()
