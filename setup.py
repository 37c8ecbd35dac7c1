"""Installs the `frcnn` package from lib/ (pip install -e .). Nothing is compiled."""

from setuptools import find_packages, setup

setup(
    name="frcnn",
    version="0.1.0",
    description="Faster R-CNN in PyTorch: train, evaluate and run detectors on CPU or GPU, no compile step",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    python_requires=">=3.9",
    # export.py and .onnx detectors: pip install -e .[onnx]
    extras_require={"onnx": ["onnx>=1.17", "onnxscript>=0.3", "onnxruntime>=1.20"]},
)
