#!/usr/bin/env python3
"""Build a local stand-in for SAM's base image public.ecr.aws/lambda/provided:al2023-x86_64.

FOR OFFLINE TESTS ONLY. With network access, SAM pulls the real image from Amazon ECR and you
need none of this. On the machines that run `make test-sam` nothing can be pulled, so this
builds an image under the same tag from files of the host:

- /bin/busybox from Debian's busybox-static, as /bin/sh, mv and chmod: all that SAM's own
  Dockerfile runs on top of the base (`ADD aws-lambda-rie` + `RUN mv ... && chmod +x ...`);
- the glibc files the built functions link (`ldd` of .aws-sam/build/*/bootstrap: the dynamic
  loader, libc, libm, ...), at the paths ldd names;
- the host's CA bundle at Amazon Linux 2023's paths (/etc/pki/ca-trust/extracted/pem/
  tls-ca-bundle.pem, /etc/pki/tls/certs/ca-bundle.crt, /etc/ssl/certs): the functions'
  HTTPS clients (Ably, Secrets Manager, JWKS) refuse to start without root certificates;
- /var/task, /var/runtime, /opt and a world-writable /tmp, LAMBDA_TASK_ROOT and PATH as in
  the real image.

It is not Amazon Linux: no package manager, no shell beyond busybox. The image carries the
label `ably-authurl.standin=offline-test-only`; an image under the tag without that label
(the real one, pulled earlier) is left alone and used as it is. When the stand-in changes,
SAM's derived image (`...:al2023-rapid-x86_64`) is removed so that SAM rebuilds it on top.

    scripts/sam_standin_image.py [--build-dir .aws-sam/build] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAG = "public.ecr.aws/lambda/provided:al2023-x86_64"
RAPID_TAG = "public.ecr.aws/lambda/provided:al2023-rapid-x86_64"
LABEL = "ably-authurl.standin"
LABEL_VALUE = "offline-test-only"
HASH_LABEL = "ably-authurl.standin.content"
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ["sh", "mv", "chmod", "cp", "rm", "ls", "cat", "mkdir", "ln"]
# Always in, whatever ldd says: the loader and libc.
BASE_LIBS = ["/lib64/ld-linux-x86-64.so.2"]
CA_CANDIDATES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"]
AL2023_CA = "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"

DOCKERFILE = f"""\
# Stand-in for {TAG}: FOR OFFLINE TESTS ONLY (scripts/sam_standin_image.py).
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=en_US.UTF-8 TZ=:/etc/localtime \\
    LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
"""


def linked_libraries(binaries: list[Path]) -> list[str]:
    libs = set(BASE_LIBS)
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"ldd {binary} failed: {out.stderr.strip() or out.stdout.strip()}")
        for line in out.stdout.splitlines():
            m = re.search(r"(/\S+)", line)
            if m and "vdso" not in line:
                libs.add(m.group(1))
    return sorted(libs)


def is_static(path: Path) -> bool:
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    return out.returncode != 0 or "not a dynamic executable" in (out.stdout + out.stderr)


def ca_bundle() -> Path:
    for c in CA_CANDIDATES:
        if Path(c).is_file():
            return Path(c)
    raise SystemExit("no CA bundle on this host (apt-get install ca-certificates)")


def make_rootfs(root: Path, libs: list[str]) -> None:
    if not BUSYBOX.is_file() or not is_static(BUSYBOX):
        raise SystemExit(f"{BUSYBOX} is missing or not static: run `make tools-docker` (Debian busybox-static)")
    for d in ["bin", "usr/bin", "tmp", "var/task", "var/runtime", "var/rapid", "opt", "etc/pki/tls/certs",
              "etc/pki/ca-trust/extracted/pem", "etc/ssl"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    for lib in libs:
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), dest)
    shutil.copyfile(ca_bundle(), root / AL2023_CA)
    os.symlink("../../ca-trust/extracted/pem/tls-ca-bundle.pem", root / "etc/pki/tls/certs/ca-bundle.crt")
    os.symlink("../ca-trust/extracted/pem/tls-ca-bundle.pem", root / "etc/pki/tls/cert.pem")
    os.symlink("/etc/pki/tls/certs", root / "etc/ssl/certs")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nnobody:x:65534:\n")
    (root / "etc/os-release").write_text(
        'NAME="Lambda provided.al2023 stand-in"\nID=ably-authurl-standin\n'
        'PRETTY_NAME="Stand-in for public.ecr.aws/lambda/provided:al2023 (offline tests only)"\n')


def content_hash(root: Path) -> str:
    h = hashlib.sha256(DOCKERFILE.encode())
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root)).encode()
        h.update(rel)
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=str(ROOT / ".aws-sam" / "build"))
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = p.parse_args(argv)

    import docker  # the Docker SDK, installed with aws-sam-cli in .tools/venv

    binaries = sorted(Path(args.build_dir).glob("*/bootstrap"))
    if not binaries:
        raise SystemExit(f"no {args.build_dir}/*/bootstrap: run `sam build` first (make sam-build ARCH=x86_64)")
    client = docker.from_env()
    try:
        existing = client.images.get(TAG)
    except docker.errors.ImageNotFound:
        existing = None
    if existing is not None and (existing.labels or {}).get(LABEL) != LABEL_VALUE:
        print(f"{TAG}: a real image is present (no stand-in label); using it", file=sys.stderr)
        return 0

    with tempfile.TemporaryDirectory(prefix="sam-standin-") as tmp:
        ctx = Path(tmp)
        make_rootfs(ctx / "rootfs", linked_libraries(binaries))
        digest = content_hash(ctx / "rootfs")
        if existing is not None and not args.force and (existing.labels or {}).get(HASH_LABEL) == digest:
            print(f"{TAG}: stand-in up to date ({digest})", file=sys.stderr)
            return 0
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        image, _ = client.images.build(path=str(ctx), tag=TAG, rm=True, pull=False,
                                       labels={LABEL: LABEL_VALUE, HASH_LABEL: digest})
    # SAM builds its rapid image once on top of the base: make it rebuild on the new base.
    try:
        client.images.remove(RAPID_TAG, force=True)
    except docker.errors.ImageNotFound:
        pass
    size = image.attrs.get("Size", 0) / 1e6
    print(f"{TAG}: stand-in built ({digest}, {size:.1f} MB) - FOR OFFLINE TESTS ONLY", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
