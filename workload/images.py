"""Container image references: their parts, and the pull policy each kind of pin calls for.

Standard library only: the orchestrator (step pods) and the deploy step (the Ray and iperf3 pods)
both use it, so that one target's image is pulled the same way everywhere.
"""

from __future__ import annotations

import re
from typing import NamedTuple

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ImageRef(NamedTuple):
    repository: str  # registry/path/name, without tag or digest
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


def parse_image(image: str) -> ImageRef:
    """``registry:5000/name:tag``, ``name@sha256:...`` -> its parts (a port is not a tag)."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        repository, tag = rest[:colon], rest[colon + 1:]
    else:
        repository, tag = rest, None
    if digest and not DIGEST.match(digest):
        raise ValueError(f"image {image!r}: {digest!r} is not a sha256 digest")
    return ImageRef(repository, tag or None, digest or None)


def pull_policy(image: str) -> str:
    """IfNotPresent for a digest (the content cannot change), Always for a tag (it can be moved:
    the node must not keep running an old build under a reused tag)."""
    return "IfNotPresent" if parse_image(image).digest else "Always"
