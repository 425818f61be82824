"""Entry point: ``streamlit run dashboard/app.py``.

Page config plus ``st.navigation`` over the top-level ``pages/`` files, given by absolute
path. The entry script lives in ``dashboard/`` so Streamlit's legacy ``pages/`` folder
auto-discovery (a ``pages/`` directory next to the entry script) never kicks in.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.state import enter_page  # noqa: E402

st.set_page_config(page_title="Attribution Studio", page_icon=":material/insights:", layout="wide",
                   initial_sidebar_state="expanded")

PAGES = [
    st.Page(str(ROOT / "pages" / "home.py"), title="Home", icon=":material/home:", default=True),
    st.Page(str(ROOT / "pages" / "text.py"), title="Text", icon=":material/notes:"),
    st.Page(str(ROOT / "pages" / "image.py"), title="Image", icon=":material/image:"),
    st.Page(str(ROOT / "pages" / "tabular.py"), title="Tabular", icon=":material/table_chart:"),
    st.Page(str(ROOT / "pages" / "generation.py"), title="Generation", icon=":material/chat:"),
    st.Page(str(ROOT / "pages" / "review.py"), title="Review", icon=":material/fact_check:"),
]

page = st.navigation(PAGES)
enter_page(page.url_path)
page.run()
