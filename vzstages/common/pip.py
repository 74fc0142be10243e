"""pip inside the image, trusting what the build host trusts for the download.

A company network often intercepts TLS with its own certificate authority, which the build host
trusts and a fresh image does not. pip gets the host's CA bundle for the one command; the file is
removed afterwards, so the image keeps Debian's own trust store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from ..model.info import BuildInfo
from ..model.phases import Phase
from ..model.task import Task
from .apt import AptInstall

# Where the host's tools are told to find their CA bundle, in the order pip itself honours them.
CA_BUNDLE_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
DEBIAN_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA_PATH = "tmp/vzstages-host-ca.crt"


def host_ca_bundle() -> Path | None:
    for variable in CA_BUNDLE_VARIABLES:
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    return DEBIAN_CA_BUNDLE if DEBIAN_CA_BUNDLE.is_file() else None


def pip_install(info: BuildInfo, pip: list[str], requirements: list[str]) -> None:
    """`pip install --no-cache-dir REQUIREMENTS` in the image, `pip` being how to call it there."""
    command = [*pip, "install", "--no-cache-dir"]
    bundle = host_ca_bundle()
    cert = info.target / IMAGE_CA_PATH
    if bundle is not None:
        cert.write_bytes(bundle.read_bytes(), mode=0o644)
        # In the environment, not as --cert: pip's own subprocesses (the isolated build of an
        # sdist fetching setuptools) must trust it too.
        command = ["/usr/bin/env", f"PIP_CERT=/{IMAGE_CA_PATH}", *command]
    try:
        info.chroot([*command, *requirements])
    finally:
        cert.unlink(missing_ok=True)


class InstallPip(AptInstall):
    description = "Installing pip"
    packages = ("python3-pip",)


class PipInstall(Task):
    """The packages a manifest setting lists, into the image's system Python: Debian marks it as
    externally managed (PEP 668), and the manifest asks for them system-wide. The pip_install
    and pip3_install plugins (bootstrap-vz's two names) each name their own setting."""

    description = "Installing Python packages with pip"
    phase = Phase.USER_MODIFICATION
    settings_key: ClassVar[str]

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        packages = info.manifest.get(cls.settings_key)
        pip_install(info, ["python3", "-m", "pip"], ["--break-system-packages", *packages])
