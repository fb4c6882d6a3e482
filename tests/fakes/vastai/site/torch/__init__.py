"""A stand-in for torch on fake vast.ai instances: version and CUDA availability from $FAKE_VAST_GPU_FILE."""

import json
import os

__version__ = "2.4.0+fake"


class _Cuda:
    @staticmethod
    def _state():
        with open(os.environ["FAKE_VAST_GPU_FILE"]) as f:
            return json.load(f)

    def is_available(self):
        state = self._state()
        return bool(state["gpus"]) and not state.get("cuda_broken") and not state.get("nvml_failure")

    def device_count(self):
        return len(self._state()["gpus"]) if self.is_available() else 0


cuda = _Cuda()
