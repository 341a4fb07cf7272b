"""Throw-away certificate authorities and certificates, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Authority:
    directory: Path
    name: str

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.name}.crt"

    @property
    def key(self) -> Path:
        return self.directory / f"{self.name}.key"

    def issue(
        self, name: str, common_name: str, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()
    ) -> tuple[Path, Path]:
        """A certificate (and its 0600 key) signed by this authority."""
        key, csr, cert = (self.directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        _openssl(
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.name,
            "-subj",
            f"/CN={common_name}",
            "-out",
            csr.name,
            cwd=self.directory,
        )
        extensions = self.directory / f"{name}.ext"
        names = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        extensions.write_text(
            "basicConstraints=CA:FALSE\n" + (f"subjectAltName={','.join(names)}\n" if names else "")
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            csr.name,
            "-CA",
            self.cert.name,
            "-CAkey",
            self.key.name,
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            extensions.name,
            "-out",
            cert.name,
            cwd=self.directory,
        )
        key.chmod(0o600)
        return cert, key


def authority(directory: Path, name: str = "ca") -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN=Test CA {name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        cwd=directory,
    )
    return Authority(directory, name)
