"""Speed and memory beside torchvision's Faster R-CNN: python benchmark.py --net vgg16 --bs 1

The benchmark lives in tools/ (tools/benchmark.py has the flags); this is its entry point.
"""

from frcnn.cli import run_main
from tools.benchmark import main

if __name__ == "__main__":
    run_main(main)
