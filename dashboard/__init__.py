"""The Streamlit dashboard: shared widgets, renderers and state helpers for ``pages/``.

Launch with ``streamlit run dashboard/app.py``. Nothing here imports captum: the pages call
the engine (``explainers``) and render what it returns.
"""
