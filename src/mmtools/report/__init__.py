"""Pictures of results: a contact sheet (PNG, Pillow) and an HTML page of search hits, one row per query."""

from mmtools.report.hits import Hit, HitRow, rows_from_records
from mmtools.report.html import write_html
from mmtools.report.montage import MontageLayout, montage_layout, write_montage

__all__ = ["Hit", "HitRow", "MontageLayout", "montage_layout", "rows_from_records", "write_html",
           "write_montage"]
