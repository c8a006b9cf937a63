"""Container images for the local node, built without a Docker daemon and never pulled.

- `mtls-operator`: the project's Dockerfile, unchanged, built by buildah. The Dockerfile's
  pinned base (`python:...-slim-bookworm@sha256:...`) cannot be pulled here, so buildah's
  `--from` puts a stand-in in its place: Debian bookworm's own python3.11, made with
  mmdebstrap. Users keep `docker build` with the pinned base.
- `workload`: Debian bookworm with python3, openssl and nginx, for the pods that mount what
  the operator writes. Their programs come from ConfigMaps, as in `examples/`.
- `pause`: the sandbox container, a static binary built with the node's runtime.

Each image is cached as a docker-archive tarball in ~/.cache/mtls-operator/images/, named
by a hash of what decides it, so a warm run builds nothing. buildah runs as root in a
private mount namespace (`unshare --mount`): its storage mounts end with it, and nothing is
left mounted on the host.

    python hack/images.py build         # prints one tarball path per image
    python hack/images.py load SOCKET   # also imports them into the node's containerd
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()
CACHE_ROOT = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mtls-operator" / "images"
)
NODE_BUILD_SCRIPT = REPO_ROOT / "hack" / "control-plane" / "node" / "build.sh"

DEBIAN_SUITE = "bookworm"
# The release with its point updates and security fixes, as the pinned base has them.
DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# Documentation, manual pages and translations are of no use in an image.
SLIM = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")

# What the Dockerfile's base gives the build: python3.11 with venv and pip (python3.11-venv
# brings the wheels of pip and setuptools), `python` on the PATH, and CA certificates.
STANDIN_PACKAGES = ("python3.11", "python3.11-venv", "python-is-python3", "ca-certificates")
WORKLOAD_PACKAGES = ("python3", "openssl", "nginx-light", "ca-certificates")
# The pause image's user is root (it only waits); the others default to the operator's uid.
NON_ROOT = "65532:65532"

# The names `build` and `load` take, and the references pods use.
OPERATOR, WORKLOAD, PAUSE = "mtls-operator", "workload", "pause"
OPERATOR_IMAGE = "localhost/mtls-operator:dev"
WORKLOAD_IMAGE = "localhost/mtls-workload:dev"
PAUSE_IMAGE = "localhost/pause:local"
IMAGES = {OPERATOR: OPERATOR_IMAGE, WORKLOAD: WORKLOAD_IMAGE, PAUSE: PAUSE_IMAGE}

# The files the Dockerfile's build context admits (.dockerignore) decide the operator's image.
OPERATOR_CONTEXT = (
    "Dockerfile",
    ".dockerignore",
    "requirements.lock",
    "build-requirements.lock",
    "pyproject.toml",
    "README.md",
)
OPERATOR_PACKAGE = REPO_ROOT / "operator"


class ImageError(Exception):
    """An image could not be built or loaded; the message says which and why."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _digest(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _package_files() -> list[Path]:
    return sorted(
        path
        for path in OPERATOR_PACKAGE.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and not any(part.endswith(".egg-info") for part in path.parts)
    )


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ImageError(f"{' '.join(argv[:3])} ... exited with {result.returncode}:\n{tail}")
    return result


@dataclass(frozen=True)
class Buildah:
    """buildah on the project's own storage, in this process's private mount namespace."""

    storage: Path
    runroot: Path

    def argv(self, *args: str) -> list[str]:
        storage = ["--root", str(self.storage), "--runroot", str(self.runroot)]
        return ["buildah", *storage, "--storage-driver", "overlay", *args]

    def __call__(self, *args: str, cwd: Path | None = None) -> str:
        return _run(self.argv(*args), cwd=cwd).stdout.strip()

    def succeeds(self, *args: str) -> bool:
        return subprocess.run(self.argv(*args), capture_output=True, check=False).returncode == 0

    def exists(self, image: str) -> bool:
        return self.succeeds("inspect", "--type", "image", image)

    def rootfs_image(self, rootfs: Path, name: str, config: Sequence[str]) -> None:
        """Commit a directory as a one-layer image."""
        container = self("from", "scratch")
        try:
            self("copy", container, f"{rootfs}/", "/")
            self("config", *config, container)
            self("commit", "--format", "docker", "--rm", container, name)
        except BaseException:
            self.succeeds("rm", container)
            raise

    def save(self, image: str, tarball: Path) -> None:
        partial = tarball.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        self("push", image, f"docker-archive:{partial}:{image}")
        partial.rename(tarball)


def _debootstrap_options(packages: Sequence[str]) -> list[str]:
    return [
        "--variant=minbase",
        f"--include={','.join(packages)}",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in SLIM),
        # The machine's apt settings (a mirror snapshot may be older than its Valid-Until).
        "--aptopt=Acquire::Check-Valid-Until false",
    ]


def _recipe_key(*parts: Sequence[str]) -> str:
    """The key of an image made from Debian packages: its mmdebstrap command and its
    configuration, not the code that runs them."""
    return _digest(["\0".join(part).encode() for part in parts])


PATH_ENV = ("--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
STANDIN_CONFIG = PATH_ENV
WORKLOAD_CONFIG = (*PATH_ENV, "--user", NON_ROOT, "--cmd", "python3")
PAUSE_CONFIG = ("--entrypoint", '["/pause"]')


@dataclass(frozen=True)
class Builder:
    buildah: Buildah
    cache: Path
    scratch: Path

    def debian_image(
        self, name: str, packages: Sequence[str], config: Sequence[str]
    ) -> tuple[str, bool]:
        """An image of Debian packages in buildah's storage, tagged with its recipe's key;
        whether it had to be made."""
        options = _debootstrap_options(packages)
        image = f"localhost/{name}:{_recipe_key(options, DEBIAN_SOURCES, config)}"
        if self.buildah.exists(image):
            return image, False
        _log(f"building {image} from Debian {DEBIAN_SUITE} packages")
        rootfs = self.scratch / name
        _run(["mmdebstrap", *options, DEBIAN_SUITE, str(rootfs), *DEBIAN_SOURCES])
        self.buildah.rootfs_image(rootfs, image, config)
        return image, True

    def standin_base(self) -> str:
        return self.debian_image("mtls-standin-python", STANDIN_PACKAGES, STANDIN_CONFIG)[0]

    def operator(self) -> Path:
        base = self.standin_base()
        files = [REPO_ROOT / name for name in OPERATOR_CONTEXT] + _package_files()
        key = _digest(
            [base.encode()]
            + [str(path.relative_to(REPO_ROOT)).encode() + path.read_bytes() for path in files]
        )
        tarball = self.cache / f"{OPERATOR}-{key}.tar"
        if not tarball.exists():
            _log(f"building {OPERATOR_IMAGE} from the Dockerfile on {base}")
            self.buildah(
                "build",
                "--pull=never",
                "--isolation",
                "chroot",
                "--layers",
                "--format",
                "docker",
                "--from",
                base,
                # pip in the build reaches the package index through this machine's TLS
                # proxy; its CA is lent to the build steps, never copied into a layer.
                "--volume",
                "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
                "--tag",
                OPERATOR_IMAGE,
                "--file",
                "Dockerfile",
                ".",
                cwd=REPO_ROOT,
            )
            self.buildah.save(OPERATOR_IMAGE, tarball)
        return tarball

    def workload(self) -> Path:
        image, _ = self.debian_image("mtls-workload-base", WORKLOAD_PACKAGES, WORKLOAD_CONFIG)
        tarball = self.cache / f"{WORKLOAD}-{image.rpartition(':')[2]}.tar"
        if not tarball.exists():
            self.buildah("tag", image, WORKLOAD_IMAGE)
            self.buildah.save(WORKLOAD_IMAGE, tarball)
        return tarball

    def pause(self) -> Path:
        binary = node_bin_dir() / "pause"
        key = _digest([binary.read_bytes(), "\0".join(PAUSE_CONFIG).encode()])
        tarball = self.cache / f"{PAUSE}-{key}.tar"
        if not tarball.exists():
            _log(f"building {PAUSE_IMAGE}")
            rootfs = self.scratch / "pause"
            rootfs.mkdir()
            shutil.copy2(binary, rootfs / "pause")
            self.buildah.rootfs_image(rootfs, PAUSE_IMAGE, PAUSE_CONFIG)
            self.buildah.save(PAUSE_IMAGE, tarball)
        return tarball


def load(ctr: Path, socket: Path, tarballs: Sequence[Path]) -> None:
    """Import the tarballs into the node's containerd, where the kubelet finds them (CRI's
    namespace)."""
    for tarball in tarballs:
        _run(
            [
                str(ctr),
                "--address",
                str(socket),
                "--namespace",
                "k8s.io",
                "images",
                "import",
                str(tarball),
            ]
        )


def node_bin_dir() -> Path:
    result = subprocess.run(
        ["bash", str(NODE_BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ImageError(f"{NODE_BUILD_SCRIPT} failed with exit code {result.returncode}")
    return Path(lines[-1])


@contextlib.contextmanager
def _builder() -> Iterator[Builder]:
    for tool in ("buildah", "mmdebstrap", "unshare"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} is not installed: run hack/ensure-tools.sh")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    # A fresh run root: what an earlier, killed build thought was mounted is not.
    with tempfile.TemporaryDirectory(prefix="mtls-images-") as scratch:
        runroot = Path(scratch) / "run"
        work = Path(scratch) / "work"
        work.mkdir()
        yield Builder(Buildah(CACHE_ROOT / "storage", runroot), CACHE_ROOT, work)


def build(names: Sequence[str]) -> list[Path]:
    """Build (or reuse) the named images; return their tarballs in the same order."""
    started = time.monotonic()
    with _builder() as builder:
        recipes = {OPERATOR: builder.operator, WORKLOAD: builder.workload, PAUSE: builder.pause}
        tarballs = [recipes[name]() for name in names]
    elapsed = time.monotonic() - started
    if elapsed > 1:
        _log(f"images ready in {elapsed:.0f} s")
    for name, tarball in zip(names, tarballs, strict=True):
        _prune(name, tarball)
    return tarballs


def _prune(name: str, keep: Path) -> None:
    """Older tarballs of an image are never used again."""
    for tarball in CACHE_ROOT.glob(f"{name}-*.tar"):
        if tarball != keep:
            tarball.unlink(missing_ok=True)


def built_tarballs(names: Sequence[str] = tuple(IMAGES)) -> list[Path]:
    """The named images' tarballs, built in a child process (see `main`)."""
    result = subprocess.run(
        [sys.executable, str(HERE), "build", *names],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageError(f"hack/images.py build exited with {result.returncode}")
    return [Path(line) for line in result.stdout.split()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    builder = commands.add_parser("build", help="build the images; print their tarballs")
    builder.add_argument("names", nargs="*", help=f"of {', '.join(IMAGES)} (default: all)")
    loader = commands.add_parser("load", help="build them all and import them into the node")
    loader.add_argument(
        "--dir", type=Path, default=REPO_ROOT / ".cluster", help="the cluster's state directory"
    )
    args = parser.parse_args(argv)
    names = (args.names if args.command == "build" else []) or list(IMAGES)
    unknown = sorted(set(names) - set(IMAGES))
    if unknown:
        parser.error(f"no image named {', '.join(unknown)} (there are {', '.join(IMAGES)})")
    if os.geteuid() != 0:
        _log("images.py: buildah and mmdebstrap run as root here")
        return 1
    if os.environ.get("MTLS_IMAGES_NAMESPACED") != "1":
        # Everything buildah mounts stays in a namespace that ends with this command.
        env = {**os.environ, "MTLS_IMAGES_NAMESPACED": "1"}
        command = [
            *("unshare", "--mount", "--propagation", "private"),
            *(sys.executable, str(HERE), *(sys.argv[1:] if argv is None else argv)),
        ]
        return subprocess.run(command, env=env, check=False).returncode
    try:
        tarballs = build(names)
        if args.command == "load":
            socket = args.dir.resolve() / "node" / "containerd.sock"
            if not socket.exists():
                raise ImageError(f"no node runs in {args.dir}: start one with `make cluster-up`")
            load(node_bin_dir() / "ctr", socket, tarballs)
            _log(f"loaded {', '.join(IMAGES[name] for name in names)}")
    except ImageError as error:
        _log(f"images.py: {error}")
        return 1
    for tarball in tarballs:
        print(tarball)
    return 0


if __name__ == "__main__":
    sys.exit(main())
