"""The words people read come from the Vietnamese and English catalogues (api/translations):
both say every message id, the code names no id they lack, and no English reaches a page in
Vietnamese (form errors such as "Phải là True", statuses, error details, the modeler's
problems) while the English pages are in English."""
from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.support import Translations
from sqlalchemy import update
from werkzeug.datastructures import MultiDict

from api.app import create_app
from api.routes.admin import OUTBOX_STATUSES
from api.schemas import STATUSES
from api.ui import i18n
from conftest import PROJECT
from engine import scripting
from engine.errors import DefinitionInvalid
from engine.notifications.outbox import INTERRUPTED
from engine.notifications.service import MODES
from engine.org import DEFAULT_DEMO_PASSWORD
from engine.store.models import Instance, OutboxMessage
from engine.variants import load_variant, parse_day_month
from procedures import Case, deploy_library, plan

TRANSLATIONS = PROJECT / "api" / "translations"
LANGUAGES = ("vi", "en")
PROPOSER = "laocai.sxd.qlxd.truongphong"
HEAD = "laocai.sxd.giamdoc"
DESIGNER = "laocai.snv.chuyenvien"
ADMIN = "laocai.quantri"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# English a Vietnamese page must not show (as words: "pending", not "spending")
GIVEAWAYS = ("must be", "Must be", "is a required property", "is not of type", "True",
             "False", "None", "pending", "Pending", "failed", "Failed", "running", "Running",
             "sending", "unknown", "Unknown", "incident", "not found", "Not found",
             "does not exist", "Traceback", "Error", "error", "Expected", "Invalid", "invalid",
             "Tick this box", "refused", "cannot", "Cannot", "not allowed", "Only ")


def catalogue(language: str):
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po, locale=language)


def words(language: str) -> dict[str, str]:
    return {m.id: m.string for m in catalogue(language) if m.id}


# (a) the catalogues --------------------------------------------------------------------

def test_both_catalogues_say_every_message_id():
    vi, en = words("vi"), words("en")
    assert set(vi) == set(en)
    assert len(vi) > 300
    for language in LANGUAGES:
        empty = [m.id for m in catalogue(language) if m.id and not m.string]
        fuzzy = [m.id for m in catalogue(language) if m.id and m.fuzzy]
        assert empty == [] and fuzzy == [], (language, empty, fuzzy)


def test_the_vietnamese_words_need_no_param_the_english_ones_lack():
    """Vietnamese may leave out a technical detail (a parser's English), never add a param
    the message codes do not carry."""
    vi, en = words("vi"), words("en")
    for key in vi:
        assert set(PLACEHOLDER.findall(vi[key])) <= set(PLACEHOLDER.findall(en[key])), key
        for text in (vi[key], en[key]):
            text % {name: "x" for name in PLACEHOLDER.findall(text)}      # well formed


def test_the_compiled_catalogues_are_those_of_the_po_files():
    """The app reads the .mo files (committed, nothing is built at run time)."""
    for language in LANGUAGES:
        compiled = Translations.load(str(TRANSLATIONS), [language])
        assert {k: v for k, v in compiled._catalog.items() if k} == words(language), (
            f"{language}: run make translations")


# (b) every message id the code names is in the catalogues, and nothing else -------------

def named_in_code() -> set[str]:
    with open(PROJECT / "babel.cfg") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = extract_from_dir(str(PROJECT), method_map, options_map,
                             keywords={"t": None, "say": None, "_": None, "gettext": None},
                             callback=None, strip_comment_tags=False)
    return {message for _file, _line, message, _comments, _context in found
            if isinstance(message, str)}


def test_every_message_id_the_code_names_is_in_the_catalogues_and_no_other():
    named = named_in_code()
    # a sample of what the extraction sees: templates, views, engine codes, BPMN problems
    assert {"sign_in", "outbox", "form.must_tick", "task.completed_by", "bpmn.lane_role",
            "refused.administrators_only", "status.running", "problem.not-found"} <= named
    known = set(words("vi"))
    assert sorted(named - known) == [], "not in the catalogues: run make translations"
    assert sorted(known - named) == [], "no longer used: run make translations"


def test_t_calls_in_templates_name_literal_ids():
    """A t() of a variable is invisible to the extraction: vocabularies go through their
    label functions (status_label, stage_label...), which list their ids."""
    dynamic = []
    for template in (PROJECT / "api" / "ui" / "templates").glob("*.html"):
        for call in re.findall(r"\bt\(([^)]*)\)", template.read_text(encoding="utf-8")):
            if not re.fullmatch(r"""\s*(["'])[\w.-]+\1\s*(,.*)?""", call):
                dynamic.append((template.name, call))
    assert dynamic == []


def test_every_word_of_the_vocabularies_has_its_words():
    vi = words("vi")
    stages = {value for path in (PROJECT / "processes").rglob("*.bpmn")
              for value in re.findall(r'name="stage" value="([^"]+)"', path.read_text())}
    for folder in ("national", "dak-lak", "can-tho", "lao-cai"):   # stages are variant data
        declared = load_variant(PROJECT / "processes" / folder).settings["stages"]
        assert stages <= set(declared)
        assert all(spec["label"] and spec["label_en"] for spec in declared.values())
    assert set(STATUSES) == set(i18n.STATUS_LABELS["instance"])
    assert set(OUTBOX_STATUSES) == set(i18n.STATUS_LABELS["outbox"])
    assert set(MODES) == set(i18n.PREFERENCE_LABELS)
    refusing = set(re.findall(r'rule="(\w+)"', (PROJECT / "engine" / "access.py").read_text()))
    assert refusing and refusing <= set(i18n.REFUSALS)
    timers = {cls.__name__ for cls in vars(scripting).values() if isinstance(cls, type)
              and issubclass(cls, scripting.TimerEventDefinition)
              and cls.__module__ == scripting.__name__ and not cls.__name__.startswith("_")}
    assert timers and timers <= set(i18n.TIMER_KINDS)
    for labels in (i18n.ACTION_LABELS, i18n.TIMER_KINDS,
                   i18n.PREFERENCE_LABELS, i18n.REFUSALS, *i18n.STATUS_LABELS.values()):
        assert set(labels.values()) <= set(vi)


# (c) and (d): the pages ----------------------------------------------------------------

class VisibleText(HTMLParser):
    """The text a person sees or hears: no scripts or styles; on a Vietnamese page not the
    technical details marked lang="en" (another system's words, folded away)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self, skip_english: bool):
        super().__init__()
        self.skip_english, self.hidden, self.parts = skip_english, 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.hidden:
            self.hidden += tag not in self.VOID
            return
        if tag in ("script", "style") or (self.skip_english and tag != "html"
                                          and attrs.get("lang") == "en"):
            self.hidden = 1
            return
        for name in ("title", "aria-label", "placeholder", "alt"):
            if attrs.get(name):
                self.parts.append(attrs[name])

    def handle_endtag(self, tag):
        if self.hidden and tag not in self.VOID:
            self.hidden -= 1

    def handle_data(self, data):
        if not self.hidden and data.strip():
            self.parts.append(data.strip())


def visible(html: str, language: str) -> str:
    parser = VisibleText(skip_english=language == "vi")
    parser.feed(html)
    return "\n".join(parser.parts)


def english_in(text: str) -> list[str]:
    return [g for g in GIVEAWAYS if re.search(rf"(?<![\w-]){re.escape(g)}(?![\w-])", text)]


class Browser:
    """A signed-in person's pages through the Flask test client, in a chosen language."""

    def __init__(self, app, username: str, language: str):
        self.client = app.test_client()
        self.language = language
        login = self.client.get("/login").get_data(as_text=True)
        done = self.client.post("/login", data={
            "username": username, "password": DEFAULT_DEMO_PASSWORD,
            "csrf_token": self.form_token(login)})
        assert done.status_code == 302, done.get_data(as_text=True)
        if language == "en":
            page = self.client.get("/").get_data(as_text=True)
            self.client.post("/language", data={"lang": "en", "csrf_token": self.form_token(page)})
        page = self.client.get("/").get_data(as_text=True)
        self.token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    @staticmethod
    def form_token(html: str) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    def get(self, path: str, status: int = 200) -> str:
        response = self.client.get(path, follow_redirects=True)
        assert response.status_code == status, (path, response.status_code)
        return response.get_data(as_text=True)

    def post(self, path: str, data: dict | list, status: int = 200) -> str:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        response = self.client.post(path, data=MultiDict([*fields, ("csrf_token", self.token)]),
                                    follow_redirects=True)
        assert response.status_code == status, (path, response.status_code)
        return response.get_data(as_text=True)


def plan_form(**changes) -> list[tuple[str, str]]:
    """The plan's form as the page posts it: dd/mm/yyyy, ticked boxes "on"."""
    values = {**plan(), "start_date": "01/12/2026", "end_date": "30/06/2027",
              "budget_vnd": "450.000.000", **changes}
    fields = []
    for name, value in values.items():
        if value is True:
            fields.append((name, "on"))
        elif isinstance(value, (str, int)) and value is not False:
            fields.append((name, str(value)))
    return fields


@pytest.fixture
def scene(engine):
    """Cases at every step the pages show: a plan waiting for its proposer, a screening in
    the head's inbox with its deadline timers, a case in incident, e-mails in every state."""
    deploy_library(engine)
    app = create_app(engine, SECRET_KEY="test-secret")
    waiting = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-WAIT")
    screening = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-SCREEN")
    screening.do("submit_plan", plan(), by=PROPOSER)
    broken = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-BROKEN")
    other = Case.start(engine, "dak-lak", "proposal", "daklak.sxd.qhkt.truongphong",
                       business_key="DL-OTHER")
    now = engine.clock.now()
    with engine.db.transaction() as session:
        session.execute(update(Instance).where(Instance.id == broken.id).values(
            status="incident", incident_element="screening", incident_at=now,
            incident_message="NameError: name 'budget' is not defined"))
        for status, error in (("pending", None),
                              ("failed", "RCPT TO refused: 550 5.1.1 mailbox unavailable"),
                              ("unknown", INTERRUPTED),
                              ("failed", "TLS handshake went wrong"), ("sent", None)):
            session.add(OutboxMessage(
                username=HEAD, recipient="giamdoc@laocai.example", subject="Việc mới",
                text_body="x", html_body="<p>x</p>", kind="task_created", status=status,
                attempts=3 if error else 0, next_attempt_at=now, created_at=now,
                sent_at=now if status == "sent" else None, last_error=error))
    [plan_task] = waiting.open("submit_plan")
    return {"app": app, "engine": engine, "waiting": waiting, "plan_task": plan_task,
            "screening": screening, "broken": broken, "other": other}


def pages(scene, language: str) -> dict[str, str]:
    """Every page of the tour, by name, as its visible text in ``language``."""
    app, engine = scene["app"], scene["engine"]
    shown = {}
    anonymous = app.test_client()
    if language == "en":
        token = Browser.form_token(anonymous.get("/login").get_data(as_text=True))
        anonymous.post("/language", data={"lang": "en", "csrf_token": token})
    shown["login"] = anonymous.get("/login").get_data(as_text=True)
    token = Browser.form_token(shown["login"])
    wrong = anonymous.post("/login", data={"username": PROPOSER, "password": "wrong",
                                           "csrf_token": token})
    assert wrong.status_code == 401
    shown["login refused"] = wrong.get_data(as_text=True)
    forged = anonymous.post("/language", data={"lang": "vi"})
    assert forged.status_code == 403
    shown["page expired"] = forged.get_data(as_text=True)

    proposer = Browser(app, PROPOSER, language)
    task = scene["plan_task"].id
    shown["inbox"] = proposer.get("/")
    shown["task"] = proposer.get(f"/tasks/{task}")
    # dates and numbers that cannot be read, an empty title: said before the engine is asked
    shown["task unreadable"] = proposer.post(f"/tasks/{task}", plan_form(
        title="", start_date="31/02/2027", budget_vnd="một triệu", no_harm=False), 422)
    # readable but refused by the form's schema: an unticked confirmation, a short title
    shown["task refused"] = proposer.post(f"/tasks/{task}", plan_form(
        title="Ab", no_harm=False, common_interest=False), 422)
    assert scene["waiting"].open_elements() == ["submit_plan"]
    shown["my cases"] = proposer.get("/proposals")
    shown["start"] = proposer.get("/start")
    shown["case"] = proposer.get(f"/instances/{scene['screening'].id}")
    shown["notifications"] = proposer.get("/notifications")
    shown["forbidden"] = proposer.get("/admin", 403)
    shown["not found"] = proposer.get(f"/instances/{scene['other'].id}", 404)
    shown["no such task"] = proposer.get("/tasks/00000000-0000-0000-0000-000000000000", 404)
    shown["not a designer"] = proposer.get("/designer/lao-cai/proposal", 403)
    # the engine refuses a repair by its rule: said by the rule's words
    shown["repair refused"] = proposer.post(f"/instances/{scene['screening'].id}/suspend",
                                            {"reason": "x"}, 403)

    head = Browser(app, HEAD, language)
    shown["inbox head"] = head.get("/")
    [screening] = scene["screening"].open("screening")
    shown["task head"] = head.get(f"/tasks/{screening.id}")

    admin = Browser(app, ADMIN, language)
    shown["dashboard"] = admin.get("/admin")
    shown["search"] = admin.get("/admin/instances?created_from=31/02/2026")
    shown["case admin"] = admin.get(f"/instances/{scene['screening'].id}")
    shown["incident"] = admin.get(f"/instances/{scene['broken'].id}")
    # a repair the case's state refuses: said on the page the administrator came from
    shown["resume refused"] = admin.post(f"/instances/{scene['screening'].id}/resume", {})
    shown["retry refused"] = admin.post(f"/instances/{scene['broken'].id}/retry",
                                        {"data": "[1, 2"})
    shown["outbox"] = admin.get("/admin/outbox")
    shown["outbox failed"] = admin.get("/admin/outbox?status=failed")
    [sent] = [m for m in engine.notifications.outbox(HEAD) if m.status == "sent"]
    shown["send again refused"] = admin.post(f"/admin/outbox/{sent.id}/retry", {})
    shown["cycles"] = admin.get("/admin/cycles")

    designer = Browser(app, DESIGNER, language)
    shown["designer"] = designer.get("/designer")
    modeler = designer.get("/designer/lao-cai/proposal")
    shown["modeler"] = modeler
    shown["modeler malformed"] = validate(designer, modeler, b"<bpmn:definitions><oops>")
    shown["modeler invalid"] = validate(designer, modeler, unknown_lane_and_stage(engine))
    return {name: visible(html, language) if not name.startswith("modeler ") else html
            for name, html in shown.items()}


def unknown_lane_and_stage(engine) -> bytes:
    """Lao Cai's proposal with a lane that names no role and a stage not in the vocabulary:
    well-formed XML the engine refuses, naming each problem's element."""
    definition = engine.repository.latest("lao-cai", "proposal")
    xml = definition.sources["proposal.bpmn"]
    xml = re.sub(r'(<bpmn:lane id="Lane_proposal_decider" name=")[^"]*"',
                 r'\1khong_co_vai_tro"', xml, count=1)
    xml = re.sub(r'(name="stage" value=")[^"]*"', r'\1giai_doan_la"', xml, count=1)
    return xml.encode("utf-8")


def validate(designer: Browser, modeler_page: str, content: bytes) -> str:
    """What the modeler shows for a validation: the problem's title and each problem, in
    the words the page gave its script (modeler.js says "%(name)s" with the param)."""
    data = json.loads(re.search(r'<script type="application/json" id="modeler-data">(.*?)'
                                r'</script>', modeler_page, re.S).group(1))
    response = designer.client.post(
        "/api/v1/definitions/validate",
        data={"variant": "lao-cai", "files": (io.BytesIO(content), "proposal.bpmn")},
        headers={"X-CSRF-Token": designer.token, "Accept-Language": designer.language},
        content_type="multipart/form-data")
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == "definition.invalid" and body["problems"]
    lines = [data["labels"]["error"] + ": " + body["title"]]
    for problem in body["problems"]:
        words_ = data["messages"].get(problem.get("code"))
        assert words_, f"the modeler has no words for {problem}"
        lines.append(PLACEHOLDER.sub(lambda m: str((problem.get("params") or {}).get(
            m.group(1), "")), words_))
    return "\n".join(lines)


def test_no_english_reaches_a_vietnamese_page(scene):
    shown = pages(scene, "vi")
    for name, text in shown.items():
        assert english_in(text) == [], (name, english_in(text), text)
    everything = "\n".join(shown.values())
    assert "Phải là True" not in everything
    # what each page says instead
    assert "Cần đánh dấu vào ô này để xác nhận" in shown["task refused"]
    assert "Cần ít nhất" in shown["task refused"]
    assert "dd/mm/yyyy" in shown["task unreadable"] and "số tiền" in shown["task unreadable"]
    assert "Trường bắt buộc, chưa được điền" in shown["task unreadable"]
    assert "Sai tên đăng nhập hoặc mật khẩu" in shown["login refused"]
    assert "Phiên làm việc đã hết hạn" in shown["page expired"]
    assert "Chỉ quản trị viên được mở trang này" in shown["forbidden"]
    assert "Không tìm thấy hồ sơ" in shown["not found"]
    assert "Không tìm thấy công việc" in shown["no such task"]
    assert "Chỉ người thiết kế quy trình của “lao-cai”" in shown["not a designer"]
    assert "Chỉ quản trị viên của lao-cai mới được thực hiện" in shown["repair refused"]
    assert "Đang chạy" in shown["my cases"] and "Đang chạy" in shown["case admin"]
    assert "Sự cố" in shown["incident"] and "Chi tiết kỹ thuật" in shown["incident"]
    assert "Không thực hiện được khi hồ sơ đang ở trạng thái “Đang chạy”" in shown[
        "resume refused"]
    assert "Không phải JSON hợp lệ" in shown["retry refused"]
    for words_ in ("Chờ gửi", "Gửi thất bại", "Chưa rõ kết quả", "Đã gửi",
                   "Máy chủ thư từ chối người nhận (mã 550)", "Gửi không thành công",
                   "Bộ gửi thư dừng giữa chừng"):
        assert words_ in shown["outbox"], words_
    assert "Thư đang ở trạng thái “Đã gửi”" in shown["send again refused"]
    assert "Đang chờ xử lý" in shown["task head"]
    assert "Quy trình không hợp lệ" in shown["modeler malformed"]
    assert "XML hợp lệ" in shown["modeler malformed"]
    assert "Làn “khong_co_vai_tro” không ứng với vai trò nào" in shown["modeler invalid"]
    assert "Giai đoạn “giai_doan_la” không có trong danh mục" in shown["modeler invalid"]


def test_the_same_pages_in_english_are_in_english(scene):
    shown = pages(scene, "en")
    assert "Sign in" in shown["login"]
    assert "Wrong username or password" in shown["login refused"]
    assert "Tick this box to confirm" in shown["task refused"]
    assert "At least" in shown["task refused"]
    assert "Not a valid date" in shown["task unreadable"]
    assert "This field is required" in shown["task unreadable"]
    assert "Inbox" in shown["inbox"] and "Open" in shown["task head"]
    assert "Only administrators may open this page" in shown["forbidden"]
    assert "The case does not exist" in shown["not found"]
    assert "Only administrators of lao-cai may do this" in shown["repair refused"]
    assert "Running" in shown["case admin"] and "Timers" in shown["case admin"]
    assert "NameError" in shown["incident"]          # the technical detail, on English pages
    assert "Not possible while the case is “Running”" in shown["resume refused"]
    for words_ in ("Pending", "Failed", "Unknown", "Sent",
                   "The mail server refused the recipient (code 550)"):
        assert words_ in shown["outbox"], words_
    assert "The e-mail is “Sent”" in shown["send again refused"]
    assert "Invalid process definition" in shown["modeler malformed"]
    assert "Not well-formed XML" in shown["modeler malformed"]
    assert "Lane “khong_co_vai_tro” names no known role" in shown["modeler invalid"]
    # and no Vietnamese of the app's own words slipped through
    for name in ("login", "inbox", "outbox", "dashboard"):
        assert "Đăng nhập" not in shown[name] and "Việc cần làm" not in shown[name], name


# the REST API keeps its words and says the codes ---------------------------------------

def test_the_api_says_field_errors_in_both_languages_with_their_codes(scene):
    app = scene["app"]
    client = app.test_client()
    token = client.post("/api/v1/auth/token", json={
        "username": PROPOSER, "password": DEFAULT_DEMO_PASSWORD}).get_json()["access_token"]
    bad = {**plan(), "no_harm": False, "title": "Ab"}
    response = client.post(f"/api/v1/tasks/{scene['plan_task'].id}/complete",
                           json={"data": bad}, headers={"Authorization": f"Bearer {token}",
                                                        "Accept-Language": "en"})
    assert response.status_code == 422
    body = response.get_json()
    assert body["title"] == "Invalid data" and body["code"] == "form.invalid"
    assert body["params"] == {"count": len(body["errors"])}
    errors = {e["field"]: e for e in body["errors"]}
    assert errors["no_harm"]["code"] == "form.must_tick"
    assert errors["no_harm"]["message"] == "Cần đánh dấu vào ô này để xác nhận"
    assert errors["no_harm"]["message_en"] == "Tick this box to confirm"
    assert errors["title"]["params"]["limit"] > 2
    assert "no_harm: Tick this box to confirm" in body["detail"]     # the engine's English
    missing = client.get("/api/v1/tasks/nope", headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 404 and missing.get_json()["title"] == "Không tìm thấy"
    assert missing.get_json()["code"] == "task.not_found"


def test_a_settings_problem_is_said_in_both_languages_with_what_and_where(engine):
    """31/11 in a variant's settings: the file and field named, the words in each language."""
    with pytest.raises(DefinitionInvalid) as refused:
        parse_day_month("31/11", "lao-cai/variant.toml: reporting.unit_deadline")
    [problem] = refused.value.problems
    assert problem.file == "lao-cai/variant.toml: reporting.unit_deadline"
    app = create_app(engine, SECRET_KEY="test-secret")
    with app.test_request_context(headers={"Accept-Language": "vi"}):
        assert i18n.say(problem.code, problem.params) == \
            "'31/11' không phải ngày có thật: tháng 11 chỉ có 30 ngày"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert i18n.say(problem.code, problem.params) == \
            "'31/11' is not a date: month 11 has 30 days"
