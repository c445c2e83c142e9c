"""Apache Kafka's jars, fetched from Maven Central with `mvn` into a cache outside the repo.

Production runs on Apache Kafka, so the tests, the chaos run and the benchmark can run on
it too, with nothing but Java 17+ and Maven installed: the broker is the Maven artifact
`org.apache.kafka:kafka_2.13` (KRaft mode, `kafka.Kafka` as its main class) and its
runtime dependencies, copied once into `<cache>/<version>/libs`.

The version is pinned, not "whatever is newest today": a broker release must not change
under a green suite. `CHARGER_KAFKA_VERSION` picks another one; without it the first of
`KAFKA_VERSIONS` that resolves is used (newest first), so a mirror lacking the newest
still yields a broker. `CHARGER_KAFKA_CACHE` moves the cache (default:
`$XDG_CACHE_HOME/charger/kafka`, else `~/.cache/charger/kafka`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from charger_tools.embedded import EmbeddedServerError

__all__ = [
    "KAFKA_VERSIONS",
    "KafkaInstall",
    "KafkaUnavailableError",
    "cache_root",
    "install_kafka",
    "missing_tools",
]

# Newest first; every one of them starts on Java 17. 4.x only: KRaft, no ZooKeeper.
KAFKA_VERSIONS = ("4.4.0", "4.3.2", "4.2.1", "4.1.2", "4.0.2")
# The broker logs through SLF4J 1.7 (Kafka 4.x); without a binding it would log nothing.
_SLF4J_BINDING = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.5")
_FETCH_TIMEOUT_S = 900.0
_DONE = ".complete"

_LOG4J2 = """\
status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# One line per request at INFO would bury the broker's own story.
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class KafkaUnavailableError(EmbeddedServerError):
    """Apache Kafka cannot be had here: Java or Maven is missing, or nothing resolved."""


@dataclass(frozen=True)
class KafkaInstall:
    """One fetched Kafka version: its jars and the logging config its servers use."""

    version: str
    home: Path

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")  # the JVM expands a directory wildcard itself

    @property
    def log_config(self) -> Path:
        return self.home / "log4j2.properties"

    def java(self, main: str, *args: str, heap_mb: int = 512) -> list[str]:
        """The command line that runs `main` from these jars."""
        return [
            java_binary(),
            f"-Xmx{heap_mb}m",
            f"-Xms{min(heap_mb, 128)}m",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log_config}",
            "-cp",
            self.classpath,
            main,
            *args,
        ]


def cache_root() -> Path:
    given = os.environ.get("CHARGER_KAFKA_CACHE")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "charger" / "kafka"


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java") or "java"


def missing_tools(*, need_maven: bool = True) -> list[str]:
    """The programs Kafka needs here and cannot find: java, and mvn unless cached."""
    missing = []
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        missing.append("java (17 or newer)")
    if need_maven and not shutil.which("mvn"):
        missing.append("mvn (Maven)")
    return missing


def _cached(version: str) -> KafkaInstall | None:
    install = KafkaInstall(version, cache_root() / version)
    return install if (install.home / _DONE).exists() else None


def install_kafka(version: str | None = None) -> KafkaInstall:
    """The jars of `version` (else `CHARGER_KAFKA_VERSION`, else the newest that resolves).

    Fetched once per version, under a file lock so that two processes starting at once
    fetch it once; a half-done fetch is never taken for a complete one.
    """
    wanted = version or os.environ.get("CHARGER_KAFKA_VERSION") or None
    candidates = (wanted,) if wanted else KAFKA_VERSIONS
    for candidate in candidates:
        found = _cached(candidate)
        if found is not None:
            _need(need_maven=False)
            return found
    _need(need_maven=True)
    failures = []
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        for candidate in candidates:
            found = _cached(candidate)  # fetched by another process while we waited
            if found is not None:
                return found
            try:
                return _fetch(candidate, root)
            except KafkaUnavailableError as exc:
                failures.append(f"{candidate}: {exc}")
    raise KafkaUnavailableError("no Apache Kafka version resolved:\n" + "\n".join(failures))


def _need(*, need_maven: bool) -> None:
    missing = missing_tools(need_maven=need_maven)
    if missing:
        raise KafkaUnavailableError(
            f"Apache Kafka needs {' and '.join(missing)} on PATH; install them "
            "(Debian: openjdk-17-jre-headless maven) or use the embedded broker"
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pom(version: str) -> str:
    group, artifact, binding_version = _SLF4J_BINDING
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>charger.tools</groupId>
  <artifactId>apache-kafka</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
      <version>{binding_version}</version>
    </dependency>
  </dependencies>
</project>
"""


def _fetch(version: str, root: Path) -> KafkaInstall:
    """Resolve `version` with Maven into a fresh directory, then move it into place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
    try:
        (staging / "pom.xml").write_text(_pom(version))
        command = [
            shutil.which("mvn") or "mvn",
            "-q",
            "-B",
            "-f",
            str(staging / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging / 'libs'}",
        ]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_FETCH_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise KafkaUnavailableError(f"mvn took over {_FETCH_TIMEOUT_S:.0f}s") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode("utf-8", "replace")
            raise KafkaUnavailableError(f"mvn failed:\n{output[-1500:]}")
        if not (staging / "libs" / f"kafka_2.13-{version}.jar").exists():
            raise KafkaUnavailableError("mvn finished without the kafka_2.13 jar")
        (staging / "log4j2.properties").write_text(_LOG4J2)
        (staging / _DONE).write_text(version + "\n")
        home = root / version
        shutil.rmtree(home, ignore_errors=True)  # an incomplete earlier attempt
        staging.rename(home)
        return KafkaInstall(version, home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main() -> int:
    """`python -m charger_tools.kafka_install`: fetch now, print the version and its home."""
    try:
        install = install_kafka()
    except KafkaUnavailableError as exc:
        print(f"Apache Kafka unavailable: {exc}")
        return 1
    print(f"Apache Kafka {install.version} in {install.home}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
