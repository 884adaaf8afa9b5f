"""The web studio: a Gradio page over the library (``latentshop studio``).

:mod:`latentshop.web.studio` holds the sessions and actions (no user interface, no model code of its
own); :mod:`latentshop.web.app` wires them to Gradio widgets. Gradio is imported only when the page
is built.
"""

from latentshop.web.studio import GROUPS, ModelEntry, Session, SliderSpec, Studio, StudioError, find_models

__all__ = ["GROUPS", "ModelEntry", "Session", "SliderSpec", "Studio", "StudioError", "find_models", "build_app", "launch"]


def build_app(*args, **kwargs):  # noqa: ANN002, ANN003 - see latentshop.web.app.build_app
    """The studio's Gradio Blocks (see :func:`latentshop.web.app.build_app`)."""
    from latentshop.web.app import build_app as _build

    return _build(*args, **kwargs)


def launch(*args, **kwargs):  # noqa: ANN002, ANN003 - see latentshop.web.app.launch
    """Start the studio (see :func:`latentshop.web.app.launch`)."""
    from latentshop.web.app import launch as _launch

    return _launch(*args, **kwargs)
