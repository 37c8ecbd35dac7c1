"""Evaluation: VOC AP (11-point or area) and, for COCO-format data, COCOeval."""
