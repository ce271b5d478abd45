"""One place for differences between the OpenVINO releases we support (2024.4 .. 2026.x)."""

from __future__ import annotations

try:  # OpenVINO >= 2025.0
    import openvino.opset13 as opset
except ImportError:  # pragma: no cover - OpenVINO 2024.x (the openvino-xai extra) has opsets only here
    from openvino.runtime import opset13 as opset  # the 2026 removal of this module does not affect 2024.x

try:  # OpenVINO >= 2025.0
    from openvino.passes import ConstantFolding
    from openvino.passes import Manager as PassManager
except ImportError:  # pragma: no cover - OpenVINO 2024.x
    from openvino.runtime.passes import ConstantFolding
    from openvino.runtime.passes import Manager as PassManager

__all__ = ["ConstantFolding", "PassManager", "opset"]
