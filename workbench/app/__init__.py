"""The Streamlit app: sidebar, cached state and pages. ``app.py`` at the repository root is the entry point.

``sources``, ``tables`` and ``rows`` do not import Streamlit, so they can be tested without it.
``state``, ``sidebar`` and ``pages`` do.
"""
