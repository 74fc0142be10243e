from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ...common.apt import AptInstall, AptUpdate, WriteAptSources
from ...common.archive import host_sources
from ...errors import VzError
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView

log = logging.getLogger("vzstages.plugins")
KEYRING = "usr/share/keyrings/vzstages-google-cloud.gpg"
LIST = "etc/apt/sources.list.d/google-cloud.list"
# The suites of Google's repository, by the image's release.
SUITES = ("google-compute-engine-{release}-stable", "google-cloud-packages-archive-keyring-{release}")


@dataclass(frozen=True)
class Repository:
    url: str
    keyring: Path


def repository(manifest: ManifestView) -> Repository:
    """The repository from the manifest, else from the build host's apt sources."""
    url = manifest.get("plugins.google_cloud_repo.repository")
    keyring = manifest.get("plugins.google_cloud_repo.keyring")
    if url and keyring:
        return Repository(url.rstrip("/"), manifest.relative_path(keyring))
    for source in host_sources():
        if any(s.startswith("google-compute-engine-") for s in source.suites):
            signed_by = _signed_by(source.uri)
            if signed_by and (url is None or url.rstrip("/") == source.uri):
                return Repository(source.uri, manifest.relative_path(keyring) if keyring else signed_by)
    raise VzError(
        "google_cloud_repo: set plugins.google_cloud_repo.repository and .keyring (Google's apt "
        "repository and its signing key), or build on a host whose apt sources have it"
    )


def _signed_by(uri: str) -> Path | None:
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*")):
        text = path.read_text(errors="replace") if path.is_file() else ""
        if uri in text:
            match = re.search(r"signed-by[=:]\s*(\S+?)[\]\s]", text + " ")
            if match:
                return Path(match.group(1))
    return None


class AddGoogleRepository(Task):
    description = "Adding Google's apt repository and its key"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (WriteAptSources,)
    successors = (AptUpdate,)
    reads = ("plugins.google_cloud_repo", "system.release")

    @classmethod
    def input_files(cls, manifest: ManifestView) -> dict[str, Path]:
        try:
            return {"google cloud keyring": repository(manifest).keyring}
        except VzError:
            return {}  # no repository to build with: preflight stops the build, saying why

    @classmethod
    def preflight(cls, manifest: ManifestView) -> None:
        repository(manifest)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        repo = repository(info.manifest)
        release = info.manifest.get("system.release")
        (info.target / KEYRING).parent.mkdir(parents=True, exist_ok=True)
        (info.target / KEYRING).copy_from(repo.keyring, 0o644)
        suites = SUITES if info.manifest.get("plugins.google_cloud_repo.enable_keyring_repo") else SUITES[:1]
        (info.target / LIST).write_text(
            "".join(
                f"deb [signed-by=/{KEYRING}] {repo.url} {s.format(release=release)} main\n" for s in suites
            )
        )


class InstallKeyringPackage(AptInstall):
    description = "Installing the package that keeps Google's key up to date"
    packages = ("google-cloud-packages-archive-keyring",)


class RemoveBootstrapKey(Task):
    description = "Leaving Google's key to its keyring package"
    phase = Phase.PACKAGE_INSTALLATION
    predecessors = (InstallKeyringPackage,)

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        packaged = packaged_keyring(info)
        if packaged is None:
            log.warning(
                "google-cloud-packages-archive-keyring installed no keyring under /usr/share/keyrings: "
                "the build's key is kept in /%s",
                KEYRING,
            )
            return
        text = (info.target / LIST).read_text().replace(f"signed-by=/{KEYRING}", f"signed-by={packaged}")
        (info.target / LIST).write_text(text)
        (info.target / KEYRING).unlink()


def packaged_keyring(info: BuildInfo) -> str | None:
    """The keyring file the keyring package installed, from dpkg's list of its files."""
    listing = info.target / f"var/lib/dpkg/info/{InstallKeyringPackage.packages[0]}.list"
    if not listing.is_file():
        return None
    keyrings = [
        line
        for line in listing.read_text().splitlines()
        if line.startswith("/usr/share/keyrings/") and line.endswith(".gpg")
    ]
    return next((k for k in keyrings if (info.target / k).is_file()), None)
