"""XEP-0004 Data Forms: parse and build `jabber:x:data` forms as plain Python objects.

```python
form = Form(type="submit", fields=[Field("muc#roomconfig_roomname", ["Lobby"])])
Form.from_element(form.to_element()).value("muc#roomconfig_roomname")  # -> 'Lobby'
```
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

__all__ = ["DATA_NS", "Field", "Form"]

DATA_NS = "jabber:x:data"
_X = "{%s}x" % DATA_NS
_F = "{%s}field" % DATA_NS
_V = "{%s}value" % DATA_NS
FORM_TYPES = ("form", "submit", "cancel", "result")
# XEP-0004 §3.3: field types whose value is a list.
MULTI_TYPES = ("list-multi", "jid-multi", "text-multi")


@dataclass
class Field:
    """One field: `var`, `values` (always a list of strings), `type`, `label`,
    `options` as (label, value) pairs, `required`, `desc`."""

    var: str | None
    values: list[str] = field(default_factory=list)
    type: str | None = None
    label: str | None = None
    options: list[tuple[str | None, str]] = field(default_factory=list)
    required: bool = False
    desc: str | None = None

    @property
    def value(self) -> str | bool | list[str] | None:
        """The value in its natural Python form: bool for `boolean` (XEP-0004 §3.3: "1" or
        "true"), a list for the `*-multi` types, else the first string or None."""
        if self.type == "boolean":
            return bool(self.values) and self.values[0] in ("1", "true")
        if self.type in MULTI_TYPES:
            return list(self.values)
        return self.values[0] if self.values else None


@dataclass
class Form:
    """A data form; `type` is form, submit, cancel or result. Reported/item tables of
    `result` forms are in `items` (a list of {var: [values]})."""

    type: str = "form"
    fields: list[Field] = field(default_factory=list)
    title: str | None = None
    instructions: list[str] = field(default_factory=list)
    items: list[dict[str, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.type not in FORM_TYPES:
            raise ValueError(f"data form type must be one of {FORM_TYPES}, not {self.type!r}")

    @property
    def form_type(self) -> str | None:
        """The `FORM_TYPE` hidden field (XEP-0068), if any."""
        found = self.get("FORM_TYPE")
        return found.values[0] if found and found.values else None

    def get(self, var: str) -> Field | None:
        for f in self.fields:
            if f.var == var:
                return f
        return None

    def value(self, var: str) -> str | bool | list[str] | None:
        found = self.get(var)
        return None if found is None else found.value

    def set(self, var: str, value: str | bool | int | list[str] | tuple[str, ...],
            type: str | None = None) -> None:
        """Set (or add) a field; booleans become "1"/"0", lists stay lists."""
        if isinstance(value, bool):
            values = ["1" if value else "0"]
        elif isinstance(value, (list, tuple)):
            values = [str(v) for v in value]
        else:
            values = [str(value)]
        found = self.get(var)
        if found is None:
            self.fields.append(Field(var, values, type=type))
        else:
            found.values = values
            if type is not None:
                found.type = type

    def as_dict(self) -> dict[str, str | bool | list[str] | None]:
        return {f.var: f.value for f in self.fields if f.var}

    def submission(self, **values: str | bool | int | list[str]) -> Form:
        """A `submit` form answering this one: FORM_TYPE kept, `values` filled in
        (keyword names use `__` for `#` and `_` as is: `muc__roomconfig_roomname`)."""
        answer = Form(type="submit")
        if self.form_type:
            answer.set("FORM_TYPE", self.form_type, type="hidden")
        for key, value in values.items():
            answer.set(key.replace("__", "#"), value)
        return answer

    @classmethod
    def from_element(cls, x: ET.Element) -> Form:
        """Parse an `<x xmlns='jabber:x:data'/>`; tolerant of unknown children."""
        form_type = x.get("type", "form")
        form = cls(type=form_type if form_type in FORM_TYPES else "form")
        title = x.find("{%s}title" % DATA_NS)
        form.title = title.text if title is not None else None
        form.instructions = [i.text or "" for i in x.findall("{%s}instructions" % DATA_NS)]
        form.fields = [_parse_field(f) for f in x.findall(_F)]
        for item in x.findall("{%s}item" % DATA_NS):
            form.items.append({f.get("var", ""): [v.text or "" for v in f.findall(_V)]
                               for f in item.findall(_F)})
        return form

    def to_element(self) -> ET.Element:
        x = ET.Element(_X, type=self.type)
        if self.title:
            ET.SubElement(x, "{%s}title" % DATA_NS).text = self.title
        for line in self.instructions:
            ET.SubElement(x, "{%s}instructions" % DATA_NS).text = line
        for f in self.fields:
            element = ET.SubElement(x, _F)
            if f.var is not None:
                element.set("var", f.var)
            if f.type and (self.type != "submit" or f.type == "hidden"):
                element.set("type", f.type)
            if f.label and self.type != "submit":
                element.set("label", f.label)
            if f.desc and self.type != "submit":
                ET.SubElement(element, "{%s}desc" % DATA_NS).text = f.desc
            if f.required and self.type != "submit":
                ET.SubElement(element, "{%s}required" % DATA_NS)
            for value in f.values:
                ET.SubElement(element, _V).text = value
            if self.type != "submit":
                for label, value in f.options:
                    option = ET.SubElement(element, "{%s}option" % DATA_NS)
                    if label:
                        option.set("label", label)
                    ET.SubElement(option, _V).text = value
        if self.items:
            # XEP-0004 §3.4: a table is <reported/> (its columns) then one <item/> per row.
            columns = list(dict.fromkeys(var for item in self.items for var in item))
            reported = ET.SubElement(x, "{%s}reported" % DATA_NS)
            for var in columns:
                ET.SubElement(reported, _F, var=var)
            for item in self.items:
                row = ET.SubElement(x, "{%s}item" % DATA_NS)
                for var, values in item.items():
                    cell = ET.SubElement(row, _F, var=var)
                    for value in ([values] if isinstance(values, str) else values):
                        ET.SubElement(cell, _V).text = value
        return x

    @classmethod
    def find_in(cls, parent: ET.Element | None) -> Form | None:
        """The first data form child of `parent`, parsed, or None."""
        if parent is None:
            return None
        x = parent.find(_X)
        return None if x is None else cls.from_element(x)


def _parse_field(element: ET.Element) -> Field:
    options = []
    for option in element.findall("{%s}option" % DATA_NS):
        value = option.find(_V)
        options.append((option.get("label"), (value.text or "") if value is not None else ""))
    desc = element.find("{%s}desc" % DATA_NS)
    return Field(var=element.get("var"), values=[v.text or "" for v in element.findall(_V)],
                 type=element.get("type"), label=element.get("label"), options=options,
                 required=element.find("{%s}required" % DATA_NS) is not None,
                 desc=desc.text if desc is not None else None)
