"""ELAN ``.eaf`` files with a ``SIGN`` tier, as sign-language-processing/segmentation writes them.

That tool writes EAF through pympi: an ``ANNOTATION_DOCUMENT`` with a ``HEADER`` (time unit
milliseconds, one ``MEDIA_DESCRIPTOR`` per linked file: the video, and the ``.pose`` file with MIME type
``application/pose``), a ``TIME_ORDER`` of time slots in integer milliseconds, one time-alignable tier per
segment kind (``SIGN``, ``SENTENCE``) with an ``ALIGNABLE_ANNOTATION`` per segment, and the default
linguistic type, constraints and locale. We write the same structure (EAF 3.0) with the standard library;
msmae finds signs only, so there is one tier, ``SIGN``, whose annotation values are the segment numbers.

Languages are ISO 639 codes: the locale (the language of the annotation values' interface) is English
(``en``, ISO 639-1, country ``US``), and the tier's content language (``LANGUAGE`` element, ``LANG_REF`` of the
tier) the signed language, an ISO 639-3 code such as ``ase`` or ``und`` (undetermined) by default. pympi writes
``us`` as the locale's language, which is a country, not a language.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from msmae.utils import atomic_write_bytes

MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mpg": "video/mpeg",
              ".mpeg": "video/mpeg", ".avi": "video/x-msvideo", ".webm": "video/webm", ".mkv": "video/x-matroska",
              ".wav": "audio/x-wav", ".pose": "application/pose"}
_CONSTRAINTS = {
    "Time_Subdivision": "Time subdivision of parent annotation's time interval, no time gaps allowed within "
                        "this interval",
    "Symbolic_Subdivision": "Symbolic subdivision of a parent annotation. Annotations refering to the same "
                            "parent are ordered",
    "Symbolic_Association": "1-1 association with a parent annotation",
    "Included_In": "Time alignable annotations within the parent annotation's time interval, gaps are allowed",
}


def check_language(code: str) -> str:
    """``code`` when it has the form of an ISO 639 code (2 letters, ISO 639-1, or 3, ISO 639-2/3), lower case;
    ValueError otherwise."""
    code = str(code).strip()
    if not re.fullmatch(r"[a-z]{2,3}", code):
        raise ValueError(f"{code!r} is not an ISO 639 language code (2 or 3 lower-case letters, e.g. ase, gsg, "
                         f"bfi or und for undetermined)")
    return code


def _media_descriptor(header: ET.Element, media: Path, eaf_dir: Path) -> None:
    media = media.resolve()
    attrs = {"MEDIA_URL": media.as_uri(), "MIME_TYPE": MIME_TYPES.get(media.suffix.lower(), "unknown")}
    try:
        attrs["RELATIVE_MEDIA_URL"] = "./" + Path(os.path.relpath(media, eaf_dir.resolve())).as_posix()
    except ValueError:  # another drive on Windows: no relative path
        pass
    ET.SubElement(header, "MEDIA_DESCRIPTOR", attrs)


def eaf_document(segments_ms: Sequence[tuple[int, int, str]], *, tier: str = "SIGN",
                 media: Sequence[str | os.PathLike] = (), eaf_dir: str | os.PathLike = ".",
                 author: str = "msmae", language: str = "und") -> ET.ElementTree:
    """The EAF XML of one tier: ``segments_ms`` = [(start_ms, end_ms, value)]; ``media`` files are linked
    (absolute URL + URL relative to ``eaf_dir``, where the file will live), the first one being the one ELAN
    plays; ``language`` the ISO 639-3 code of the tier's content (the signed language)."""
    language = check_language(language)
    root = ET.Element("ANNOTATION_DOCUMENT", {
        "AUTHOR": author, "DATE": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "FORMAT": "3.0", "VERSION": "3.0", "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsi:noNamespaceSchemaLocation": "http://www.mpi.nl/tools/elan/EAFv3.0.xsd"})
    header = ET.SubElement(root, "HEADER", {"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    for m in media:
        _media_descriptor(header, Path(m), Path(eaf_dir))
    prop = ET.SubElement(header, "PROPERTY", {"NAME": "lastUsedAnnotationId"})
    prop.text = str(len(segments_ms))
    order = ET.SubElement(root, "TIME_ORDER")
    tier_el = ET.SubElement(root, "TIER", {"LANG_REF": language, "LINGUISTIC_TYPE_REF": "default-lt",
                                           "TIER_ID": tier})
    for i, (start, end, value) in enumerate(segments_ms):
        start, end = int(start), int(end)
        if end < start or start < 0:
            raise ValueError(f"segment {i}: bad time range {start}..{end} ms")
        ts1, ts2 = f"ts{2 * i + 1}", f"ts{2 * i + 2}"
        ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": ts1, "TIME_VALUE": str(start)})
        ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": ts2, "TIME_VALUE": str(end)})
        ann = ET.SubElement(ET.SubElement(tier_el, "ANNOTATION"), "ALIGNABLE_ANNOTATION", {
            "ANNOTATION_ID": f"a{i + 1}", "TIME_SLOT_REF1": ts1, "TIME_SLOT_REF2": ts2})
        ET.SubElement(ann, "ANNOTATION_VALUE").text = str(value)
    ET.SubElement(root, "LINGUISTIC_TYPE", {"GRAPHIC_REFERENCES": "false", "LINGUISTIC_TYPE_ID": "default-lt",
                                            "TIME_ALIGNABLE": "true"})
    ET.SubElement(root, "LOCALE", {"COUNTRY_CODE": "US", "LANGUAGE_CODE": "en"})
    ET.SubElement(root, "LANGUAGE", {"LANG_ID": language, "LANG_LABEL": f"{language} (ISO 639)"})
    for stereotype, description in _CONSTRAINTS.items():
        ET.SubElement(root, "CONSTRAINT", {"DESCRIPTION": description, "STEREOTYPE": stereotype})
    ET.indent(root, space="    ")
    return ET.ElementTree(root)


def write_eaf(path: str | os.PathLike, segments_ms: Sequence[tuple[int, int, str]], *, tier: str = "SIGN",
              media: Sequence[str | os.PathLike] = (), author: str = "msmae", language: str = "und") -> Path:
    """Write an ELAN file atomically; see :func:`eaf_document`."""
    import io

    path = Path(path)
    doc = eaf_document(segments_ms, tier=tier, media=media, eaf_dir=path.parent, author=author, language=language)
    buf = io.BytesIO()
    doc.write(buf, encoding="UTF-8", xml_declaration=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_eaf_tier(path: str | os.PathLike, tier: str = "SIGN") -> list[tuple[int, int, str]]:
    """(start_ms, end_ms, value) of every alignable annotation of one tier of an ELAN file, in time order."""
    root = ET.parse(path).getroot()
    slots = {ts.get("TIME_SLOT_ID"): int(ts.get("TIME_VALUE")) for ts in root.iter("TIME_SLOT")
             if ts.get("TIME_VALUE") is not None}
    for t in root.iter("TIER"):
        if t.get("TIER_ID") == tier:
            out = [(slots[a.get("TIME_SLOT_REF1")], slots[a.get("TIME_SLOT_REF2")],
                    a.findtext("ANNOTATION_VALUE") or "") for a in t.iter("ALIGNABLE_ANNOTATION")]
            return sorted(out)
    raise ValueError(f"{path}: no tier {tier!r}")
