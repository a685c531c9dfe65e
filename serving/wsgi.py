"""WSGI entry point for gunicorn: `serving.wsgi:app`.

gunicorn imports this in each worker (preload is off), so every worker opens
its own onnxruntime session and the master never loads onnxruntime.
"""

from serving.app import create_app

app = create_app()
