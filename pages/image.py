"""Image page: heat maps over the picture, and what if part of it were erased?"""

import streamlit as st

from dashboard import layout
from dashboard.views import get_view

st.title("Image")
st.caption("Pixel attributions for an ImageNet classifier, blended over the image the model sees "
           "(224 x 224). Erase a rectangle to see the prediction and every map change.")
layout.modality_page(get_view("image"))
