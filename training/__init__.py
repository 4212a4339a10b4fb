"""Reproduces the shipped haemorrhage model: cross-validation, calibration, final fit and ONNX export.

Run `python -m training --data ../shared/data/head-ct --out models/`.
"""
