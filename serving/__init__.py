"""Serve the digits model over HTTP with onnxruntime; torch-free by design.

Keep this file free of imports: the gunicorn master imports the package to read
its config, and onnxruntime must only load in the workers.
"""
