"""Train the digits MLP in PyTorch and export it to ONNX."""
