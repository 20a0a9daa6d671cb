"""Build the deployment's images: ``python3 -m deploy.images`` (what ``make image`` runs).

Two ways, chosen by whether the official base images can be had (``--base auto``):

- ``registry``: the app ``FROM python:3.11-slim-bookworm``, the proxy is the
  official ``nginx:1.28-alpine``;
- ``local``, for engines without an image registry: a Debian bookworm base made
  with debootstrap from the Debian mirror (``deploy/docker/debian-base.sh``), a
  Python image and an nginx image built on it (``deploy/docker/*.Dockerfile``),
  and the app on that Python image.

torch comes from the CPU-only wheel of pip's ``find-links`` folder when there is
one (imported as an image and mounted into the build), else from PyTorch's CPU
index. The host's CA bundle goes in as the build secret ``ca`` (pip trusts a
TLS-intercepting proxy during the build; no layer keeps it).

Writes ``deploy/images.env`` (``APP_IMAGE``, ``PROXY_IMAGE``, ``PYTHON_IMAGE``)
for ``docker compose --env-file deploy/images.env …``. Standard library only: it
runs before any virtualenv exists.
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = ROOT / "deploy" / "docker"
ENV_FILE = ROOT / "deploy" / "images.env"

APP_IMAGE = "xai-live:latest"
REGISTRY_PYTHON = "python:3.11-slim-bookworm"
REGISTRY_NGINX = "nginx:1.28-alpine"
LOCAL_DEBIAN = "xai-debian:bookworm"
LOCAL_PYTHON = "xai-python:3.11-bookworm"
LOCAL_NGINX = "xai-nginx:bookworm"
TORCH_WHEEL = re.compile(r"torch-2\.13\.0\+cpu-cp311-cp311-manylinux[^/]*_x86_64\.whl")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PULL_TIMEOUT_S = 600
BUILD_TIMEOUT_S = 3600


class ImageError(RuntimeError):
    """An image could not be built; the message says why."""


class MissingPrerequisite(ImageError):
    """This machine lacks a tool the build needs; the message names what to install."""


@dataclass(frozen=True)
class Images:
    """What compose and the stack file run (their ``APP_IMAGE`` / ``PROXY_IMAGE``)."""

    app: str
    proxy: str
    python: str

    def env(self) -> dict[str, str]:
        return {"APP_IMAGE": self.app, "PROXY_IMAGE": self.proxy, "PYTHON_IMAGE": self.python}


def log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = BUILD_TIMEOUT_S,
        stdin: bytes | None = None) -> str:
    """Run ``argv``; on failure raise with the command's output (builds are long: the tail)."""
    result = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise ImageError(f"{' '.join(argv[:3])}… failed ({result.returncode}):\n{output[-4000:]}")
    return result.stdout.decode(errors="replace")


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def available(name: str) -> bool:
    """Present, or pulled now. An engine without a registry refuses at once (DNS), no wait."""
    if image_exists(name):
        return True
    pulled = subprocess.run(["docker", "pull", "-q", name], capture_output=True, timeout=PULL_TIMEOUT_S)
    return pulled.returncode == 0


def buildkit() -> tuple[list[str], dict[str, str]]:
    """A ``docker build`` with BuildKit (needed for ``RUN --mount`` and ``--secret``).

    The buildx plugin where installed; else a client with BuildKit built in
    (Docker < 23, e.g. Debian's docker.io 20.10 at /usr/bin/docker), since a
    newer client without buildx has only the legacy builder.
    """
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0:
        return ["docker", "buildx", "build", "--load"], {}
    for client in dict.fromkeys(filter(None, [shutil.which("docker"), "/usr/bin/docker"])):
        version = subprocess.run([client, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True)
        major = re.match(r"(\d+)\.", version.stdout)
        if major and int(major.group(1)) < 23:
            return [client, "build"], {"DOCKER_BUILDKIT": "1"}
    raise MissingPrerequisite("no Docker client can build with BuildKit: install the buildx plugin "
                     "(Debian: docker-buildx) or Debian's docker.io, whose client has it built in")


def pip_find_links() -> list[Path]:
    """The folders of pip's ``find-links`` setting (``pip config list``), if any."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    folders = []
    for line in listing.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            folders += [Path(item) for item in value.strip("'\"").split() if not item.startswith("http")]
    return folders


def local_torch_wheel(folders: Sequence[Path]) -> Path | None:
    for folder in folders:
        if folder.is_dir():
            for wheel in sorted(folder.iterdir()):
                if TORCH_WHEEL.fullmatch(wheel.name):
                    return wheel
    return None


def wheel_image(wheel: Path) -> str:
    """An image holding only ``wheel`` at its root, imported once per wheel (named by its hash)."""
    digest = hashlib.sha256(wheel.name.encode() + str(wheel.stat().st_size).encode()).hexdigest()[:12]
    name = f"xai-torch-wheel:{digest}"
    if not image_exists(name):
        log(f"importing {wheel} as {name}")
        archive = subprocess.run(["tar", "-C", str(wheel.parent), "-c", wheel.name], capture_output=True,
                                 check=True).stdout
        run(["docker", "import", "-", name], stdin=archive)
    return name


def build(argv_env: tuple[list[str], dict[str, str]], tag: str, dockerfile: Path, context: Path,
          args: dict[str, str], secrets: dict[str, Path]) -> None:
    command, env = argv_env
    started = time.monotonic()
    argv = [*command, "-t", tag, "-f", str(dockerfile)]
    argv += [item for name, value in args.items() for item in ("--build-arg", f"{name}={value}")]
    argv += [item for name, path in secrets.items() for item in ("--secret", f"id={name},src={path}")]
    run([*argv, str(context)], env=env)
    log(f"built {tag} in {time.monotonic() - started:.0f} s")


def debian_base(name: str) -> str:
    """``name``, made with debootstrap unless it exists (needs root and debootstrap)."""
    if image_exists(name):
        return name
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise MissingPrerequisite(f"no image registry and no {name}: making it needs root and debootstrap "
                         "(apt-get install debootstrap)")
    started = time.monotonic()
    run([str(DOCKER_DIR / "debian-base.sh"), name])
    log(f"made {name} with debootstrap in {time.monotonic() - started:.0f} s")
    return name


def build_images(base: str = "auto", torch_wheels: Path | None = None, ca_bundle: Path | None = CA_BUNDLE,
                 env_file: Path | None = ENV_FILE) -> Images:
    """Build the app image (and, without a registry, the proxy image); return the names to run."""
    builder = buildkit()
    secrets = {"ca": ca_bundle} if ca_bundle is not None and ca_bundle.is_file() else {}
    if base == "auto":
        base = "registry" if available(REGISTRY_PYTHON) and available(REGISTRY_NGINX) else "local"
        log(f"base images: {base}")
    if base == "registry":
        python, proxy = REGISTRY_PYTHON, REGISTRY_NGINX
        for name in (python, proxy):
            if not available(name):
                raise ImageError(f"cannot pull {name}: use --base local")
    else:
        debian = debian_base(LOCAL_DEBIAN)
        python, proxy = LOCAL_PYTHON, LOCAL_NGINX
        for tag, dockerfile in ((python, "python.Dockerfile"), (proxy, "nginx.Dockerfile")):
            build(builder, tag, DOCKER_DIR / dockerfile, DOCKER_DIR, {"DEBIAN_IMAGE": debian}, {})
    wheel = local_torch_wheel([torch_wheels] if torch_wheels else pip_find_links())
    args = {"PYTHON_IMAGE": python}
    if wheel is not None:
        args |= {"TORCH_WHEELS_IMAGE": wheel_image(wheel), "TORCH_PIP_ARGS": "--find-links /wheels"}
        log(f"torch from {wheel}")
    build(builder, APP_IMAGE, ROOT / "Dockerfile", ROOT, args, secrets)
    images = Images(app=APP_IMAGE, proxy=proxy, python=python)
    if env_file is not None:
        env_file.write_text("# Written by `make image` (deploy/images.py): the images it built.\n"
                            + "".join(f"{key}={value}\n" for key, value in images.env().items()))
    return images


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=["auto", "registry", "local"], default="auto",
                        help="official base images from a registry, or made locally (default: registry if pullable)")
    parser.add_argument("--torch-wheels", type=Path,
                        help="folder holding the torch 2.13.0 CPU wheel "
                             "(default: pip's find-links, else the CPU index)")
    parser.add_argument("--ca-bundle", type=Path, default=CA_BUNDLE,
                        help=f"CA bundle pip trusts during the build, as a secret (default {CA_BUNDLE})")
    args = parser.parse_args(argv)
    try:
        images = build_images(args.base, args.torch_wheels, args.ca_bundle)
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for key, value in images.env().items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
