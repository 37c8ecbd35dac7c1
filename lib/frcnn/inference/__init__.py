"""Inference and deployment: the Detections result and what both runtimes share (detections.py),
the PyTorch runtime (torch_detector.py), the ONNX Runtime one (onnx_detector.py), running over a
dataset split (records.py), evaluating a detector (evaluator.py) and the demo's runner (demo.py)."""
