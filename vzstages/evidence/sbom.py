"""The image's SBOMs: `<name>.spdx.json` (SPDX 2.3) and `<name>.cdx.json` (CycloneDX 1.6).

Both are built with the formats' own libraries (spdx-tools, cyclonedx-python-lib), which also
validate them, from the inventory facts of the image's last disk stage (inventory.py), not from
the image. Everything in them follows from the build's inputs: the document time is the
build's SOURCE_DATE_EPOCH, identifiers are derived from the content, and every list is sorted,
so the same inputs give the same bytes.

debsbom (which reads a Debian root) is not used: these SBOMs are written without opening the
image, from what each stage recorded, and debsbom's in-memory API orders packages by set order.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from .inventory import Entry

NAMESPACE = uuid.UUID("6c1e3c52-3a4e-4d3e-9f52-7a8f0cfa5d1e")  # vzstages' SBOM namespace


@dataclass(frozen=True)
class ImageFile:
    path: Path
    sha256: str


@dataclass(frozen=True)
class Subject:
    """What the SBOMs describe: the image files, what they hold, and when its inputs date from."""

    name: str
    images: Sequence[ImageFile]
    packages: Sequence[Entry]
    epoch: int  # SOURCE_DATE_EPOCH

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.epoch, UTC)

    def fingerprint(self) -> str:
        content = json.dumps(
            [self.name, [[i.path.name, i.sha256] for i in self.images], list(self.packages), self.epoch],
            sort_keys=True,
        )
        return hashlib.sha256(content.encode()).hexdigest()

    def identity(self) -> uuid.UUID:
        """The documents' identity: the same content, the same id."""
        return uuid.uuid5(NAMESPACE, self.fingerprint())


def purl(name: str, version: str, arch: str) -> str:
    from packageurl import PackageURL

    return str(
        PackageURL(type="deb", namespace="debian", name=name, version=version, qualifiers={"arch": arch})
    )


def purl_of(package: Entry) -> str:
    return purl(package["name"], package["version"], package["architecture"])


def spdx_id(kind: str, *parts: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9.-]", "-", "-".join(parts))
    return f"SPDXRef-{kind}-{readable}-{hashlib.sha256('/'.join(parts).encode()).hexdigest()[:8]}"


def sources(packages: Sequence[Entry]) -> list[tuple[str, str]]:
    return sorted({(p["source"], p["source_version"]) for p in packages})


def write_spdx(subject: Subject, path: Path) -> None:
    from spdx_tools.spdx.model import Actor, ActorType, CreationInfo, Document
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

    images, image_links = _spdx_images(subject)
    debs, deb_links = _spdx_debs(subject)
    document = Document(
        CreationInfo(
            "SPDX-2.3",
            "SPDXRef-DOCUMENT",
            subject.name,
            f"https://spdx.org/spdxdocs/vzstages-{subject.name}-{subject.identity()}",
            [Actor(ActorType.TOOL, "vzstages")],
            subject.created,
        ),
        packages=images + debs,
        relationships=image_links + deb_links,
    )
    stream = io.StringIO()
    write_document_to_stream(document, stream, validate=False)  # the tests validate it with spdx-tools
    write_atomic(path, stream.getvalue() + "\n")


def _spdx_images(subject: Subject) -> tuple[list[Any], list[Any]]:
    """Each image file, described by the document and containing every package."""
    from spdx_tools.spdx import model

    packages, relationships = [], []
    for image in subject.images:
        image_id = spdx_id("Image", image.path.name)
        packages.append(
            model.Package(
                image_id,
                image.path.name,
                model.SpdxNoAssertion(),
                file_name=image.path.name,
                files_analyzed=False,
                checksums=[model.Checksum(model.ChecksumAlgorithm.SHA256, image.sha256)],
                primary_package_purpose=model.PackagePurpose.FILE,
            )
        )
        relationships.append(
            model.Relationship("SPDXRef-DOCUMENT", model.RelationshipType.DESCRIBES, image_id)
        )
        for p in subject.packages:
            deb = spdx_id("Deb", p["name"], p["architecture"])
            relationships.append(model.Relationship(image_id, model.RelationshipType.CONTAINS, deb))
    return packages, relationships


def _spdx_debs(subject: Subject) -> tuple[list[Any], list[Any]]:
    """Each source package, and each binary package generated from its source."""
    from spdx_tools.spdx import model

    def package(spdx: str, name: str, version: str, ref: str, purpose: Any, **extra: Any) -> Any:
        return model.Package(
            spdx,
            name,
            model.SpdxNoAssertion(),
            version=version,
            files_analyzed=False,
            supplier=model.Actor(model.ActorType.ORGANIZATION, "Debian"),
            external_references=[
                model.ExternalPackageRef(model.ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", ref)
            ],
            primary_package_purpose=purpose,
            **extra,
        )

    purpose = model.PackagePurpose
    packages = [
        package(
            spdx_id("Source", source, version),
            source,
            version,
            purl(source, version, "source"),
            purpose.SOURCE,
        )
        for source, version in sources(subject.packages)
    ]
    relationships = []
    for p in subject.packages:
        binary = spdx_id("Deb", p["name"], p["architecture"])
        packages.append(
            package(
                binary,
                p["name"],
                p["version"],
                purl_of(p),
                purpose.LIBRARY if p["name"].startswith("lib") else purpose.APPLICATION,
                checksums=[model.Checksum(model.ChecksumAlgorithm.SHA256, p["sha256"])]
                if p["sha256"]
                else [],
                source_info=f"built from source package {p['source']} {p['source_version']}"
                + (f"; from the suite {p['suite']}" if p["suite"] else ""),
            )
        )
        source = spdx_id("Source", p["source"], p["source_version"])
        relationships.append(model.Relationship(binary, model.RelationshipType.GENERATED_FROM, source))
    return packages, relationships


def write_cyclonedx(subject: Subject, path: Path) -> None:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    components = []
    for p in subject.packages:
        components.append(
            Component(
                name=p["name"],
                version=p["version"],
                type=ComponentType.LIBRARY if p["name"].startswith("lib") else ComponentType.APPLICATION,
                bom_ref=purl_of(p),
                purl=PackageURL.from_string(purl_of(p)),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=p["sha256"])] if p["sha256"] else [],
                properties=[
                    Property(name="vzstages:source", value=f"{p['source']} {p['source_version']}"),
                    *([Property(name="vzstages:suite", value=p["suite"])] if p["suite"] else []),
                ],
            )
        )
    images = [
        Component(
            name=image.path.name,
            type=ComponentType.FILE,
            bom_ref=f"image:{image.path.name}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=image.sha256)],
        )
        for image in subject.images
    ]
    bom = Bom(components=components + images, serial_number=subject.identity())
    bom.metadata.timestamp = subject.created
    bom.metadata.component = Component(
        name=subject.name, type=ComponentType.OPERATING_SYSTEM, bom_ref=subject.name
    )
    bom.register_dependency(bom.metadata.component, images)
    for image in images:
        bom.register_dependency(image, components)
    write_atomic(path, JsonV1Dot6(bom).output_as_string(indent=1) + "\n")
