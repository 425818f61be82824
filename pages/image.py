"""Image page: heat maps over the picture, and what if part of it were erased?"""

import streamlit as st

from dashboard import compare, editors, panels, widgets

st.title("Image")
st.caption("Pixel attributions for an ImageNet classifier, blended over the image the model sees "
           "(224 x 224). Erase a rectangle to see the prediction and every map change.")

settings = widgets.sidebar_settings("image")
adapter = editors.image_model()
raw, key, input_id = editors.image_input()
original = panels.prepare(adapter, raw, key=key)
if original is None:
    st.stop()

strip = st.container()
st.subheader("What if…")
edited = editors.image_counterfactual(adapter, original)
with strip:
    target = panels.prediction_strip(adapter, original, edited)

st.subheader("Attributions side by side")
methods = widgets.method_picker("image")
run = panels.explain_panels(adapter, original, edited, methods, target, settings)
metrics = compare.compare_section(adapter, original, run, apply=editors.apply_image(adapter, original.enc),
                                  input_id=input_id)
panels.page_downloads(adapter, original, edited, run, metrics, input_id=input_id)
