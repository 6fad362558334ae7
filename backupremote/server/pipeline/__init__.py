"""
The streaming backup pipeline the server runs for one run.

L{produceArtifact} dumps a database with its engine's tool, compresses the
stream on its way (an external multi-threaded compressor joined by an OS
pipe, or in-process for zip), hashes and writes it in one thread that reads
the final pipe directly (the kernel's pipe buffers are the only queues, so
a slow disk slows the dump and memory stays flat), then reads the artifact
back to verify it, and returns an L{Artifact}. What dumps and how its
result is checked is the engine's own C{DumpPlan}
(L{backupremote.server.engines.dumps}), and how it is compressed its
compressor's (L{backupremote.server.machinery.compressors}); the pipeline runs any of
them the same way. Modules, one idea each:

  - C{produce}: the stages, the timeout, the cleanup on failure or cancel;
  - C{dumping}: the dump stage (children wired by OS pipes, the sink);
  - C{sink}: the thread that reads, hashes and writes the artifact;
  - C{verification}, C{inspection}: reading back, decompressing, checking;
  - C{children}, C{threads}, C{waiting}: the parts of a stage and how a
    stage waits for them (each settles an L{backupremote.outcome.Outcome});
  - C{progress}: what each stage reports; C{context}: one run's state;
  - C{hooks}: seams for tests and benchmarks.
"""

from backupremote.server.pipeline.artifact import Artifact
from backupremote.server.pipeline.hooks import PipelineHooks
from backupremote.server.pipeline.produce import produceArtifact

__all__ = ["Artifact", "PipelineHooks", "produceArtifact"]
