"""Serve the digits model over HTTP with onnxruntime; torch-free by design.

Keep this file free of imports: `python -m serving` and every worker import the
package, and each should load only what it uses.
"""
