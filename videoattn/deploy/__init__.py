"""Deployment: ONNX export with onnxruntime parity (:mod:`videoattn.deploy.onnx`)."""
