"""The analysis report: plots (matplotlib, Agg) and the HTML page (jinja2 template)."""
from __future__ import annotations

from functools import lru_cache

TEMPLATE = "template.html.j2"
INDEX_TEMPLATE = "index.html.j2"


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("toolbox.render.report", "."),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)


def report_html(context: dict) -> str:
    """The report page for ``context`` (the variables template.html.j2 uses: header, plots, shots,
    threshold, moments, saliency_title, units, csv, table). Paths in it are relative to the page."""
    return _environment().get_template(TEMPLATE).render(**context)


def index_html(context: dict) -> str:
    """The archive's index page: ``context`` has title, done (source, report link, one-line summary
    each) and failed (source, error each)."""
    return _environment().get_template(INDEX_TEMPLATE).render(**context)
