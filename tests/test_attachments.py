"""Files attached to forms through the REST API: safe names, allowed types only, served as
downloads to those who may see the case, and nobody else."""
from __future__ import annotations

from test_api import api, complete, is_problem, start  # noqa: F401  (fixture)
from procedures import plan

PROPOSER = "laocai.sxd.qlxd.truongphong"
HEAD = "laocai.sxd.giamdoc"
STRANGER = "daklak.sxd.giamdoc"


def upload(api, user, name, content, mimetype="application/pdf"):
    return api.post("/files", user, files={"file": (name, content, mimetype)})


def test_a_plan_with_an_attachment_is_readable_by_those_who_see_the_case(api):
    stored = upload(api, PROPOSER, "../../etc/Kế hoạch.pdf", b"%PDF-1.4 plan",
                    mimetype="text/html")
    assert stored.status_code == 201, stored.text
    file = stored.json()
    assert file["name"] == "Kế hoạch.pdf"                 # no path, whatever was sent
    assert file["content_type"] == "application/pdf"      # by extension, not the sender
    assert file["size"] == 13
    # before a form names it, only the uploader reads it
    assert api.get(f"/files/{file['file_id']}", PROPOSER).content == b"%PDF-1.4 plan"
    is_problem(api.get(f"/files/{file['file_id']}", HEAD), 404, "not-found")

    case = start(api, business_key="LC-FILE")
    complete(api, PROPOSER, case["id"], "submit_plan", plan(attachments=[
        {"name": file["name"], "file_id": file["file_id"]}]))
    download = api.get(f"/instances/{case['id']}/files/{file['file_id']}", HEAD)
    assert download.status_code == 200 and download.content == b"%PDF-1.4 plan"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert "UTF-8''K%E1%BA%BF" in download.headers["Content-Disposition"]
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    is_problem(api.get(f"/instances/{case['id']}/files/{file['file_id']}", STRANGER), 404,
               "not-found")
    # a file not attached to that case is not reachable through it
    other = upload(api, HEAD, "khac.pdf", b"%PDF other").json()
    is_problem(api.get(f"/instances/{case['id']}/files/{other['file_id']}", HEAD), 404,
               "not-found")


def test_types_names_and_sizes_are_checked(api):
    for name in ("trang.html", "script.js", "chay.exe", "khong-duoi", "..", "/"):
        body = is_problem(upload(api, PROPOSER, name, b"<script>alert(1)</script>"), 422,
                          "invalid-data")
        assert body["errors"][0]["field"] == "file"
    is_problem(upload(api, PROPOSER, "rong.pdf", b""), 422, "invalid-data")
    is_problem(api.post("/files", PROPOSER, json={"file": "x"}), 415,
               "unsupported-media-type")
    is_problem(api.post("/files", PROPOSER, files={"other": ("a.pdf", b"x")}), 422,
               "invalid-data")
    is_problem(upload(api, None, "a.pdf", b"%PDF"), 401, "unauthenticated")
    is_problem(api.get("/files/" + "x" * 80, PROPOSER), 404, "not-found")
