"""The publish stage: the raw image to an EBS snapshot, the snapshot to a registered AMI.

The result is written to NAME.ami.json in the workspace (and printed as the build's last line), so
scripts read the AMI id without parsing logs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ...atomic import write_atomic
from ...bounded import MAX_RESULT_BYTES, read_regular
from ...cache.record import fresh_sha256
from ...model.info import BuildInfo
from ...model.phases import Phase
from ...model.task import Task
from ...model.view import ManifestView
from . import aws

# Tags and the description may use any {provider.*} or {system.*} field, so both read them whole.
READS = ("provider", "system", "tags")
DEFAULT_TIMEOUT = 3600


def connection(manifest: ManifestView) -> aws.Connection:
    credentials = manifest.get("provider.credentials") or {}
    return aws.Connection(
        region=aws.resolve_region(manifest.get("provider.region")),
        endpoint_url=manifest.get("provider.endpoint_url"),
        access_key=credentials.get("access-key"),
        secret_key=credentials.get("secret-key"),
        session_token=credentials.get("session-token"),
    )


def rendered_tags(manifest: ManifestView) -> dict[str, str]:
    return {str(k): manifest.render(str(v)) for k, v in (manifest.get("tags") or {}).items()}


def description(manifest: ManifestView) -> str:
    return manifest.render(manifest.get("provider.description") or "")


class UploadSnapshot(Task):
    description = "Uploading the image to an EBS snapshot"
    phase = Phase.IMAGE_PUBLISHING
    reads = READS

    @classmethod
    def preflight(cls, manifest: ManifestView) -> None:
        aws.check_credentials(connection(manifest))

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        manifest = info.manifest
        image = info.workspace / Path(info.facts["image"]).name
        # The digest `vzstages verify` checks: an AMI leads back to its image and provenance.
        info.facts["image_sha256"] = fresh_sha256(image)
        info.facts["snapshot_id"] = aws.upload_snapshot(
            connection(manifest),
            image=image,
            image_key=info.facts["image_key"],
            description=description(manifest),
            tags={**rendered_tags(manifest), aws.IMAGE_DIGEST_TAG: info.facts["image_sha256"]},
            timeout=manifest.get("provider.publish_timeout", DEFAULT_TIMEOUT),
            say=info.say,
        )


class RegisterImage(Task):
    description = "Registering the AMI"
    phase = Phase.IMAGE_PUBLISHING
    predecessors = (UploadSnapshot,)
    reads = (*READS, "name")

    @classmethod
    def outputs(cls, manifest: ManifestView, image_name: str) -> list[str]:
        return [f"{image_name}.ami.json"]

    @classmethod
    def request(cls, manifest: ManifestView, image_name: str) -> aws.AmiRequest:
        return aws.AmiRequest(
            name=image_name,
            description=description(manifest),
            architecture=manifest.get("system.architecture"),
            # A hybrid image boots either way: EC2 then picks per instance type (uefi-preferred).
            boot_mode={"bios": "legacy-bios", "uefi": "uefi", "hybrid": "uefi-preferred"}[manifest.firmware],
            ena=True,  # the cloud kernel has the ENA driver and the initramfs loads it
            sriov=manifest.get("provider.enhanced_networking") == "simple",
            tags=rendered_tags(manifest),
        )

    @classmethod
    def run(cls, info: BuildInfo) -> None:
        manifest = info.manifest
        conn = connection(manifest)
        request = cls.request(manifest, info.image_name)
        digest = {aws.IMAGE_DIGEST_TAG: info.facts["image_sha256"]}
        image_id = aws.register_ami(
            conn,
            dataclasses.replace(request, tags={**request.tags, **digest}),
            snapshot_id=info.facts["snapshot_id"],
            publish_key=info.key,
            timeout=manifest.get("provider.publish_timeout", DEFAULT_TIMEOUT),
            say=info.say,
        )
        info.facts["image_id"] = image_id
        info.facts["region"] = conn.region
        result = {
            "provider": "ec2",
            "region": conn.region,
            "image_id": image_id,
            "snapshot_id": info.facts["snapshot_id"],
            "name": info.image_name,
        }
        write_atomic(info.workspace / cls.outputs(manifest, info.image_name)[0], json.dumps(result) + "\n")


def add_to_result(info: BuildInfo, **fields: object) -> None:
    """More of the publish stage's result (copies, an instance) in NAME.ami.json, which the
    build prints as its last line."""
    path = info.workspace / f"{info.image_name}.ami.json"
    result = json.loads(read_regular(path, MAX_RESULT_BYTES))
    result.update(fields)
    write_atomic(path, json.dumps(result) + "\n")
