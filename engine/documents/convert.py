"""DOCX → PDF with LibreOffice headless.

Each conversion runs ``soffice --headless --convert-to pdf`` in a private temporary
directory that also holds its own user profile (``-env:UserInstallation``), so conversions
run side by side (two soffice processes sharing a profile wait for or break each other)
and leave nothing behind. A conversion that fails or takes longer than ``timeout`` seconds
raises :class:`ConversionFailed` with what soffice said.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_TIMEOUT = 120.0
CANDIDATES = ("soffice", "libreoffice")


class ConversionFailed(Exception):
    """The document could not be converted to PDF (no converter, an error, a timeout)."""


def converter() -> str | None:
    """The path of the LibreOffice executable on the PATH, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def to_pdf(docx: bytes, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """The PDF of a DOCX document."""
    soffice = converter()
    if soffice is None:
        raise ConversionFailed("LibreOffice (soffice) is not installed: "
                               "apt-get install libreoffice-writer-nogui")
    with tempfile.TemporaryDirectory(prefix="nd73-pdf-") as tmp:
        work = Path(tmp)
        source = work / "document.docx"
        source.write_bytes(docx)
        profile = (work / "profile").as_uri()
        command = [soffice, f"-env:UserInstallation={profile}", "--headless", "--norestore",
                   "--nologo", "--nolockcheck", "--convert-to", "pdf", "--outdir",
                   str(work / "out"), str(source)]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, cwd=work,
                                  env={**os.environ, "HOME": str(work)})
        except subprocess.TimeoutExpired:
            raise ConversionFailed(f"LibreOffice took longer than {timeout:g} s") from None
        except OSError as exc:
            raise ConversionFailed(f"LibreOffice could not be started: {exc}") from None
        result = work / "out" / "document.pdf"
        if done.returncode != 0 or not result.exists():
            said = (done.stderr or done.stdout or b"").decode("utf-8", "replace").strip()
            raise ConversionFailed(f"LibreOffice could not convert the document "
                                   f"(exit {done.returncode}): {said[-500:] or 'no output'}")
        return result.read_bytes()
