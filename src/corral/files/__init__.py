"""Moving job inputs and outputs between URLs (fsspec) and a job's io directory."""

from __future__ import annotations

from corral.files.iopaths import IO_ROOT, host_path
from corral.files.transfer import TransferError, copy_in, copy_out

__all__ = ["IO_ROOT", "TransferError", "copy_in", "copy_out", "host_path"]
