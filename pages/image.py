"""Image page: heat maps over the picture, and what if part of it were erased?"""

import streamlit as st

from dashboard import editors, layout, panels, widgets

st.title("Image")
st.caption("Pixel attributions for an ImageNet classifier, blended over the image the model sees "
           "(224 x 224). Erase a rectangle to see the prediction and every map change.")

settings = widgets.sidebar_settings("image")
adapter = editors.image_model()
raw, key, input_id = editors.image_input()
original = panels.prepare(adapter, raw, key=key)
if original is None:
    st.stop()
layout.modality_page("image", adapter, original, lambda: editors.image_counterfactual(adapter, original),
                     editors.apply_image(adapter, original.enc), input_id, settings)
