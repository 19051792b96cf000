"""XEP-0115 hashes against the XEP's own examples, and disco parsing/serialising."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from simplexmpp.ext.disco import INFO_NS, DiscoInfo, Identity, caps_hash
from simplexmpp.ext.forms import Field, Form

CAPS = "http://jabber.org/protocol/caps"
FEATURES = {CAPS, "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc"}


def test_simple_generation_example() -> None:
    # XEP-0115 §5.2
    assert caps_hash([Identity("client", "pc", "Exodus 0.9.1")], FEATURES) == \
        "QgayPKawpkPSDYmwT/WM94uAlu0="


def software_form() -> Form:
    return Form(type="result", fields=[
        Field("FORM_TYPE", ["urn:xmpp:dataforms:softwareinfo"], type="hidden"),
        Field("ip_version", ["ipv4", "ipv6"], type="text-multi"),
        Field("os", ["Mac"]), Field("os_version", ["10.5.1"]),
        Field("software", ["Psi"]), Field("software_version", ["0.11"])])


def test_complex_generation_example() -> None:
    # XEP-0115 §5.3: two languages, an extension form
    identities = [Identity("client", "pc", "Psi 0.11", "en"),
                  Identity("client", "pc", "Ψ 0.11", "el")]
    assert caps_hash(identities, FEATURES, [software_form()]) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_order_of_input_does_not_matter() -> None:
    identities = [Identity("client", "pc", "Ψ 0.11", "el"),
                  Identity("client", "pc", "Psi 0.11", "en")]
    assert caps_hash(identities, list(reversed(sorted(FEATURES))), [software_form()]) == \
        "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_untrustworthy_input_is_refused() -> None:
    with pytest.raises(ValueError):
        caps_hash([Identity("client", "pc")] * 2, FEATURES)
    with pytest.raises(ValueError):
        caps_hash([Identity("client", "pc")], ["a", "a"])
    form = software_form()
    form.fields[0].type = None  # FORM_TYPE not hidden
    with pytest.raises(ValueError):
        caps_hash([Identity("client", "pc")], FEATURES, [form])
    with pytest.raises(ValueError):
        caps_hash([Identity("client", "pc")], FEATURES, [software_form(), software_form()])
    with pytest.raises(ValueError):
        caps_hash([Identity("client", "pc")], FEATURES, algorithm="md5")


def test_forms_without_form_type_are_ignored() -> None:
    plain = Form(type="result", fields=[Field("os", ["Mac"])])
    assert caps_hash([Identity("client", "pc", "Exodus 0.9.1")], FEATURES, [plain]) == \
        "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_info_round_trip_keeps_the_hash() -> None:
    info = DiscoInfo(None, "node#x", [Identity("client", "pc", "Psi 0.11", "en"),
                                      Identity("client", "pc", "Ψ 0.11", "el")],
                     set(FEATURES), [software_form()])
    element = ET.fromstring(ET.tostring(info.to_element()))
    assert element.tag == "{%s}query" % INFO_NS
    again = DiscoInfo.from_element(element)
    assert again.node == "node#x"
    assert again.caps_hash() == "q07IKJEyjvHSyhy//CH0CxmKi8w="
    assert again.has_identity("client", "pc") and not again.has_identity("server")
    assert "Ψ 0.11" in info._repr_html_()


def test_items_show_as_table_and_pretty_text() -> None:
    from simplexmpp import JID
    from simplexmpp.ext.disco import DiscoItem, DiscoItems

    class Printer:
        def __init__(self) -> None:
            self.out: list[str] = []

        def text(self, value: str) -> None:
            self.out.append(value)

        def break_(self) -> None:
            self.out.append("\n")

    items = DiscoItems([DiscoItem(JID("conference.localhost"), None, "Rooms <&>")])
    assert "Rooms &lt;&amp;&gt;" in items._repr_html_()
    printer = Printer()
    items._repr_pretty_(printer, False)
    assert "".join(printer.out) == "DiscoItems (1)\n  conference.localhost (Rooms <&>)"


TWO_FORMS = f"""<query xmlns='{INFO_NS}'>
  <identity category='store' type='file' name='HTTP File Upload'/>
  <feature var='urn:xmpp:http:upload:0'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload</value></field>
    <field var='max-file-size'><value>1000</value></field>
  </x>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0</value></field>
    <field var='max-file-size'><value>16777216</value></field>
  </x>
</query>"""


def test_extension_forms_are_found_by_form_type_not_position() -> None:
    # XEP-0128: one answer may carry several forms (ejabberd's upload service does).
    info = DiscoInfo.from_element(ET.fromstring(TWO_FORMS))
    assert info.form_types == ["urn:xmpp:http:upload", "urn:xmpp:http:upload:0"]
    form = info.form_for("urn:xmpp:http:upload:0")
    assert form is not None and form.value("max-file-size") == "16777216"
    legacy = info.form_for("urn:xmpp:http:upload")
    assert legacy is not None and legacy.value("max-file-size") == "1000"
    assert info.form_for("urn:xmpp:dataforms:softwareinfo") is None


def test_upload_limit_is_read_from_the_upload_form_among_several() -> None:
    from simplexmpp.ext.disco import DiscoItem
    from simplexmpp.ext.upload import Upload
    from simplexmpp.jid import JID

    class StubDisco:
        def items(self, jid: object, timeout: object = None) -> list[DiscoItem]:
            return [DiscoItem(JID("upload.example.org"))]

        def info(self, jid: object, timeout: object = None) -> DiscoInfo:
            return DiscoInfo.from_element(ET.fromstring(TWO_FORMS), JID(str(jid)))

    class StubClient:
        account = JID("alice@example.org")
        disco = StubDisco()

    upload = Upload(StubClient())  # type: ignore[arg-type]
    assert upload.service().max_size == 16777216
    assert upload._service_for("upload.example.org", None).max_size == 16777216
