"""The local web app (``steerlab ui``); needs the ``ui`` extra (Gradio)."""
