"""Definitions: validate and deploy BPMN as immutable, versioned definitions.

Like Camunda's RepositoryService. A deployment of a variant creates a new version of each
process whose content changed and nothing for the others; a refused deployment writes
nothing. Parsed specs are cached in memory by definition id (versions never change).
"""
from __future__ import annotations

import base64
import json
import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from . import policy
from .bpmn import BuiltProcess, build_processes
from .notifications import templates as notification_templates
from .variants import (DEFAULT_SETTINGS, SETTINGS_FILE, SourceFile, load_forms, load_variant,
                       loads_toml, read_settings, unconfirmed_settings)
from .clock import Clock
from .errors import DefinitionInvalid, NotFound, Problem
from .serialization import Codec
from .store import AuditEvent, Database, Definition

SETTINGS_SOURCE = "variant.toml.json"
log = logging.getLogger(__name__)
# document templates travel with the definitions that declare them, base64 (sources are text)
DOCUMENT_PREFIX = "documents/"


def document_templates_of(sources: dict[str, str]) -> dict[str, bytes]:
    """The document templates deployed with a definition."""
    return {name[len(DOCUMENT_PREFIX):]: base64.b64decode(text)
            for name, text in sources.items() if name.startswith(DOCUMENT_PREFIX)}


# the id of a process's newest version, built once (an instance's start reads it)
_LATEST = (select(Definition.id)
           .where(Definition.variant == bindparam("variant"), Definition.key == bindparam("key"))
           .order_by(Definition.version.desc()).limit(1))


@dataclass(frozen=True)
class DeployedProcess:
    definition_id: int
    key: str
    variant: str
    version: int
    created: bool


def read_folder(folder: Path | str, forms_dir: Path | str | None = None):
    """A variant folder and its forms (``forms/<variant>/`` first, then the variants it
    extends, then ``forms/``; by default the ``forms`` folder beside ``processes``)."""
    variant = load_variant(folder)
    forms_root = Path(forms_dir) if forms_dir else Path(folder).resolve().parents[1] / "forms"
    return variant, load_forms(forms_root, variant.lineage)


def validate_folder(folder: Path | str, forms_dir: Path | str | None = None
                    ) -> tuple[str, list[BuiltProcess]]:
    variant, forms = read_folder(folder, forms_dir)
    notification_templates.validate(variant.templates,
                                    policy.notification_kinds(variant.sources))
    built = build_processes(variant.sources, forms=forms, settings=variant.settings)
    _attach_documents(built, variant.documents)
    return variant.name, built


def _attach_documents(built: list[BuiltProcess], documents: dict[str, bytes] | None) -> None:
    """Each process carries the document templates its own files declare; a template that
    no file of the variant provides is refused, naming it."""
    problems = []
    for process in built:
        for parsed in process.files:
            for name in sorted(policy.document_templates(parsed.content)):
                content = (documents or {}).get(name)
                if content is None:
                    problems.append(Problem(
                        parsed.name, f"document template '{name}' is not in the variant's "
                                     "documents/ folder (nor in those it extends)",
                        code="bpmn.document_template", params={"template": name}))
                    continue
                process.extra[DOCUMENT_PREFIX + name] = base64.b64encode(content)
    if problems:
        raise DefinitionInvalid(problems)


class Repository:
    def __init__(self, db: Database, codec: Codec, clock: Clock):
        self.db = db
        self.codec = codec
        self.clock = clock
        self._specs: dict[int, tuple] = {}
        self._settings: dict[int, dict] = {}
        self._stage_labels: tuple[int, dict[str, dict[str, str]]] | None = None
        # definition rows by id: versions are immutable, and a row carries the whole spec
        # text and sources, too costly to read again at every step of every instance
        self._definitions: dict[int, Definition] = {}
        self._lock = threading.Lock()

    # validation and deployment -------------------------------------------------------
    def validate(self, sources: list[SourceFile], forms: dict[str, bytes] | None = None,
                 settings: dict | None = None, templates: dict[str, bytes] | None = None,
                 documents: dict[str, bytes] | None = None) -> list[BuiltProcess]:
        """Raise DefinitionInvalid listing every problem, or return the built processes.
        Notification templates are checked and deployed with every process of the variant,
        once the BPMN files are readable (the kinds they declare name the templates)."""
        built = build_processes(sources, forms=forms, settings=settings)
        _attach_documents(built, documents)
        if templates:
            notification_templates.validate(templates, policy.notification_kinds(sources))
        for process in built:
            process.extra.update({notification_templates.SOURCE_PREFIX + name: content
                                  for name, content in sorted((templates or {}).items())})
        if settings is not None:
            text = json.dumps(settings, ensure_ascii=False, sort_keys=True, indent=1).encode()
            for process in built:
                process.extra[SETTINGS_SOURCE] = text
        return built

    def deploy(self, variant: str, sources: list[SourceFile], deployed_by: str, *,
               forms: dict[str, bytes] | None = None, settings: dict | None = None,
               templates: dict[str, bytes] | None = None,
               documents: dict[str, bytes] | None = None) -> list[DeployedProcess]:
        built = self.validate(sources, forms, settings, templates, documents)
        results = []
        with self.db.transaction() as session:
            for process in built:
                results.append(self._deploy_one(session, variant, process, deployed_by))
        return results

    def deploy_folder(self, folder: Path | str, deployed_by: str,
                      forms_dir: Path | str | None = None) -> list[DeployedProcess]:
        """Deploy a variant folder with its settings and the forms its user tasks name."""
        variant, forms = read_folder(folder, forms_dir)
        for warning in unconfirmed_settings(variant.settings):
            log.info("deploying %s: %s", variant.name, warning)
        return self.deploy(variant.name, variant.sources, deployed_by, forms=forms,
                           settings=variant.settings, templates=variant.templates,
                           documents=variant.documents)

    def upload_sources(self, variant: str, uploads: dict[str, bytes]
                       ) -> tuple[list[SourceFile], dict[str, bytes], dict, dict[str, bytes],
                                  dict[str, bytes]]:
        """The variant's latest deployed files with uploaded ones laid over them by name:
        BPMN/DMN files replace files, ``.json`` files replace forms, ``.txt`` and ``.html``
        files replace notification templates, ``.docx`` files document templates."""
        files: dict[str, bytes] = {}
        documents: dict[str, bytes] = {}
        forms: dict[str, bytes] = {}
        templates: dict[str, bytes] = {}
        prefix = notification_templates.SOURCE_PREFIX
        settings = None
        for definition in self.latest_versions(variant):
            for name, text in definition.sources.items():
                if name == SETTINGS_SOURCE:
                    settings = json.loads(text)
                elif name.startswith("forms/"):
                    forms[name[len("forms/"):]] = text.encode()
                elif name.startswith(prefix):
                    templates[name[len(prefix):]] = text.encode()
                elif name.startswith(DOCUMENT_PREFIX):
                    documents[name[len(DOCUMENT_PREFIX):]] = base64.b64decode(text)
                else:
                    files[name] = text.encode()
        problems = []
        if SETTINGS_FILE in uploads:
            settings = self.read_settings_file(variant, uploads[SETTINGS_FILE])
        files.update({n: c for n, c in uploads.items() if n.endswith((".bpmn", ".dmn"))})
        declared = policy.notification_kinds(SourceFile(n, c) for n, c in files.items())
        for name, content in uploads.items():
            if name.endswith((".bpmn", ".dmn")) or name == SETTINGS_FILE:
                continue
            elif name.endswith(".json"):
                forms[name] = content
            elif name.endswith(".docx"):
                documents[name] = content
            elif notification_templates.is_template_name(name, declared):
                templates[name] = content
            else:
                problems.append(Problem(name, "only .bpmn, .dmn, variant.toml, form .json, "
                                              ".docx and notification template files "
                                              "(<kind>.subject.txt, <kind>.txt, <kind>.html) "
                                              "can be uploaded",
                                        code="bpmn.file_type"))
        if problems:
            raise DefinitionInvalid(problems)
        settings = settings or dict(DEFAULT_SETTINGS, name=variant)
        return ([SourceFile(n, c) for n, c in files.items()], forms, settings, templates,
                documents)

    def deployed_settings(self, variant: str) -> dict | None:
        """The settings of the variant's newest deployment (None: nothing deployed)."""
        latest = self.latest_versions(variant)
        return self.settings(max(latest, key=lambda d: d.id)) if latest else None

    def read_settings_file(self, variant: str, content: bytes) -> dict:
        """A variant.toml uploaded for ``variant``, checked as deployment checks settings:
        with ``extends``, laid over the deployed settings of the variant it names; without,
        the whole settings (as a draft's variant.toml writes them out)."""
        label = f"{variant}/{SETTINGS_FILE}"
        own = loads_toml(content, label)
        base, parent = own.get("extends"), None
        if base is not None:
            if not isinstance(base, str) or base == variant:
                raise DefinitionInvalid([Problem(label, f"'extends' loops through '{base}'",
                                                 code="variant.extends_loop",
                                                 params={"variant": str(base)})])
            parent = self.deployed_settings(base)
            if parent is None:
                raise DefinitionInvalid([Problem(
                    f"{label}: extends", f"'extends' names '{base}', which has no deployed "
                                         "definition", code="variant.extends_unknown",
                    params={"variant": base})])
        return read_settings(own, label, parent, variant)

    def validate_upload(self, variant: str, uploads: dict[str, bytes]) -> list[BuiltProcess]:
        return self.validate(*self.upload_sources(variant, uploads))

    def deploy_upload(self, variant: str, uploads: dict[str, bytes], deployed_by: str
                      ) -> list[DeployedProcess]:
        sources, forms, settings, templates, documents = self.upload_sources(variant, uploads)
        return self.deploy(variant, sources, deployed_by, forms=forms, settings=settings,
                           templates=templates, documents=documents)

    def variants(self) -> list[str]:
        """The variants that have deployed definitions."""
        with self.db.reading() as session:
            return list(session.scalars(select(Definition.variant).distinct()
                                        .order_by(Definition.variant)))

    def latest_versions(self, variant: str) -> list[Definition]:
        newest = (select(Definition.key, func.max(Definition.version).label("version"))
                  .where(Definition.variant == variant).group_by(Definition.key).subquery())
        with self.db.reading() as session:
            return list(session.scalars(select(Definition).join(
                newest, (Definition.key == newest.c.key)
                & (Definition.version == newest.c.version))
                .where(Definition.variant == variant).order_by(Definition.key)))

    def _deploy_one(self, session, variant: str, process: BuiltProcess, deployed_by: str):
        latest = session.scalars(
            select(Definition).where(Definition.variant == variant,
                                     Definition.key == process.key)
            .order_by(Definition.version.desc()).limit(1)).first()
        content_hash = process.content_hash
        if latest is not None and latest.content_hash == content_hash:
            return DeployedProcess(latest.id, process.key, variant, latest.version, False)
        definition = Definition(
            variant=variant, key=process.key, name=process.name,
            version=(latest.version + 1) if latest else 1,
            content_hash=content_hash, sources=process.sources,
            spec=self.codec.dump_spec(process.spec, process.subprocess_specs),
            deployed_at=self.clock.now(), deployed_by=deployed_by)
        session.add(definition)
        session.flush()
        session.add(AuditEvent(definition_id=definition.id, at=definition.deployed_at,
                               actor=deployed_by, action="definition_deployed",
                               details={"variant": variant, "key": process.key,
                                        "version": definition.version,
                                        "content_hash": content_hash}))
        return DeployedProcess(definition.id, process.key, variant, definition.version, True)

    # look-ups --------------------------------------------------------------------------
    def get(self, definition_id: int, session: Session | None = None) -> Definition:
        """A definition by id. Inside a unit of work pass its ``session``: taking a second
        connection while holding one deadlocks when every pooled connection is held so."""
        cached = self._definitions.get(definition_id)
        if cached is not None:
            return cached
        if not 0 < definition_id < 2**31:      # beyond any stored id (and any SQL INTEGER)
            raise NotFound(f"definition {definition_id} does not exist",
                           code="definition.not_found")
        with nullcontext(session) if session is not None else self.db.reading() as reader:
            definition = reader.get(Definition, definition_id)
            if definition is None:
                raise NotFound(f"definition {definition_id} does not exist",
                               code="definition.not_found")
            if session is not None:     # a rollback of that unit must not expire the cached row
                session.expunge(definition)
        self._definitions[definition_id] = definition
        return definition

    def latest(self, variant: str, key: str) -> Definition:
        """The newest version of a process. Its id is read at every call (another process
        may have deployed a newer one since), in one statement on the unique index; the
        version's row (its spec and sources, tens of kilobytes) comes from the versions
        kept in memory (:meth:`get`: a version never changes)."""
        found = self.db.read_rows(_LATEST, {"variant": variant, "key": key})
        definition = self.get(found[0][0]) if found else None
        if definition is None:
            raise NotFound(f"no process '{key}' is deployed for variant '{variant}'",
                           code="process.not_deployed",
                           params={"process": key, "variant": variant},
                           variant=variant, key=key)
        return definition

    def versions(self, variant: str | None = None, key: str | None = None) -> list[Definition]:
        query = select(Definition).order_by(Definition.variant, Definition.key,
                                            Definition.version)
        if variant:
            query = query.where(Definition.variant == variant)
        if key:
            query = query.where(Definition.key == key)
        with self.db.reading() as session:
            return list(session.scalars(query))

    def count(self) -> int:
        with self.db.reading() as session:
            return session.scalar(select(func.count(Definition.id))) or 0

    def settings(self, definition: Definition) -> dict:
        """The variant settings deployed with a definition (defaults for bare deployments)."""
        cached = self._settings.get(definition.id)
        if cached is None:
            text = definition.sources.get(SETTINGS_SOURCE)
            cached = json.loads(text) if text else dict(DEFAULT_SETTINGS, name=definition.variant)
            self._settings[definition.id] = cached
        return cached

    def stage_labels(self) -> dict[str, dict[str, str]]:
        """How pages name each business stage (``[stages]`` of the variants' settings: key
        → ``label`` and ``label_en``), over the newest definitions of every variant; read
        again whenever a definition was deployed since."""
        with self.db.reading() as session:
            newest = session.scalar(select(func.max(Definition.id))) or 0
            cached = self._stage_labels
            if cached is not None and cached[0] == newest:
                return cached[1]
            labels: dict[str, dict[str, str]] = {}
            ids = session.scalars(select(func.max(Definition.id)).group_by(
                Definition.variant).order_by(Definition.variant))
            for definition_id in ids:
                stages = self.settings(self.get(definition_id, session)).get("stages") or {}
                for key, spec in stages.items():
                    labels.setdefault(key, dict(spec))
        self._stage_labels = (newest, labels)
        return labels

    def form(self, definition: Definition, name: str | None) -> dict | None:
        text = definition.sources.get(f"forms/{name}") if name else None
        return json.loads(text) if text else None

    def specs(self, definition: Definition) -> tuple:
        """(spec, subprocess specs) of a definition version, parsed once per process."""
        cached = self._specs.get(definition.id)
        if cached is None:
            with self._lock:
                cached = self._specs.get(definition.id)
                if cached is None:
                    cached = self.codec.load_spec(definition.spec)
                    self._specs[definition.id] = cached
        return cached
