"""Every BPMN file in processes/ opens in bpmn-js (the library behind bpmn.io and Camunda
Modeler) in a real browser, without import warnings, with every element drawn."""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from browser import chromium_page
from conftest import PROJECT

VIEWER = PROJECT / "api" / "static" / "vendor" / "bpmn-viewer.production.min.js"
BPMN_FILES = sorted((PROJECT / "processes").rglob("*.bpmn"))
SCREENSHOTS = Path(__file__).parent / "output"

IMPORT = """async (xml) => {
  document.body.innerHTML = '<div id="canvas" style="width: 100%; height: 100%"></div>';
  const viewer = new BpmnJS({ container: '#canvas' });
  const result = await viewer.importXML(xml);
  viewer.get('canvas').zoom('fit-viewport');
  return {
    warnings: result.warnings.map(w => w.message),
    drawn: viewer.get('elementRegistry').getAll().map(e => e.businessObject.id),
    svg: document.querySelectorAll('#canvas .djs-element').length,
  };
}"""


@pytest.fixture(scope="module")
def page():
    assert VIEWER.exists(), "bpmn-js is installed by `make install` (npm ci in api/web)"
    with chromium_page(1600, 900) as browser_page:
        browser_page.set_content("<html><body style='margin:0;height:900px'></body></html>")
        browser_page.add_script_tag(path=str(VIEWER))
        yield browser_page


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_bpmn_file_renders_in_bpmn_js(page, path: Path):
    xml = path.read_text(encoding="utf-8")
    result = page.evaluate(IMPORT, xml)
    assert result["warnings"] == []
    root = etree.fromstring(xml.encode())
    flow_ids = {el.get("id") for el in root.iter()
                if isinstance(el.tag, str) and el.get("id")
                and etree.QName(el).localname in ("startEvent", "endEvent", "userTask",
                                                  "scriptTask", "exclusiveGateway",
                                                  "boundaryEvent", "callActivity",
                                                  "sequenceFlow", "lane",
                                                  "intermediateCatchEvent")}
    assert flow_ids <= set(result["drawn"])
    assert result["svg"] >= len(flow_ids)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{path.parent.name}-{path.stem}.png"))
