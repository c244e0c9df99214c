"""The BEGAN Studio dashboard (Streamlit): UI wiring over began_core; `streamlit run app/main.py`."""
