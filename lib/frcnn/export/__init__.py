"""Putting a trained detector to work outside PyTorch: ONNX export (onnx.py) of the traceable
one-image graph (graph.py), and ONNX Runtime inference with the Python API's contract
(onnx_runtime.py). onnx, onnxscript and onnxruntime are optional (pip install -e .[onnx])."""
