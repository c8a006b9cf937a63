"""The operator as a real process, started the way users start it:
`mtls-operator run` with a kubeconfig. Shared by the tests, the demo and
the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OperatorProcess:
    """`mtls-operator run` with `extra_args`, logging to `log_path`; healthy
    once its /healthz answers."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        extra_args: list[str],
        metrics_port: int | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = extra_args
        self.metrics_port = metrics_port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """How the operator is started, up to its flags."""
        return [str(Path(sys.executable).parent / "mtls-operator"), "run"]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def start(self, timeout: float = 60.0) -> None:
        args = [*self.command(), *self.extra_args, "--metrics-port", str(self.metrics_port)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=self.environment()
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the operator exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if self._healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the operator did not become healthy:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, as Kubernetes stops a pod; SIGKILL if it hangs."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int | None:
        return self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            text: str = response.read().decode()
            return text

    def readiness(self) -> tuple[int, str]:
        """/readyz: its status and body (what stops the operator, if anything)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=5
            ) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def memory_kib(self) -> tuple[int, int]:
        """Resident set size now and at its peak (VmRSS, VmHWM), in KiB."""
        if self._process is None:
            return (0, 0)
        fields = {}
        for line in Path(f"/proc/{self._process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.split()[0] if value.split() else "0"
        return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _end(self, signum: signal.Signals) -> int | None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        process.send_signal(signum)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
