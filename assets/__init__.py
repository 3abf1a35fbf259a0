"""Data files shipped with Tandem (prompts; later icons, sounds, the default policy).

Read them with ``importlib.resources.files("assets")`` so they are found in a wheel too.
"""
