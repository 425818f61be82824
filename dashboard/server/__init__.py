"""The dashboard's server entry (``serve.py``, run by ``streamlit run``) and its script-level
Streamlit settings (``.streamlit/config.toml``, the repository's own)."""
