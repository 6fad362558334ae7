"""The pipeline's product: a verified artifact file in the run folder."""

from __future__ import annotations

import re

from attrs import frozen
from twisted.python.filepath import FilePath

from backupremote.protocol.runs import StageTiming
from backupremote.server.pipeline.chunkdigests import ChunkDigests

#: What a base name may be made of: it becomes a file name, and the name a
#: client sees.
BASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

#: Suffix of the artifact while it is written and verified.
PARTIAL_SUFFIX = ".partial"


@frozen
class Artifact:
    """
    The finished, verified artifact: C{path} inside the run folder, C{name}
    its file name (no server path), C{digest} the hex C{checksum} of the
    file's bytes (compressed), how long each stage took, and its chunks'
    digests for the transfer manifest.
    """

    path: FilePath
    name: str
    sizeBytes: int
    checksum: str
    digest: str
    stageTimings: list[StageTiming]
    #: The transfer chunks' digests, made while writing (beside the artifact).
    chunks: ChunkDigests | None = None


def artifactName(baseName: str, formatExtension: str, compressionExtension: str) -> str:
    """C{shop-20261129T031500Z.dump.zst} from the base name and the extensions."""
    if not BASE_NAME.fullmatch(baseName) or ".." in baseName:
        raise ValueError(f"not a usable artifact base name: {baseName!r}")
    return baseName + formatExtension + compressionExtension
