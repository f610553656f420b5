"""The engine as one object: database, clock, sandbox, repository and runtime wired together."""
from __future__ import annotations

from typing import Callable, Mapping

from . import deadlines
from .clock import Clock, ManualClock
from .config import Settings
from .access import Access
from .notifications import Notifications
from .attachments import Attachments
from .documents.service import DocumentIssuer, Documents
from .dossier import Dossiers
from .org import Org
from .identities import Identities
from .orgadmin import OrgAdmin
from .queries import Queries
from .reports import Figures
from .tasks import TaskService
from .drafts import Drafts
from .repository import Repository
from .runtime import Runtime
from .scripting import EngineScriptEngine
from .serialization import Codec
from .workdays import load_public_holidays
from .store import Database


class WorkflowEngine:
    """Entry point for scripts, tests, the CLI and the web app.

    ``engine.repository`` deploys and looks up definitions; ``engine.runtime`` runs
    instances. ``settings`` are the process's (:meth:`Settings.from_environment`, read by
    the entry points); without them, the defaults. The other arguments override them.
    """

    def __init__(self, database_url: str | None = None, *, settings: Settings | None = None,
                 clock: Clock | None = None,
                 functions: Mapping[str, Callable] | None = None,
                 script_time_limit: float | None = None,
                 max_data_bytes: int | None = None):
        self.settings = settings = settings or Settings.defaults()
        if clock is None and settings.test_clock:
            clock = ManualClock(Clock().now())   # end-to-end tests move it over HTTP
        self.clock = clock or Clock()
        load_public_holidays(self.clock.now().year)    # never inside a script's CPU limit
        self.db = Database(database_url or settings.database_url)
        time_limit = script_time_limit or settings.script_time_limit
        max_bytes = max_data_bytes or settings.max_data_bytes
        self.codec = Codec()
        self.org = Org(self.db, self.clock)
        self.figures = Figures(self.db, self.org, self.clock)
        offered = {**deadlines.sandbox_functions(self.clock),
                   **self.org.sandbox_functions(deadlines.current_settings),
                   **self.figures.sandbox_functions(), **(functions or {})}
        self.script_engine = EngineScriptEngine(self.clock, offered, time_limit, max_bytes)
        self.repository = Repository(self.db, self.codec, self.clock)
        self.drafts = Drafts(self.db, self.repository, self.clock)
        self.notifications = Notifications(self.db, self.clock, self.org,
                                           base_url=settings.public_url)
        self.access = Access(self.db, self.clock)
        self.identities = Identities(self.db, self.clock)
        self.runtime = Runtime(self.db, self.repository, self.codec, self.clock,
                               self.script_engine, max_bytes, self.org, self.access,
                               notifications=self.notifications)
        self.documents = Documents(self.db, self.clock, self.access, self.org,
                                   self.repository)
        # first: the step's notifications cite the documents it issues
        self.runtime.listeners.insert(0, DocumentIssuer(self.documents,
                                                        self.runtime.evaluate_declared))
        self.tasks = TaskService(self.db, self.clock, self.access,
                                 notifications=self.notifications)
        self.queries = Queries(self.db, self.clock, self.access, self.runtime)
        self.attachments = Attachments(self.db, self.clock)
        self.dossiers = Dossiers(self.db, self.repository, self.runtime, self.access)
        self.orgadmin = OrgAdmin(self.db, self.clock, self.access, self.org,
                                 notifications=self.notifications)

    def upgrade_database(self) -> None:
        self.db.upgrade()

    def close(self) -> None:
        self.db.dispose()
