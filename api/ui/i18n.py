"""Words of the web app in Vietnamese (default) and English, and how values are shown:
dates dd/mm/yyyy and times in Asia/Ho_Chi_Minh, money in đồng."""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import overload

from flask import g, session

from engine.clock import LOCAL_TZ, as_utc
from engine.store import InstanceStatus

LANGUAGES = ("vi", "en")

# key -> (Vietnamese, English)
TEXT = {
    "app": ("Quy trình Nghị định 73", "Decree 73 Workflow"),
    "sign_in": ("Đăng nhập", "Sign in"),
    "sign_out": ("Đăng xuất", "Sign out"),
    "username": ("Tên đăng nhập", "Username"),
    "password": ("Mật khẩu", "Password"),
    "wrong_credentials": ("Sai tên đăng nhập hoặc mật khẩu", "Wrong username or password"),
    "locked_out": ("Đăng nhập sai quá nhiều lần; vui lòng thử lại sau 15 phút",
                   "Too many failed sign-ins; try again in 15 minutes"),
    "session_expired": ("Phiên làm việc đã hết hạn, vui lòng gửi lại",
                        "The page expired; please submit again"),
    "inbox": ("Việc cần làm", "Inbox"),
    "my_proposals": ("Đề xuất của tôi", "My proposals"),
    "start_new": ("Tạo mới", "Start new"),
    "designer": ("Thiết kế quy trình", "Process design"),
    "admin": ("Quản trị", "Administration"),
    "dashboard": ("Tổng quan", "Dashboard"),
    "instances": ("Hồ sơ", "Instances"),
    "cycles": ("Kỳ báo cáo", "Reporting cycles"),
    "notifications": ("Thông báo", "Notifications"),
    "language": ("English", "Tiếng Việt"),
    "task": ("Công việc", "Task"),
    "open": ("Đang chờ xử lý", "Open"),
    "tasks": ("Công việc", "Tasks"),
    "mine": ("Được giao cho tôi", "Assigned to me"),
    "claimable": ("Có thể nhận", "Claimable"),
    "all": ("Tất cả", "All"),
    "overdue": ("Quá hạn", "Overdue"),
    "due": ("Hạn xử lý", "Due"),
    "no_due": ("Không có hạn", "No deadline"),
    "unit": ("Đơn vị", "Unit"),
    "case": ("Hồ sơ", "Case"),
    "created": ("Ngày tạo", "Created"),
    "no_tasks": ("Không có công việc nào", "No tasks"),
    "claim": ("Nhận xử lý", "Claim"),
    "unclaim": ("Trả lại", "Give back"),
    "assignee": ("Người xử lý", "Assignee"),
    "candidates": ("Người có thể xử lý", "Candidates"),
    "submit": ("Gửi", "Submit"),
    "form_invalid": ("Biểu mẫu có trường chưa hợp lệ, vui lòng xem các thông báo bên dưới",
                     "Some fields are invalid; see the messages below"),
    "required": ("bắt buộc", "required"),
    "confirm": ("Xác nhận", "Confirm"),
    "yes": ("Có", "Yes"),
    "no": ("Không", "No"),
    "add_row": ("Thêm dòng", "Add row"),
    "remove": ("Xóa", "Remove"),
    "choose": ("-- Chọn --", "-- Choose --"),
    "date_hint": ("dd/mm/yyyy", "dd/mm/yyyy"),
    "attach": ("Đính kèm tệp", "Attach files"),
    "task_done": ("Đã gửi. Bước tiếp theo đã được chuyển đi.",
                  "Submitted. The next step is on its way."),
    "claimed": ("Bạn đã nhận công việc này", "You claimed this task"),
    "not_yours": ("Bạn không phải người xử lý công việc này", "You cannot work on this task"),
    "task_closed": ("Công việc này đã được xử lý", "This task is no longer open"),
    "stage": ("Giai đoạn", "Stage"),
    "status": ("Trạng thái", "Status"),
    "started": ("Ngày bắt đầu", "Started"),
    "updated": ("Cập nhật", "Updated"),
    "decided": ("Quyết định", "Decision"),
    "timeline": ("Diễn biến", "Timeline"),
    "diagram": ("Sơ đồ quy trình", "Process diagram"),
    "open_tasks": ("Công việc đang mở", "Open tasks"),
    "no_proposals": ("Bạn chưa có hồ sơ nào", "You have no cases yet"),
    "when": ("Thời điểm", "When"),
    "who": ("Người thực hiện", "Who"),
    "what": ("Nội dung", "What"),
    "start": ("Bắt đầu", "Start"),
    "start_help": ("Chọn thủ tục để tạo hồ sơ mới; bước đầu tiên sẽ mở ra ngay.",
                   "Choose a procedure to start; its first step opens right away."),
    "nothing_to_start": ("Bạn không có thủ tục nào có thể tạo", "There is nothing you can start"),
    "variant": ("Địa phương", "Variant"),
    "process": ("Quy trình", "Process"),
    "version": ("Phiên bản", "Version"),
    "versions": ("Lịch sử phiên bản", "Version history"),
    "deployed_at": ("Triển khai lúc", "Deployed at"),
    "deployed_by": ("Người triển khai", "Deployed by"),
    "edit": ("Chỉnh sửa", "Edit"),
    "view": ("Xem", "View"),
    "validate": ("Kiểm tra", "Validate"),
    "deploy": ("Triển khai", "Deploy"),
    "compare": ("So sánh với quy trình chung", "Compare with national"),
    "valid": ("Hợp lệ", "Valid"),
    "deployed": ("Đã triển khai phiên bản", "Deployed version"),
    "unchanged": ("Không có thay đổi", "Nothing changed"),
    "differs": ("Khác với quy trình chung", "Differs from national"),
    "added": ("Thêm mới", "Added"),
    "removed": ("Bị bỏ", "Removed"),
    "changed": ("Thay đổi", "Changed"),
    "same_as_national": ("Giống quy trình chung", "Same as national"),
    "running": ("Đang chạy", "Running"),
    "incident": ("Sự cố", "Incident"),
    "suspended": ("Tạm dừng", "Suspended"),
    "completed": ("Hoàn thành", "Completed"),
    "terminated": ("Đã hủy", "Terminated"),
    "by_stage": ("Theo giai đoạn", "By stage"),
    "by_unit": ("Theo đơn vị", "By unit"),
    "search": ("Tìm kiếm", "Search"),
    "reset": ("Xóa lọc", "Clear"),
    "from": ("Từ ngày", "From"),
    "to": ("Đến ngày", "To"),
    "started_by": ("Người tạo", "Started by"),
    "results": ("kết quả", "results"),
    "previous": ("Trang trước", "Previous"),
    "next": ("Trang sau", "Next"),
    "data": ("Dữ liệu", "Data"),
    "timers": ("Hẹn giờ", "Timers"),
    "audit": ("Nhật ký", "Audit log"),
    "actions": ("Thao tác", "Actions"),
    "suspend": ("Tạm dừng", "Suspend"),
    "resume": ("Tiếp tục", "Resume"),
    "terminate": ("Hủy hồ sơ", "Terminate"),
    "retry": ("Chạy lại", "Retry"),
    "migrate": ("Chuyển phiên bản", "Migrate"),
    "reason": ("Lý do", "Reason"),
    "corrected_data": ("Dữ liệu sửa (JSON)", "Corrected data (JSON)"),
    "target_version": ("Phiên bản đích", "Target version"),
    "done": ("Đã thực hiện", "Done"),
    "download": ("Tải về", "Download"),
    "year": ("Năm", "Year"),
    "no_cycles": ("Chưa có kỳ báo cáo nào", "No reporting cycles yet"),
    "outbox": ("Thư điện tử đi", "Outgoing e-mail"),
    "recipient": ("Người nhận", "Recipient"),
    "subject": ("Tiêu đề", "Subject"),
    "last_error": ("Lỗi gần nhất", "Last error"),
    "sent_at": ("Gửi lúc", "Sent at"),
    "send_again": ("Gửi lại", "Send again"),
    "mark_all_read": ("Đánh dấu tất cả đã đọc", "Mark all as read"),
    "no_notifications": ("Không có thông báo", "No notifications"),
    "email_preference": ("Nhận thư điện tử", "E-mail"),
    "pref_immediate": ("Ngay khi có", "Immediately"),
    "pref_digest": ("Tổng hợp hằng ngày", "Daily digest"),
    "pref_off": ("Không nhận", "Off"),
    "save": ("Lưu", "Save"),
    "error": ("Lỗi", "Error"),
    "back_home": ("Về trang chính", "Back to the start page"),
    "incident_at": ("Sự cố tại bước", "Incident at"),
    "element": ("Bước", "Element"),
    "fired": ("Đã kích hoạt", "Fired"),
    "attempts": ("Số lần thử", "Attempts"),
    "kind": ("Loại", "Kind"),
    "action_confirm": ("Bạn chắc chắn?", "Are you sure?"),
    "instructions": ("Hướng dẫn", "Instructions"),
    "skip": ("Bỏ qua đến nội dung", "Skip to content"),
    "menu": ("Trình đơn", "Menu"),
    "total": ("Tổng", "Total"),
    "count": ("Số lượng", "Count"),
    "business_key": ("Số hồ sơ", "Case number"),
    "none": ("(không có)", "(none)"),
    "elements_changed": ("bước khác nhau", "elements differ"),
    "invalid_json": ("Không phải JSON hợp lệ", "Not valid JSON"),
    "file_too_large": ("Tệp quá lớn", "File too large"),
}

# the stage vocabulary of the process library (engine.bpmn.STAGES) and instance statuses
STAGE_LABELS = {
    "draft": ("Soạn kế hoạch", "Drafting"),
    "submitted": ("Đã gửi", "Submitted"),
    "under_review": ("Đang xem xét", "Under review"),
    "in_council": ("Hội đồng đánh giá", "In council"),
    "approved": ("Được phê duyệt", "Approved"),
    "rejected": ("Không phê duyệt", "Rejected"),
    "implementing": ("Đang triển khai", "Implementing"),
    "suspended": ("Tạm dừng", "Suspended"),
    "terminated": ("Chấm dứt", "Terminated"),
    "evaluating": ("Đánh giá kết quả", "Evaluating"),
    "recognised": ("Được công nhận", "Recognised"),
    "protection_review": ("Xem xét bảo vệ", "Protection review"),
    "closed": ("Kết thúc", "Closed"),
    "reporting": ("Báo cáo", "Reporting"),
    "consolidating": ("Tổng hợp báo cáo", "Consolidating"),
}
ACTION_LABELS = {
    "instance_started": ("Tạo hồ sơ", "Started"),
    "task_completed": ("Hoàn thành bước", "Step completed"),
    "task_claimed": ("Nhận xử lý", "Claimed"),
    "task_unclaimed": ("Trả lại", "Given back"),
    "task_assigned": ("Giao việc", "Assigned"),
    "element_completed": ("Hoàn thành", "Completed"),
    "reminder": ("Nhắc hạn", "Reminder"),
    "escalation": ("Báo quá hạn lên cấp trên", "Escalation"),
    "timers_fired": ("Đến hạn", "Timer fired"),
    "timer_moved": ("Đổi hạn", "Timer moved"),
    "message_received": ("Nhận thông điệp", "Message received"),
    "incident": ("Sự cố", "Incident"),
    "instance_suspended": ("Tạm dừng", "Suspended"),
    "instance_resumed": ("Tiếp tục", "Resumed"),
    "instance_terminated": ("Hủy hồ sơ", "Terminated"),
    "instance_retried": ("Chạy lại", "Retried"),
    "instance_migrated": ("Chuyển phiên bản", "Migrated"),
    "schedule_fired": ("Mở theo lịch", "Opened by schedule"),
    "instance_completed": ("Kết thúc hồ sơ", "Completed"),
    "incident_resolved": ("Khắc phục sự cố", "Incident resolved"),
    "task_opened": ("Mở bước", "Step opened"),
    "task_cancelled": ("Hủy bước", "Step cancelled"),
    "task_reopened": ("Mở lại bước", "Step reopened"),
    "timer_scheduled": ("Đặt hạn", "Timer set"),
    "timer_cancelled": ("Bỏ hạn", "Timer cancelled"),
    "timer_fired": ("Đến hạn", "Timer fired"),
    "timer_failed": ("Hẹn giờ bị lỗi", "Timer failed"),
    "timer_rearmed": ("Đặt lại hẹn giờ", "Timer re-armed"),
}
STATUS_KEYS = (InstanceStatus.RUNNING, InstanceStatus.INCIDENT, InstanceStatus.SUSPENDED,
               InstanceStatus.COMPLETED, InstanceStatus.TERMINATED)
# the rules by which the engine refuses an action (engine.errors.Forbidden.rule), said to
# the person refused; the placeholders are the refusal's details
REFUSALS = {
    "claimed_by_another": ("Công việc này đã được {assignee} nhận xử lý; chỉ người đó được "
                           "xử lý tiếp", "This task was claimed by {assignee}; only they may "
                           "work on it"),
    "candidates_only": TEXT["not_yours"],
    "assignee_or_administrators": ("Chỉ người đã nhận công việc hoặc quản trị viên mới được "
                                   "trả lại công việc này", "Only the assignee or an "
                                   "administrator may give this task back"),
    "administrators_only": ("Chỉ quản trị viên của {variant} mới được thực hiện thao tác này",
                            "Only administrators of {variant} may do this"),
    "own_units_only": ("Bạn không được thực hiện thay cho đơn vị {unit_id}",
                       "You cannot act for unit {unit_id}"),
    "members_only": ("Bạn không giữ chức vụ nào trong đơn vị thuộc {variant}",
                     "You hold no position in a unit of {variant}"),
}


def choose_language() -> str:
    """Vietnamese unless the person switched to English (kept in the session)."""
    chosen = session.get("lang")
    return chosen if chosen in LANGUAGES else "vi"


def lang() -> str:
    return getattr(g, "lang", "vi")


def t(key: str) -> str:
    vi, en = TEXT[key]
    return en if lang() == "en" else vi


def refusal(exc) -> str:
    """Why the engine refused (a :class:`~engine.errors.Forbidden`), in the page's language."""
    pair = REFUSALS.get(exc.rule)
    if pair is None:
        return exc.message
    try:
        return label(pair).format(**exc.details)
    except (KeyError, IndexError):
        return label(pair)


def label(pair_or_text, english: str | None = None) -> str:
    """A schema title and its ``x-title-en`` (or a (vi, en) pair) in the page's language."""
    if isinstance(pair_or_text, tuple):
        pair_or_text, english = pair_or_text
    return (english or pair_or_text) if lang() == "en" else pair_or_text


def stage_label(stage: str | None) -> str:
    if not stage:
        return ""
    return label(STAGE_LABELS[stage]) if stage in STAGE_LABELS else stage


def action_label(action: str) -> str:
    return label(ACTION_LABELS[action]) if action in ACTION_LABELS else action


@overload
def local(value: datetime) -> datetime: ...
@overload
def local(value: None) -> None: ...
def local(value: datetime | None) -> datetime | None:
    return as_utc(value).astimezone(LOCAL_TZ) if value is not None else None


def format_date(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return local(value).strftime("%d/%m/%Y")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    try:
        return date.fromisoformat(str(value)).strftime("%d/%m/%Y")
    except ValueError:
        return str(value)


def format_datetime(value: datetime | None) -> str:
    return local(value).strftime("%d/%m/%Y %H:%M") if value is not None else ""


def format_money(value) -> str:
    """1234567 → ``1.234.567 ₫`` (Vietnamese groups thousands with dots)."""
    if value is None or value == "":
        return ""
    return f"{int(value):,}".replace(",", ".") + " ₫"


def compact_json(value) -> str:
    """Data as people read it: one line, Vietnamese letters as they are."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
